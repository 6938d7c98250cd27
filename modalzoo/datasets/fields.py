"""A dataset is shards x fields: the `Field` protocol, and `DataContext`, the fields' prepared states.

A field reads some keys (tar extensions) of every sample and owns everything specific to them: its state,
prepared once (a tokenizer, an image size and normalisation, class names); decoding one sample; collating
decoded values into batch tensors; optionally finishing a batch with the stream's per-batch generator
(augmentation) or batching its own way (text packing); and the Hugging Face preprocessing files an export
writes for it. The shard dataset (`dataset.py`) owns what every modality shares.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, Protocol

import torch

from ..errors import ModalzooError


class Field(Protocol):
    """One kind of value in every sample. Optional methods, looked up by name:

    ``finisher(state, train) -> fn(batch, generator) -> batch`` (picklable; all randomness from the
    generator); ``batches(values, state, batch_size, drop_last) -> Iterator[dict]`` (replaces the
    dataset's fixed-size batching; at most one field of a dataset has it, and it is the only field); and
    ``group(rows, name, batch_size, drop_last) -> Iterator[list[row]]`` (decides which decoded rows, dicts of
    every field's value, make a batch, e.g. by a length budget; every field still collates its values).
    """

    kind: str                        # what `DataContext.write_files` styles are keyed by: "text", "image", ...
    keys: tuple[str, ...]            # the shard keys (tar extensions) it reads
    unit: str                        # throughput unit when it is its dataset's first field: "tokens", "images"
    rows: str                        # what one batch row is, for messages: "images", "rows"

    def prepare(self, data: Any, run_dir: Path | None) -> Any:
        """The field's state, made once (cached where that is expensive); ``data`` is the `ShardDataset`
        (its config and ``texts()``). With a ``run_dir``, save there what `restore` reads back."""

    def restore(self, data: Any, run_dir: Path) -> Any:
        """The state of a finished run, from ``run_dir`` and the config alone (no shards needed)."""

    def decode(self, sample: dict, state: Any) -> Any:
        """One sample's value; raising skips the sample and counts it."""

    def collate(self, values: list, state: Any) -> dict[str, torch.Tensor]:
        """A batch's values as tensors (not called for a field with its own ``batches()``)."""

    def count(self, batch: dict[str, torch.Tensor]) -> int:
        """How many ``unit`` a batch holds."""

    def files(self, state: Any, out: Path, style: str | None) -> list[Path]:
        """Write this field's Hugging Face preprocessing files into ``out`` (``style`` None: the default)."""


class DataContext:
    """The prepared states of a dataset's fields (field name -> state), handed to the targets' batch
    transforms, the reports and the exporter. ``DataContext(tokenizer=tok)`` holds given values without a
    field (tests, benchmarks)."""

    def __init__(self, fields: dict[str, Field] | None = None, states: dict[str, Any] | None = None, **values):
        self.fields, self.states = dict(fields or {}), dict(states or {})
        if values:
            self.states["given"] = SimpleNamespace(**values)

    def get(self, name: str, default: Any = None) -> Any:
        """The value ``name`` that a field state holds (not None): "tokenizer", "tokenizer_name", "seq_len",
        "image_size", "mean", "std", "classes", "templates", ... Only the states' own data is read, never a
        method (a state with a ``mean()`` method has no "mean"). Two fields holding different values under
        one name is an error: read ``states[field_name]`` then."""
        found = {field: value for field, state in self.states.items()
                 if (value := getattr(state, "__dict__", {}).get(name)) is not None}
        values = list(found.values())
        if any(v is not values[0] and v != values[0] for v in values[1:]):
            raise ModalzooError(f"fields {sorted(found)} all hold a '{name}'; read DataContext.states[field] for "
                                f"the one you mean")
        return values[0] if values else default

    @property
    def tokenizer(self) -> Any:
        return self.get("tokenizer")

    def write_files(self, out: Path, styles: dict[str, str | None] | None = None) -> list[Path]:
        """Every field's Hugging Face preprocessing files. ``styles`` maps a field kind to its style
        ("text": "bert" | "roberta" | "clip", "image": "vit" | "clip"); fields of a kind it does not name
        write nothing. None: every field writes its default (modalzoo-format) files."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        for name, field_ in self.fields.items():
            if styles is None or field_.kind in styles:
                written += field_.files(self.states[name], out, None if styles is None else styles[field_.kind])
        return written
