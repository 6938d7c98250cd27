"""Offline sample data sets, built from what is installed (nothing is downloaded).

`text-sample`: the docstrings of the Python standard library and site-packages — real English technical
prose — split into train/validation *by source file* so no file leaks across the split.

`digits`: scikit-learn's bundled handwritten digits (1,797 real 8x8 scans) as RGB PNGs with captions,
class ids and zero-shot prompt templates, split train/test stratified by class.
"""

from __future__ import annotations

import ast
import hashlib
import json
import random
import sys
import sysconfig
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ..registry import SAMPLE_DATA
from .shards import ShardWriter


def python_sources() -> list[Path]:
    """Every .py file of the standard library and the site-packages of this interpreter, sorted."""
    roots = {Path(sysconfig.get_paths()["stdlib"]), Path(sysconfig.get_paths()["purelib"]),
             Path(sysconfig.get_paths()["platlib"])}
    files = set()
    for root in roots:
        if root.exists():
            files.update(p for p in root.rglob("*.py") if "test" not in p.parts and p.is_file())
    return sorted(files)


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
    seed: int = 0


@SAMPLE_DATA.register("text-sample")
class TextSample:
    """Docstrings of the installed stdlib + site-packages as webdataset shards (train/validation)."""

    Config = TextSampleConfig

    def __init__(self, cfg: TextSampleConfig):
        self.cfg = cfg

    def build(self, out: Path) -> dict:
        cfg = self.cfg
        files = python_sources()
        random.Random(cfg.seed).shuffle(files)
        budget, seen = int(cfg.max_mb * 2**20), set()
        counts = {"train": 0, "validation": 0}
        chars = {"train": 0, "validation": 0}
        writers = {s: ShardWriter(out, s, max_count=cfg.docs_per_shard) for s in counts}
        bar = tqdm(total=budget, unit="B", unit_scale=True, desc="docstrings", disable=None)
        try:
            for path in files:
                held_out = int(hashlib.sha1(path.name.encode() + str(path.parent.name).encode())
                               .hexdigest(), 16) % 10_000 < cfg.val_fraction * 10_000
                split = "validation" if held_out else "train"
                for i, doc in enumerate(docstrings(path, cfg.min_chars)):
                    digest = hashlib.sha1(doc.encode()).digest()
                    if digest in seen:
                        continue
                    seen.add(digest)
                    key = f"{path.stem}-{hashlib.sha1(str(path).encode()).hexdigest()[:8]}-{i}"
                    writers[split].write({"__key__": key.replace(".", "_"), "txt": doc})
                    counts[split] += 1
                    chars[split] += len(doc)
                    bar.update(len(doc))
                if sum(chars.values()) >= budget:
                    break
        finally:
            bar.close()
            for w in writers.values():
                w.close()
        info = {"name": "text-sample", "documents": counts, "characters": chars,
                "python": sys.version.split()[0], "config": vars(cfg)}
        (out / "info.json").write_text(json.dumps(info, indent=2))
        return info


DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
DIGIT_CAPTIONS = [                   # {w}: the digit in words, {n}: as a numeral
    "a photo of the number {w}.", "handwritten {n}", "the digit {w}", "a scanned image of a {w}",
    "a handwritten {w}.", "the number {n}.", "a low resolution image of the digit {n}.",
    "a blurry picture of a handwritten {w}.", "an image of the numeral {n}", "a drawing of the digit {w}.",
]
DIGIT_TEMPLATES = ["a photo of the number {}.", "the digit {}.", "a handwritten {}.", "a scanned image of a {}.",
                   "a blurry picture of a handwritten {}."]


@dataclass
class DigitsConfig:
    size: int = 32                   # the 8x8 originals are upsampled (bicubic) to size x size
    test_fraction: float = 0.2       # stratified by class
    images_per_shard: int = 100
    seed: int = 0


@SAMPLE_DATA.register("digits")
class Digits:
    """scikit-learn's 1,797 handwritten 8x8 digits as RGB PNGs with captions and class ids (train/test)."""

    Config = DigitsConfig

    def __init__(self, cfg: DigitsConfig):
        if cfg.size < 8:
            raise ValueError(f"size must be at least 8 (the originals are 8x8), got {cfg.size}")
        if not 0 < cfg.test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {cfg.test_fraction}")
        self.cfg = cfg

    def build(self, out: Path) -> dict:
        import io

        import numpy as np
        from PIL import Image
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        cfg, out = self.cfg, Path(out)
        digits = load_digits()                       # bundled with scikit-learn: nothing is downloaded
        images, labels = digits.images, digits.target
        train_idx, test_idx = train_test_split(np.arange(len(labels)), test_size=cfg.test_fraction,
                                               stratify=labels, random_state=cfg.seed)
        rng = random.Random(cfg.seed)
        counts = {}
        for split, indices in (("train", sorted(train_idx)), ("test", sorted(test_idx))):
            indices = list(indices)
            rng.shuffle(indices)                     # classes mixed within every shard
            with ShardWriter(out, split, max_count=cfg.images_per_shard) as writer:
                for i in indices:
                    grey = Image.fromarray((images[i] * (255 / 16)).round().astype(np.uint8), "L")
                    rgb = grey.resize((cfg.size, cfg.size), Image.Resampling.BICUBIC).convert("RGB")
                    png = io.BytesIO()
                    rgb.save(png, format="PNG")
                    label = int(labels[i])
                    caption = rng.choice(DIGIT_CAPTIONS).format(w=DIGIT_WORDS[label], n=label)
                    writer.write({"__key__": f"digit-{i:04d}", "png": png.getvalue(), "txt": caption,
                                  "cls": str(label)})
            counts[split] = len(indices)
        (out / "classes.json").write_text(json.dumps({"classes": DIGIT_WORDS, "templates": DIGIT_TEMPLATES},
                                                     indent=2))
        info = {"name": "digits", "images": counts, "classes": len(DIGIT_WORDS), "size": cfg.size,
                "source": "scikit-learn load_digits (UCI optical recognition of handwritten digits, 8x8, "
                          "values 0-16; white ink on black)", "config": vars(cfg)}
        (out / "info.json").write_text(json.dumps(info, indent=2))
        return info
