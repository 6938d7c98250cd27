"""The shard dataset: what every modality's dataset shares, over the `Field`s that make it specific.

    shards (`shards.py`) ──► per sample: every field decodes (an exception skips the sample, counted)
      ──► batches of ``batch_size`` collated by the fields (or one field's own ``batches()``: packing)
      ──► the fields' finishers, then the targets' batch transforms, with the per-batch generator

A registered dataset (`text`, `image_text`) is a preset: a subclass with its config dataclass and
``make_fields()``. It owns the path, the splits, loader workers and their cap, shuffling, the resumable
`ShardStream`, skip-counting and the empty-epoch guard; its first field names the throughput unit.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ModalzooError
from .fields import DataContext, Field
from .shards import ShardStream, SkipCounter, list_shards, loader

MAX_EMPTY_EPOCHS = 20             # a training reader that makes no batch in this many epochs in a row: error


@dataclass
class ShardDataConfig:
    """The keys every shard dataset has; a preset's config subclasses this."""
    path: str = "data"
    train_split: str = "train"
    val_split: str = "validation"
    shuffle_buffer: int = 1000
    num_workers: int = 1


class Transforms:
    """Batch functions ``fn(batch, generator) -> batch`` applied in order (picklable, for loader workers)."""

    def __init__(self, transforms: list[Callable[..., dict]]):
        self.transforms = transforms

    def __call__(self, batch: dict, generator: torch.Generator) -> dict:
        for fn in self.transforms:
            batch = fn(batch, generator)
        return batch


def chunks(items: Iterable, size: int, drop_last: bool) -> Iterator[list]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        if len(chunk) < size and drop_last:
            return
        yield chunk


class FieldBatcher:
    """Runs in each loader worker: decodes every field of each sample, then batches and collates."""

    def __init__(self, fields: dict[str, Field], states: dict, batch_size: int, drop_last: bool):
        self.fields, self.states = fields, states
        self.batch_size, self.drop_last = batch_size, drop_last
        own = [name for name, f in fields.items() if hasattr(f, "batches")]
        if own and len(fields) > 1:
            raise ModalzooError(f"field '{own[0]}' batches its own values, so it must be its dataset's only "
                                f"field (have {list(fields)})")
        self.own = own[0] if own else None
        grouping = [name for name, f in fields.items() if hasattr(f, "group")]
        if len(grouping) > 1:
            raise ModalzooError(f"fields {grouping} each group rows into batches; at most one may")
        self.grouping = grouping[0] if grouping else None
        self.empty_epochs = 0
        self.first_error: str | None = None      # why the first skipped sample was skipped, for error messages

    def decoded(self, samples: Iterable[dict], skips: SkipCounter) -> Iterator[dict]:
        for sample in samples:
            try:
                values = {name: f.decode(sample, self.states[name]) for name, f in self.fields.items()}
            except ModalzooError:          # the configuration or the code, not the sample: stop
                raise
            except Exception as err:       # PIL raises OSError, SyntaxError, ValueError, zlib errors, ...
                skips.skipped += 1
                if self.first_error is None:
                    self.first_error = f"sample {sample.get('__key__')}: {type(err).__name__}: {err}"
                continue
            yield values

    def batches(self, samples: Iterable[dict], skips: SkipCounter) -> Iterator[dict]:
        rows = self.decoded(samples, skips)
        if self.own is not None:
            values = (row[self.own] for row in rows)
            yield from self.fields[self.own].batches(values, self.states[self.own], self.batch_size, self.drop_last)
            return
        grouped = (self.fields[self.grouping].group(rows, self.grouping, self.batch_size, self.drop_last)
                   if self.grouping else chunks(rows, self.batch_size, self.drop_last))
        for chunk in grouped:
            batch: dict = {}
            for name, f in self.fields.items():
                batch.update(f.collate([row[name] for row in chunk], self.states[name]))
            yield batch

    def __call__(self, samples: Iterable[dict], skips: SkipCounter) -> Iterator[dict]:
        """One epoch of this reader's shards. A repeating (training) stream whose reader never makes a full
        batch would spin forever and hang the DataLoader, so many empty epochs in a row are an error."""
        made = False
        for batch in self.batches(samples, skips):
            made, self.empty_epochs = True, 0
            yield batch
        if made:
            return
        why = f"; the first: {self.first_error}" if self.first_error else ""
        if not self.drop_last:             # one pass (validation): every sample it read was unreadable
            if skips.skipped:
                raise ModalzooError(f"a data reader (rank x loader worker) skipped all {skips.skipped} samples "
                                    f"of its shards as unreadable{why}")
            return
        self.empty_epochs += 1
        if self.empty_epochs >= MAX_EMPTY_EPOCHS:
            rows = next(iter(self.fields.values())).rows
            raise ModalzooError(
                f"a data reader (rank x loader worker) made no full batch of {self.batch_size} {rows} in "
                f"{self.empty_epochs} epochs of its shards ({skips.skipped} samples skipped as unreadable{why}); "
                "use a smaller batch_size, fewer data.num_workers or more shards, or check the data")


