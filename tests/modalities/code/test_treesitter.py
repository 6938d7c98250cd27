"""JavaScript / Java / Go front end (modalzoo.modalities.code.treesitter): hand-written functions, every edge of a
sample asserted as a set of (src, dst, kind) labels. C = comesFrom (use -> reaching def), P = computedFrom (target
-> right-hand use). A label is ``name@line`` of the sample's code; ``#k`` the k-th leaf of that text on the line
when there are several; ``:use`` / ``:def`` the two nodes of one leaf (``x += y``, ``x++``)."""

from __future__ import annotations

import sys
import textwrap

import pytest

from modalzoo.errors import ModalzooError
from modalzoo.modalities.code import languages, treesitter
from modalzoo.modalities.code.sample import IDENTIFIER, KEYWORD, NUMBER, OTHER, STRING, CodeSample, SkippedFunction

pytest.importorskip("tree_sitter", reason="the [code] extra is not installed")

LANGS = ("javascript", "java", "go")
C, P = "C", "P"


def wrap(src: str, lang: str) -> str:
    src = textwrap.dedent(src)
    if lang == "java":
        return "class A {\n" + textwrap.indent(src, "    ") + "}\n"
    return "package p\n\n" + src if lang == "go" else src


def results(src: str, lang: str, **kw) -> list:
    return list(treesitter.functions(wrap(src, lang), lang, "t", **kw))


def sample(src: str, lang: str) -> CodeSample:
    out = results(src, lang)
    assert isinstance(out[0], CodeSample), out[0]
    return out[0].check()


def labels(s: CodeSample) -> list[str]:
    def line(t):
        return s.code.count("\n", 0, s.tokens[t][0]) + 1

    out = []
    for i, t in enumerate(s.nodes):
        text = s.token_text(t)
        same = [j for j in range(len(s.tokens)) if s.token_text(j) == text and line(j) == line(t)]
        label = f"{text}@{line(t)}" + (f"#{same.index(t) + 1}" if len(same) > 1 else "")
        if s.nodes.count(t) > 1:
            label += ":def" if i and s.nodes[i - 1] == t else ":use"
        out.append(label)
    return out


def triples(s: CodeSample) -> set[tuple[str, str, str]]:
    at = labels(s)
    out = {(at[a], at[b], "CP"[k]) for a, b, k in s.edges}
    assert len(out) == len(s.edges), "two edges read the same: the test would not see one of them"
    return out


# ---- the same cases in the three languages

