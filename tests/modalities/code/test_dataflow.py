"""Python data flow (modalzoo.modalities.code.dataflow): hand-written cases, every edge asserted exactly as a set
of (src name@line, dst name@line, kind) triples. C = comesFrom (use -> reaching def), P = computedFrom (target ->
right-hand use)."""

from __future__ import annotations

import textwrap

import pytest

from modalzoo.modalities.code.dataflow import (
    COMES_FROM,
    COMPUTED_FROM,
    DataFlow,
    Edge,
    Node,
    UnparsableCode,
    extract,
    functions,
)

C, P = COMES_FROM, COMPUTED_FROM


def triples(flow: DataFlow) -> set[tuple[str, str, str]]:
    """Nodes read ``name@line``; where a line has the name twice, ``name@line:col``; where one position holds two
    nodes (an augmented target), ``name@line:col:use`` / ``:def``."""
    def label(n, detail):
        return f"{n.name}@{n.line}" + (f":{n.col}" if detail > 0 else "") + (f":{n.kind}" if detail > 1 else "")

    at = []
    for n in flow.nodes:
        detail = 0
        while sum(label(m, detail) == label(n, detail) for m in flow.nodes) > 1:
            detail += 1
        at.append(label(n, detail))
    out = {(at[e.src], at[e.dst], e.kind) for e in flow.edges}
    assert len(out) == len(flow.edges), "two edges read the same: the test would not see one of them"
    return out


def flow(source: str) -> DataFlow:
    return extract(textwrap.dedent(source))


def test_figure1_max():
    # GraphCodeBERT paper, Figure 1 (research note 1.1): the returned x comes from both branch assignments.
    f = flow("""\
        def max(a, b):
            x = 0
            if b > a:
                x = b
            else:
                x = a
            return x
        """)
    assert triples(f) == {
        ("b@3", "b@1", C), ("a@3", "a@1", C),
        ("b@4", "b@1", C), ("x@4", "b@4", P),
        ("a@6", "a@1", C), ("x@6", "a@6", P),
        ("x@7", "x@4", C), ("x@7", "x@6", C),
    }
    # x = 0 (line 2) is killed on both branches: no edge reaches it.
    assert [(n.name, n.line, n.col, n.end_col, n.kind, n.role) for n in f.nodes] == [
        ("a", 1, 8, 9, "def", "parameter"), ("b", 1, 11, 12, "def", "parameter"),
        ("x", 2, 4, 5, "def", "assign"),
        ("b", 3, 7, 8, "use", "name"), ("a", 3, 11, 12, "use", "name"),
        ("x", 4, 8, 9, "def", "assign"), ("b", 4, 12, 13, "use", "name"),
        ("x", 6, 8, 9, "def", "assign"), ("a", 6, 12, 13, "use", "name"),
        ("x", 7, 11, 12, "use", "name"),
    ]
    assert all(isinstance(n, Node) for n in f.nodes) and all(isinstance(e, Edge) for e in f.edges)


def test_straight_line_and_kill():
    assert triples(flow("""\
        a = 1
        b = a + 2
        a = b * a
        c = a.real + b
        """)) == {
        ("b@2", "a@2", P), ("a@2", "a@1", C),
        ("a@3:0", "b@3", P), ("a@3:0", "a@3:8", P), ("b@3", "b@2", C), ("a@3:8", "a@1", C),
        ("c@4", "a@4", P), ("c@4", "b@4", P), ("a@4", "a@3:0", C), ("b@4", "b@2", C),
    }


def test_if_without_else_merges_with_before():
    assert triples(flow("""\
        x = 1
        if c:
            x = 2
        y = x
        """)) == {("x@4", "x@1", C), ("x@4", "x@3", C), ("y@4", "x@4", P)}


