"""Webdataset shards: writing them, and streaming them split across ranks and loader workers.

Shards are listed in a fixed order, shuffled per epoch with the run's seed, and dealt out round-robin
to (rank, worker) slots, so within an epoch every sample is read exactly once.

Two layouts, read alike: one tar member per sample field (``KEY.txt``, ``KEY.png``: webdataset's own,
what images use), and for text several samples in one member, ``N.samples.jsonl``, one JSON object of a
sample's fields per line. Every tar member costs a 512-byte header plus padding to 512 bytes, which
for docstrings of ~600 bytes made the shards 2.3x the text; grouped, 1.06x (JSON escapes included).
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import tarfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import IterableDataset, get_worker_info

from ..errors import ModalzooError

GROUP_KEY = "samples.jsonl"          # the tar extension of a member that holds many samples, one per line
SAMPLES_PER_MEMBER = 1000            # text writers group this many samples per member ...
MEMBER_BYTES = 4 << 20               # ... or fewer, to keep a member (read whole) under about this size

_VERIFIED: set[tuple[str, int, int]] = set()     # (path, mtime_ns, size) of shards read fine in this process


def list_shards(root: str | Path, split: str, build_hint: str = "") -> list[str]:
    """The ``*.tar`` shards of ``root/split``, sorted; each checked to be a readable tar (`verify_shards`)
    the first time this process sees it as it is."""
    folder = Path(root) / split
    shards = sorted(str(p) for p in folder.glob("*.tar"))
    if not shards:
        hint = f"; build them with `{build_hint}`" if build_hint else ""
        raise ModalzooError(f"no webdataset shards (*.tar) under {folder}{hint}")
    stamps = {s: (s, (st := os.stat(s)).st_mtime_ns, st.st_size) for s in shards}
    for shard in verify_shards(s for s in shards if stamps[s] not in _VERIFIED):
        warnings.warn(f"shard {shard} is truncated (no tar end-of-archive blocks: an interrupted copy or "
                      "download?); the samples after the cut are lost, and skipped_samples undercounts them "
                      "when they were grouped documents. Copy or rebuild it.", stacklevel=2)
    _VERIFIED.update(stamps.values())
    return shards


def verify_shards(shards: Iterable[str]) -> list[str]:
    """Raise a ModalzooError naming the first shard that is not a readable tar file at all; return the
    shards that are cut short (an uncompressed tar ends with two zero blocks, a truncated copy does not).

    Two small reads per shard: its first header and its last 1024 bytes. Inside a stream a broken shard is
    otherwise just one more skipped sample, which hides a wrong path for a whole run. A truncated shard is
    still read (what precedes the cut is good data), but `list_shards` warns: the skip count sees one
    error there, while a cut grouped member (`GROUP_KEY`) loses up to a thousand documents.
    """
    truncated = []
    for shard in shards:
        try:
            with tarfile.open(shard, "r:*"):
                pass
            with open(shard, "rb") as f:
                compressed = f.read(6).startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00"))   # gzip, bzip2, xz
                f.seek(max(0, os.path.getsize(shard) - 1024))
                tail = f.read(1024)
        except (tarfile.TarError, OSError, EOFError) as err:
            reason = str(err).splitlines()[-1] if str(err) else type(err).__name__
            reason = re.sub(r"^- method tar: ReadError\('(.*)'\)$", r"\1", reason)   # r:* lists every method
            raise ModalzooError(f"shard {shard} is not a readable tar file ({reason})") from None
        if not compressed and (len(tail) < 1024 or tail.count(0) != len(tail)):
            truncated.append(shard)
    return truncated


class ShardWriter:
    """Writes samples (``{"__key__": ..., ext: str | bytes}``) into ``out/split/shard-%06d.tar``, a new shard
    every ``max_count`` samples or ``max_size`` bytes.

    ``per_member=1``: a member per field, ``KEY.EXT``. ``per_member>1`` (text fields only): up to that many
    samples (and about `MEMBER_BYTES`) share one ``N.samples.jsonl`` member, N the sample's number in the
    writer; their own keys are dropped, a reader names them ``N/i``."""

    def __init__(self, out: str | Path, split: str, max_count: int = 2000, max_size: int = 64 << 20,
                 per_member: int = 1):
        self.folder = Path(out) / split
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_count, self.max_size, self.per_member = max_count, max_size, max(1, per_member)
        # A whole-second mtime: a fractional one costs every member an extra PAX header.
        self.mtime = int(time.time())
        self.tar: tarfile.TarFile | None = None
        self.shards = self.count = self.in_shard = self.shard_bytes = 0
        self.group: list[bytes] = []
        self.group_start = self.group_bytes = 0

    def write(self, sample: dict) -> None:
        fields = {k: v for k, v in sample.items() if not k.startswith("__")}
        if self.per_member == 1:
            for ext in sorted(fields):
                self._member(f"{sample['__key__']}.{ext}", _as_bytes(fields[ext]))
        else:
            if not self.group:
                self.group_start = self.count
            try:
                text = {k: v.decode("utf-8") if isinstance(v, bytes) else v for k, v in fields.items()}
            except UnicodeDecodeError:
                text = {}
            if not text or not all(isinstance(v, str) for v in text.values()):
                raise ModalzooError(f"sample {sample.get('__key__')}: only text fields can share a tar member")
            self.group.append(json.dumps(text, ensure_ascii=False).encode("utf-8") + b"\n")
            self.group_bytes += len(self.group[-1])
            if len(self.group) >= self.per_member or self.group_bytes >= MEMBER_BYTES:
                self._flush_group()
        self.count += 1
        self.in_shard += 1
        if self.in_shard >= self.max_count or self.shard_bytes + self.group_bytes >= self.max_size:
            self._close_shard()

    def _flush_group(self) -> None:
        if self.group:
            self._member(f"{self.group_start:09d}.{GROUP_KEY}", b"".join(self.group))
            self.group, self.group_bytes = [], 0

    def _member(self, name: str, data: bytes) -> None:
        if self.tar is None:
            self.tar = tarfile.open(self.folder / f"shard-{self.shards:06d}.tar", "w")
            self.shards += 1
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(data), self.mtime, 0o444
        self.tar.addfile(info, io.BytesIO(data))
        self.shard_bytes += len(data)

    def _close_shard(self) -> None:
        self._flush_group()
        if self.tar is not None:
            self.tar.close()
            self.tar = None
        self.in_shard = self.shard_bytes = 0

    def close(self) -> None:
        self._close_shard()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def unpack_members(samples: Iterable[dict], skips: SkipCounter) -> Iterator[dict]:
    """Samples of either layout: a ``N.samples.jsonl`` member becomes its lines' samples (keyed ``N/i``;
    a line that is not a JSON object is skipped and counted), every other sample passes as it is."""
    for sample in samples:
        lines = sample.get(GROUP_KEY)
        if lines is None:
            yield sample
            continue
        for i, line in enumerate(lines.split(b"\n")):
            if not line:
                continue
            try:
                fields = json.loads(line)
                if not isinstance(fields, dict):
                    raise ValueError(f"not a JSON object: {line[:40]!r}")
            except ValueError:                      # JSONDecodeError and UnicodeDecodeError are ValueErrors
                skips.skipped += 1
                continue
            yield {**fields, "__key__": f"{sample['__key__']}/{i}", "__url__": sample.get("__url__")}


def slot(split_ranks: bool = True) -> tuple[int, int]:
    """(this reader's index, number of readers) over all ranks x loader workers.

    With ``split_ranks=False`` every rank reads the whole stream (validation: each rank sees the same
    batches, which FSDP needs since every forward is collective).
    """
    distributed = split_ranks and dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
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
    """Streams batches from shards in each loader worker, resumable at any batch.

    ``batcher(samples, skips)`` turns raw tar samples into collated batches (decode, tokenize, pack);
    ``finish(batch, generator)`` then applies the task transforms (masking) with a generator seeded
    from (seed, reader, batch index), so every batch is a pure function of its position in the stream.
    With ``repeat`` the stream loops over epochs, reshuffling shards and samples from ``seed + epoch``.
    ``start`` batches (counted per rank, as the trainer consumed them) are skipped without finishing
    them, which is how a resumed run continues the same stream.
    """

    def __init__(self, shards: list[str], batcher: Callable[[Iterable[dict], SkipCounter], Iterator[dict]],
                 finish: Callable[[dict, torch.Generator], dict] | None = None, *, seed: int = 0,
                 shuffle: bool = True, shuffle_buffer: int = 1000, repeat: bool = True, start: int = 0,
                 split_ranks: bool = True):
        super().__init__()
        self.shards, self.batcher, self.finish, self.seed = shards, batcher, finish, seed
        self.shuffle, self.shuffle_buffer, self.repeat, self.start = shuffle, shuffle_buffer, repeat, start
        self.split_ranks = split_ranks

    def shards_for(self, epoch: int, index: int, readers: int) -> list[str]:
        order = list(self.shards)
        if self.shuffle:
            random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
        return order[index::readers]

    def raw_batches(self, index: int, readers: int, skips: SkipCounter) -> Iterator[dict]:
        from webdataset.filters import _shuffle
        from webdataset.tariterators import tarfile_samples

        epoch = 0
        while True:
            mine = self.shards_for(epoch, index, readers)
            samples = unpack_members(tarfile_samples(({"url": u} for u in mine), handler=skips), skips)
            if self.shuffle and self.shuffle_buffer > 1:
                rng = random.Random(hash((self.seed, epoch, index)))
                samples = _shuffle(samples, bufsize=self.shuffle_buffer, initial=self.shuffle_buffer // 4, rng=rng)
            yield from self.batcher(samples, skips)
            epoch += 1
            if not self.repeat:
                return

    def __iter__(self) -> Iterator[dict]:
        index, readers = slot(self.split_ranks)
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        # The DataLoader takes batches from its workers round-robin: this worker made every
        # workers-th of the first `start` batches.
        skip = (self.start - worker + workers - 1) // workers
        skips = SkipCounter()
        for i, batch in enumerate(self.raw_batches(index, readers, skips)):
            if i < skip:
                skips.take()
                continue
            if self.finish is not None:
                generator = torch.Generator().manual_seed(hash((self.seed, index, i)) & 0x7FFF_FFFF_FFFF)
                batch = self.finish(batch, generator)
            if isinstance(batch, dict):
                batch["_skipped"] = torch.tensor(skips.take())
            yield batch


def loader(stream: ShardStream, num_workers: int, seed: int) -> torch.utils.data.DataLoader:
    """A DataLoader over an already-batching stream; worker RNGs derive from ``seed``.

    Workers are capped at the shards each rank gets: a reader without a shard would never yield, and
    the DataLoader would wait on it forever."""
    ranks = slot(split_ranks=stream.split_ranks)[1]      # outside a worker: the number of ranks
    if len(stream.shards) < ranks:
        raise ModalzooError(f"{len(stream.shards)} shard(s) cannot feed {ranks} ranks; pack the data into at "
                            "least one shard per rank")
    num_workers = min(num_workers, len(stream.shards) // ranks)
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(stream, batch_size=None, num_workers=num_workers, generator=generator,
                                       persistent_workers=False, prefetch_factor=4 if num_workers else None)
