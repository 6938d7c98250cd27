"""JavaScript, Java and Go front end: tree-sitter grammar wheels (the ``[code]`` extra) parse a source file; one
`CodeSample` (or `SkippedFunction`) per function, with data flow from our own walker below. The per-language rules
(which node is a function, a declaration, a loop ...) are in `ts_javascript.py`, `ts_java.py` and `ts_go.py`;
the semantics are those of `dataflow.py` (Python), carried over to block-structured languages and written down
here.

Functions
    JavaScript: function declarations, class and object methods, and function expressions / arrow functions bound
    to a name (``const f = () => ..``, ``exports.f = function ..``, ``{f: function ..}``, a class field); the
    sample's code is then the whole binding statement. Java: methods and constructors (anonymous and local
    classes' too). Go: functions and methods. Nested functions are samples of their own and stay in their
    enclosing function's code. ``code`` runs from the function's first character to its last, lines dedented by
    the indentation of its first line.
Docstring
    The doc comment directly above (no blank line between): JSDoc / Javadoc ``/** .. */``, Go's run of ``//``
    lines (``//go:`` style directives dropped). Comment markers and leading ``*`` are removed; block tags
    (``@param``, ``@return`` ... and everything after the first one) are dropped, inline tags ``{@link X}`` keep
    their text. The comment lies outside the function's span, so the code never contains it.
Leaves
    Every leaf of the function's syntax tree with a non-empty span, comments excluded; a string literal (a
    template literal without ``${}``, a regex) is one leaf; a template literal with substitutions gives its
    fragments and the substitutions' tokens as leaves.

Nodes
    Variable occurrences: an identifier leaf in an expression (a use), a parameter, a declarator, an assignment
    or update target, a for-in/of / enhanced-for / range target, a catch parameter, a pattern variable (a def).
    Not variables: property / field / method names after ``.``, object keys, type names, labels, the names of
    functions, methods and classes, annotations, Go struct-literal keys and the blank identifier ``_``. ``this``
    and ``super`` are keywords, not variables: ``this.x = y`` is a use of y only. (Go receivers are ordinary
    named parameters, so they are variables.) ``x += y`` and ``x++`` give a use node and a def node on the same
    leaf (the use listed first).
Edges (src -> dst: the dependent points to where its value comes from)
    ``comesFrom``: a use -> every definition of the name in the same scope that may reach it.
    ``computedFrom``: a def -> every variable use evaluated on its right: a declarator from its initializer,
    ``a, b = c, d`` / destructuring *every* target from *every* right-hand use (no positional pairing, as in
    `dataflow.py`), ``x += y`` x(def) -> x(use), y; a default value in a pattern or a JavaScript parameter list
    feeds its target; loop targets from the iterable, a Java pattern variable from the switched / tested value,
    Go's type-switch alias from the switched value. Parameters and catch parameters have no computedFrom edge.
    Assigning to ``a.b`` / ``a[i]`` is a use of a (and i) with no edge. Declarations without a value: Go's
    ``var x int`` defines x (its zero value); JavaScript ``let x`` defines x (undefined), ``var x`` does nothing
    (a redeclaration keeps the value); Java ``int x;`` defines nothing (Java forbids reading it before an
    assignment) but shadows.
Control flow (may-reach states: name -> set of defs)
    Branches (``if``/``else``, ``switch`` cases, ``select`` cases, ``catch`` handlers) run on copies of the state,
    merged by union; conditional expressions and ``&&`` / ``||`` are not split. Switch cases fall through as the
    language does (JavaScript and Java ``case x:`` implicitly, Go only on ``fallthrough``, Java ``->`` rules
    never); without ``default`` the state before the switch also reaches its end. Loops (for, while, do-while,
    for-in/of, enhanced for, range) are iterated to a fixed point; the update runs after the body and the
    ``continue`` states. ``break`` / ``continue`` (labelled ones too) carry their state to the loop's exit / next
    iteration, Java's ``yield`` to its switch's end; ``return`` / ``throw`` end a path. ``try``: handlers start
    from the state before plus every definition of the body; ``finally`` is walked on the exceptional path (edges
    only) and on the normal path.
Scopes
    Each function, arrow function, lambda and Go closure is analysed on its own, from its parameters; no edge
    crosses a scope (a closure's free variables get none). Class bodies nested in a function are not part of its
    scope: their methods and field initialisers are scopes of their own. Block scoping is modelled: a ``let`` /
    ``const`` (JavaScript), any local declaration (Java) or a ``:=`` / ``var`` (Go: ``:=`` declares only the
    names not yet declared in the same block, the others are assigned) shadows the name until its block ends,
    where the outer definitions come back (also for the states that leave the block by ``break`` / ``continue``).

Skipped (``SkippedFunction.reason``)
    ``syntax``: the function's tree has an ERROR or MISSING node (and once per file for a parse error outside
    every function: a function may have been lost to it); ``no_docstring`` (with ``need_docstring``);
    ``no_data_flow``: no variable with an edge; ``too_deep``: nesting beyond the interpreter's recursion limit.

Out of scope
    Aliasing, mutation and field-level flow; ``goto``; exceptions thrown by calls between two statements are
    assumed possible everywhere in ``try`` (no finer model); ``var`` hoisting and TDZ; ``break`` / ``return``
    through ``finally``; Java flow-scoped pattern variables (they live to the end of their block); JSX beyond
    its embedded expressions; TypeScript.
"""