SAME = {
    # GraphCodeBERT paper, Figure 1: the returned x comes from both branch assignments; x = 0 is killed on both.
    "figure1": ({
        "javascript": """\
            function max(a, b) {
              let x = 0;
              if (b > a) {
                x = b;
              } else {
                x = a;
              }
              return x;
            }
            """,
        "java": """\
            int max(int a, int b) {
                int x = 0;
                if (b > a) {
                    x = b;
                } else {
                    x = a;
                }
                return x;
            }
            """,
        "go": """\
            func max(a, b int) int {
                x := 0
                if b > a {
                    x = b
                } else {
                    x = a
                }
                return x
            }
            """}, {
        ("b@3", "b@1", C), ("a@3", "a@1", C),
        ("x@4", "b@4", P), ("b@4", "b@1", C),
        ("x@6", "a@6", P), ("a@6", "a@1", C),
        ("x@8", "x@4", C), ("x@8", "x@6", C)}),
    # straight line, kill, compound assignment, ++
    "straight": ({
        "javascript": """\
            function f(a) {
              let b = a + 1;
              b += a;
              b++;
              let c = b * b;
              return c;
            }
            """,
        "java": """\
            int f(int a) {
                int b = a + 1;
                b += a;
                b++;
                int c = b * b;
                return c;
            }
            """,
        "go": """\
            func f(a int) int {
                b := a + 1
                b += a
                b++
                c := b * b
                return c
            }
            """}, {
        ("b@2", "a@2", P), ("a@2", "a@1", C),
        ("b@3:use", "b@2", C), ("b@3:def", "b@3:use", P), ("b@3:def", "a@3", P), ("a@3", "a@1", C),
        ("b@4:use", "b@3:def", C), ("b@4:def", "b@4:use", P),
        ("c@5", "b@5#1", P), ("c@5", "b@5#2", P), ("b@5#1", "b@4:def", C), ("b@5#2", "b@4:def", C),
        ("c@6", "c@5", C)}),
    # a loop-carried dependency: s and i in the body come from before the loop and from the previous iteration
    "loop": ({
        "javascript": """\
            function f(n) {
              let s = 0;
              for (let i = 0; i < n; i++) {
                s = s + i;
              }
              return s;
            }
            """,
        "java": """\
            int f(int n) {
                int s = 0;
                for (int i = 0; i < n; i++) {
                    s = s + i;
                }
                return s;
            }
            """,
        "go": """\
            func f(n int) int {
                s := 0
                for i := 0; i < n; i++ {
                    s = s + i
                }
                return s
            }
            """}, {
        ("n@3", "n@1", C),
        ("i@3#2", "i@3#1", C), ("i@3#2", "i@3#3:def", C),
        ("i@3#3:use", "i@3#1", C), ("i@3#3:use", "i@3#3:def", C), ("i@3#3:def", "i@3#3:use", P),
        ("s@4#1", "s@4#2", P), ("s@4#1", "i@4", P),
        ("s@4#2", "s@2", C), ("s@4#2", "s@4#1", C), ("i@4", "i@3#1", C), ("i@4", "i@3#3:def", C),
        ("s@6", "s@2", C), ("s@6", "s@4#1", C)}),
    # an if without else: the state before it reaches the use after it too
    "if_only": ({
        "javascript": """\
            function f(c) {
              let x = 0;
              if (c) {
                x = 1;
              }
              return x;
            }
            """,
        "java": """\
            int f(boolean c) {
                int x = 0;
                if (c) {
                    x = 1;
                }
                return x;
            }
            """,
        "go": """\
            func f(c bool) int {
                x := 0
                if c {
                    x = 1
                }
                return x
            }
            """}, {
        ("c@3", "c@1", C), ("x@6", "x@2", C), ("x@6", "x@4", C)}),
    # a nested closure is its own scope: its free a has no edge, its parameter b does
    "closure": ({
        "javascript": """\
            function f(a) {
              const g = (b) => a + b;
              return g(a);
            }
            """,
        "java": """\
            int f(int a) {
                IntUnaryOperator g = (b) -> a + b;
                return g.applyAsInt(a);
            }
            """,
        "go": """\
            func f(a int) int {
                g := func(b int) int { return a + b }
                return g(a)
            }
            """}, {
        ("b@2#2", "b@2#1", C), ("g@3", "g@2", C), ("a@3", "a@1", C)}),
}


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("case", sorted(SAME))
def test_every_edge(case, lang):
    sources, expected = SAME[case]
    assert triples(sample(sources[lang], lang)) == expected


def test_figure1_nodes_are_the_leaves_named():
    s = sample(SAME["figure1"][0]["javascript"], "javascript")
    assert labels(s) == ["a@1", "b@1", "b@3", "a@3", "x@4", "b@4", "x@6", "a@6", "x@8"]   # x = 0 has no edge
    assert all(s.tokens[t][2] == IDENTIFIER for t in s.nodes)


NO_FLOW = {"javascript": "function f() { return 1; }\n", "java": 'void f() { System.out.println("x"); }\n',
           "go": 'func f() { fmt.Println("x") }\n'}
BROKEN = {"javascript": "function f(a) { return a + ; }\n", "java": "int f(int a) { return a + ; }\n",
          "go": "func f(a int) int { return a + }\n"}


