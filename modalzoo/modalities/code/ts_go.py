"""Go rules for the tree-sitter walker (`treesitter.py` documents the semantics), for tree-sitter-go 0.25's
grammar. Receivers and named results are parameters (definitions); ``_`` is not a variable; ``:=`` declares the
names new to its block and assigns the others; a struct literal's ``Key:`` is a field name, not a variable."""

from __future__ import annotations

import re

from .treesitter import comments_above

GRAMMAR = "tree_sitter_go"
FUNCTIONS = ("function_declaration", "method_declaration")
COMMENTS = frozenset({"comment"})
VARIABLES = DEFINES = frozenset({"identifier"})
IGNORED = frozenset({"_"})
UNPACK = frozenset({"expression_list", "parenthesized_expression"})
PATTERNS: dict = {}
BLOCKS = frozenset({"block"})
STRINGS = frozenset({"interpreted_string_literal", "raw_string_literal", "rune_literal"})
NUMBERS = frozenset({"int_literal", "float_literal", "imaginary_literal"})
IDENTIFIERS = frozenset({"identifier", "field_identifier", "type_identifier", "package_identifier", "label_name"})
_DIRECTIVE = re.compile(r"//(?:[a-z0-9]+:\S|line |export |extern )")


def interpolated(n) -> bool:
    return False


def params(w, fn, st) -> None:
    for field in ("receiver", "parameters", "result"):
        plist = fn.child_by_field_name(field)
        if plist is not None and plist.type == "parameter_list":     # an unnamed result is a type
            for decl in w.named(plist):
                for name in decl.children_by_field_name("name"):
                    w.bind(name, st, (), True)


# ---- handlers

def _assign(w, n, st):
    left, right = n.child_by_field_name("left"), n.child_by_field_name("right")
    if w.text(n.child_by_field_name("operator")) == "=":
        w.bind(left, st, w.collect(right, st))
    else:                                                 # x += y: one target
        w.compound(w.named(left)[0], right, st)


def _spec(w, n, st):                                      # var / const spec: names [type] [= values]
    value = n.child_by_field_name("value")
    sources = w.collect(value, st) if value is not None else []
    for name in n.children_by_field_name("name"):
        w.bind(name, st, sources, True)                   # without a value: the zero value, a definition


def _receive(w, n, st):                                   # v, ok := <-ch (a select case)
    sources = w.collect(n.child_by_field_name("right"), st)
    declare = any(c.type == ":=" for c in n.children)
    w.bind(n.child_by_field_name("left"), st, sources, declare)


def _if(w, n, st):
    w.enter()                                             # the initializer's scope
    w.visit(n.child_by_field_name("initializer"), st)
    w.visit(n.child_by_field_name("condition"), st)
    w.branches(st, n.child_by_field_name("consequence"), n.child_by_field_name("alternative"))
    w.leave(st)


def _for(w, n, st):
    body = n.child_by_field_name("body")
    clause = next((c for c in w.named(n) if c != body), None)

    def plain(cur):
        w.visit(body, cur)
    w.enter()
    if clause is None:                                    # for { }: leaves by break only
        w.loop(st, plain)
    elif clause.type == "for_clause":
        w.visit_all(w.field(clause, "initializer"), st)
        w.loop(st, plain, test=w.field(clause, "condition"), update=w.field(clause, "update"))
    elif clause.type == "range_clause":
        sources = w.collect(clause.child_by_field_name("right"), st)
        left = clause.child_by_field_name("left")
        declare = any(c.type == ":=" for c in clause.children)

        def one(cur):
            w.enter()
            w.bind(left, cur, sources, declare)
            w.visit(body, cur)
            w.leave(cur)
        w.loop(st, one, exhausts=True)
    else:                                                 # for cond { }
        w.loop(st, plain, test=clause)
    w.leave(st)


def _body(w, case) -> list:
    return [c for c in w.named(case) if c.type == "statement_list"]


