"""Python's front end (modalzoo.modalities.code.python): a source file -> one CodeSample per function, the
docstring split off, leaves from tokenize (no comments), data-flow nodes on identifier leaves, or a SkippedFunction
with the reason."""

from __future__ import annotations

import textwrap

import pytest

from modalzoo.modalities.code.python import functions, leaves, sample_from_code
from modalzoo.modalities.code.sample import IDENTIFIER, STRING, CodeSample, SkippedFunction

SOURCE = textwrap.dedent('''
    import os

    def add(a, b):
        """Add two numbers together.

        More details here.
        """
        c = a + b  # keep the sum
        return c

    def inline(x): """Inline doc."""; return x

    def shares_a_line(x):
        """Doc."""; y = x
        return y

    def only():
        """Just a docstring."""

    def plain(p):
        q = p + 1
        return q

    class Box:
        def scale(self, v):
            """Scale the value."""
            w = v * 2
            return w

        def outer(self, q):
            """Outer doc."""
            def inner(z):
                """Inner doc."""
                r = z + q
                return r
            return inner(q)

    def greet(name):
        """Greet someone."""
        greeting = f"hello {name}"
        return greeting
''')


def by_name(text=SOURCE, need_docstring=False):
    return {(item.name if isinstance(item, CodeSample) else str(item).split(" ")[1].rstrip(":")): item
            for item in functions(text, "pkg/mod.py", need_docstring)}


def test_docstring_is_split_off_and_removed_from_the_code():
    add = by_name()["add"]
    assert isinstance(add, CodeSample) and add.language == "python" and add.origin == "pkg/mod.py"
    assert add.docstring == "Add two numbers together.\n\nMore details here."        # cleaned, whole
    assert add.code == "def add(a, b):\n    c = a + b  # keep the sum\n    return c"
    assert '"""' not in add.code and "Add two" not in " ".join(add.leaves())


def test_inline_and_docstring_only_functions_are_skipped_with_their_reason():
    found = by_name()
    assert isinstance(found["inline"], SkippedFunction) and found["inline"].reason == "docstring_inline"
    assert found["shares_a_line"].reason == "docstring_inline"
    assert found["only"].reason == "docstring_only"
    assert "pkg/mod.py:" in str(found["only"])                     # the message names where


def test_need_docstring_skips_undocumented_functions():
    assert isinstance(by_name()["plain"], CodeSample) and by_name()["plain"].docstring == ""
    skipped = by_name(need_docstring=True)["plain"]
    assert isinstance(skipped, SkippedFunction) and skipped.reason == "no_docstring"


def test_methods_and_nested_functions_have_qualified_names():
    found = by_name()
    assert {"Box.scale", "Box.outer", "Box.outer.<locals>.inner"} <= set(found)
    outer, inner = found["Box.outer"], found["Box.outer.<locals>.inner"]
    assert outer.code.startswith("def outer(self, q):\n    def inner(z):")              # dedented, contains inner
    assert inner.code == "def inner(z):\n    r = z + q\n    return r"
    order = [item.name for item in functions(SOURCE) if isinstance(item, CodeSample)]
    assert order == ["add", "plain", "Box.scale", "Box.outer", "Box.outer.<locals>.inner", "greet"]   # source order


def test_names_inside_an_f_string_are_dropped():
    greet = by_name()["greet"]
    (fstring,) = [i for i, (s, e, k) in enumerate(greet.tokens) if greet.code[s:e].startswith("f\"")]
    assert greet.tokens[fstring][2] == STRING
    assert fstring not in greet.nodes
    s, e, _ = greet.tokens[fstring]
    assert all(not s <= greet.tokens[t][0] < e for t in greet.nodes)                 # no node inside the string
    assert {greet.token_text(t) for t in greet.nodes} == {"greeting"}                # the param has no edge left


def test_dedent_by_the_def_line_with_a_multiline_string_at_column_zero():
    text = ('class C:\n'
            '    def m(self, s):\n'
            '        """Doc here."""\n'
            '        text = """\n'
            'at column zero\n'
            '"""\n'
            '        out = s + text\n'
            '        return out\n')
    (m,) = list(functions(text))
    assert m.name == "C.m"
    assert m.code == 'def m(self, s):\n    text = """\nat column zero\n"""\n    out = s + text\n    return out'
    assert '"""\nat column zero\n"""' in m.leaves()


def test_a_file_that_does_not_parse_is_one_syntax_skip():
    items = list(functions("def f(:\n    pass\n\ndef g(x):\n    return x\n", "bad.py"))
    assert len(items) == 1 and isinstance(items[0], SkippedFunction) and items[0].reason == "syntax"
    assert "bad.py" in str(items[0])


def test_leaves_leave_out_comments_and_layout():
    add = by_name()["add"]
    assert "# keep the sum" in add.code
    assert not any(leaf.startswith("#") or not leaf.strip() for leaf in add.leaves())
    assert add.leaves() == ["def", "add", "(", "a", ",", "b", ")", ":", "c", "=", "a", "+", "b", "return", "c"]
    spans = leaves("x = 1  # one\ny = 'two'\n")
    assert [k for _, _, k in spans] == [IDENTIFIER, 0, 4, IDENTIFIER, 0, STRING]


def test_every_node_is_an_identifier_leaf_and_edges_are_in_range():
    for item in functions(SOURCE):
        if isinstance(item, SkippedFunction):
            continue
        assert item.nodes and item.edges
        assert all(item.tokens[t][2] == IDENTIFIER for t in item.nodes), item.name
        used = {a for a, _, _ in item.edges} | {b for _, b, _ in item.edges}
        assert used == set(range(len(item.nodes)))                       # isolated nodes are dropped
    add = by_name()["add"]
    assert {add.token_text(t) for t in add.nodes} == {"a", "b", "c"}


def test_no_data_flow_is_a_skip():
    with pytest.raises(SkippedFunction) as err:
        sample_from_code("def f():\n    return 1\n")
    assert err.value.reason == "no_data_flow"


def test_round_trip_through_json():
    for item in functions(SOURCE):
        if isinstance(item, CodeSample):
            again = CodeSample.from_json(item.to_json())
            assert again == item
            assert CodeSample.from_json(item.to_json().encode()) == item         # bytes, as a tar member


@pytest.mark.parametrize("corrupt", [
    lambda d: d["tok"].__setitem__(0, [5, 2, 1]),              # a span that runs backwards
    lambda d: d["tok"].__setitem__(-1, [0, 10**6, 1]),         # past the code's end
    lambda d: d["tok"].__setitem__(0, [0, 3, 9]),              # an unknown token kind
    lambda d: d["nodes"].__setitem__(0, 10**4),                # a node naming no token
    lambda d: d["edges"].__setitem__(0, [0, 99, 0]),           # an edge naming no node
    lambda d: d["edges"].__setitem__(0, [0, 1, 7]),            # an unknown edge kind
])
def test_check_rejects_a_corrupt_sample(corrupt):
    import json
    d = json.loads(by_name()["add"].to_json())
    corrupt(d)
    with pytest.raises(ValueError):
        CodeSample.from_json(json.dumps(d))
