"""The `mixture` dataset: several datasets in one recipe, each feeding the targets that use its streams.

    data: {name: mixture, sources: {digits: {weight: 1, targets: [image_text], data: {name: image_text, ...}},
                                    words:  {weight: 1, targets: [audio_text], data: {name: audio, ...}}}}

Every training micro-batch comes from one source, drawn with probability weight / sum of weights. The draw
of batch ``i`` is a function of (seed, i) alone, so every rank draws the same source at the same step (DDP and
FSDP then run the same streams everywhere) and a resumed run continues the same sequence: the trainer's
``batches_seen`` is the mixture position, each source's own position is the number of times it was drawn
before it (saved in checkpoints as ``data_position`` and checked on resume). A batch carries ``_targets`` (its
source's target names) and ``_source``; the model runs only those targets and the streams they read.

Fields that hold a shared state (text fields: one tokenizer) are prepared together: one tokenizer trained on
every source's texts, given to every text field, so a text tower shared by two targets sees one vocabulary.
Validation interleaves the sources' batches round-robin, so a cap on evaluation batches samples all of them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError, ModalzooError, closest
from ..registry import DATASETS
from .fields import DataContext

SOURCE_KEYS = ("weight", "targets", "data", "batch_size")
BLOCK = 4096                         # draws made per generator call; draw i lives in block i // BLOCK


@dataclass
class MixtureConfig:
    sources: dict = field(default_factory=dict)   # name -> {weight, targets, data}

    def __post_init__(self):
        if not self.sources:
            raise ValueError("a mixture needs data.sources: name -> {weight, targets, data}")
        for name, spec in self.sources.items():
            where = f"data.sources.{name}"
            if not isinstance(spec, dict):
                raise ConfigError(f"'{where}' must be a mapping with keys {', '.join(SOURCE_KEYS)}")
            for key in spec:
                if key not in SOURCE_KEYS:
                    hint = closest(key, SOURCE_KEYS)
                    raise ConfigError(f"unknown key '{where}.{key}'" + (f"; did you mean '{where}.{hint}'?" if hint
                                      else "") + f" A source has: {', '.join(SOURCE_KEYS)}")
            weight = spec.get("weight", 1.0)
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
                raise ConfigError(f"'{where}.weight' must be a number >= 0, got {weight!r}")
            targets = spec.get("targets")
            if not targets or not isinstance(targets, (list, tuple)) or not all(isinstance(t, str) for t in targets):
                raise ConfigError(f"'{where}.targets' must list the model targets its batches feed")
            size = spec.get("batch_size")
            if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
                raise ConfigError(f"'{where}.batch_size' must be a positive integer (default: trainer.batch_size)")
            if not isinstance(spec.get("data"), dict):
                raise ConfigError(f"'{where}.data' must be a dataset section ({{name: ..., path: ...}})")
            if spec["data"].get("name") == "mixture":
                raise ConfigError(f"'{where}.data' is a mixture; name the mixture's datasets directly")
            DATASETS.make_config(spec["data"], f"{where}.data")      # unknown keys named with their path
        if not any(float(s.get("weight", 1.0)) > 0 for s in self.sources.values()):
            raise ConfigError("every data.sources weight is 0: no source would feed a batch")


@dataclass
class Source:
    name: str
    weight: float
    targets: tuple[str, ...]
    data: object                     # the source's ShardDataset
    batch_size: int | None = None    # rows per batch of this source (None: trainer.batch_size)


def draws(seed: int, weights: np.ndarray, start: int, stop: int) -> np.ndarray:
    """The source index of every batch in [start, stop): block b of draws comes from its own generator
    (seed, b), so any range is computed without the draws before it."""
    p = weights / weights.sum()
    out = []
    for block in range(start // BLOCK, (stop - 1) // BLOCK + 1 if stop > start else start // BLOCK):
        rng = np.random.default_rng([seed, 0x6D697874, block])
        chosen = rng.choice(len(p), size=BLOCK, p=p)
        lo, hi = max(start - block * BLOCK, 0), min(stop - block * BLOCK, BLOCK)
        out.append(chosen[lo:hi])
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def positions(seed: int, weights: np.ndarray, batches: int, start: int = 0) -> np.ndarray:
    """How many batches each source gave among draws ``start`` to ``batches`` (in chunks: bounded memory)."""
    counts = np.zeros(len(weights), dtype=np.int64)
    for lo in range(start, batches, 1 << 20):
        counts += np.bincount(draws(seed, weights, lo, min(batches, lo + (1 << 20))), minlength=len(weights))
    return counts


@DATASETS.register("mixture")
class MixtureData:
    """Several datasets, each feeding its targets; batches drawn by weight (resumable, rank-synchronised)."""

    Config = MixtureConfig

    def __init__(self, cfg: MixtureConfig):
        self.cfg = cfg
        self.sources = {name: Source(name, float(spec.get("weight", 1.0)), tuple(spec["targets"]),
                                     DATASETS.build(spec["data"], f"data.sources.{name}.data"),
                                     spec.get("batch_size"))
                        for name, spec in cfg.sources.items()}
        self.weights = np.array([s.weight for s in self.sources.values()], dtype=np.float64)
        self.ctx: DataContext | None = None
        self.throughput_unit = "rows"

    # -- which source feeds what ---------------------------------------------------------------------

    @property
    def feeds(self) -> dict[str, tuple[str, ...]]:
        """source -> the targets its batches feed (the trainer checks them against the model)."""
        return {name: s.targets for name, s in self.sources.items()}

    def source_for(self, target: str) -> Source | None:
        return next((s for s in self.sources.values() if target in s.targets), None)

    def check_targets(self, targets) -> None:
        """Every source's targets exist in the model, and every target is fed by a source with weight > 0."""
        names = list(targets)
        for source in self.sources.values():
            for target in source.targets:
                if target not in names:
                    hint = closest(target, names)
                    raise ConfigError(f"data.sources.{source.name}.targets names '{target}', which is not a model "
                                      f"target" + (f"; did you mean '{hint}'?" if hint else "")
                                      + f" The model's targets: {', '.join(names)}")
        fed = {t for s in self.sources.values() if s.weight > 0 for t in s.targets}
        unfed = [t for t in names if t not in fed]
        if unfed:
            raise ConfigError(f"model target(s) {unfed} are fed by no data source with weight > 0: add them to a "
                              "source's targets (data.sources.NAME.targets) or remove them")

    # -- states --------------------------------------------------------------------------------------

    def _merged(self, per_source: dict[str, DataContext]) -> DataContext:
        fields, states = {}, {}
        for source, ctx in per_source.items():
            for name, f in ctx.fields.items():
                fields[f"{source}.{name}"], states[f"{source}.{name}"] = f, ctx.states[name]
        return MixtureContext(fields, states, per_source)

    def _together(self, method: str, run_dir: Path | None) -> dict[tuple[str, str], object]:
        """States of the fields that prepare together (`prepare_together` / `restore_together`: the text fields'
        one tokenizer), keyed by (source, field)."""
        groups: dict[object, list[tuple[str, str, object]]] = {}
        for sname, source in self.sources.items():
            for fname, f in source.data.fields.items():
                if hasattr(f, method):
                    groups.setdefault(f.together_key, []).append((sname, fname, f))
        out = {}
        for members in groups.values():
            first = members[0][2]
            pairs = [(f, self.sources[s].data, f"data.sources.{s}.data") for s, _, f in members]
            states = getattr(first, method)(pairs, run_dir)
            out.update({(s, n): state for (s, n, _), state in zip(members, states)})
        return out

    def _contexts(self, method: str, together: str, run_dir: Path | None) -> DataContext:
        shared = self._together(together, run_dir)
        per_source = {}
        for sname, source in self.sources.items():
            data = source.data
            states = {fname: shared[(sname, fname)] if (sname, fname) in shared else getattr(f, method)(data, run_dir)
                      for fname, f in data.fields.items()}
            data.ctx = DataContext(data.fields, states)
            per_source[sname] = data.ctx
        return self._merged(per_source)

    def prepare(self, run_dir: Path | None) -> DataContext:
        self.ctx = self._contexts("prepare", "prepare_together", run_dir)
        return self.ctx

    def context(self, run_dir: Path) -> DataContext:
        return self._contexts("restore", "restore_together", Path(run_dir))

    def texts(self, split: str, limit: int | None = None) -> Iterator[str]:
        """Every source's texts, interleaved (sources without a text field give none)."""
        streams = []
        for source in self.sources.values():
            if any(getattr(f, "kind", None) == "text" for f in source.data.fields.values()):
                streams.append(source.data.texts(split, limit))
        return itertools.islice(round_robin(streams), limit)

    # -- batches -------------------------------------------------------------------------------------

    def batch_transforms(self, model) -> dict[str, list]:
        """source -> the batch transforms of the targets it feeds, built on that source's own states."""
        if self.ctx is None:
            raise RuntimeError("call prepare() before batch_transforms()")
        return {name: model.batch_transforms(s.data.ctx, targets=s.targets) for name, s in self.sources.items()}

    def tokens_in(self, batch: dict) -> int:
        first = next((v for k, v in batch.items() if not k.startswith("_") and hasattr(v, "shape")), None)
        return int(first.shape[0]) if first is not None else 0

    def position(self, batches_seen: int, seed: int, resumed: tuple[int, dict] | None = None) -> dict[str, int]:
        """How many batches each source has given after ``batches_seen`` training batches; ``resumed`` =
        (batches_seen, positions) of the checkpoint this process resumed from (the weights may have changed)."""
        start, base = resumed if resumed is not None else (0, dict.fromkeys(self.sources, 0))
        counts = positions(seed, self.weights, batches_seen, start)
        return {name: int(base.get(name, 0)) + int(c) for name, c in zip(self.sources, counts)}

    def loader(self, split: str, batch_size: int, transforms, seed: int, train: bool, start: int = 0,
               position: dict[str, int] | None = None):
        """Training: an endless stream of batches drawn from the sources by weight, from batch ``start``
        (each source resumes at ``position`` (a checkpoint's) if given, else at its derived position). Validation: every
        source's batches, round-robin. ``transforms``: `batch_transforms(model)`'s dict, or one list for all."""
        if self.ctx is None:
            raise RuntimeError("call prepare() before loader()")
        per = {n: (transforms.get(n, []) if isinstance(transforms, dict) else list(transforms)) for n in self.sources}
        if not train:
            return _Validation({n: s.data.loader(split, s.batch_size or batch_size, per[n], seed, train=False)
                                for n, s in self.sources.items()}, self.sources)
        begin = position or self.position(start, seed)
        missing = [n for n in self.sources if n not in begin]
        if missing:
            raise ModalzooError(f"the checkpoint's data position has no source {missing}; it was written with "
                                f"other data.sources ({sorted(begin)})")
        return _Training(self, per, batch_size, seed, start, begin)


