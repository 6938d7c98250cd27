"""Java rules for the tree-sitter walker (`treesitter.py` documents the semantics), for tree-sitter-java 0.23's
grammar. Every local declaration is block-scoped; ``this`` / ``super`` are keywords; method, field and annotation
names are not variables (a bare ``identifier`` that names a class, ``Math.max``, is a use without definitions)."""

from __future__ import annotations

from .treesitter import clean_block_doc, comments_above, while_loop

GRAMMAR = "tree_sitter_java"
FUNCTIONS = ("method_declaration", "constructor_declaration", "compact_constructor_declaration")
COMMENTS = frozenset({"line_comment", "block_comment"})
VARIABLES = DEFINES = frozenset({"identifier"})
IGNORED: frozenset = frozenset()
UNPACK = frozenset({"pattern", "record_pattern_body"})
BLOCKS = frozenset({"block", "constructor_body"})
STRINGS = frozenset({"string_literal", "text_block", "character_literal", "string_fragment",
                     "multiline_string_fragment", "escape_sequence"})
NUMBERS = frozenset({"decimal_integer_literal", "hex_integer_literal", "octal_integer_literal",
                     "binary_integer_literal", "decimal_floating_point_literal", "hex_floating_point_literal"})
IDENTIFIERS = frozenset({"identifier", "type_identifier"})
SCOPES = frozenset({"method_declaration", "constructor_declaration", "compact_constructor_declaration",
                    "lambda_expression"})
_CLASSES = ("class_declaration", "interface_declaration", "enum_declaration", "record_declaration",
            "annotation_type_declaration")


def interpolated(n) -> bool:
    return any(c.type == "string_interpolation" for c in n.children)


def params(w, fn, st) -> None:
    p = fn.child_by_field_name("parameters")
    if p is None:                                           # a compact constructor
        return
    if p.type == "identifier":                              # x -> ...
        w.define(p, st, (), True)
        return
    for c in w.named(p):
        if c.type == "identifier":                          # (x, y) -> ...
            w.define(c, st, (), True)
        elif c.type == "formal_parameter":
            w.bind(c.child_by_field_name("name"), st, (), True)
        elif c.type == "spread_parameter":
            for d in w.named(c):
                if d.type == "variable_declarator":
                    w.bind(d.child_by_field_name("name"), st, (), True)
        # receiver_parameter (``Foo this``): not a variable


# ---- patterns: instanceof / case patterns bind the identifier after the type

def _last(w, n, st, sources, declare):        # type_pattern, record_pattern_component
    named = w.named(n)
    if named:
        w.bind(named[-1], st, sources, True)


def _record(w, n, st, sources, declare):      # Point(int x, int y): the record's name is a type
    for c in w.named(n):
        if c.type == "record_pattern_body":
            w.bind(c, st, sources, True)


PATTERNS = {"type_pattern": _last, "record_pattern_component": _last, "record_pattern": _record}


# ---- handlers

def _class_body(w, n, st):           # members are scopes of their own: methods, field initialisers, blocks
    for m in w.named(n):
        w.expression_scope(m)


def _declarators(w, n, st, local: bool):
    for d in w.field(n, "declarator"):
        name, value = d.child_by_field_name("name"), d.child_by_field_name("value")
        if not local:                        # a field: its initialiser only
            w.visit(value, st)
        elif value is not None:
            w.bind(name, st, w.collect(value, st), True)
        else:                                # int x; shadows, defines nothing
            w.declare(w.text(name), st)
            st.pop(w.text(name), None)


def _assign(w, n, st):
    left, right = n.child_by_field_name("left"), n.child_by_field_name("right")
    if w.text(n.child_by_field_name("operator")) == "=":
        w.bind(left, st, w.collect(right, st))
    else:
        w.compound(left, right, st)


def _instanceof(w, n, st):
    sources = w.collect(n.child_by_field_name("left"), st)
    right, name = n.child_by_field_name("right"), n.child_by_field_name("name")
    if right is not None and right.type == "record_pattern":
        w.bind(right, st, sources, True)
    if name is not None:
        w.bind(name, st, sources, True)


def _if(w, n, st):
    w.visit(n.child_by_field_name("condition"), st)
    w.branches(st, n.child_by_field_name("consequence"), n.child_by_field_name("alternative"))


def _for(w, n, st):
    w.enter()
    w.visit_all(w.field(n, "init"), st)
    body = n.child_by_field_name("body")
    w.loop(st, lambda cur: w.visit(body, cur), test=w.field(n, "condition"), update=w.field(n, "update"))
    w.leave(st)


def _enhanced_for(w, n, st):
    sources = w.collect(n.child_by_field_name("value"), st)
    name, body = n.child_by_field_name("name"), n.child_by_field_name("body")

    def one(cur):
        w.enter()
        w.bind(name, cur, sources, True)
        w.visit(body, cur)
        w.leave(cur)
    w.loop(st, one, exhausts=True)