def _falls(w, body) -> bool:
    last = w.named(body[-1]) if body else []
    return bool(last) and last[-1].type == "fallthrough_statement"


def _switch(w, n, st):
    w.enter()
    w.visit(n.child_by_field_name("initializer"), st)
    alias = n.child_by_field_name("alias")                 # switch v := x.(type)
    sources = w.collect(n.child_by_field_name("value"), st)
    if alias is not None:
        w.bind(alias, st, sources, True)
    cases = []
    for c in w.named(n):
        if c.type in ("expression_case", "type_case", "communication_case", "default_case"):
            test = c.child_by_field_name("value" if c.type == "expression_case" else "communication")
            cases.append(((lambda cs, t=test: w.visit(t, cs)) if test is not None else None, _body(w, c),
                          c.type == "default_case", _falls(w, _body(w, c))))
    w.switch(st, cases, exhaustive=n.type == "select_statement")    # select waits for one of its cases
    w.leave(st)


def _keyed(w, n, st):                                     # T{Field: v}: the key is a field name
    key = n.child_by_field_name("key")
    inner = w.named(key) if key is not None else []
    if not (len(inner) == 1 and inner[0].type == "identifier"):
        w.visit(key, st)
    w.visit(n.child_by_field_name("value"), st)


def _jump(w, n, st):
    label = next((c for c in w.named(n) if c.type == "label_name"), None)
    w.jump(st, "break" if n.type == "break_statement" else "continue", w.text(label) if label else None)


HANDLERS = {
    "func_literal": lambda w, n, st: w.scope(n),
    "short_var_declaration": lambda w, n, st: w.bind(n.child_by_field_name("left"), st,
                                                     w.collect(n.child_by_field_name("right"), st), True),
    "assignment_statement": _assign,
    "inc_statement": lambda w, n, st: w.compound(w.named(n)[0], None, st),
    "dec_statement": lambda w, n, st: w.compound(w.named(n)[0], None, st),
    "var_spec": _spec, "const_spec": _spec, "receive_statement": _receive,
    "if_statement": _if, "for_statement": _for,
    "expression_switch_statement": _switch, "type_switch_statement": _switch, "select_statement": _switch,
    "return_statement": lambda w, n, st: w.end(n, st),
    "break_statement": _jump, "continue_statement": _jump,
    "labeled_statement": lambda w, n, st: w.labeled(st, w.text(n.child_by_field_name("label")), w.named(n)[-1]),
    "block": lambda w, n, st: w.block(n, st),
    "keyed_element": _keyed,
    # types whose parameter names are no variables; goto is out of scope
    "function_type": lambda w, n, st: None, "interface_type": lambda w, n, st: None,
    "struct_type": lambda w, n, st: None, "type_declaration": lambda w, n, st: None,
}


# ---- functions and docstrings

def function_info(n):
    if n.type == "function_declaration":
        return n.child_by_field_name("name").text.decode("utf-8", "replace"), n, n
    if n.type == "method_declaration":
        stack, receiver = [n.child_by_field_name("receiver")], ""
        while stack and not receiver:                     # (s *Server[T]) -> Server
            r = stack.pop()
            if r is not None and r.type == "type_identifier":
                receiver = r.text.decode("utf-8", "replace") + "."
            elif r is not None:
                stack.extend(reversed(r.named_children))
        return receiver + n.child_by_field_name("name").text.decode("utf-8", "replace"), n, n
    return None


def container_name(n) -> str | None:
    return None


def docstring(anchor, src: bytes) -> str:
    lines = []
    for c in reversed(comments_above(anchor, COMMENTS, src)):
        text = c.text.decode("utf-8", "replace")
        if not text.startswith("//"):
            break
        lines.append(text)
    lines = [line[2:].removeprefix(" ") for line in reversed(lines) if not _DIRECTIVE.match(line)]
    return "\n".join(lines).strip()