class ShardDataset:
    """Samples from webdataset shards under ``cfg.path/<split>/*.tar``, as the preset's fields make them."""

    Config = ShardDataConfig
    build_hint = ""                  # the command that builds shards, named when there are none

    def __init__(self, cfg: ShardDataConfig):
        self.cfg = cfg
        self.fields: dict[str, Field] = self.make_fields()
        self.ctx: DataContext | None = None

    def make_fields(self) -> dict[str, Field]:
        """Field name -> field; the first one names the throughput unit."""
        raise NotImplementedError

    @property
    def throughput_unit(self) -> str:
        return next(iter(self.fields.values())).unit

    def tokens_in(self, batch: dict) -> int:
        """How many ``throughput_unit`` a batch holds."""
        return next(iter(self.fields.values())).count(batch)

    def shards(self, split: str) -> list[str]:
        return list_shards(self.cfg.path, split, self.build_hint)

    def texts(self, split: str, limit: int | None = None) -> Iterator[str]:
        """The non-blank values of the first text field (documents, captions) of ``split`` in shard order;
        nothing else is decoded. A text field decodes without its state: this is what trains it."""
        text = next((f for f in self.fields.values() if f.kind == "text"), None)
        if text is None:
            raise ModalzooError(f"this dataset has no text field (its fields: {list(self.fields)})")

        def decode(samples: Iterable[dict], skips: SkipCounter) -> Iterator[str]:
            for sample in samples:
                try:
                    value = text.decode(sample, None)
                except ModalzooError:
                    raise
                except Exception:
                    skips.skipped += 1
                    continue
                if value and value.strip():
                    yield value

        stream = ShardStream(self.shards(split), decode, shuffle=False, repeat=False)
        return itertools.islice(stream.raw_batches(0, 1, SkipCounter()), limit)

    def prepare(self, run_dir: Path | None) -> DataContext:
        """Every field's state (tokenizers trained or loaded, class names read, ...); with ``run_dir``, what
        a run needs later is saved there (its tokenizer.json)."""
        self.ctx = DataContext(self.fields, {name: f.prepare(self, run_dir) for name, f in self.fields.items()})
        return self.ctx

    def context(self, run_dir: Path) -> DataContext:
        """The states of a finished run from ``run_dir`` and the config, without its shards (an export may
        run where the data is not)."""
        return DataContext(self.fields, {name: f.restore(self, Path(run_dir)) for name, f in self.fields.items()})

    def batch_transforms(self, model) -> list:
        """The model's targets' batch transforms, built on this dataset's states."""
        if self.ctx is None:
            raise RuntimeError("call prepare() before batch_transforms()")
        return model.batch_transforms(self.ctx)

    def loader(self, split: str, batch_size: int, transforms: list, seed: int, train: bool, start: int = 0):
        """Batches of ``split`` ("train" or "val"); ``train`` shuffles, augments, repeats and drops the last
        partial batch. ``start`` resumes after that many batches."""
        if self.ctx is None:
            raise RuntimeError("call prepare() before loader()")
        states = self.ctx.states
        finishers = [f.finisher(states[name], train) for name, f in self.fields.items() if hasattr(f, "finisher")]
        finishers = [fn for fn in finishers if fn is not None]
        stream = ShardStream(self.shards(self.cfg.train_split if split == "train" else self.cfg.val_split),
                             FieldBatcher(self.fields, states, batch_size, drop_last=train),
                             Transforms([*finishers, *transforms]), seed=seed, shuffle=train,
                             shuffle_buffer=self.cfg.shuffle_buffer, repeat=train, start=start, split_ranks=train)
        return loader(stream, self.cfg.num_workers, seed)
