"""`modalzoo data build text-sample`, built offline from what is installed (nothing is downloaded): the
docstrings of the Python standard library and site-packages — real English technical prose — split into
train/validation *by source file* so no file leaks across the split. Each document records the top-level
package it comes from (``torch``, ``email``, ``os``): the label of the docstring package probe
(`probe.py`); info.json holds each split's package histogram."""

from __future__ import annotations

import ast
import hashlib
import json
import random
import sys
import sysconfig
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ...datasets.shards import SAMPLES_PER_MEMBER, ShardWriter
from ...registry import SAMPLE_DATA


def source_roots() -> list[Path]:
    """The standard library and site-packages folders of this interpreter (purelib and platlib are often one)."""
    paths = sysconfig.get_paths()
    return sorted({Path(paths[k]) for k in ("stdlib", "purelib", "platlib")})


def python_sources(roots: list[Path] | None = None) -> list[Path]:
    """Every .py file under ``roots`` (default `source_roots`), sorted."""
    files = set()
    for root in roots if roots is not None else source_roots():
        if root.exists():
            files.update(p for p in root.rglob("*.py") if "test" not in p.parts and p.is_file())
    return sorted(files)


SITE_FOLDERS = ("site-packages", "dist-packages")


def package_of(path: Path, roots: list[Path]) -> str:
    """The top-level package of a source file: the first part of its path relative to the deepest root
    holding it (`torch/nn/modules/linear.py` -> ``torch``; a module at the root, `os.py` -> ``os``).

    A site-packages folder inside the stdlib folder (the base interpreter's, next to a venv's; or every
    one, without a venv) is a root too: `site-packages` is no package."""
    holding = [r for r in roots if path.is_relative_to(r)]
    if not holding:
        raise ValueError(f"{path} is under none of {[str(r) for r in roots]}")
    parts = path.relative_to(max(holding, key=lambda r: len(r.parts))).parts
    while len(parts) > 1 and parts[0] in SITE_FOLDERS:
        parts = parts[1:]
    return parts[0] if len(parts) > 1 else Path(parts[0]).stem


def docstrings(path: Path, min_chars: int) -> Iterator[str]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
        return
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc and len(doc) >= min_chars and _mostly_prose(doc):
                yield doc


def _mostly_prose(text: str) -> bool:
    letters = sum(c.isalpha() or c.isspace() for c in text)
    return letters / len(text) > 0.75 and text.isascii()


@dataclass
class TextSampleConfig:
    max_mb: float = 6.0              # stop once this much text is collected
    val_fraction: float = 0.05       # of source files (not documents) held out
    min_chars: int = 80
    docs_per_shard: int = 1000
    docs_per_member: int = SAMPLES_PER_MEMBER   # documents per tar member; 1: a KEY.txt member each (old layout)
    # at most this share of the budget from one source file: a single heavily documented module (pandas'
    # docstring-generated frame.py) would otherwise fill a small sample, or its validation split, alone
    max_file_share: float = 0.02
    seed: int = 0


@SAMPLE_DATA.register("text-sample")
class TextSample:
    """Docstrings of the installed stdlib + site-packages as webdataset shards (train/validation)."""

    Config = TextSampleConfig

    def __init__(self, cfg: TextSampleConfig):
        self.cfg = cfg

    def build(self, out: Path) -> dict:
        from tqdm import tqdm

        cfg = self.cfg
        roots = source_roots()
        files = python_sources(roots)
        random.Random(cfg.seed).shuffle(files)
        budget, seen = int(cfg.max_mb * 2**20), set()
        counts = {"train": 0, "validation": 0}
        chars = {"train": 0, "validation": 0}
        packages: dict[str, Counter] = {"train": Counter(), "validation": Counter()}
        writers = {s: ShardWriter(out, s, max_count=cfg.docs_per_shard, per_member=cfg.docs_per_member)
                   for s in counts}
        bar = tqdm(total=budget, unit="B", unit_scale=True, desc="docstrings", disable=None)
        try:
            for path in files:
                held_out = int(hashlib.sha1(path.name.encode() + str(path.parent.name).encode())
                               .hexdigest(), 16) % 10_000 < cfg.val_fraction * 10_000
                split = "validation" if held_out else "train"
                package = package_of(path, roots)
                from_file = 0
                for i, doc in enumerate(docstrings(path, cfg.min_chars)):
                    if from_file and from_file + len(doc) > cfg.max_file_share * budget:
                        break
                    digest = hashlib.sha1(doc.encode()).digest()
                    if digest in seen:
                        continue
                    seen.add(digest)
                    key = f"{path.stem}-{hashlib.sha1(str(path).encode()).hexdigest()[:8]}-{i}"
                    writers[split].write({"__key__": key.replace(".", "_"), "txt": doc, "package": package})
                    counts[split] += 1
                    packages[split][package] += 1
                    chars[split] += len(doc)
                    from_file += len(doc)
                    bar.update(len(doc))
                if sum(chars.values()) >= budget:
                    break
        finally:
            bar.close()
            for w in writers.values():
                w.close()
        info = {"name": "text-sample", "documents": counts, "characters": chars,
                "packages": {split: dict(c.most_common()) for split, c in packages.items()},
                "python": sys.version.split()[0], "config": vars(cfg)}
        (out / "info.json").write_text(json.dumps(info, indent=2))
        return info
