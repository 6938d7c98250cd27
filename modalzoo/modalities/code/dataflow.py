"""Python data flow (GraphCodeBERT-style) from the standard library alone: ``ast`` for structure, ``tokenize`` for
the positions ``ast`` does not record. Our own walker and our own semantics, written down here.

Nodes
    One :class:`Node` per occurrence of a variable name: an ``ast.Name`` (load, store or del), a function or lambda
    parameter, a for / with-as / comprehension / walrus / ``match`` capture target, an ``except ... as e`` name, the
    names of a ``global`` / ``nonlocal`` statement. ``kind`` is ``"use"`` (the value is read) or ``"def"`` (the name is
    bound); ``role`` says which construct made it. Positions: ``line`` 1-based, ``col`` / ``end_col`` 0-based
    *character* offsets (not the UTF-8 byte offsets of ``ast``), end exclusive. Nodes are listed in source order
    (line, col, uses before defs) and an edge names nodes by their index in that list.
    An attribute access ``a.b.c`` (and a subscript ``a[i]``) is a use of ``a`` (and of ``i``): attribute names are
    not variables. Literals are not nodes. Not nodes either: the names bound by ``def``/``class``/``import`` (they
    only *kill* earlier definitions of the name in their scope), attribute names, keyword-argument names, and the
    target of an annotation without a value (``x: int`` binds nothing).

Edges (``src`` -> ``dst``, both node indices; the arrow points from the dependent to where its value comes from)
    ``comesFrom``: a use -> every definition of the same name in the same scope that *may reach* it (some path from
    the definition to the use does not rebind the name).
    ``computedFrom``: a def -> every use evaluated in its right-hand side: ``x = a + b`` gives x->a, x->b;
    ``x += y`` gives a use node and a def node at the target's position (use first) and x(def)->x(use), x(def)->y;
    ``a, b = c, d`` (and any unpacking, star targets, chained ``a = b = c``): *every* target from *every* right-hand
    use (no positional pairing: ``a, b = f(c)`` cannot be paired anyway). For/comprehension targets are computed
    from the iterable's uses, with-as targets from the context expression's, walrus targets from their value's,
    ``match`` captures from the subject's. Uses inside a lambda body on the right are not counted (other scope).
    Parameters, ``except`` names and ``global``/``nonlocal`` names have no computedFrom edges (their values come from
    outside). Assigning to ``a.b`` / ``a[i]`` is a use of ``a`` (and ``i``) with no computedFrom edge.

Control flow (a may-reach analysis over the AST; states map name -> set of defs)
    * ``if``/``else``, ``match`` cases (and "no case matched"), conditional expressions' branches are not split
      (an expression's uses all read the state before it). Branches run on copies of the state, merged by union.
    * ``while``/``for`` bodies are iterated to a fixed point, so a use early in the body also comes from
      definitions later in the body (previous iteration) besides those before the loop; ``break``/``continue`` carry
      their state to the loop exit/head; ``else`` runs on the normal exit. ``return``/``raise`` end a path (state
      emptied), so code after them has no reaching definitions.
    * ``try``: a handler's entry state is the state before ``try`` plus every definition made anywhere in the body
      (an exception may come between any two statements); ``else`` continues the body; the state after is the merge
      of ``else`` and the handlers. ``finally`` is visited twice: on the normal path (its end is the state after the
      statement) and on the exceptional path (entry = everything of the try, edges only). ``except ... as e`` defines
      ``e`` and unbinds it at the handler's end, as Python does.
    * ``with``: the as-target is defined before the body; suppressed exceptions are not modelled.
    * Comprehensions: the first iterable is evaluated in the enclosing state, the targets live in the
      comprehension's own scope (they do not leak and do not kill outer definitions); other names read the
      enclosing state; a walrus inside leaks to the enclosing scope, as in Python. Comprehension loops are visited
      once.
    * ``del x`` is a use of x, after which x is unbound. ``global``/``nonlocal`` names are def nodes (role
      ``global``/``nonlocal``) standing for the outer binding, so later uses in the function come from them.

Scopes
    The module, each function / lambda body and each class body are analysed separately, each from an empty state;
    a function starts with its parameters as definitions. Decorators, defaults, annotations and class bases are
    evaluated in the enclosing scope. Free variables (globals, closures, builtins, class names used in methods) get
    no comesFrom edge: edges never cross a scope. :func:`extract` returns all scopes of the source in one flow.

Out of scope
    Aliasing and mutation (``a.append(x)``), attribute/element-level flow, exceptions raised by ``with`` bodies and
    suppressed, ``break``/``continue``/``return`` through ``finally``, loops inside comprehensions, type-parameter
    syntax (3.12), other languages (tree-sitter) and the subword alignment / truncation of the model input.
"""

