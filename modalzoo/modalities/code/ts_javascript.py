"""JavaScript rules for the tree-sitter walker (`treesitter.py` documents the semantics): which nodes are
functions, declarations, loops ... in tree-sitter-javascript 0.25's grammar."""

from __future__ import annotations

from .treesitter import clean_block_doc, comments_above, while_loop

GRAMMAR = "tree_sitter_javascript"
FUNCTIONS = ("function_declaration", "generator_function_declaration", "method_definition",
             "function_expression", "arrow_function", "generator_function")   # the node types function_info reads
COMMENTS = frozenset({"comment", "html_comment"})
VARIABLES = frozenset({"identifier", "shorthand_property_identifier"})      # uses ({a} is a use of a)
DEFINES = frozenset({"identifier", "shorthand_property_identifier_pattern"})
IGNORED: frozenset = frozenset()
UNPACK = frozenset({"array_pattern", "object_pattern", "rest_pattern", "parenthesized_expression"})
BLOCKS = frozenset({"statement_block"})
STRINGS = frozenset({"string", "template_string", "regex", "string_fragment", "escape_sequence"})
NUMBERS = frozenset({"number"})
IDENTIFIERS = frozenset({"identifier", "property_identifier", "shorthand_property_identifier", "statement_identifier",
                         "shorthand_property_identifier_pattern", "private_property_identifier"})
_FUNCTION_VALUES = frozenset({"function_expression", "arrow_function", "generator_function"})


def interpolated(n) -> bool:
    return n.type == "template_string" and any(c.type == "template_substitution" for c in n.children)


def params(w, fn, st) -> None:
    single = fn.child_by_field_name("parameter")            # x => ...
    plist = fn.child_by_field_name("parameters")
    for p in [single] if single is not None else (w.named(plist) if plist is not None else []):
        w.bind(p, st, (), declare=True)                      # a default's uses feed its parameter


# ---- patterns (assignment / declaration targets)

def _pair_pattern(w, n, st, sources, declare):
    key = n.child_by_field_name("key")
    if key is not None and key.type == "computed_property_name":
        w.visit(key, st)
    w.bind(n.child_by_field_name("value"), st, sources, declare)


def _default_pattern(w, n, st, sources, declare):           # [a = 1] / {a = 1} / f(a = 1)
    extra = w.collect(n.child_by_field_name("right"), st)
    w.bind(n.child_by_field_name("left"), st, [*sources, *extra], declare)


PATTERNS = {"pair_pattern": _pair_pattern, "assignment_pattern": _default_pattern,
            "object_assignment_pattern": _default_pattern}


# ---- handlers

def _function(w, n, st):             # a declaration binds a name in the enclosing scope: not a variable, a kill
    name = n.child_by_field_name("name")
    if name is not None:
        st.pop(w.text(name), None)
    w.scope(n)


def _method(w, n, st):
    name = n.child_by_field_name("name")
    if name is not None and name.type == "computed_property_name":
        w.visit(name, st)
    w.scope(n)


def _class(w, n, st):
    for c in w.named(n):
        if c.type == "class_heritage":
            w.visit(c, st)
    body = n.child_by_field_name("body")
    for m in w.named(body) if body is not None else []:
        if m.type == "method_definition":
            _method(w, m, st)
        elif m.type == "field_definition":
            prop = m.child_by_field_name("property")
            if prop is not None and prop.type == "computed_property_name":
                w.visit(prop, st)
            value = m.child_by_field_name("value")
            if value is not None:
                w.expression_scope(value)
        elif m.type == "class_static_block":
            w.expression_scope(m.child_by_field_name("body"))
    name = n.child_by_field_name("name")
    if n.type == "class_declaration" and name is not None:
        st.pop(w.text(name), None)


def _declaration(w, n, st):          # let / const are block-scoped, var is not
    declare = n.type == "lexical_declaration"
    for d in w.named(n):
        if d.type != "variable_declarator":
            w.visit(d, st)
            continue
        name, value = d.child_by_field_name("name"), d.child_by_field_name("value")
        if value is not None:
            w.bind(name, st, w.collect(value, st), declare)
        elif declare:
            w.bind(name, st, (), True)      # let x; x is undefined from here
        # var x; a redeclaration keeps the value: nothing


def _assign(w, n, st):
    sources = w.collect(n.child_by_field_name("right"), st)
    w.bind(n.child_by_field_name("left"), st, sources)


def _if(w, n, st):
    w.visit(n.child_by_field_name("condition"), st)
    w.branches(st, n.child_by_field_name("consequence"), n.child_by_field_name("alternative"))


def _for(w, n, st):
    w.enter()
    w.visit_all(w.field(n, "initializer"), st)
    body = n.child_by_field_name("body")
    w.loop(st, lambda cur: w.visit(body, cur), test=w.field(n, "condition"), update=w.field(n, "increment"))
    w.leave(st)