from __future__ import annotations

import bisect
import importlib
import inspect
import re
from collections.abc import Callable, Iterator

from ...errors import ModalzooError
from .dataflow import _merge, _set  # the may-reach state operations: one for every front end
from .sample import IDENTIFIER, KEYWORD, NUMBER, OTHER, STRING, CodeSample, SkippedFunction, keep_connected

USE, DEF = 0, 1
COMES_FROM, COMPUTED_FROM = 0, 1           # sample.EDGE_KINDS
LOOP, SWITCH, LABEL = "loop", "switch", "label"
_WORD = re.compile(r"[A-Za-z_]\w*\Z")


# ---- grammars

_PARSERS: dict = {}


def _rules(language: str):
    if language not in ("javascript", "java", "go"):
        raise ModalzooError(f"tree-sitter front end: no rules for language '{language}' (javascript, java, go)")
    return importlib.import_module(f"{__package__}.ts_{language}")


def grammar(language: str):
    """(tree-sitter Parser, Query for the language's function nodes); raises ModalzooError naming the extra when
    the tree-sitter package or the language's grammar wheel is not installed."""
    if language not in _PARSERS:
        rules = _rules(language)
        try:
            import tree_sitter
            module = importlib.import_module(rules.GRAMMAR)
        except ImportError as e:
            raise ModalzooError(f"reading {language} needs the tree-sitter grammar wheels (module "
                                f"'{e.name or e}' is not installed): pip install 'modalzoo[code]'") from None
        language_ = tree_sitter.Language(module.language())
        query = tree_sitter.Query(language_, "[" + " ".join(f"({t})" for t in rules.FUNCTIONS) + "] @f")
        _PARSERS[language] = tree_sitter.Parser(language_), query, tree_sitter.QueryCursor
    return _PARSERS[language]


# ---- states

def while_loop(w, n, st):
    """``while`` / ``do ... while`` (JavaScript and Java share the node shapes)."""
    body = n.child_by_field_name("body")
    w.loop(st, lambda cur: w.visit(body, cur), test=n.child_by_field_name("condition"), do=n.type == "do_statement")


def _restore(st: dict, block: dict) -> None:
    """Leaving a block: the names declared in it get the outer definitions back (none on a dead path)."""
    if st:
        for name, saved in block.items():
            if saved is None:
                st.pop(name, None)
            else:
                st[name] = saved


class _Frame:
    def __init__(self, kind: str, label: str | None, depth: int):
        self.kind, self.label, self.depth = kind, label, depth
        self.breaks: list[dict] = []
        self.continues: list[dict] = []


