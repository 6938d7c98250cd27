"""`data build code-sample` (modalzoo.modalities.code.corpus) on a fake site-packages and a fake stdlib: splits by
file, test-code and vendored exclusion, the quality filter, dedup within and across splits (test wins), encoding and
syntax skips, info.json's counts, byte-identical rebuilds."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from modalzoo.cli import main
from modalzoo.modalities.code import corpus
from modalzoo.modalities.code.corpus import CodeSampleConfig, CodeSampleData, path_fraction
from modalzoo.modalities.code.python import functions
from modalzoo.modalities.code.sample import CodeSample, SkippedFunction


def fn(name: str, doc: str, k: int | str, indent: str = "") -> str:
    """A documented function with data flow and a three-line body, unique by ``k``."""
    body = (f'def {name}(value, scale):\n'
            f'    """{doc}\n\n    Details that are not kept.\n    """\n'
            f'    result = value * scale + {k}\n'
            f'    total = result - {k}\n'
            f'    return total\n')
    return "".join(indent + line if line.strip() else line for line in body.splitlines(True))


SHARED = fn("shared", "Scale a value, the stdlib way.", "'shared'")     # in the stdlib and in site-packages


def write(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())


@pytest.fixture
def roots(tmp_path, monkeypatch):
    std, site = tmp_path / "std", tmp_path / "site"
    write(std / "textutil.py", SHARED + fn("wrap", "Wrap the text in lines.", 1)
          + fn("wrap_again", "Wrap the text in lines.", 2)                          # a repeated test query
          + fn("tiny", "Too short.", 3)                                             # two words
          + 'def flat(a):\n    """Return a plus one here."""\n    b = a + 1\n    return b\n')   # two-line body
    write(std / "json_like/decoder.py", fn("decode", "Decode a document from text.", 4))
    for excluded in ("test/test_support.py", "test_top.py", "idlelib/editor.py", "lib2to3/fixer.py",
                     "site-packages/somepkg/mod.py", "tests/helpers.py"):
        write(std / excluded, fn("excluded_std", "This must never be read.", 99))
    for i in range(12):
        write(site / f"pkg_c/m{i:02d}.py", fn(f"work_{i}", f"Do the work number {i}.", 100 + i)
              + fn(f"more_{i}", f"Do more work number {i}.", 200 + i))
    write(site / "pkg_a/core.py",
          SHARED                                                                    # a copy of a stdlib function
          + fn("reword", "wrap the  TEXT in lines", 5)                              # a test query, reworded
          + "class A:\n" + fn("helper", "Help with the work.", 6, "    ")
          + "class B:\n" + fn("helper", "Help with the work.", 6, "    "))          # identical body: a duplicate
    write(site / "pkg_a/capped.py", "".join(fn(f"c{i}", f"Capped function number {i}.", 300 + i) for i in range(5)))
    for excluded in ("pkg_a/tests/test_core.py", "pkg_a/_vendor/six.py", "pkg_a/vendor/x.py", "modalzoo/core.py",
                     "pkg_b/testing/x.py", "pkg_b/test_b.py", "pkg_b/conftest.py", ".hidden/x.py"):
        write(site / excluded, fn("excluded_site", "This must never be read.", 98))
    write(site / "pkg_b/latin.py", fn("latin", "Caf\xe9 au lait, no cookie.", 7).encode("latin-1"))
    write(site / "pkg_b/cookie.py", ("# -*- coding: latin-1 -*-\n" + fn("cookie", "Caf\xe9 with a cookie.", 8))
          .encode("latin-1"))
    write(site / "pkg_b/bogus.py", "# coding: no-such-codec\n" + fn("bogus", "Never decoded at all.", 9))
    write(site / "pkg_b/broken.py", "def broken(:\n    pass\n")
    monkeypatch.setattr(corpus, "stdlib_root", lambda: std)
    monkeypatch.setattr(corpus, "site_roots", lambda: [site])
    return std, site


def samples(out: Path, split: str) -> list[CodeSample]:
    found = []
    for shard in sorted((out / split).glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar:
                for line in tar.extractfile(member).read().splitlines():
                    found.append(CodeSample.from_json(json.loads(line)["json"]))
    return found


def build(out: Path, **kw) -> dict:
    kw = {"val_fraction": 0.3, "max_per_file": 3, "workers": 1, **kw}
    return CodeSampleData(CodeSampleConfig(**kw)).build(out)


def test_splits_filters_and_dedup(roots, tmp_path):
    info = build(tmp_path / "out")
    got = {s: samples(tmp_path / "out", s) for s in ("train", "validation", "test")}
    assert info["functions"] == {s: len(v) for s, v in got.items()}
    assert json.loads((tmp_path / "out" / "info.json").read_text())["functions"] == info["functions"]

    test = {s.name: s for s in got["test"]}
    assert set(test) == {"textutil.shared", "textutil.wrap", "json_like.decoder.decode"}
    assert info["skipped"]["test"] == {"short_docstring": 1, "short_body": 1}
    assert info["dropped"]["test"] == {"duplicate_docstring": 1}                     # wrap_again: same query
    assert test["textutil.wrap"].docstring == "Wrap the text in lines."             # the first paragraph only
    assert all(s.origin in ("textutil.py", "json_like/decoder.py") for s in got["test"])

    # by file: no file in two splits; each site file's split is its path hash
    train_files = {s.origin for s in got["train"]}
    val_files = {s.origin for s in got["validation"]}
    assert train_files and val_files and not train_files & val_files
    assert all(path_fraction(o) < 0.3 for o in val_files) and all(path_fraction(o) >= 0.3 for o in train_files)

    site = got["train"] + got["validation"]
    names = {s.name for s in site}
    assert not any("excluded" in s.name or "excluded" in s.code for s in site + got["test"])
    assert "pkg_a.core.shared" not in names and "pkg_a.core.reword" not in names   # test wins
    assert {"pkg_b.cookie.cookie", "pkg_a.core.A.helper"} <= names and "pkg_a.core.B.helper" not in names
    assert {s.name for s in site if s.origin == "pkg_a/capped.py"} == {"pkg_a.capped.c0", "pkg_a.capped.c1",
                                                                        "pkg_a.capped.c2"}   # max_per_file
    assert next(s for s in site if s.name == "pkg_b.cookie.cookie").docstring == "Caf\xe9 with a cookie."
    assert len([s for s in site if s.origin.startswith("pkg_c/")]) == 24

    total = {}
    for split in ("train", "validation"):
        for reason, n in {**info["skipped"][split], **info["dropped"][split]}.items():
            total[reason] = total.get(reason, 0) + n
    assert total == {"encoding": 2, "syntax": 1, "duplicate_of_test": 1, "docstring_of_test": 1, "duplicate": 1,
                     "file_cap": 2}
    assert info["errors"] == [] and info["files_read"]["test"] == 2
    assert info["files_read"]["train"] + info["files_read"]["validation"] == 18     # 12 + core, capped, 4 pkg_b
    assert info["sources"]["site_packages_files"] == 18 and info["sources"]["python"]
    assert "PSF" in info["licence"] and info["extraction"]["functions_per_second"] > 0


def test_rebuilds_are_byte_identical_whatever_the_workers(roots, tmp_path):
    build(tmp_path / "a", workers=1)
    build(tmp_path / "b", workers=2)
    shards = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.tar"))
    assert {p.parts[0] for p in shards} == {"train", "validation", "test"}
    assert shards == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.tar"))
    for p in shards:
        assert (tmp_path / "a" / p).read_bytes() == (tmp_path / "b" / p).read_bytes(), p


def test_caps_and_the_command_line(roots, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["data", "build", "code-sample", "max_train=5", "max_validation=2", "workers=1",
                 "val_fraction=0.3", "max_package_share=1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    info = json.loads((out / "info.json").read_text())
    assert info["functions"]["train"] == 5 and info["functions"]["validation"] == 2
    assert f"built code-sample in {out}" in printed and "'test': 3" in printed
    # a package may fill at most max_package_share of a split's cap
    info = build(tmp_path / "share", max_train=10, max_package_share=0.5, max_per_file=10)
    assert info["functions"]["train"] <= 10 and info["dropped"]["train"].get("package_cap", 0) > 0


def test_helpers():
    assert corpus.first_paragraph("Line one\n  continues.\n\nSecond paragraph.") == "Line one continues."
    assert corpus.normalised_docstring("Wrap the  TEXT.") == "wrap the text"
    assert corpus.module_name("pkg/__init__.py") == "pkg" and corpus.module_name("a/b.py") == "a.b"
    (s,) = functions("def f(a,\n      b=(1,\n         2)):\n    c = a\n    return c\n")
    assert corpus.body_lines(s) == 2                                          # the header spans three lines
    with pytest.raises(SkippedFunction, match="cannot decode"):
        corpus.read_source(b"x = '\xe9'\n")
    assert corpus.read_source(b"\xef\xbb\xbfx = 1\n") == "x = 1\n"                    # a BOM


def test_a_front_end_failure_costs_one_file(roots, tmp_path, monkeypatch):
    from modalzoo.modalities.code import python

    working = python.functions

    def flaky(text, origin="", need_docstring=False):
        if origin == "json_like/decoder.py":
            raise RecursionError("too deep for the walker")
        yield from working(text, origin, need_docstring)

    monkeypatch.setattr(python, "functions", flaky)
    info = build(tmp_path / "out")
    assert info["skipped"]["test"]["error"] == 1 and "RecursionError" in info["errors"][0]
    assert info["functions"]["test"] == 2 and info["functions"]["train"] > 0