def test_while_loop_carried_flow():
    f = flow("""\
        def f(n):
            i = 0
            s = 0
            while i < n:
                s = s + i
                i = i + 1
            return s
        """)
    assert triples(f) == {
        ("i@4", "i@2", C), ("i@4", "i@6:8", C), ("n@4", "n@1", C),           # the loop test, 2nd time round too
        ("s@5:8", "s@5:12", P), ("s@5:8", "i@5", P),
        ("s@5:12", "s@3", C), ("s@5:12", "s@5:8", C), ("i@5", "i@2", C), ("i@5", "i@6:8", C),
        ("i@6:8", "i@6:12", P), ("i@6:12", "i@2", C), ("i@6:12", "i@6:8", C),
        ("s@7", "s@3", C), ("s@7", "s@5:8", C),
    }
    # the use of s on line 5 comes from the def of s on line 5 (previous iteration)
    use = next(i for i, n in enumerate(f.nodes) if (n.name, n.line, n.kind) == ("s", 5, "use"))
    define = next(i for i, n in enumerate(f.nodes) if (n.name, n.line, n.kind) == ("s", 5, "def"))
    assert Edge(use, define, C) in f.edges and Edge(define, use, P) in f.edges


def test_while_break_continue_else():
    assert triples(flow("""\
        x = 0
        while c:
            if d:
                x = 1
                break
            if e:
                x = 2
                continue
            x = 3
        else:
            y = x
        z = x
        """)) == {
        ("y@11", "x@11", P), ("x@11", "x@1", C), ("x@11", "x@7", C), ("x@11", "x@9", C),
        ("z@12", "x@12", P), ("x@12", "x@1", C), ("x@12", "x@7", C), ("x@12", "x@9", C), ("x@12", "x@4", C),
    }


def test_for_loop():
    assert triples(flow("""\
        def total(xs):
            t = 0
            for x in xs:
                t += x
            return t, x
        """)) == {
        ("xs@3", "xs@1", C), ("x@3", "xs@3", P),
        ("x@4", "x@3", C), ("t@4:8:use", "t@2", C), ("t@4:8:use", "t@4:8:def", C),
        ("t@4:8:def", "x@4", P), ("t@4:8:def", "t@4:8:use", P),
        ("t@5", "t@2", C), ("t@5", "t@4:8:def", C), ("x@5", "x@3", C),
    }


def test_nested_comprehension_scope():
    assert triples(flow("""\
        x = 5
        k = 2
        rows = [[x * k for x in row] for row in grid if row]
        y = x
        """)) == {
        ("k@3", "k@2", C),                                   # free name of the comprehension: enclosing state
        ("x@3:9", "x@3:19", C),                              # element x from the inner target, not from x = 5
        ("row@3:24", "row@3:33", C), ("row@3:48", "row@3:33", C),
        ("row@3:33", "grid@3", P), ("x@3:19", "row@3:24", P),  # targets computed from their iterables
        ("rows@3", "x@3:9", P), ("rows@3", "k@3", P), ("rows@3", "row@3:24", P), ("rows@3", "row@3:48", P),
        ("rows@3", "grid@3", P),
        ("y@4", "x@4", P), ("x@4", "x@1", C),                # comprehension targets do not leak
    }


def test_walrus_in_comprehension_leaks():
    assert triples(flow("""\
        ys = [(last := v) for v in vs]
        z = last
        """)) == {
        ("v@1:22", "vs@1", P), ("v@1:15", "v@1:22", C), ("last@1", "v@1:15", P),
        ("ys@1", "v@1:15", P), ("ys@1", "vs@1", P),
        ("last@2", "last@1", C), ("z@2", "last@2", P),
    }


def test_with_as():
    assert triples(flow("""\
        def read(path):
            with open(path) as fh, lock:
                data = fh.read()
            return data
        """)) == {
        ("path@2", "path@1", C), ("fh@2", "open@2", P), ("fh@2", "path@2", P),
        ("fh@3", "fh@2", C), ("data@3", "fh@3", P), ("data@4", "data@3", C),
    }