def _for_in(w, n, st):
    kind = n.child_by_field_name("kind")
    declare = kind is not None and w.text(kind) in ("let", "const")
    sources = w.collect(n.child_by_field_name("right"), st)
    left, body = n.child_by_field_name("left"), n.child_by_field_name("body")

    def one(cur):
        w.enter()
        w.bind(left, cur, sources, declare)
        w.visit(body, cur)
        w.leave(cur)
    w.loop(st, one, exhausts=True)


def _switch(w, n, st):
    w.visit(n.child_by_field_name("value"), st)
    cases = []
    for c in w.named(n.child_by_field_name("body")):
        value = c.child_by_field_name("value")
        test = (lambda cs, v=value: w.visit(v, cs)) if value is not None else None
        cases.append((test, w.field(c, "body"), c.type == "switch_default", True))   # cases fall through
    w.switch(st, cases)


def _try(w, n, st):
    handlers = []
    handler, final = n.child_by_field_name("handler"), n.child_by_field_name("finalizer")
    if handler is not None:
        param = handler.child_by_field_name("parameter")
        bind = (lambda hs: w.bind(param, hs, (), True)) if param is not None else None
        handlers.append((bind, handler.child_by_field_name("body")))
    w.try_(st, n.child_by_field_name("body"), handlers, final.child_by_field_name("body") if final else None)


def _jump(w, n, st):
    label = n.child_by_field_name("label")
    w.jump(st, "break" if n.type == "break_statement" else "continue", w.text(label) if label else None)


HANDLERS = {
    "function_declaration": _function, "generator_function_declaration": _function,
    "function_expression": lambda w, n, st: w.scope(n), "generator_function": lambda w, n, st: w.scope(n),
    "arrow_function": lambda w, n, st: w.scope(n), "method_definition": _method,
    "class_declaration": _class, "class": _class,
    "lexical_declaration": _declaration, "variable_declaration": _declaration,
    "assignment_expression": _assign,
    "augmented_assignment_expression": lambda w, n, st: w.compound(n.child_by_field_name("left"),
                                                                   n.child_by_field_name("right"), st),
    "update_expression": lambda w, n, st: w.compound(n.child_by_field_name("argument"), None, st),
    "if_statement": _if, "for_statement": _for, "for_in_statement": _for_in,
    "while_statement": while_loop, "do_statement": while_loop, "switch_statement": _switch, "try_statement": _try,
    "return_statement": lambda w, n, st: w.end(n, st), "throw_statement": lambda w, n, st: w.end(n, st),
    "break_statement": _jump, "continue_statement": _jump,
    "labeled_statement": lambda w, n, st: w.labeled(st, w.text(n.child_by_field_name("label")),
                                                    n.child_by_field_name("body")),
    "statement_block": lambda w, n, st: w.block(n, st),
    "import_statement": lambda w, n, st: None,
}


# ---- functions and docstrings

def _text(n) -> str:
    return n.text.decode("utf-8", "replace")


def function_info(n):
    """(name, span, doc anchor) when ``n`` is a function this front end yields, else None."""
    t, p = n.type, n.parent
    if t in ("function_declaration", "generator_function_declaration", "method_definition"):
        name = n.child_by_field_name("name")
        exported = p is not None and p.type == "export_statement"
        return (_text(name) if name is not None else "<anonymous>"), n, p if exported else n
    if t not in _FUNCTION_VALUES or p is None:
        return None
    if p.type == "variable_declarator" and p.child_by_field_name("value") == n:
        name, decl = p.child_by_field_name("name"), p.parent
        if name is None or name.type != "identifier":
            return None
        single = decl is not None and len([d for d in decl.named_children if d.type == "variable_declarator"]) == 1
        span = decl if single else p
        exported = single and decl.parent is not None and decl.parent.type == "export_statement"
        return _text(name), span, decl.parent if exported else span
    if p.type == "assignment_expression" and p.child_by_field_name("right") == n:
        span = p.parent if p.parent is not None and p.parent.type == "expression_statement" else p
        return _text(p.child_by_field_name("left")), span, span
    if p.type == "pair" and p.child_by_field_name("value") == n:
        return _text(p.child_by_field_name("key")).strip("'\""), p, p
    if p.type == "field_definition" and p.child_by_field_name("value") == n:
        return _text(p.child_by_field_name("property")), p, p
    return None


def container_name(n) -> str | None:
    if n.type in ("class_declaration", "class"):
        name = n.child_by_field_name("name")
        return _text(name) if name is not None else None
    return None


def docstring(anchor, src: bytes) -> str:
    above = comments_above(anchor, COMMENTS, src)
    if above and above[-1].text.startswith(b"/**"):
        return clean_block_doc(_text(above[-1]))
    return ""
