"""`modalzoo data pack-text`: the user's own .txt / .jsonl corpora -> webdataset text shards.

Streams line by line, so memory stays constant whatever the corpus size (a tar member holds up to
``docs_per_member`` documents, a few MB at most). Documents are routed to the validation split by a hash of
their text, so the split is stable when files are re-packed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

from ...datasets.shards import SAMPLES_PER_MEMBER, ShardWriter
from ...errors import ModalzooError
from ...registry import PACKERS


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
              field: str = "text", val_fraction: float = 0.0, docs_per_shard: int = 10_000,
              docs_per_member: int = SAMPLES_PER_MEMBER) -> dict[str, int]:
    from tqdm import tqdm

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
                    writers[split] = ShardWriter(out, split, max_count=docs_per_shard, per_member=docs_per_member)
                writers[split].write({"__key__": f"{counts[split]:09d}", "txt": doc})
                counts[split] += 1
    finally:
        for w in writers.values():
            w.close()
    return counts


@dataclasses.dataclass
class PackTextConfig:
    """The `data pack-text` flags (metadata "help": their help; the option `field` is why this module says
    dataclasses.field)."""
    per: Literal["block", "line"] = dataclasses.field(default="block", metadata={"help": ".txt: one document per ..."})
    field: str = dataclasses.field(default="text", metadata={"help": ".jsonl: the field holding the text"})
    val_fraction: float = dataclasses.field(default=0.0, metadata={"help": "documents routed to validation/"})


@PACKERS.register("pack-text")
class PackText:
    """Pack .txt (a document per blank-line block, or per line) and .jsonl (a 'text' field) files into
    webdataset text shards, streaming."""

    Config = PackTextConfig
    inputs = "files"
    example = "modalzoo data pack-text corpus/*.txt notes.jsonl --out data/my-corpus --val-fraction 0.01"

    def __init__(self, cfg: PackTextConfig):
        self.cfg = cfg

    def pack(self, sources: list[Path], out: Path) -> str:
        counts = pack_text(sources, out, per=self.cfg.per, field=self.cfg.field, val_fraction=self.cfg.val_fraction)
        return f"packed {counts['train']} train / {counts['validation']} validation documents into {out}"
