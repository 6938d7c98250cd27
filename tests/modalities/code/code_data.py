"""Hand-written Python functions as code samples and shards for the code tests, and a small byte-level BPE
trained on them (deterministic for these inputs: one process trains it once per test module)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from modalzoo.datasets.shards import ShardWriter
from modalzoo.modalities.code.python import functions
from modalzoo.modalities.code.sample import CodeSample
from modalzoo.registry import TOKENIZERS

SOURCE = '''
def max_of(a, b):
    """Return the larger of two numbers."""
    x = 0
    if b > a:
        x = b
    else:
        x = a
    return x


def total(items, start=0):
    """Add up the items, beginning with start."""
    acc = start
    for item in items:
        acc = acc + item
    return acc


def scale_all(values, factor):
    """Multiply every value by the factor and return the list."""
    out = []
    for v in values:
        scaled = v * factor
        out.append(scaled)
    return out


def first_word(text):
    """Return the first word of a text, or an empty string."""
    words = text.split()
    if not words:
        return ""
    word = words[0]
    return word.strip(".,")
'''


def samples(copies: int = 1) -> list[CodeSample]:
    found = [s for s in functions(SOURCE, "code_data.py", need_docstring=True) if isinstance(s, CodeSample)]
    assert len(found) == 4, found
    return found * copies


@lru_cache(maxsize=1)
def tokenizer():
    texts = [s.docstring + "\n" + " ".join(s.leaves()) for s in samples()] * 20
    return TOKENIZERS.build({"name": "bytelevel_bpe", "vocab_size": 400, "min_frequency": 1}).train(texts)


def write(root: Path, train: int = 10, validation: int = 2, extra: dict | None = None) -> Path:
    """Shards of the samples repeated (``train``/``validation`` copies of the four); ``extra`` {split: [raw]}
    adds raw members (bad samples)."""
    for split, copies in (("train", train), ("validation", validation)):
        w = ShardWriter(root, split, max_count=50)
        items = [s.to_json() for s in samples(copies)] + list((extra or {}).get(split, []))
        for i, raw in enumerate(items):
            w.write({"__key__": f"{i:06d}", "json": raw})
        w.close()
    return root