@pytest.mark.parametrize("lang", LANGS)
def test_skips(lang):
    [skip] = results(NO_FLOW[lang], lang)
    assert isinstance(skip, SkippedFunction) and skip.reason == "no_data_flow" and "f" in str(skip)
    out = results(BROKEN[lang], lang)
    assert [getattr(r, "reason", None) for r in out] == ["syntax"]
    # a good function next to a broken one is still a sample
    out = results(SAME["figure1"][0][lang] + textwrap.dedent(BROKEN[lang]), lang)
    assert isinstance(out[0], CodeSample) and out[1].reason == "syntax"


def test_a_parse_error_outside_every_function_is_counted_once():
    out = list(treesitter.functions("function f(a) { return a; }\n}}} (\n", "javascript"))
    assert [type(r).__name__ for r in out] == ["SkippedFunction", "CodeSample"] and out[0].reason == "syntax"


DOCS = {
    "javascript": """\
        /**
         * Adds one.
         *
         * Keeps {@link x} as it is.
         * @param {number} x the input,
         *   on two lines
         * @returns {number} one more
         */
        function inc(x) {
          // a comment stays in the code but is no leaf
          return x + 1;
        }
        """,
    "java": """\
        /**
         * Adds one.
         *
         * Keeps {@link x} as it is.
         * @param x the input,
         *   on two lines
         * @return one more
         */
        @Deprecated
        int inc(int x) {
            // a comment stays in the code but is no leaf
            return x + 1;
        }
        """,
    "go": """\
        // Adds one.
        //
        // Keeps x as it is.
        //
        //go:noinline
        func inc(x int) int {
            // a comment stays in the code but is no leaf
            return x + 1
        }
        """,
}


@pytest.mark.parametrize("lang", LANGS)
def test_docstring_split_off(lang):
    s = sample(DOCS[lang], lang)
    assert s.docstring == "Adds one.\n\nKeeps x as it is."
    assert s.code.startswith(("function inc", "@Deprecated\nint inc", "func inc")), s.code
    assert "Adds one" not in s.code and "/**" not in s.code and "@param" not in s.code
    assert "comment" in s.code and "comment" not in " ".join(s.leaves())
    lines = s.code.split("\n")
    signature = next(i for i, line in enumerate(lines) if "inc(" in line) + 1      # Java: after @Deprecated
    assert triples(s) == {(f"x@{len(lines) - 1}", f"x@{signature}", C)}
    # need_docstring: the same function without its comment is skipped; a comment not directly above is no doc
    bare = "\n".join(line for line in textwrap.dedent(DOCS[lang]).split("\n") if not line.lstrip().startswith(
        ("/**", "*", "//", "@Dep")) or "comment" in line)
    assert [r.reason for r in results(bare, lang, need_docstring=True)] == ["no_docstring"]
    apart = "/** Not mine. */\n\n" if lang != "go" else "// Not mine.\n\n"
    assert sample(apart + bare, lang).docstring == ""
    assert sample(bare, lang).docstring == ""


@pytest.mark.parametrize("lang", LANGS)
def test_leaves_and_json_round_trip(lang):
    src = {"javascript": 'function f(a) {\n  let s = "a b" + 1.5; // c\n  return s + a;\n}\n',
           "java": 'String f(int a) {\n    String s = "a b" + 1.5; // c\n    return s + a;\n}\n',
           "go": 'func f(a int) string {\n    s := "a b" + 1.5 // c\n    return s + a\n}\n'}[lang]
    s = sample(src, lang)
    kinds = dict(zip(s.leaves(), (k for _, _, k in s.tokens)))
    assert kinds['"a b"'] == STRING and kinds["1.5"] == NUMBER and kinds["s"] == IDENTIFIER
    assert kinds["return"] == KEYWORD and kinds["+"] == OTHER and "//" not in "".join(s.leaves())
    assert s.code.split("\n")[0].startswith(("function f", "String f", "func f"))     # dedented (Java: by 4)
    assert CodeSample.from_json(s.to_json()) == s and s.language == lang