def _switch(w, n, st):
    sources = w.collect(n.child_by_field_name("condition"), st)
    cases = []
    for c in w.named(n.child_by_field_name("body")):
        named = w.named(c)
        labels = [x for x in named if x.type == "switch_label"]
        default = any(lab.child_count and lab.children[0].type == "default" for lab in labels)

        def test(cs, labels=labels):
            for lab in labels:
                for x in w.named(lab):
                    w.bind(x, cs, sources, True) if x.type == "pattern" else w.visit(x, cs)
        # ``case x:`` groups fall through, ``case x ->`` rules do not
        cases.append((test, [x for x in named if x.type != "switch_label"], default,
                      c.type == "switch_block_statement_group"))
    w.switch(st, cases)


def _try(w, n, st):
    w.enter()                                   # try-with-resources: the resources' block
    resources = n.child_by_field_name("resources")
    for r in w.named(resources) if resources is not None else []:
        name = r.child_by_field_name("name")
        if name is not None:
            w.bind(name, st, w.collect(r.child_by_field_name("value"), st), True)
        else:
            w.visit(r, st)
    handlers, final = [], None
    for c in w.named(n):
        if c.type == "catch_clause":
            param = next((x for x in w.named(c) if x.type == "catch_formal_parameter"), None)
            name = param.child_by_field_name("name") if param is not None else None
            handlers.append(((lambda hs, name=name: w.bind(name, hs, (), True)) if name is not None else None,
                             c.child_by_field_name("body")))
        elif c.type == "finally_clause":
            final = w.named(c)[-1]
    w.try_(st, n.child_by_field_name("body"), handlers, final)
    w.leave(st)


def _jump(w, n, st):
    label = next((c for c in w.named(n) if c.type == "identifier"), None)
    w.jump(st, "break" if n.type == "break_statement" else "continue", w.text(label) if label else None)


def _fields(*names):
    def visit(w, n, st):
        for f in names:
            w.visit(n.child_by_field_name(f), st)
    return visit


def _yield(w, n, st):
    w.visit_all(w.named(n), st)
    w.jump(st, "break")                          # to the end of its switch expression


HANDLERS = {
    **{t: lambda w, n, st: w.scope(n) for t in SCOPES},
    **{t: lambda w, n, st: w.visit(n.child_by_field_name("body"), st) for t in _CLASSES},
    **{t: _class_body for t in ("class_body", "interface_body", "enum_body", "enum_body_declarations",
                                "annotation_type_body")},
    "enum_constant": _fields("arguments", "body"),
    "field_declaration": lambda w, n, st: _declarators(w, n, st, local=False),
    "local_variable_declaration": lambda w, n, st: _declarators(w, n, st, local=True),
    "assignment_expression": _assign,
    "update_expression": lambda w, n, st: w.compound(w.named(n)[0], None, st),
    "instanceof_expression": _instanceof,
    "method_invocation": _fields("object", "arguments"), "field_access": _fields("object"),
    "explicit_constructor_invocation": _fields("object", "arguments"),
    "method_reference": lambda w, n, st: w.visit(w.named(n)[0], st),
    "marker_annotation": lambda w, n, st: None, "annotation": lambda w, n, st: None,
    "scoped_identifier": lambda w, n, st: None,
    "if_statement": _if, "for_statement": _for, "enhanced_for_statement": _enhanced_for,
    "while_statement": while_loop, "do_statement": while_loop,
    "switch_expression": _switch, "switch_statement": _switch,
    "try_statement": _try, "try_with_resources_statement": _try,
    "return_statement": lambda w, n, st: w.end(n, st), "throw_statement": lambda w, n, st: w.end(n, st),
    "yield_statement": _yield, "break_statement": _jump, "continue_statement": _jump,
    "labeled_statement": lambda w, n, st: w.labeled(st, w.text(w.named(n)[0]), w.named(n)[-1]),
    "block": lambda w, n, st: w.block(n, st),
}


# ---- functions and docstrings

def function_info(n):
    if n.type in ("method_declaration", "constructor_declaration", "compact_constructor_declaration"):
        return n.child_by_field_name("name").text.decode("utf-8", "replace"), n, n
    return None


def container_name(n) -> str | None:
    if n.type in _CLASSES:
        name = n.child_by_field_name("name")
        return name.text.decode("utf-8", "replace") if name is not None else None
    return None


def docstring(anchor, src: bytes) -> str:
    above = comments_above(anchor, COMMENTS, src)
    if above and above[-1].text.startswith(b"/**"):
        return clean_block_doc(above[-1].text.decode("utf-8", "replace"))
    return ""