class MixtureContext(DataContext):
    """The sources' field states under "<source>.<field>" names. Preprocessing files that two sources would
    both write under one name with different contents (an image processor's and an audio feature extractor's
    preprocessor_config.json) go to ``<source>/`` folders instead; the rest (the one tokenizer) stay on top."""

    def __init__(self, fields: dict, states: dict, per_source: dict[str, DataContext]):
        super().__init__(fields, states)
        self.per_source = per_source

    def write_files(self, out: Path, styles: dict[str, str | None] | None = None) -> list[Path]:
        import shutil
        import tempfile

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out, prefix=".files-") as tmp:
            made = {name: {p.relative_to(Path(tmp) / name): p.read_bytes() for p in
                           ctx.write_files(Path(tmp) / name, styles) if p.is_file()}
                    for name, ctx in self.per_source.items()}
            contents: dict[Path, set[bytes]] = {}
            for files in made.values():
                for rel, data in files.items():
                    contents.setdefault(rel, set()).add(data)
            written = []
            for name, files in made.items():
                for rel in files:
                    target = out / rel if len(contents[rel]) == 1 else out / name / rel
                    if target not in written:
                        target.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(Path(tmp) / name / rel, target)
                        written.append(target)
        return written


def round_robin(iterables) -> Iterator:
    iterators = [iter(it) for it in iterables]
    while iterators:
        alive = []
        for it in iterators:
            try:
                yield next(it)
                alive.append(it)
            except StopIteration:
                pass
        iterators = alive


