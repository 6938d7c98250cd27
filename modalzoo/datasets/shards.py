"""Webdataset shards: writing them, and streaming them split across ranks and loader workers.

Shards are listed in a fixed order, shuffled per epoch with the run's seed, and dealt out round-robin
to (rank, worker) slots, so within an epoch every sample is read exactly once.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import torch
import torch.distributed as dist
import webdataset as wds
from torch.utils.data import IterableDataset, get_worker_info
from webdataset.filters import _shuffle
from webdataset.tariterators import tarfile_samples

from ..errors import ModalzooError


def list_shards(root: str | Path, split: str, build_hint: str = "") -> list[str]:
    folder = Path(root) / split
    shards = sorted(str(p) for p in folder.glob("*.tar"))
    if not shards:
        hint = f"; build them with `{build_hint}`" if build_hint else ""
        raise ModalzooError(f"no webdataset shards (*.tar) under {folder}{hint}")
    return shards


class ShardWriter:
    """`wds.ShardWriter` into ``out/split/shard-%06d.tar``, creating folders, quiet."""

    def __init__(self, out: str | Path, split: str, max_count: int = 2000, max_size: int = 64 << 20):
        folder = Path(out) / split
        folder.mkdir(parents=True, exist_ok=True)
        self.writer = wds.ShardWriter(str(folder / "shard-%06d.tar"), maxcount=max_count, maxsize=max_size,
                                      verbose=0)
        self.count = 0

    def write(self, sample: dict) -> None:
        self.writer.write(sample)
        self.count += 1

    def close(self) -> None:
        self.writer.close()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def slot() -> tuple[int, int]:
    """(this reader's index, number of readers) over all ranks x loader workers."""
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() \
        else (0, 1)
    info = get_worker_info()
    worker, workers = (info.id, info.num_workers) if info else (0, 1)
    return rank * workers + worker, world * workers


class SkipCounter:
    """A webdataset error handler that skips a bad sample and counts it instead of crashing."""

    def __init__(self):
        self.skipped = 0

    def __call__(self, exn: Exception) -> bool:
        if isinstance(exn, (FileNotFoundError, PermissionError, IsADirectoryError)):
            raise ModalzooError(f"cannot read shard: {exn}") from exn
        self.skipped += 1
        return True

    def take(self) -> int:
        n, self.skipped = self.skipped, 0
        return n


class ShardStream(IterableDataset):
    """Streams samples from shards through ``process`` (which batches them) in each loader worker.

    ``process(samples, skips)`` turns raw tar samples into batches; it may count its own skips.
    With ``repeat`` the stream loops over epochs, reshuffling shards and samples from ``seed + epoch``.
    """

    def __init__(self, shards: list[str], process: Callable[[Iterable[dict], SkipCounter], Iterator[dict]],
                 *, seed: int = 0, shuffle: bool = True, shuffle_buffer: int = 1000, repeat: bool = True):
        super().__init__()
        self.shards, self.process, self.seed = shards, process, seed
        self.shuffle, self.shuffle_buffer, self.repeat = shuffle, shuffle_buffer, repeat

    def shards_for(self, epoch: int, index: int, readers: int) -> list[str]:
        order = list(self.shards)
        if self.shuffle:
            random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
        return order[index::readers]

    def __iter__(self) -> Iterator[dict]:
        index, readers = slot()
        skips = SkipCounter()
        epoch = 0
        while True:
            mine = self.shards_for(epoch, index, readers)
            samples = tarfile_samples(({"url": u} for u in mine), handler=skips)
            if self.shuffle and self.shuffle_buffer > 1:
                rng = random.Random(hash((self.seed, epoch, index)))
                samples = _shuffle(samples, bufsize=self.shuffle_buffer, initial=self.shuffle_buffer // 4, rng=rng)
            yield from self.process(samples, skips)
            epoch += 1
            if not self.repeat:
                return


def loader(stream: ShardStream, num_workers: int, seed: int) -> torch.utils.data.DataLoader:
    """A DataLoader over an already-batching stream; worker RNGs derive from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(stream, batch_size=None, num_workers=num_workers, generator=generator,
                                       persistent_workers=False, prefetch_factor=4 if num_workers else None)
