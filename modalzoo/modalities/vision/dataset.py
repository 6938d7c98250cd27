"""The `image_text` dataset: webdataset shards of ``KEY.jpg|jpeg|png`` images with an optional ``KEY.txt``
caption and an optional ``KEY.cls`` integer class id (CLIP, MAE, zero-shot evaluation). A preset: the shard
dataset with an `ImageField`, a `ClassField` and (``captions``) a `CaptionField`.

A corrupt or truncated image, caption or class id is skipped and counted (the trainer reports it as
``skipped_samples``). Batches: ``pixel_values`` float32 [B, 3, S, S] normalised with ``mean``/``std``;
``class_id`` long [B] (-1 where a sample has no ``.cls``); with ``captions``: ``input_ids`` long
[B, seq_len] (bos, caption tokens, eos, right-padded with the pad id) and ``attention_mask`` bool [B, seq_len].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ...datasets.classes import ClassField
from ...datasets.dataset import ShardDataConfig, ShardDataset
from ...registry import DATASETS
from ..text.fields import CaptionField
from .fields import CLIP_MEAN, CLIP_STD, DEFAULT_TEMPLATES, ImageField


@dataclass
class ImageTextDataConfig(ShardDataConfig):
    path: str = "data/digits"
    train_split: str = "train"
    val_split: str = "test"
    image_size: int = 32
    mean: list[float] = field(default_factory=lambda: list(CLIP_MEAN))
    std: list[float] = field(default_factory=lambda: list(CLIP_STD))
    augment: Literal["none", "light"] = "none"   # light: random resized crop (0.8-1) + rotation (+-10 deg)
    # Let libjpeg decode large JPEGs at a reduced scale (>= 2x image_size): several times faster on photos,
    # but then pixels differ slightly from what an export's transformers image processor computes.
    jpeg_draft: bool = False
    num_workers: int = 1
    shuffle_buffer: int = 1000
    captions: bool = True            # tokenize KEY.txt into input_ids / attention_mask
    seq_len: int = 32                # caption length in tokens, bos and eos included
    tokenizer: dict = field(default_factory=lambda: {"name": "bytelevel_bpe", "vocab_size": 1000})
    tokenizer_train_docs: int = 100_000  # captions read to train the tokenizer when none is given

    def __post_init__(self):
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"mean and std need 3 values (RGB), got {self.mean} and {self.std}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std}")
        if self.image_size < 1:
            raise ValueError(f"image_size must be positive, got {self.image_size}")
        if self.captions and self.seq_len < 2:
            raise ValueError(f"seq_len must leave room for bos and eos, got {self.seq_len}")


@DATASETS.register("image_text")
class ImageTextData(ShardDataset):
    """Images with optional captions and class ids from webdataset shards (`data build digits`, `data pack-images`)."""

    Config = ImageTextDataConfig
    build_hint = "modalzoo data build digits"

    def make_fields(self) -> dict:
        cfg = self.cfg
        fields = {"image": ImageField(cfg.image_size, cfg.mean, cfg.std, cfg.augment, cfg.jpeg_draft),
                  "class": ClassField(DEFAULT_TEMPLATES)}
        if cfg.captions:
            fields["caption"] = CaptionField(cfg.tokenizer, cfg.seq_len, cfg.tokenizer_train_docs)
        return fields