from __future__ import annotations

import ast
import bisect
import io
import re
import textwrap
import tokenize
from dataclasses import dataclass, field

USE, DEF = "use", "def"
COMES_FROM, COMPUTED_FROM = "comesFrom", "computedFrom"
_RANK = {USE: 0, DEF: 1}


class UnparsableCode(ValueError):
    """The source cannot be analysed. ``reason`` is ``"syntax"`` (it does not parse) or ``"too_deep"`` (nesting
    beyond the interpreter's recursion limit), for the corpus builder to count."""

    def __init__(self, message: str, reason: str = "syntax", lineno: int | None = None):
        super().__init__(message)
        self.reason = reason
        self.lineno = lineno


@dataclass(frozen=True)
class Node:
    name: str
    line: int
    col: int
    end_col: int
    kind: str           # "use" | "def"
    role: str = "name"  # name, parameter, assign, augassign, annassign, for, with, except, comprehension, walrus, ...


@dataclass(frozen=True)
class Edge:
    src: int
    dst: int
    kind: str           # "comesFrom" | "computedFrom"


@dataclass
class DataFlow:
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)


class _Source:
    """The (dedented, newline-normalised) text, byte->character columns and lazily tokenized NAME tokens."""

    def __init__(self, text: str, shift: int):
        self.text, self.shift = text, shift
        self.lines = text.split("\n")
        self._names: list[tuple[int, int, int, str]] | None = None

    def char_col(self, line: int, col: int) -> int:
        s = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        return col if s.isascii() else len(s.encode("utf-8")[:col].decode("utf-8", "replace"))

    def find(self, name: str, after: tuple[int, int]) -> tuple[int, int, int]:
        """The first NAME token ``name`` at or after ``after`` (line, character column)."""
        if self._names is None:
            try:
                self._names = [(t.start[0], t.start[1], t.end[1], t.string)
                               for t in tokenize.generate_tokens(io.StringIO(self.text).readline)
                               if t.type == tokenize.NAME]
            except (tokenize.TokenError, SyntaxError) as e:
                raise UnparsableCode(f"tokenize failed: {e}") from e
        i = bisect.bisect_left(self._names, after)
        for line, col, end, string in self._names[i:]:
            if string == name:
                return line, col, end
        raise UnparsableCode(f"name {name!r} not found after {after}")  # pragma: no cover (ast and tokenize agree)


def _merge(*states: dict) -> dict:
    out: dict[str, frozenset] = {}
    for st in states:
        for name, defs in st.items():
            out[name] = out.get(name, frozenset()) | defs
    return out


def _set(st: dict, new: dict) -> None:
    st.clear()
    st.update(new)