class Walker:
    """The language-neutral walk; ``rules`` (a ts_* module) supplies the handlers by node type."""

    def __init__(self, rules, src: bytes):
        self.r, self.src = rules, src
        self.handlers: dict[str, Callable] = rules.HANDLERS
        self.nodes: dict[tuple[int, int], str] = {}   # (start byte, USE/DEF) -> name
        self.edges: set[tuple] = set()                 # (src key, dst key, kind)
        self.collectors: list[list] = []               # active right-hand sides
        self.frames: list[_Frame] = []                 # break / continue targets
        self.gens: list[tuple[int, dict]] = []         # active try bodies: (block depth, name -> defs)
        self.blocks: list[dict] = []                   # block scopes: name -> defs it shadowed (None: unbound)

    def text(self, n) -> str:
        return self.src[n.start_byte:n.end_byte].decode("utf-8", "replace")

    def named(self, n) -> list:
        return [c for c in n.named_children if c.type not in self.r.COMMENTS]

    def field(self, n, name: str) -> list:
        return [c for c in n.children_by_field_name(name) if c.is_named and c.type not in self.r.COMMENTS]

    # ---- visiting
    def visit(self, n, st) -> None:
        if n is None:
            return
        h = self.handlers.get(n.type)
        if h is not None:
            h(self, n, st)
        elif n.type in self.r.VARIABLES:
            if self.text(n) not in self.r.IGNORED:
                self.use(n, st)
        else:
            for c in n.named_children:
                self.visit(c, st)

    def visit_all(self, nodes, st) -> None:
        for n in nodes or ():
            self.visit(n, st)

    def collect(self, nodes, st) -> list:
        """Visit ``nodes`` (a node, a list or None); returns the variable uses evaluated in them."""
        self.collectors.append([])
        try:
            self.visit_all(nodes if isinstance(nodes, list) else [nodes], st)
        finally:
            uses = self.collectors.pop()
        return uses

    # ---- nodes and edges
    def use(self, n, st) -> tuple:
        name = self.text(n)
        key = (n.start_byte, USE)
        self.nodes[key] = name
        for d in st.get(name, ()):
            self.edges.add((key, d, COMES_FROM))
        for c in self.collectors:
            c.append(key)
        return key

    def define(self, n, st, sources=(), declare=False) -> tuple:
        name = self.text(n)
        if declare:
            self.declare(name, st)
        key = (n.start_byte, DEF)
        self.nodes[key] = name
        st[name] = frozenset((key,))
        for s in sources:
            self.edges.add((key, s, COMPUTED_FROM))
        for depth, gen in self.gens:
            if self.declared_in(name) < depth:     # a name declared inside the try body is gone in its handlers
                gen[name] = gen.get(name, frozenset()) | {key}
        return key

    def declare(self, name: str, st) -> None:
        top = self.blocks[-1]
        if name not in top:
            top[name] = st.get(name)

    def declared_in(self, name: str) -> int:
        for i in range(len(self.blocks) - 1, -1, -1):
            if name in self.blocks[i]:
                return i
        return -1

    def bind(self, t, st, sources=(), declare=False) -> None:
        """Bind an assignment / declaration target (a name or a pattern) computed from ``sources``."""
        if t is None or t.type in self.r.COMMENTS:
            return
        if t.type in self.r.DEFINES:
            if self.text(t) not in self.r.IGNORED:
                self.define(t, st, sources, declare)
        elif t.type in self.r.PATTERNS:
            self.r.PATTERNS[t.type](self, t, st, sources, declare)
        elif t.type in self.r.UNPACK:
            for c in t.named_children:
                self.bind(c, st, sources, declare)
        else:                                      # a.b, a[i]: their uses, no computedFrom edge
            self.visit(t, st)

    def compound(self, target, right, st) -> None:
        """``x op= y`` / ``x++`` (right None): a use and a def of x, the def computed from both."""
        sources = self.collect(right, st) if right is not None else []
        if target.type in self.r.VARIABLES and self.text(target) not in self.r.IGNORED:
            old = self.use(target, st)
            self.define(target, st, [*sources, old])
        else:
            self.visit(target, st)

    # ---- scopes and blocks
    def scope(self, fn, params=None, body=None) -> None:
        """A function-like node as a scope of its own: parameters (``rules.params``), then its body."""
        saved = self.collectors, self.frames, self.gens, self.blocks
        self.collectors, self.frames, self.gens, self.blocks = [], [], [], [{}]
        st: dict = {}
        try:
            (params or self.r.params)(self, fn, st)
            body = fn.child_by_field_name("body") if body is None else body
            if body is not None and body.type in self.r.BLOCKS:
                self.visit_all(body.named_children, st)   # parameters and the body's top level: one block
            else:
                self.visit(body, st)
        finally:
            self.collectors, self.frames, self.gens, self.blocks = saved

    def expression_scope(self, n) -> None:
        """A class field's initialiser and the like: a scope of its own without parameters."""
        self.scope(n, params=lambda w, fn, st: None, body=n)

    def enter(self) -> None:
        self.blocks.append({})

    def leave(self, st) -> None:
        _restore(st, self.blocks.pop())

    def block(self, n, st) -> None:
        self.enter()
        self.visit_all(n.named_children, st)
        self.leave(st)

    # ---- control flow
    def branches(self, st, *arms) -> None:
        """Each arm (a node, or None for 'nothing happens') on a copy of ``st``; merged by union."""
        ends = []
        for arm in arms:
            cur = dict(st)
            self.visit(arm, cur)
            ends.append(cur)
        _set(st, _merge(*ends))

    def push(self, kind: str, label: str | None = None) -> _Frame:
        frame = _Frame(kind, label, len(self.blocks))
        self.frames.append(frame)
        return frame

    def jump(self, st, kind: str, label: str | None = None) -> None:
        """``break`` / ``continue`` (kind) to the innermost or the labelled target; the path ends here."""
        target = None
        for i in range(len(self.frames) - 1, -1, -1):
            f = self.frames[i]
            if label is None:
                if f.kind == LOOP or (kind == "break" and f.kind == SWITCH):
                    target = f
                    break
            elif f.kind == LABEL and f.label == label:
                nxt = self.frames[i + 1] if i + 1 < len(self.frames) else None
                target = f if kind == "break" else (nxt if nxt is not None and nxt.kind == LOOP else None)
                break
        if target is not None:
            out = dict(st)
            for blk in reversed(self.blocks[target.depth:]):
                _restore(out, blk)
            (target.breaks if kind == "break" else target.continues).append(out)
        st.clear()

    def labeled(self, st, label: str, body) -> None:
        frame = self.push(LABEL, label)
        self.visit(body, st)
        self.frames.pop()
        _set(st, _merge(st, *frame.breaks))

    def loop(self, st, body: Callable, test=None, update=(), do=False, exhausts=False) -> None:
        """A loop to a fixed point. ``body(cur)`` walks one iteration (binding a for-of target first); ``test``
        (nodes) runs before it (after it with ``do``); ``update`` after it and the continues. Without a test the
        loop leaves at its head when ``exhausts`` (an iterator) and only by ``break`` otherwise."""
        test = [t for t in (test if isinstance(test, list) else [test]) if t is not None]
        entry = dict(st)
        head, exit_ = entry, {}
        while True:
            frame = self.push(LOOP)
            cur = dict(head)
            if not do:
                self.visit_all(test, cur)
                exit_ = dict(cur)
            body(cur)
            _set(cur, _merge(cur, *frame.continues))
            if do:
                self.visit_all(test, cur)
                exit_ = dict(cur)
            else:
                self.visit_all(update, cur)
            self.frames.pop()
            new = _merge(entry, cur)
            if new == head:
                break
            head = new
        if not test:
            exit_ = dict(head) if exhausts else {}
        _set(st, _merge(exit_, *frame.breaks))

    def switch(self, st, cases, exhaustive=False) -> None:
        """``cases``: (test(cs) or None, body nodes, is_default, falls_through). Without a default (and unless
        ``exhaustive``: Go's select) the state before the switch reaches its end too."""
        entry = dict(st)
        frame = self.push(SWITCH)
        self.enter()
        ends, carry = [], None
        for test, body, _default, falls in cases:
            cs = dict(entry)
            if test is not None:
                test(cs)
            if carry is not None:
                cs = _merge(cs, carry)
            self.visit_all(body, cs)
            if falls:
                carry = cs
            else:
                ends.append(cs)
                carry = None
        if carry is not None:
            ends.append(carry)
        if not exhaustive and not any(case[2] for case in cases):
            ends.append(entry)
        self.frames.pop()
        out = _merge(*ends, *frame.breaks)
        self.leave(out)
        _set(st, out)

    def try_(self, st, body, handlers, final=None) -> None:
        """``handlers``: (bind(hs) or None, body node). Handlers start from the state before the try plus every
        definition of its body; ``finally`` is walked on the exceptional path (edges only), then the normal."""
        pre = dict(st)
        depth = len(self.blocks)
        self.gens.append((depth, {}))      # everything of the try (for the exceptional path into finally)
        self.gens.append((depth, {}))      # the body (for the handlers)
        normal = dict(st)
        self.visit(body, normal)
        exc = _merge(pre, self.gens.pop()[1])
        ends = []
        for bind, hbody in handlers:
            hs = dict(exc)
            self.enter()
            if bind is not None:
                bind(hs)
            self.visit(hbody, hs)
            self.leave(hs)
            ends.append(hs)
        everything = self.gens.pop()[1]
        after = _merge(normal, *ends)
        if final is not None:
            self.visit(final, _merge(pre, everything, after))
            self.visit(final, after)
        _set(st, after)

    def end(self, n, st) -> None:
        """``return`` / ``throw``: evaluate, then the path ends."""
        self.visit_all(n.named_children, st)
        st.clear()


