"""The `audio` dataset: webdataset shards of ``KEY.flac|wav|ogg`` clips at one sample rate (recorded in the
dataset's info.json), with an optional ``KEY.cls`` class id (``classes.json`` beside the shards: names and
zero-shot prompt templates), an optional ``KEY.txt`` caption (CLAP) and optional units from a label set
(``units=UNITS``: HuBERT). A preset over `AudioField`, `ClassField` and `CaptionField`.

Batches: ``input_values`` float32 [B, T], ``audio_lengths`` long [B], ``class_id`` long [B] (-1: none); with
units ``units`` / ``unit_lengths``; with captions ``input_ids`` / ``attention_mask``. A clip that is not audio,
is truncated, has another sample rate (unless ``resample``) or is shorter than one frame is skipped and counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...datasets.classes import ClassField
from ...datasets.dataset import ShardDataConfig, ShardDataset
from ...registry import DATASETS
from ..text.fields import CaptionField
from .fields import AudioField

DEFAULT_TEMPLATES = ["the sound of {}."]


@dataclass
class AudioDataConfig(ShardDataConfig):
    path: str = "data/spoken-words"
    train_split: str = "train"
    val_split: str = "validation"
    sample_rate: int = 16000
    resample: bool = False           # convert clips of another rate (else: skipped and counted)
    min_samples: int = 400           # shorter clips are skipped: 400 = one 25 ms frame of the waveform front-end
    max_seconds: float | None = 4.0  # longer clips are cropped (random window in training, the start otherwise)
    crop_hop: int = 320              # crops start on this grid (samples): whole front-end frames and label hops
    normalize: bool = False          # per-clip zero mean, unit variance (HuBERT Large, wav2vec2 do_normalize)
    units: str | None = None         # a label set (`modalzoo units ...`): frame-level targets for HuBERT
    batch_seconds: float | None = None   # token budget: padded seconds of audio per batch (None: batch_size clips)
    bucket_buffer: int = 256         # clips sorted together into length buckets when batching by budget
    crop_to_shortest: bool = False   # fairseq's default (pad_audio: false): training batches cropped to their shortest
    num_workers: int = 1
    shuffle_buffer: int = 1000
    captions: bool = False           # tokenize KEY.txt into input_ids / attention_mask (CLAP)
    seq_len: int = 32
    tokenizer: dict = field(default_factory=lambda: {"name": "bytelevel_bpe", "vocab_size": 1000})
    tokenizer_train_docs: int = 100_000

    def __post_init__(self):
        if self.sample_rate < 1000:
            raise ValueError(f"sample_rate must be at least 1000 Hz, got {self.sample_rate}")
        if self.max_seconds is not None and self.max_seconds * self.sample_rate < self.min_samples:
            raise ValueError(f"max_seconds={self.max_seconds} keeps fewer than min_samples={self.min_samples}")
        if self.batch_seconds is not None and self.batch_seconds <= 0:
            raise ValueError(f"batch_seconds must be positive, got {self.batch_seconds}")
        if self.crop_hop < 1:
            raise ValueError(f"crop_hop must be positive, got {self.crop_hop}")


@DATASETS.register("audio")
class AudioData(ShardDataset):
    """Clips with optional class ids, captions and units (`data build spoken-words`, `sound-captions`,
    `data pack-audio`)."""

    Config = AudioDataConfig
    build_hint = "modalzoo data build spoken-words"

    def make_fields(self) -> dict:
        cfg = self.cfg
        max_samples = None if cfg.max_seconds is None else int(cfg.max_seconds * cfg.sample_rate)
        fields = {"audio": AudioField(cfg.sample_rate, cfg.resample, cfg.min_samples, max_samples, cfg.crop_hop,
                                      cfg.normalize, cfg.units, cfg.batch_seconds, cfg.bucket_buffer,
                                      cfg.crop_to_shortest),
                  "class": ClassField(DEFAULT_TEMPLATES)}
        if cfg.captions:
            fields["caption"] = CaptionField(cfg.tokenizer, cfg.seq_len, cfg.tokenizer_train_docs)
        return fields