def test_try_except_else_finally():
    f = flow("""\
        x = 0
        try:
            x = 1
            y = x
        except ValueError as e:
            z = (x, e)
        else:
            w = y
        finally:
            v = x
        u = x
        """)
    assert triples(f) == {
        ("x@4", "x@3", C), ("y@4", "x@4", P),
        ("x@6", "x@1", C), ("x@6", "x@3", C), ("e@6", "e@5", C), ("z@6", "x@6", P), ("z@6", "e@6", P),
        ("y@8", "y@4", C), ("w@8", "y@8", P),
        ("x@10", "x@1", C), ("x@10", "x@3", C), ("v@10", "x@10", P),
        ("x@11", "x@1", C), ("x@11", "x@3", C), ("u@11", "x@11", P),
    }
    e = next(n for n in f.nodes if n.name == "e" and n.kind == "def")
    assert (e.line, e.col, e.end_col, e.role) == (5, 21, 22, "except")


def test_return_ends_a_path_and_except_name_unbound():
    assert triples(flow("""\
        def f(a):
            try:
                a = g(a)
            except E as e:
                return e
            return a, e
        """)) == {
        ("a@3:14", "a@1", C), ("a@3:8", "g@3", P), ("a@3:8", "a@3:14", P), ("e@5", "e@4", C), ("a@6", "a@3:8", C)}


def test_augmented_assignment():
    f = flow("""\
        x = 1
        x += y
        a[i] += x
        """)
    assert triples(f) == {
        ("x@2:0:use", "x@1", C), ("x@2:0:def", "x@2:0:use", P), ("x@2:0:def", "y@2", P), ("x@3", "x@2:0:def", C)}
    two = [(n.kind, n.col, n.role) for n in f.nodes if n.line == 2 and n.name == "x"]
    assert two == [("use", 0, "augassign"), ("def", 0, "augassign")]    # one occurrence, use then def
    use, define = (i for i, n in enumerate(f.nodes) if n.line == 2 and n.name == "x")
    assert Edge(define, use, P) in f.edges and Edge(use, 0, C) in f.edges
    assert {(n.name, n.kind) for n in f.nodes if n.line == 3} == {("a", "use"), ("i", "use"), ("x", "use")}


def test_annotated_assignment():
    f = flow("""\
        n: int = m + 1
        q: list[T]
        r = n, q
        """)
    assert triples(f) == {("n@1", "m@1", P), ("n@3", "n@1", C), ("r@3", "n@3", P), ("r@3", "q@3", P)}
    assert [n.name for n in f.nodes if n.line == 2] == ["list", "T"]   # `q: list[T]` binds nothing: q is no node
    assert next(n for n in f.nodes if n.name == "n").role == "annassign"


def test_tuple_unpacking_every_target_from_every_source():
    assert triples(flow("""\
        c, d = 1, 2
        a, (b, *rest) = c, d
        """)) == {
        ("a@2", "c@2", P), ("a@2", "d@2", P), ("b@2", "c@2", P), ("b@2", "d@2", P),
        ("rest@2", "c@2", P), ("rest@2", "d@2", P), ("c@2", "c@1", C), ("d@2", "d@1", C),
    }


def test_parameters_and_defaults():
    f = flow("""\
        k = 3
        def f(a, /, b=k, *args, c: int = 0, **kw) -> k:
            return a + b + c + len(args) + len(kw)
        """)
    assert triples(f) == {
        ("k@2:14", "k@1", C), ("k@2:45", "k@1", C),   # the default and the return annotation: enclosing scope
        ("a@3", "a@2", C), ("b@3", "b@2", C), ("c@3", "c@2", C), ("args@3", "args@2", C), ("kw@3", "kw@2", C),
    }
    params = [(n.name, n.col) for n in f.nodes if n.role == "parameter"]
    assert params == [("a", 6), ("b", 12), ("args", 18), ("c", 24), ("kw", 38)]
    assert len([e for e in f.edges if e.kind == C]) == 7