# ---- one function -> one sample

def _leaves(span, rules) -> list[tuple[int, int, int]]:
    """(start byte, end byte, kind) of the span's leaves, in source order."""
    out, cursor = [], span.walk()
    kinds = _KINDS.setdefault(rules.GRAMMAR, {})
    while True:
        n = cursor.node
        t = n.type
        if t in rules.COMMENTS or n.start_byte == n.end_byte:
            pass
        elif n.child_count == 0 or (t in rules.STRINGS and not rules.interpolated(n)):
            kind = kinds.get(t) if not n.is_named else None     # an anonymous node's type is its text
            if kind is None:
                if t in rules.STRINGS:
                    kind = STRING
                elif t in rules.NUMBERS:
                    kind = NUMBER
                elif t in rules.IDENTIFIERS:
                    kind = IDENTIFIER
                else:
                    kind = KEYWORD if _WORD.match(t if not n.is_named else n.text.decode("utf-8", "replace")) \
                        else OTHER
                if not n.is_named:
                    kinds[t] = kind
            out.append((n.start_byte, n.end_byte, kind))
        elif cursor.goto_first_child():
            continue
        while not cursor.goto_next_sibling():
            if not cursor.goto_parent() or cursor.node == span:
                return out


_KINDS: dict[str, dict[str, int]] = {}