def test_an_indented_method_with_non_ascii_text_keeps_its_spans():
    [s] = treesitter.functions("class C {\n    m(a) {\n        const é = 'ünï' + a;\n        return é;\n    }\n}\n",
                               "javascript")
    assert s.name == "C.m" and s.code == "m(a) {\n    const é = 'ünï' + a;\n    return é;\n}"
    assert s.leaves()[5:10] == ["const", "é", "=", "'ünï'", "+"]
    assert triples(s) == {("a@2", "a@1", C), ("é@2", "a@2", P), ("é@3", "é@2", C)}


def test_too_deep_is_a_skip_not_a_crash():
    deep = "function f(a) { return " + "(" * 3000 + "a" + ")" * 3000 + "; }\nfunction g(b) { return b; }\n"
    first, second = treesitter.functions(deep, "javascript")
    assert first.reason == "too_deep" and isinstance(second, CodeSample)


# ---- per language

def test_javascript_patterns_declarations_and_names():
    src = """\
        class C {
          m(o, [p, q = p], ...rest) {
            const {k, v: w} = o;
            [k2, w] = [w, k];
            for (const e of rest) { w += e; }
            this.x = w;
            return `${w}!`;
          }
        }
        exports.g = function (a) { let b; b = a; return b; };
        const h = (a) => { try { a = a.p; } catch (err) { log(a, err); } return a; };
        """
    out = list(treesitter.functions(textwrap.dedent(src), "javascript"))
    assert [r.name for r in out] == ["C.m", "exports.g", "h"]
    m, g, h = out
    assert triples(m) == {                                   # lines of the method's own code
        ("q@1", "p@1#2", P), ("p@1#2", "p@1#1", C),
        ("k@2", "o@2", P), ("w@2", "o@2", P), ("o@2", "o@1", C),
        ("k2@3", "w@3#2", P), ("k2@3", "k@3", P), ("w@3#1", "w@3#2", P), ("w@3#1", "k@3", P),
        ("w@3#2", "w@2", C), ("k@3", "k@2", C),
        ("e@4#1", "rest@4", P), ("rest@4", "rest@1", C),
        ("w@4:use", "w@3#1", C), ("w@4:use", "w@4:def", C), ("w@4:def", "w@4:use", P), ("w@4:def", "e@4#2", P),
        ("e@4#2", "e@4#1", C),
        ("w@5", "w@3#1", C), ("w@5", "w@4:def", C),           # this.x is no variable
        ("w@6", "w@3#1", C), ("w@6", "w@4:def", C)}            # a template's substitution is read
    assert g.code.startswith("exports.g = function") and triples(g) == {
        ("b@1#3", "b@1#2", C), ("b@1#2", "a@1#2", P), ("a@1#2", "a@1#1", C)}
    # catch: the handler starts from the state before try plus every definition in it
    assert triples(h) == {
        ("a@1#2", "a@1#3", P), ("a@1#3", "a@1#1", C),
        ("a@1#4", "a@1#1", C), ("a@1#4", "a@1#2", C), ("err@1#2", "err@1#1", C),
        ("a@1#5", "a@1#1", C), ("a@1#5", "a@1#2", C)}


def test_javascript_switch_falls_through_and_let_is_block_scoped():
    s = sample("""\
        function f(x, y) {
          switch (x) {
            case 1: y = 1;
            case 2: y = 2; break;
            default: y = 3;
          }
          { let y = 9; }
          return y;
        }
        """, "javascript")
    assert triples(s) == {("x@2", "x@1", C), ("y@8", "y@4", C), ("y@8", "y@5", C)}