def _tagged(batch: dict, source: Source) -> dict:
    batch["_source"], batch["_targets"] = source.name, source.targets
    return batch


def _each_tagged(loader, source: Source) -> Iterator[dict]:
    for batch in loader:
        yield _tagged(batch, source)


class _Validation:
    def __init__(self, loaders: dict, sources: dict[str, Source]):
        self.loaders, self.sources = loaders, sources

    def __iter__(self) -> Iterator[dict]:
        return round_robin([_each_tagged(loader, self.sources[n]) for n, loader in self.loaders.items()])


class _Training:
    """Each source's own loader (its workers, its resumable shard stream) started lazily at its position; the
    mixture takes the next batch of whichever source batch i draws."""

    def __init__(self, mixture: MixtureData, transforms: dict, batch_size: int, seed: int, start: int,
                 begin: dict[str, int]):
        self.mixture, self.transforms, self.batch_size = mixture, transforms, batch_size
        self.seed, self.start, self.begin = seed, start, dict(begin)

    def __iter__(self) -> Iterator[dict]:
        names = list(self.mixture.sources)
        iterators: dict[str, Iterator] = {}
        index = self.start
        while True:
            for chosen in draws(self.seed, self.mixture.weights, index, index + BLOCK):
                name = names[int(chosen)]
                if name not in iterators:      # started only when first drawn: a source never drawn costs nothing
                    source = self.mixture.sources[name]
                    # its own seed: two sources over the same shards still read them in different orders
                    seed = self.seed + 7919 * names.index(name)
                    iterators[name] = iter(source.data.loader("train", source.batch_size or self.batch_size,
                                                              self.transforms[name],
                                                              seed, train=True, start=self.begin[name]))
                yield _tagged(next(iterators[name]), self.mixture.sources[name])
            index += BLOCK