def _code(span, src: bytes, lines: list[bytes]):
    """The span's text dedented by its first line's indentation, and a byte offset -> code offset map."""
    raw = src[span.start_byte:span.end_byte].decode("utf-8", "replace")
    first = lines[span.start_point[0]]
    margin = first[:len(first) - len(first.lstrip(b" \t"))].decode()
    if len(raw) == span.end_byte - span.start_byte:
        b2c = None
    else:
        b2c = []
        for c, ch in enumerate(raw):
            b2c.extend([c] * len(ch.encode("utf-8", "replace")))
        b2c.append(len(raw))
    starts, removed, parts, pos = [], [], [], 0
    for k, line in enumerate(raw.split("\n")):
        cut = len(margin) if k and margin and line.startswith(margin) else 0
        starts.append(pos)
        removed.append((removed[-1] if removed else 0) + cut)
        parts.append(line[cut:])
        pos += len(line) + 1
    base = span.start_byte
    if b2c is None and not removed[-1]:
        return "\n".join(parts), lambda byte: byte - base

    def offset(byte: int) -> int:
        o = byte - base if b2c is None else b2c[byte - base]
        return o - removed[bisect.bisect_right(starts, o) - 1]

    return "\n".join(parts), offset


def comments_above(anchor, comment_types, src: bytes) -> list:
    """The comments directly above ``anchor`` (each on its own lines, no blank line between), top to bottom."""
    out, row, n = [], anchor.start_point[0], anchor.prev_sibling
    while n is not None and n.type in comment_types and row - 1 <= n.end_point[0] <= row:
        if src[src.rfind(b"\n", 0, n.start_byte) + 1:n.start_byte].strip():
            break                                  # a trailing comment of the code before
        out.append(n)
        row, n = n.start_point[0], n.prev_sibling
    return out[::-1]