def test_java_statements():
    s = sample("""\
        int f(List<Integer> xs, Object o) {
            int s = 0;
            for (int v : xs) {
                if (v < 0) continue;
                s += v;
            }
            try (Res r = open(s)) {
                s = r.get(this.s);
            } catch (IOException e) {
                log(e);
            }
            if (o instanceof Foo foo) {
                s = foo.size();
            }
            return s;
        }
        """, "java")
    assert triples(s) == {
        ("v@3", "xs@3", P), ("xs@3", "xs@1", C), ("v@4", "v@3", C),
        ("s@5:use", "s@2", C), ("s@5:use", "s@5:def", C), ("s@5:def", "s@5:use", P), ("s@5:def", "v@5", P),
        ("v@5", "v@3", C),
        ("r@7", "s@7", P), ("s@7", "s@2", C), ("s@7", "s@5:def", C),
        ("s@8#1", "r@8", P), ("r@8", "r@7", C),                 # this.s (s@8#2) is a field
        ("e@10", "e@9", C),
        ("foo@12", "o@12", P), ("o@12", "o@1", C), ("s@13", "foo@13", P), ("foo@13", "foo@12", C),
        ("s@15", "s@2", C), ("s@15", "s@5:def", C), ("s@15", "s@8#1", C), ("s@15", "s@13", C)}
    assert s.name == "A.f"


def test_java_switch_rules_do_not_fall_through_and_labels_are_not_variables():
    s = sample("""\
        int f(int x) {
            int y = 0;
            outer:
            while (x > 0) {
                switch (x) {
                    case 1 -> y = 1;
                    default -> { break outer; }
                }
                x--;
            }
            return y;
        }
        """, "java")
    assert triples(s) == {
        ("x@4", "x@1", C), ("x@4", "x@9:def", C), ("x@5", "x@1", C), ("x@5", "x@9:def", C),
        ("x@9:use", "x@1", C), ("x@9:use", "x@9:def", C), ("x@9:def", "x@9:use", P),
        ("y@11", "y@2", C), ("y@11", "y@6", C)}


def test_go_shadowing_range_multiple_assignment_and_names():
    s = sample("""\
        func (s *Srv) Sum(xs []int) (total int, err error) {
            for _, v := range xs {
                total += v
            }
            if err := s.check(total); err != nil {
                return 0, err
            }
            p := Point{X: total}
            total, err = p.n, nil
            return total, err
        }
        """, "go")
    assert s.name == "Srv.Sum"
    assert triples(s) == {
        ("v@2", "xs@2", P), ("xs@2", "xs@1", C),
        ("total@3:use", "total@1", C), ("total@3:use", "total@3:def", C), ("total@3:def", "total@3:use", P),
        ("total@3:def", "v@3", P), ("v@3", "v@2", C),
        ("err@5#1", "s@5", P), ("err@5#1", "total@5", P), ("s@5", "s@1", C),
        ("total@5", "total@1", C), ("total@5", "total@3:def", C), ("err@5#2", "err@5#1", C),
        ("err@6", "err@5#1", C),
        ("p@8", "total@8", P), ("total@8", "total@1", C), ("total@8", "total@3:def", C),   # X: is a field
        ("total@9", "p@9", P), ("err@9", "p@9", P), ("p@9", "p@8", C),
        ("total@10", "total@9", C), ("err@10", "err@9", C)}   # the if's err was another variable


def test_go_switch_fallthrough():
    s = sample("""\
        func f(x int) int {
            y := 0
            switch x {
            case 1:
                y = 1
                fallthrough
            case 2:
                y += 2
            }
            return y
        }
        """, "go")
    assert triples(s) == {
        ("x@3", "x@1", C), ("y@8:use", "y@2", C), ("y@8:use", "y@5", C), ("y@8:def", "y@8:use", P),
        ("y@10", "y@2", C), ("y@10", "y@8:def", C)}


# ---- installation

@pytest.mark.parametrize("module", ["tree_sitter", "tree_sitter_go"])
def test_a_missing_grammar_names_the_extra(monkeypatch, module):
    monkeypatch.setattr(treesitter, "_PARSERS", {})
    monkeypatch.setitem(sys.modules, module, None)         # import fails as if not installed
    with pytest.raises(ModalzooError, match=rf"module '{module}'.*pip install 'modalzoo\[code\]'"):
        list(languages.functions("package p\n", "go"))


def test_dispatch_reads_javascript_through_languages():
    [s] = languages.functions("function f(a) { return a; }\n", "javascript", "x.js")
    assert s.origin == "x.js" and triples(s) == {("a@1#2", "a@1#1", C)}
