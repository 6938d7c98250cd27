"""The `text` dataset: webdataset shards of text documents (``KEY.txt`` members, or many documents per
``N.samples.jsonl`` member), tokenized in loader workers and packed (block-diagonal attention) or padded
into batches. A preset: the shard dataset with one `TextField`."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...datasets.dataset import ShardDataConfig, ShardDataset
from ...registry import DATASETS
from .fields import TextField


@dataclass
class TextDataConfig(ShardDataConfig):
    path: str = "data/text-sample"
    train_split: str = "train"
    val_split: str = "validation"
    seq_len: int = 128
    packing: bool = True             # several documents per row, block-diagonal mask; False = one per row
    shuffle_buffer: int = 2000
    num_workers: int = 1
    tokenizer: dict = field(default_factory=lambda: {"name": "wordpiece"})
    tokenizer_train_docs: int = 100_000  # documents read to train the tokenizer when none is given


@DATASETS.register("text")
class TextData(ShardDataset):
    """Text documents from webdataset shards (`modalzoo data build text-sample` or `data pack-text`)."""

    Config = TextDataConfig
    build_hint = "modalzoo data build text-sample"

    def make_fields(self) -> dict:
        cfg = self.cfg
        return {"text": TextField(cfg.tokenizer, cfg.seq_len, cfg.packing, cfg.tokenizer_train_docs)}
