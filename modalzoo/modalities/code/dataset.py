"""The `code` dataset: webdataset shards of functions with their docstrings and data flow (`data build code-sample`,
`data pack-code`), laid out as GraphCodeBERT's input. A sample that is not a valid code sample is skipped and
counted."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...datasets.dataset import ShardDataConfig, ShardDataset
from ...registry import DATASETS
from .fields import CodeField


@dataclass
class CodeDataConfig(ShardDataConfig):
    path: str = "data/code-sample"
    train_split: str = "train"
    val_split: str = "validation"
    seq_len: int = 256               # tokens per row: specials + comment + code + nodes
    max_nodes: int = 64              # data-flow node slots (GraphCodeBERT: 128 in pretraining, 64 fine-tuning)
    comment_len: int = 64            # docstring subwords at most
    parts: list[str] = field(default_factory=lambda: ["comment", "code", "nodes"])
    shuffle_buffer: int = 2000
    num_workers: int = 1
    tokenizer: dict = field(default_factory=lambda: {"name": "bytelevel_bpe", "vocab_size": 8000})
    tokenizer_train_docs: int = 50_000

    def __post_init__(self):
        unknown = sorted(set(self.parts) - {"comment", "code", "nodes"})
        if unknown or not self.parts:
            raise ValueError(f"parts must be a non-empty subset of comment, code, nodes; got {self.parts}")
        if self.seq_len < self.max_nodes + 8:
            raise ValueError(f"seq_len={self.seq_len} leaves too little room for code next to "
                             f"max_nodes={self.max_nodes}")


@DATASETS.register("code")
class CodeData(ShardDataset):
    """Functions with docstrings and data flow, as GraphCodeBERT reads them."""

    Config = CodeDataConfig
    build_hint = "modalzoo data build code-sample"

    def make_fields(self) -> dict:
        cfg = self.cfg
        return {"code": CodeField(cfg.tokenizer, cfg.seq_len, cfg.max_nodes, cfg.comment_len,
                                  cfg.tokenizer_train_docs, tuple(cfg.parts))}