class _Walker:
    def __init__(self, src: _Source):
        self.src = src
        self.nodes: dict[tuple, Node] = {}   # key (line, col, rank) -> Node
        self.edges: set[tuple] = set()       # (src key, dst key, kind)
        self.collectors: list[list] = []     # active right-hand sides: uses evaluated in them
        self.loops: list[tuple[list, list]] = []  # (break states, continue states) of the enclosing loops
        self.gens: list[dict] = []           # active try bodies: name -> defs made in them

    # ---- nodes and edges
    def _node(self, name, line, col, end_col, kind, role) -> tuple:
        key = (line, col, _RANK[kind])
        if key not in self.nodes:
            self.nodes[key] = Node(name, line, col + self.src.shift, end_col + self.src.shift, kind, role)
        return key

    def _pos(self, node: ast.AST, name: str) -> tuple[int, int, int]:
        col = self.src.char_col(node.lineno, node.col_offset)
        return node.lineno, col, col + len(name)

    def use(self, name, pos, st, role="name") -> tuple:
        key = self._node(name, *pos, USE, role)
        for d in st.get(name, ()):
            self.edges.add((key, d, COMES_FROM))
        for c in self.collectors:
            c.append(key)
        return key

    def define(self, name, pos, st, role, sources=()) -> tuple:
        key = self._node(name, *pos, DEF, role)
        st[name] = frozenset((key,))
        for s in sources:
            self.edges.add((key, s, COMPUTED_FROM))
        for g in self.gens:
            g[name] = g.get(name, frozenset()) | {key}
        return key

    def collect(self, e, st) -> list:
        self.collectors.append([])
        try:
            self.expr(e, st)
        finally:
            uses = self.collectors.pop()
        return uses

    # ---- expressions
    def expr(self, e, st) -> None:
        if e is None:
            return
        if isinstance(e, ast.Name):
            pos = self._pos(e, e.id)
            if isinstance(e.ctx, ast.Load):
                self.use(e.id, pos, st)
            elif isinstance(e.ctx, ast.Del):
                self.use(e.id, pos, st, "del")
                st.pop(e.id, None)
            else:  # pragma: no cover (stores are handled by targets())
                self.define(e.id, pos, st, "assign")
        elif isinstance(e, ast.NamedExpr):
            self.targets(e.target, st, "walrus", self.collect(e.value, st))
        elif isinstance(e, ast.Lambda):
            self.signature(e.args, st)
            self.scope(e.args, e.body, expression=True)
        elif isinstance(e, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            self.comprehension(e, st)
        else:
            for child in ast.iter_child_nodes(e):
                if isinstance(child, ast.expr):
                    self.expr(child, st)
                elif isinstance(child, ast.keyword):
                    self.expr(child.value, st)

    def targets(self, t, st, role, sources) -> set[str]:
        """Bind an assignment target; returns the names bound."""
        if isinstance(t, ast.Name):
            self.define(t.id, self._pos(t, t.id), st, role, sources)
            return {t.id}
        if isinstance(t, (ast.Tuple, ast.List)):
            return set().union(*(self.targets(elt, st, role, sources) for elt in t.elts))
        if isinstance(t, ast.Starred):
            return self.targets(t.value, st, role, sources)
        if isinstance(t, ast.Attribute):
            self.expr(t.value, st)
        elif isinstance(t, ast.Subscript):
            self.expr(t.value, st)
            self.expr(t.slice, st)
        return set()

    def comprehension(self, e, st) -> None:
        inner, bound = dict(st), set()
        for i, gen in enumerate(e.generators):
            sources = self.collect(gen.iter, st if i == 0 else inner)
            bound |= self.targets(gen.target, inner, "comprehension", sources)
            for cond in gen.ifs:
                self.expr(cond, inner)
        if isinstance(e, ast.DictComp):
            self.expr(e.key, inner)
            self.expr(e.value, inner)
        else:
            self.expr(e.elt, inner)
        for name, defs in inner.items():  # walrus targets leak to the enclosing scope
            if name not in bound and st.get(name) != defs:
                st[name] = defs

    # ---- scopes
    def signature(self, args: ast.arguments, st) -> None:
        """Defaults and annotations: evaluated in the enclosing scope."""
        for d in args.defaults + args.kw_defaults:
            self.expr(d, st)
        for a in args.posonlyargs + args.args + args.kwonlyargs + [args.vararg, args.kwarg]:
            if a is not None:
                self.expr(a.annotation, st)

    def scope(self, args, body, expression=False) -> None:
        saved = self.collectors, self.loops, self.gens
        self.collectors, self.loops, self.gens = [], [], []
        st: dict = {}
        if args is not None:
            for a in args.posonlyargs + args.args + [args.vararg] + args.kwonlyargs + [args.kwarg]:
                if a is not None:
                    self.define(a.arg, self._pos(a, a.arg), st, "parameter")
        if expression:
            self.expr(body, st)
        else:
            self.block(body, st)
        self.collectors, self.loops, self.gens = saved

    # ---- statements
    def block(self, stmts, st) -> None:
        for s in stmts:
            self.stmt(s, st)

    def stmt(self, s, st) -> None:  # noqa: C901 (one dispatch)
        if isinstance(s, ast.Assign):
            sources = self.collect(s.value, st)
            for t in s.targets:
                self.targets(t, st, "assign", sources)
        elif isinstance(s, ast.AugAssign):
            sources = self.collect(s.value, st)
            if isinstance(s.target, ast.Name):
                pos = self._pos(s.target, s.target.id)
                old = self.use(s.target.id, pos, st, "augassign")
                self.define(s.target.id, pos, st, "augassign", [*sources, old])
            else:
                self.targets(s.target, st, "augassign", sources)
        elif isinstance(s, ast.AnnAssign):
            self.expr(s.annotation, st)
            if s.value is not None:
                self.targets(s.target, st, "annassign", self.collect(s.value, st))
            elif not isinstance(s.target, ast.Name):
                self.targets(s.target, st, "annassign", ())
        elif isinstance(s, (ast.Return, ast.Raise)):
            for child in ast.iter_child_nodes(s):
                self.expr(child, st)
            st.clear()
        elif isinstance(s, (ast.Break, ast.Continue)):
            if self.loops:
                self.loops[-1][isinstance(s, ast.Continue)].append(dict(st))
            st.clear()
        elif isinstance(s, (ast.Global, ast.Nonlocal)):
            role = "global" if isinstance(s, ast.Global) else "nonlocal"
            after = (s.lineno, self.src.char_col(s.lineno, s.col_offset))
            for name in s.names:
                line, col, end = self.src.find(name, after)
                self.define(name, (line, col, end), st, role)
                after = (line, end)
        elif isinstance(s, (ast.Import, ast.ImportFrom)):
            for alias in s.names:
                st.pop(alias.asname or alias.name.split(".")[0], None)
        elif isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for d in s.decorator_list:
                self.expr(d, st)
            self.signature(s.args, st)
            self.expr(s.returns, st)
            self.scope(s.args, s.body)
            st.pop(s.name, None)
        elif isinstance(s, ast.ClassDef):
            for e in s.decorator_list + s.bases + [k.value for k in s.keywords]:
                self.expr(e, st)
            self.scope(None, s.body)
            st.pop(s.name, None)
        elif isinstance(s, ast.If):
            self.expr(s.test, st)
            then, other = dict(st), dict(st)
            self.block(s.body, then)
            self.block(s.orelse, other)
            _set(st, _merge(then, other))
        elif isinstance(s, (ast.For, ast.AsyncFor)):
            sources = self.collect(s.iter, st)

            def body(cur):
                self.targets(s.target, cur, "for", sources)
                self.block(s.body, cur)
            self.loop(st, None, body, s.orelse)
        elif isinstance(s, ast.While):
            self.loop(st, s.test, lambda cur: self.block(s.body, cur), s.orelse)
        elif isinstance(s, (ast.With, ast.AsyncWith)):
            for item in s.items:
                sources = self.collect(item.context_expr, st)
                if item.optional_vars is not None:
                    self.targets(item.optional_vars, st, "with", sources)
            self.block(s.body, st)
        elif isinstance(s, (ast.Try, ast.TryStar)):
            self.try_(s, st)
        elif isinstance(s, ast.Match):
            self.match(s, st)
        else:  # Expr, Assert, Delete, Pass, ...
            for child in ast.iter_child_nodes(s):
                if isinstance(child, ast.expr):
                    self.expr(child, st)

    def loop(self, st, test, body, orelse) -> None:
        entry = dict(st)
        head = entry
        while True:
            self.loops.append(([], []))
            cur = dict(head)
            self.expr(test, cur)
            exit_ = dict(cur)
            body(cur)
            breaks, continues = self.loops.pop()
            new = _merge(entry, cur, *continues)
            if new == head:
                break
            head = new
        if test is None:  # for: the iterator is exhausted at the head
            exit_ = dict(head)
        self.block(orelse, exit_)
        _set(st, _merge(exit_, *breaks))

    def try_(self, s, st) -> None:
        pre = dict(st)
        self.gens.append({})       # everything of the try, for the exceptional path into finally
        self.gens.append({})       # the body, for the handlers
        body = dict(st)
        self.block(s.body, body)
        exc = _merge(pre, self.gens.pop())
        ends = []
        for h in s.handlers:
            hs = dict(exc)
            self.expr(h.type, hs)
            if h.name:
                start = h.type if h.type is not None else h
                after = (start.end_lineno, self.src.char_col(start.end_lineno, start.end_col_offset))
                self.define(h.name, self.src.find(h.name, after), hs, "except")
            self.block(h.body, hs)
            if h.name:
                hs.pop(h.name, None)
            ends.append(hs)
        self.block(s.orelse, body)
        everything = self.gens.pop()
        after = _merge(body, *ends)
        if s.finalbody:
            self.block(s.finalbody, _merge(pre, everything, after))   # exceptional path: edges only
            self.block(s.finalbody, after)
        _set(st, after)

    def match(self, s, st) -> None:
        sources = self.collect(s.subject, st)
        ends = [dict(st)]
        for case in s.cases:
            cs = dict(st)
            self.pattern(case.pattern, cs, sources)
            self.expr(case.guard, cs)
            self.block(case.body, cs)
            ends.append(cs)
        _set(st, _merge(*ends))

    def pattern(self, p, st, sources) -> None:
        def capture(name, after_node, at_end):
            line = after_node.end_lineno if at_end else after_node.lineno
            col = after_node.end_col_offset if at_end else after_node.col_offset
            self.define(name, self.src.find(name, (line, self.src.char_col(line, col))), st, "match", sources)

        if isinstance(p, ast.MatchValue):
            self.expr(p.value, st)
        elif isinstance(p, ast.MatchSequence):
            for q in p.patterns:
                self.pattern(q, st, sources)
        elif isinstance(p, ast.MatchMapping):
            for k in p.keys:
                self.expr(k, st)
            for q in p.patterns:
                self.pattern(q, st, sources)
            if p.rest:
                capture(p.rest, p.patterns[-1] if p.patterns else p, bool(p.patterns))
        elif isinstance(p, ast.MatchClass):
            self.expr(p.cls, st)
            for q in p.patterns + p.kwd_patterns:
                self.pattern(q, st, sources)
        elif isinstance(p, ast.MatchStar):
            if p.name:
                capture(p.name, p, False)
        elif isinstance(p, ast.MatchAs):
            if p.pattern is not None:
                self.pattern(p.pattern, st, sources)
            if p.name:
                capture(p.name, p.pattern if p.pattern is not None else p, p.pattern is not None)
        elif isinstance(p, ast.MatchOr):
            alternatives = []
            for q in p.patterns:
                alt = dict(st)
                self.pattern(q, alt, sources)
                alternatives.append(alt)
            _set(st, _merge(*alternatives))

    # ---- result
    def flow(self, keep=lambda node: True) -> DataFlow:
        keys = sorted(k for k, n in self.nodes.items() if keep(n))
        index = {k: i for i, k in enumerate(keys)}
        edges = [Edge(index[a], index[b], kind) for a, b, kind in self.edges if a in index and b in index]
        return DataFlow([self.nodes[k] for k in keys], sorted(edges, key=lambda e: (e.src, e.dst, e.kind)))


def _parse(source: str) -> tuple[ast.Module, _Source]:
    text = re.sub(r"\r\n?", "\n", source)
    shift = 0
    first = next((line for line in text.split("\n") if line.strip()), "")
    if first[:1] in (" ", "\t"):  # an indented snippet (a method cut out of its class): dedent, keep the columns
        dedented = textwrap.dedent(text)
        first_d = next((line for line in dedented.split("\n") if line.strip()), "")
        shift, text = len(first) - len(first_d), dedented
    try:
        tree = ast.parse(text)
    except SyntaxError as e:
        raise UnparsableCode(f"does not parse: line {e.lineno}: {e.msg}", "syntax", e.lineno) from e
    except ValueError as e:  # null bytes
        raise UnparsableCode(f"does not parse: {e}", "syntax") from e
    except (RecursionError, MemoryError) as e:
        raise UnparsableCode("nested too deeply to parse", "too_deep") from e
    return tree, _Source(text, shift)


def _walk(source: str) -> tuple[ast.Module, _Source, _Walker]:
    tree, src = _parse(source)
    walker = _Walker(src)
    try:
        walker.scope(None, tree.body)
    except RecursionError as e:
        raise UnparsableCode("nested too deeply to analyse", "too_deep") from e
    return tree, src, walker


def extract(source: str) -> DataFlow:
    """The data flow of a module or a single function's source (every scope in it). Raises
    :class:`UnparsableCode` (a ``ValueError``) when the source does not parse."""
    return _walk(source)[2].flow()


def function_defs(tree: ast.AST) -> list[tuple[str, ast.AST]]:
    """``(qualname, node)`` of every function and method under ``tree``, in source order (nested ones too)."""
    found: list[tuple[str, ast.AST]] = []

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.append((prefix + child.name, child))
                visit(child, f"{prefix}{child.name}.<locals>.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


def functions(source: str) -> list[tuple[str, DataFlow]]:
    """``(qualname, flow)`` for every function and method in ``source`` (nested ones too, qualnames as Python
    writes them: ``C.m``, ``f.<locals>.g``), in source order. A function's flow holds the nodes from its ``def``
    keyword to its end (decorators excluded; its defaults, annotations and nested scopes included), re-indexed from
    0, positions still those of ``source``; edges to nodes outside it (a default's enclosing definition) dropped."""
    tree, src, walker = _walk(source)
    out = []
    for qualname, fn in function_defs(tree):
        start = (fn.lineno, src.char_col(fn.lineno, fn.col_offset) + src.shift)
        end = (fn.end_lineno, src.char_col(fn.end_lineno, fn.end_col_offset) + src.shift)
        out.append((qualname, walker.flow(lambda n, a=start, b=end: a <= (n.line, n.col) and (n.line, n.end_col) <= b)))
    return out
