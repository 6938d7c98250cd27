"""`modalzoo data pack-text`: the user's own .txt / .jsonl corpora -> webdataset text shards.

Streams line by line, so memory stays constant whatever the corpus size. Documents are routed to the
validation split by a hash of their text, so the split is stable when files are re-packed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

from tqdm import tqdm

from ...datasets.shards import ShardWriter
from ...errors import ModalzooError


def txt_documents(path: Path, per: Literal["block", "line"]) -> Iterator[str]:
    """One document per blank-line-separated block, or one per non-empty line."""
    block: list[str] = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if per == "line":
                if line.strip():
                    yield line.strip()
            elif line.strip():
                block.append(line)
            elif block:
                yield "\n".join(block)
                block = []
    if block:
        yield "\n".join(block)


def jsonl_documents(path: Path, field: str) -> Iterator[str]:
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ModalzooError(f"{path}:{number}: not valid JSON ({err.msg})") from None
            text = record.get(field) if isinstance(record, dict) else None
            if not isinstance(text, str):
                raise ModalzooError(f"{path}:{number}: no string field '{field}' (keys: {list(record)[:8]})")
            if text.strip():
                yield text


def pack_text(files: Iterable[str | Path], out: str | Path, per: Literal["block", "line"] = "block",
              field: str = "text", val_fraction: float = 0.0, docs_per_shard: int = 10_000) -> dict[str, int]:
    out = Path(out)
    counts = {"train": 0, "validation": 0}
    writers: dict[str, ShardWriter] = {}
    try:
        for file in map(Path, files):
            if not file.exists():
                raise ModalzooError(f"no such file: {file}")
            if file.suffix == ".jsonl":
                docs = jsonl_documents(file, field)
            elif file.suffix == ".txt":
                docs = txt_documents(file, per)
            else:
                raise ModalzooError(f"{file}: expected a .txt or .jsonl file")
            for doc in tqdm(docs, desc=file.name, unit=" docs", disable=None):
                digest = hashlib.sha1(doc.encode()).hexdigest()
                split = "validation" if int(digest, 16) % 10_000 < val_fraction * 10_000 else "train"
                if split not in writers:
                    writers[split] = ShardWriter(out, split, max_count=docs_per_shard)
                writers[split].write({"__key__": f"{counts[split]:09d}", "txt": doc})
                counts[split] += 1
    finally:
        for w in writers.values():
            w.close()
    return counts