def test_nested_function_own_scope_and_free_variables():
    source = textwrap.dedent("""\
        def outer(a):
            b = a
            def inner(c):
                nonlocal b
                b = c + a
                return b
            return inner(b)
        """)
    assert triples(extract(source)) == {
        ("b@2", "a@2", P), ("a@2", "a@1", C),
        ("b@5", "c@5", P), ("b@5", "a@5", P), ("c@5", "c@3", C),   # a@5 is free in inner: no comesFrom
        ("b@6", "b@5", C),
        ("b@7", "b@2", C),                     # `inner` (a def's name) is no node; b@5 is inner's, not outer's
    }
    nonlocal_b = next(n for n in extract(source).nodes if n.role == "nonlocal")
    assert (nonlocal_b.line, nonlocal_b.col, nonlocal_b.kind) == (4, 17, "def")
    per = dict(functions(source))
    assert list(per) == ["outer", "outer.<locals>.inner"]
    assert triples(per["outer.<locals>.inner"]) == {
        ("b@5", "c@5", P), ("b@5", "a@5", P), ("c@5", "c@3", C), ("b@6", "b@5", C)}
    assert per["outer.<locals>.inner"].nodes[0] == Node("c", 3, 14, 15, "def", "parameter")
    assert triples(per["outer"]) == triples(extract(source))


def test_global_is_a_definition():
    assert triples(flow("""\
        def bump():
            global count
            count += 1
        """)) == {("count@3:4:use", "count@2", C), ("count@3:4:def", "count@3:4:use", P)}


def test_class_body_and_methods():
    source = textwrap.dedent("""\
        class A(Base):
            size = 2
            def m(self, x):
                return self.size * x * size
        """)
    assert triples(extract(source)) == {("self@4", "self@3", C), ("x@4", "x@3", C)}   # class names are free in m
    assert [q for q, _ in functions(source)] == ["A.m"]


def test_lambda_and_match():
    assert triples(flow("""\
        f = lambda y, z=w: y + z
        match f(v):
            case [first, *others]:
                r = first
            case {"k": val, **extra}:
                r = val
            case Point(x=px) as p:
                r = px
        s = r
        """)) == {
        ("y@1:19", "y@1:11", C), ("z@1:23", "z@1:14", C), ("f@1", "w@1", P),      # the lambda body: its own scope
        ("f@2", "f@1", C),
        ("first@3", "f@2", P), ("first@3", "v@2", P), ("others@3", "f@2", P), ("others@3", "v@2", P),
        ("r@4", "first@4", P), ("first@4", "first@3", C),
        ("val@5", "f@2", P), ("val@5", "v@2", P), ("extra@5", "f@2", P), ("extra@5", "v@2", P),
        ("r@6", "val@6", P), ("val@6", "val@5", C),
        ("px@7", "f@2", P), ("px@7", "v@2", P), ("p@7", "f@2", P), ("p@7", "v@2", P),
        ("r@8", "px@8", P), ("px@8", "px@7", C),
        ("s@9", "r@9", P), ("r@9", "r@4", C), ("r@9", "r@6", C), ("r@9", "r@8", C),
    }


def test_del_unbinds():
    assert triples(flow("""\
        x = 1
        del x
        y = x
        """)) == {("x@2", "x@1", C), ("y@3", "x@3", P)}


def test_unicode_columns_are_characters():
    f = extract('s = "é€"; t = s\n')
    assert [(n.name, n.col, n.end_col) for n in f.nodes] == [("s", 0, 1), ("t", 10, 11), ("s", 14, 15)]


def test_indented_method_snippet_keeps_columns():
    snippet = "    def m(self):\n        return self\n"
    f = extract(snippet)
    assert [(n.name, n.line, n.col) for n in f.nodes] == [("self", 1, 10), ("self", 2, 15)]
    assert triples(f) == {("self@2", "self@1", C)}


@pytest.mark.parametrize("bad", ["def f(:\n    pass\n", "x = = 1\n", "if x:\npass\n", "a\0b\n"])
def test_unparsable_raises_value_error(bad):
    with pytest.raises(UnparsableCode) as info:
        extract(bad)
    assert isinstance(info.value, ValueError) and info.value.reason == "syntax"
    with pytest.raises(ValueError):
        functions(bad)


def test_too_deep_is_counted_not_crashing():
    with pytest.raises(UnparsableCode) as info:
        extract("x = " + "(" * 5000 + "1" + ")" * 5000 + "\n")
    assert info.value.reason in ("too_deep", "syntax")


def test_empty_function_and_empty_source():
    assert extract("def f():\n    pass\n") == DataFlow([], [])
    assert functions("def f():\n    return 1\n") == [("f", DataFlow([], []))]
    assert extract("") == DataFlow([], [])
