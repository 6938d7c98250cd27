"""The `text` dataset: webdataset shards of ``KEY.txt`` documents, tokenized in loader workers and
packed (block-diagonal attention) or padded into batches."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ...datasets.packing import SpecialIds, chunk_document, pack, pad_batch, stack
from ...datasets.shards import ShardStream, SkipCounter, list_shards, loader
from ...pretrain_tasks.base import DataContext
from ...registry import DATASETS
from .tokenizers import TextTokenizer, load_or_train


@dataclass
class TextDataConfig:
    path: str = "data/text-sample"
    train_split: str = "train"
    val_split: str = "validation"
    seq_len: int = 128
    packing: bool = True             # several documents per row, block-diagonal mask; False = one per row
    shuffle_buffer: int = 2000
    num_workers: int = 1
    tokenizer: dict = field(default_factory=lambda: {"name": "wordpiece"})
    tokenizer_train_docs: int = 100_000  # documents read to train the tokenizer when none is given


def decode_texts(samples: Iterable[dict], skips: SkipCounter) -> Iterator[str]:
    for sample in samples:
        raw = sample.get("txt")
        try:
            if raw is None:
                raise ValueError(f"sample {sample.get('__key__')} has no .txt")
            text = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
        except (UnicodeDecodeError, ValueError):
            skips.skipped += 1
            continue
        if text.strip():
            yield text


class TextBatcher:
    """Runs in each loader worker: decode, tokenize, chunk, then pack or pad into batches."""

    def __init__(self, tokenizer: TextTokenizer, seq_len: int, packing: bool, batch_size: int, drop_last: bool):
        self.tokenizer, self.seq_len, self.packing = tokenizer, seq_len, packing
        self.batch_size, self.drop_last = batch_size, drop_last
        self.special = SpecialIds(tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id)

    def documents(self, texts: Iterable[str]) -> Iterator[tuple[list[int], list[int]]]:
        for text in texts:
            ids, words = self.tokenizer.encode(text)
            yield from chunk_document(ids, words, self.seq_len, self.special)

    def __call__(self, samples: Iterable[dict], skips: SkipCounter) -> Iterator[dict]:
        docs = self.documents(decode_texts(samples, skips))
        if self.packing:
            rows = pack(docs, self.seq_len, self.special.pad)
            groups = (stack(list(g)) for g in _chunks(rows, self.batch_size, self.drop_last))
        else:
            groups = (pad_batch(list(g), self.special.pad) for g in _chunks(docs, self.batch_size, self.drop_last))
        yield from groups


class Transforms:
    """The targets' batch transforms, applied in order (picklable, for loader workers)."""

    def __init__(self, transforms: list[Callable[..., dict]]):
        self.transforms = transforms

    def __call__(self, batch: dict, generator: torch.Generator) -> dict:
        for fn in self.transforms:
            batch = fn(batch, generator)
        return batch


def _chunks(items: Iterable, size: int, drop_last: bool) -> Iterator[list]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        if len(chunk) < size and drop_last:
            return
        yield chunk


@DATASETS.register("text")
class TextData:
    """Text documents from webdataset shards (`modalzoo data build text-sample` or `data pack-text`)."""

    Config = TextDataConfig
    build_hint = "modalzoo data build text-sample"
    throughput_unit = "tokens"

    def __init__(self, cfg: TextDataConfig):
        self.cfg = cfg
        self.tokenizer: TextTokenizer | None = None

    def shards(self, split: str) -> list[str]:
        return list_shards(self.cfg.path, split, self.build_hint)

    def texts(self, split: str, limit: int | None = None) -> Iterator[str]:
        stream = ShardStream(self.shards(split), decode_texts, shuffle=False, repeat=False)
        return itertools.islice(stream.raw_batches(0, 1, SkipCounter()), limit)

    def prepare(self, run_dir: Path | None) -> DataContext:
        """Load or train the tokenizer (cached beside the shards) and save it as run_dir/tokenizer.json."""
        tok = load_or_train(dict(self.cfg.tokenizer), run_dir, Path(self.cfg.path) / "tokenizers",
                            [self.cfg.tokenizer_train_docs],
                            lambda: self.texts(self.cfg.train_split, self.cfg.tokenizer_train_docs),
                            f"no text documents in {self.cfg.path}/{self.cfg.train_split}")
        self.tokenizer = tok
        return DataContext(tokenizer=tok)

    def loader(self, split: str, batch_size: int, transforms: list, seed: int, train: bool, start: int = 0):
        """Batches of ``split``; ``train`` shuffles and repeats. ``start`` resumes after that many batches."""
        if self.tokenizer is None:
            raise RuntimeError("call prepare() before loader()")
        batcher = TextBatcher(self.tokenizer, self.cfg.seq_len, self.cfg.packing, batch_size, drop_last=train)
        stream = ShardStream(self.shards(self.cfg.train_split if split == "train" else self.cfg.val_split),
                             batcher, Transforms(transforms), seed=seed, shuffle=train,
                             shuffle_buffer=self.cfg.shuffle_buffer, repeat=train, start=start,
                             split_ranks=train)
        return loader(stream, self.cfg.num_workers, seed)

    def tokens_in(self, batch: dict) -> int:
        return int(batch["attention_mask"].sum())
