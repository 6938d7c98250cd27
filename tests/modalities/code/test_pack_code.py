"""`data pack-code` (modalzoo.modalities.code.pack): a user's repository -> code shards, bad files skipped and
counted by reason, a missing tree-sitter grammar said once, OUT.partial renamed when complete, streamed."""

from __future__ import annotations

import json
import tarfile
import warnings
from pathlib import Path

import pytest

from modalzoo.cli import main
from modalzoo.errors import ModalzooError
from modalzoo.modalities.code import languages
from modalzoo.modalities.code import pack as pack_module
from modalzoo.modalities.code.pack import PackCodeConfig, pack_code
from modalzoo.modalities.code.sample import CodeSample

GOOD = '''
def scale(value, factor):
    """Scale a value by a factor.

    Only the first paragraph is kept.
    """
    result = value * factor
    return result


def undocumented(a):
    b = a + 1
    return b


class Box:
    def put(self, item):
        """Put an item in the box."""
        items = self.items + [item]
        return items
'''


def write(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "repo"
    write(root / "good.py", GOOD)
    write(root / "pkg/copy.py", GOOD.split("\n\ndef undocumented")[0])            # scale again: a duplicate
    for i in range(8):
        write(root / f"pkg/mod{i}.py", f'def f{i}(x):\n    """Return x plus {i}."""\n    y = x + {i}\n    return y\n')
    write(root / "bad.py", "def broken(:\n    pass\n")
    write(root / "latin.py", 'def cafe(x):\n    """Caf\xe9."""\n    y = x\n    return y\n'.encode("latin-1"))
    write(root / "app.js", "/** Add one. */\nfunction add(a) { const b = a + 1; return b; }\n")
    write(root / "notes.txt", "not code")
    write(root / "README.md", "# readme")
    for skipped in (".git/hooks/x.py", "node_modules/lib/index.js", ".hidden/x.py", "vendor/x.py",
                    "_vendor/x.py", "env/lib/site-packages/x.py"):
        write(root / skipped, 'def never(x):\n    """Never read."""\n    y = x\n    return y\n')
    return root


def no_grammar(monkeypatch):
    """Tree-sitter languages as on an install without the [code] extra (whatever this machine has)."""
    real = languages.functions

    def functions(text, language, origin="", need_docstring=False):
        if language != "python":
            raise ModalzooError(f"{language} needs the tree-sitter grammars: pip install 'modalzoo[code]'")
        yield from real(text, language, origin, need_docstring)

    monkeypatch.setattr(languages, "functions", functions)


def read(out: Path, split: str) -> list[CodeSample]:
    found = []
    for shard in sorted((out / split).glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar:
                for line in tar.extractfile(member).read().splitlines():
                    found.append(CodeSample.from_json(json.loads(line)["json"]))
    return found


def test_a_repository_with_bad_files(repo, tmp_path, monkeypatch, capsys):
    no_grammar(monkeypatch)
    out = tmp_path / "out"
    info = pack_code([repo], out, PackCodeConfig(validation_fraction=0.0))
    assert out.is_dir() and not (tmp_path / "out.partial").exists()
    assert json.loads((out / "info.json").read_text()) == info
    samples = read(out, "train")
    assert info["functions"] == {"train": len(samples), "validation": 0}
    names = {s.name for s in samples}
    assert names == {"good.scale", "good.Box.put", *(f"pkg.mod{i}.f{i}" for i in range(8))}
    scale = next(s for s in samples if s.name == "good.scale")
    assert scale.docstring == "Scale a value by a factor." and scale.origin == "repo/good.py"
    assert not any("never" in s.code for s in samples)
    assert info["skipped"] == {"syntax": 1, "encoding": 1, "no_docstring": 1, "grammar_missing": 1}
    assert info["duplicates_dropped"] == 1
    assert info["files_read"] == {"python": 11}
    assert info["ignored_files"] == {"not_code": 2}
    assert "modalzoo[code]" in info["missing_grammars"]["javascript"]
    assert "repo/latin.py" in info["skipped_examples"]["encoding"]
    err = capsys.readouterr().err
    assert err.count("modalzoo[code]") == 1                                     # said once


def test_missing_grammar_is_said_once_per_language_and_the_rest_is_packed(repo, tmp_path, monkeypatch):
    no_grammar(monkeypatch)
    for i in range(3):
        write(repo / f"web/more{i}.js", "function f(a) { return a; }\n")
    write(repo / "Main.java", "class Main { int f(int a) { return a; } }\n")
    info = pack_code([repo], tmp_path / "out", PackCodeConfig(languages="python,javascript,java"))
    assert info["skipped"]["grammar_missing"] == 5                              # 4 .js + 1 .java files
    assert set(info["missing_grammars"]) == {"javascript", "java"}
    message = pack_module.PackCode(PackCodeConfig()).pack([repo], tmp_path / "again")
    assert message.count("modalzoo[code]") == 2 and "packed 10 functions" in message


def test_languages_all_functions_and_refusals(repo, tmp_path, monkeypatch):
    no_grammar(monkeypatch)
    info = pack_code([repo], tmp_path / "py", PackCodeConfig(languages="python", need_docstring=False,
                                                              validation_fraction=0.0))
    assert "good.undocumented" in {s.name for s in read(tmp_path / "py", "train")}
    assert info["ignored_files"] == {"not_code": 2, "javascript: not requested": 1}
    assert "grammar_missing" not in info["skipped"] and "no_docstring" not in info["skipped"]
    with pytest.raises(ModalzooError, match="did you mean 'python'"):
        pack_code([repo], tmp_path / "x", PackCodeConfig(languages="pyton"))
    with pytest.raises(ModalzooError, match="not empty"):
        pack_code([repo], tmp_path / "py", PackCodeConfig())
    with pytest.raises(ModalzooError, match="no such file"):
        pack_code([tmp_path / "gone"], tmp_path / "y", PackCodeConfig())
    write(tmp_path / "empty/notes.txt", "nothing")
    with pytest.raises(ModalzooError, match="no function to train on"):
        pack_code([tmp_path / "empty"], tmp_path / "z", PackCodeConfig())
    assert not (tmp_path / "z").exists() and not (tmp_path / "z.partial").exists()


def test_split_by_file_and_stable(repo, tmp_path, monkeypatch):
    no_grammar(monkeypatch)
    a = pack_code([repo], tmp_path / "a", PackCodeConfig(validation_fraction=0.5))
    train, val = read(tmp_path / "a", "train"), read(tmp_path / "a", "validation")
    assert train and val and not {s.origin for s in train} & {s.origin for s in val}
    assert a["functions"] == {"train": len(train), "validation": len(val)}
    pack_code([repo], tmp_path / "b", PackCodeConfig(validation_fraction=0.5))
    shards = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.tar"))
    assert shards == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.tar"))
    for p in shards:                                                            # same files: same bytes
        assert (tmp_path / "a" / p).read_bytes() == (tmp_path / "b" / p).read_bytes()
    c = pack_code([repo / "good.py", repo], tmp_path / "c", PackCodeConfig(validation_fraction=0.5))
    assert sum(c["functions"].values()) == sum(a["functions"].values())        # good.py given twice: deduplicated
    assert c["duplicates_dropped"] == a["duplicates_dropped"] + 2


def test_an_interrupted_pack_leaves_no_output_and_samples_stream(repo, tmp_path, monkeypatch):
    no_grammar(monkeypatch)
    events = []
    real_files, real_write = pack_module.source_files, pack_module._Output.write

    def files(sources):
        for path, origin in real_files(sources):
            events.append("file")
            yield path, origin

    def write_sample(self, split, sample):
        events.append("sample")
        real_write(self, split, sample)

    monkeypatch.setattr(pack_module, "source_files", files)
    monkeypatch.setattr(pack_module._Output, "write", write_sample)
    pack_code([repo], tmp_path / "out", PackCodeConfig())
    first_sample, last_file = events.index("sample"), len(events) - 1 - events[::-1].index("file")
    assert first_sample < last_file                       # written while files are still being read

    def interrupt(sources):
        yield from list(real_files(sources))[:3]
        raise KeyboardInterrupt

    monkeypatch.setattr(pack_module, "source_files", interrupt)
    with pytest.raises(KeyboardInterrupt):
        pack_code([repo], tmp_path / "cut", PackCodeConfig())
    assert not (tmp_path / "cut").exists() and not (tmp_path / "cut.partial").exists()


def test_command_line(repo, tmp_path, monkeypatch, capsys):
    no_grammar(monkeypatch)
    out = tmp_path / "cli"
    assert main(["data", "pack-code", str(repo), "--out", str(out), "--languages", "python",
                 "--need-docstring", "false", "--validation-fraction", "0"]) == 0
    printed = capsys.readouterr().out
    assert "packed 11 functions (11 train / 0 validation)" in printed and "syntax: 1" in printed
    assert main(["data", "pack-code", str(repo), "--out", str(tmp_path / "x"), "--languages", "cobol"]) == 2
    assert "unknown language 'cobol'" in capsys.readouterr().err


def test_a_front_end_failure_costs_one_file(repo, tmp_path, monkeypatch):
    no_grammar(monkeypatch)
    working = languages.functions

    def flaky(text, language, origin="", need_docstring=False):
        if origin.endswith("mod3.py"):
            raise RecursionError("too deep for the walker")
        yield from working(text, language, origin, need_docstring)

    monkeypatch.setattr(languages, "functions", flaky)
    write(repo / "escapes.py", 'def esc(x):\n    """Return a path."""\n    y = x + "\\d"\n    return y\n')
    with warnings.catch_warnings():
        warnings.simplefilter("error")                          # no SyntaxWarning escapes the pack
        info = pack_code([repo], tmp_path / "out", PackCodeConfig(languages="python"))
    assert info["skipped"]["error"] == 1 and "RecursionError" in info["skipped_examples"]["error"]
    assert sum(info["functions"].values()) == 10                               # 9 of the 10 + escapes.esc