def clean_block_doc(comment: str) -> str:
    """``/** .. */`` -> its description: markers and leading ``*`` gone, block tags and what follows dropped."""
    body = comment[3:-2] if comment.endswith("*/") else comment[3:]
    lines = []
    for line in body.split("\n"):
        line = re.sub(r"^\s*\*(?!/) ?", "", line)
        if line.strip().startswith("@"):
            break
        lines.append(line)
    doc = re.sub(r"\{@\w+\s*([^}]*)\}", lambda m: m.group(1).strip(), "\n".join(lines))    # {@link X} -> X
    return inspect.cleandoc(doc).strip()


def _sample(rules, name, fn, span, anchor, src, lines, language, origin, need_docstring) -> CodeSample:
    if span.has_error:
        raise SkippedFunction("syntax", f"parse error in the function (line {span.start_point[0] + 1})")
    doc = rules.docstring(anchor, src)
    if need_docstring and not doc:
        raise SkippedFunction("no_docstring")
    walker = Walker(rules, src)
    try:
        walker.scope(fn)
    except RecursionError as e:
        raise SkippedFunction("too_deep", "nested too deeply to analyse") from e
    leaves = _leaves(span, rules)
    code, offset = _code(span, src, lines)
    tokens = [(offset(s), offset(e), k) for s, e, k in leaves]
    at = {s: i for i, (s, _, _) in enumerate(leaves)}
    keys = sorted(walker.nodes)
    index = {k: i for i, k in enumerate(keys)}
    token_of = [at.get(k[0], -1) for k in keys]
    edges = [(index[a], index[b], kind) for a, b, kind in walker.edges
             if token_of[index[a]] >= 0 and token_of[index[b]] >= 0]
    nodes, edges = keep_connected(token_of, edges)
    if not nodes:
        raise SkippedFunction("no_data_flow", "the function has no variable with data flow")
    return CodeSample(language, code, tokens, nodes, edges, doc, name, origin)


def _found(root, rules, language) -> list[tuple[str, object, object, object]]:
    """(qualified name, function node, span node, doc anchor) in source order."""
    _, query, cursor = grammar(language)
    out = []
    for n in sorted(cursor(query).captures(root).get("f", []), key=lambda n: n.start_byte):
        info = rules.function_info(n)
        if info is None:
            continue
        parts, p = [info[0]], n.parent
        while p is not None:                       # enclosing functions and classes name it
            outer = rules.function_info(p) if p.type in rules.FUNCTIONS else None
            name = outer[0] if outer is not None else rules.container_name(p)
            if name:
                parts.append(name)
            p = p.parent
        out.append((".".join(reversed(parts)), n, info[1], info[2]))
    return out


def functions(text: str, language: str, origin: str = "", need_docstring: bool = False
              ) -> Iterator[CodeSample | SkippedFunction]:
    """Every function of a JavaScript / Java / Go source file, in source order: a sample, or why it is not one."""
    rules = _rules(language)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    src = text.encode("utf-8", "replace")
    root = grammar(language)[0].parse(src).root_node
    found = _found(root, rules, language)
    if root.has_error and not any(span.has_error for _, _, span, _ in found):
        yield SkippedFunction("syntax", f"{origin}: a parse error outside every function")
    lines = src.split(b"\n")
    for name, fn, span, anchor in found:
        try:
            yield _sample(rules, name, fn, span, anchor, src, lines, language, origin, need_docstring)
        except SkippedFunction as e:
            e.args = (f"{origin}:{span.start_point[0] + 1} {name}: {e.args[0]}",)
            yield e
