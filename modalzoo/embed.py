"""`modalzoo.embed(RUN_OR_EXPORT, STREAM, INPUTS)` and `modalzoo embed`: one vector per file or text from any
trained stream, read the way the run read its shards.

- Each input becomes a sample as shards hold it (``{"__key__": stem, EXT: bytes}`` for a file, ``{"txt": text}``
  for a text); the run's field that reads that key decodes, collates and finishes it (``train=False``: no
  augmentation, validation crops), so a file gets exactly the tensors a shard of it would have given. In a
  mixture (fields "<source>.<field>") a field of a source feeding a target that reads the stream comes first.
- The vector is a contrastive target's normalised projection of the pooled stream (`zero_shot.embed`, what
  the zero-shot reports use); with none, the pad-masked mean of the stream's encoder output. Masking
  embeddings (MAE) see whole inputs either way.
- Rows line up with the inputs: an input that cannot be read is an error naming it, never dropped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import Tensor

from .errors import ModalzooError, unknown_name_message

TEXT_KEY = "txt"                  # the shard key of texts (captions, documents)
MEAN = "mean"                     # the stand-in target's name when no contrastive target projects the stream


class Text(str):
    """An input that is a text even where a file of that name exists (the CLI's ``--text``)."""


def embed(run_or_export, stream: str, inputs, target: str | None = None, batch_size: int = 64,
          device: str = "cpu") -> Tensor:
    """[N, E] float32 on the CPU, one row per input, in order. ``run_or_export``: a run directory or a
    ``modalzoo export --format modalzoo`` folder (or ``hf-hub:REPO``). ``inputs``: file paths (`pathlib.Path`, or a
    ``str`` naming an existing file) and texts (any other ``str``; `Text` forces one). ``target``: which
    contrastive target's projection, where several project ``stream`` into different spaces."""
    return Embedder(run_or_export, device).embed(stream, inputs, target, batch_size)[0]


def embed_to_file(run_or_export, stream: str, inputs, out, target: str | None = None, batch_size: int = 64,
                  device: str = "cpu") -> str:
    """`embed`, written to ``out`` (safetensors: ``embeddings`` [N, E]; metadata ``inputs`` and ``kinds``, JSON
    lists in row order, ``stream``, ``target``: "" for the mean of the encoder output) by rename, so ``out`` is
    never half-written. Returns a one-line summary."""
    from safetensors.torch import save_file

    embedder = Embedder(run_or_export, device)
    items = _classified(inputs, embedder.file_keys())
    vectors, chosen = embedder.embed(stream, [Text(v) if k == "text" else v for k, v in items], target, batch_size)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".tmp-{out.name}")
    metadata = {"inputs": json.dumps([str(v) for _, v in items]), "kinds": json.dumps([k for k, _ in items]),
                "stream": stream, "target": chosen or ""}
    try:
        save_file({"embeddings": vectors.contiguous()}, str(tmp), metadata=metadata)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    how = f"target '{chosen}'" if chosen else "mean of the encoder output"
    return f"wrote {out}: {len(vectors)} embeddings of stream '{stream}' ({how}), {vectors.shape[1]} dims"


class _MeanPool:
    """Stands in for a contrastive target in `zero_shot.embed` (which also turns masking off): the pad-masked
    mean of the stream's encoder output, unprojected."""

    def __init__(self, stream: str):
        self.cfg = SimpleNamespace(streams=[stream], pooling=[MEAN])

    def features(self, name, tokens, how) -> Tensor:
        from .pretrain_tasks.contrastive import pool
        return pool(tokens, how)


class Embedder:
    """A run or export loaded once (model on ``device``, its fields' states restored without shards)."""

    def __init__(self, source, device: str = "cpu"):
        from .registry import DATASETS
        from .training.runs import resolve_device

        self.source = str(source)
        self.model, data_cfg, folder = _load(source)
        if not data_cfg:
            raise ModalzooError(f"{source} records no dataset (its recipe has no data section), so nothing says "
                                f"how to read inputs")
        self.device = resolve_device(device)
        self.model.to(self.device)
        self.data = DATASETS.build(data_cfg, "data")
        ctx = self.data.context(folder)
        self.states = ctx.states
        self.fields = {n: f for n, f in ctx.fields.items() if f.kind != "class"}    # class ids are labels

    # ------------------------------------------------------------------ choices
    def embed(self, stream: str, inputs, target: str | None = None, batch_size: int = 64) -> tuple[Tensor, str | None]:
        """(vectors [N, E], the target whose projection they are, or None for the mean)."""
        if stream not in self.model.streams:
            raise ModalzooError(unknown_name_message("stream", stream, self.model.streams))
        if batch_size < 1:
            raise ModalzooError(f"batch_size must be at least 1, got {batch_size}")
        items = _classified(inputs, self.file_keys())
        if not items:
            raise ModalzooError("no inputs to embed: give files and/or texts")
        chosen = self.target_for(stream, target)
        plan = [(kind, value, self.field_for(kind, value, stream)) for kind, value in items]
        rows: list[Tensor | None] = [None] * len(plan)
        with torch.no_grad():
            for start in range(0, len(plan), batch_size):
                groups: dict[str, list[int]] = {}
                for i in range(start, min(start + batch_size, len(plan))):
                    groups.setdefault(plan[i][2], []).append(i)
                for name, index in groups.items():
                    for i, vector in zip(index, self.field_vectors(name, [plan[i][:2] for i in index], stream,
                                                                   chosen)):
                        rows[i] = vector
        return torch.stack(rows), chosen

    def target_for(self, stream: str, target: str | None) -> str | None:
        """The contrastive target whose projection of ``stream`` is the embedding (None: the mean). Targets
        that project it with one module (``shares``) and pool it alike are one choice."""
        from .pretrain_tasks.contrastive import Contrastive

        projecting = {n: t for n, t in self.model.targets.items()
                      if isinstance(t, Contrastive) and stream in t.cfg.streams}
        if target is not None:
            if target not in self.model.targets:
                raise ModalzooError(unknown_name_message("target", target, self.model.targets))
            if target not in projecting:
                have = ", ".join(projecting) or "none, so leave target unset: the mean of its encoder output"
                raise ModalzooError(f"target '{target}' is not a contrastive target over stream '{stream}'; those "
                                    f"that are: {have}")
            return target
        spaces: dict[tuple, str] = {}
        for name, t in projecting.items():
            pooling = dict(zip(t.cfg.streams, t.cfg.pooling))[stream]
            spaces.setdefault((id(_projection(t, stream) or t), pooling), name)
        if len(spaces) > 1:
            raise ModalzooError(f"stream '{stream}' is projected into different spaces by the targets "
                                f"{', '.join(projecting)}: choose one with target= (--target)")
        return next(iter(spaces.values()), None)

    def file_keys(self) -> set[str]:
        return {key for f in self.fields.values() for key in f.keys if key != TEXT_KEY}

    def field_for(self, kind: str, value, stream: str) -> str:
        key = TEXT_KEY if kind == "text" else Path(value).suffix.lower().lstrip(".")
        readers = [n for n, f in self.fields.items() if key in f.keys]
        if not readers:
            what = "texts" if kind == "text" else (f".{key} files" if key else f"files without an extension ({value})")
            reads = self.describe(self.fields) or "nothing"
            raise ModalzooError(f"no field of this run reads {what}; it reads {reads}")
        return next((n for n in readers if self.feeds(n, stream)), readers[0])

    def feeds(self, field: str, stream: str) -> bool:
        """Whether ``field`` may feed ``stream``: in a mixture, whether its source feeds a target reading it."""
        sources = getattr(self.data, "sources", None) or {}
        source = sources.get(field.split(".", 1)[0]) if "." in field else None
        if source is None:
            return True
        targets = [self.model.targets[t] for t in (source.targets or self.model.targets) if t in self.model.targets]
        return any(t.reads() is None or stream in t.reads() for t in targets)

    def describe(self, names: Iterable[str]) -> str:
        """What the fields ``names`` read, for messages: ".jpg, .jpeg, .png files and texts"."""
        keys = list(dict.fromkeys(k for n in names for k in self.fields[n].keys))
        files = [f".{k}" for k in keys if k != TEXT_KEY]
        parts = ([", ".join(files) + " files"] if files else []) + (["texts"] if TEXT_KEY in keys else [])
        return " and ".join(parts)

    # ------------------------------------------------------------------ vectors
    def field_vectors(self, name: str, items: list[tuple[str, object]], stream: str, target: str | None) -> Tensor:
        field, state = self.fields[name], self.states[name]
        values = [self.decode(name, kind, value, i) for i, (kind, value) in enumerate(items)]
        if not hasattr(field, "collate"):       # a field that batches itself (text chunks): one input at a time,
            return torch.cat([self.run(self.first_row(field, v, state), stream, target, name, items[i])  # its first row
                              for i, v in enumerate(values)])
        batch = field.collate(values, state)
        finish = field.finisher(state, False) if hasattr(field, "finisher") else None
        if finish is not None:
            batch = finish(batch, torch.Generator().manual_seed(0))
        return self.run(batch, stream, target, name, items[0])

    @staticmethod
    def first_row(field, value, state) -> dict:
        batch = next(iter(field.batches([value], state, 1, False)))
        return {k: v[:1] if isinstance(v, Tensor) else v for k, v in batch.items()}

    def decode(self, name: str, kind: str, value, index: int):
        if kind == "text":
            sample = {"__key__": f"text-{index}", TEXT_KEY: str(value)}
        else:
            path = Path(value)
            try:
                sample = {"__key__": path.stem, path.suffix.lower().lstrip("."): path.read_bytes()}
            except OSError as err:
                raise ModalzooError(f"cannot read {path}: {err.strerror or err}") from None
        try:
            return self.fields[name].decode(sample, self.states[name])
        except ModalzooError:
            raise
        except Exception as err:               # what the run would have skipped as a corrupt sample
            what = f"the text {str(value)[:60]!r}" if kind == "text" else str(value)
            raise ModalzooError(f"cannot read {what} as {self.fields[name].kind} (field '{name}'): "
                                f"{type(err).__name__}: {err}") from None

    def run(self, batch: dict, stream: str, target: str | None, field: str, example: tuple[str, object]) -> Tensor:
        from .evaluation.zero_shot import embed as project

        embedding = self.model.streams[stream].embedding
        prefix = getattr(getattr(embedding, "cfg", None), "prefix", "") or ""     # a prefixed text stream's keys
        batch = {prefix + k: v for k, v in batch.items()}
        model = self.model if target else SimpleNamespace(targets={MEAN: _MeanPool(stream)},
                                                          streams=self.model.streams)
        try:
            return project(model, target or MEAN, stream, batch, self.device).float().cpu()
        except KeyError as err:                # the stream's embedding reads a key this field does not make
            key = err.args[0] if err.args else None
            if not isinstance(key, str) or key in batch:
                raise
            kind, value = example
            what = f"the text {str(value)[:60]!r}" if kind == "text" else f"{value}"
            others = [n for n, f in self.fields.items() if f.kind != self.fields[field].kind and self.feeds(n, stream)]
            raise ModalzooError(f"stream '{stream}' cannot read {what} (its embedding needs batch['{key}'], which "
                                f"field '{field}' does not make); stream '{stream}' reads "
                                f"{self.describe(others) or 'none of the inputs this run reads'}") from None


def _projection(target, stream: str):
    """The module projecting ``stream`` for a contrastive target (a shared one is the owner's object)."""
    find = getattr(target, "projection", None)
    if callable(find):
        return find(stream)
    return target.projections[stream] if stream in target.projections else None


def _classified(inputs, file_keys: set[str] = frozenset()) -> list[tuple[str, object]]:
    """("file", Path) or ("text", str) per input. A str is a file if one of that name exists; one that looks
    like a missing file (no spaces, an extension the run reads) is an error, not a text."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    items: list[tuple[str, object]] = []
    for item in inputs:
        if isinstance(item, Text):
            items.append(("text", str(item)))
        elif isinstance(item, os.PathLike) or (isinstance(item, str) and _is_file(item)):
            path = Path(item)
            if not path.is_file():
                raise ModalzooError(f"no such file: {path}" + (" (a folder)" if path.is_dir() else ""))
            items.append(("file", path))
        elif isinstance(item, str):
            if item and not any(c.isspace() for c in item) and Path(item).suffix.lower().lstrip(".") in file_keys:
                raise ModalzooError(f"no such file: {item}")
            items.append(("text", item))
        else:
            raise ModalzooError(f"an input is a file path or a text, not {type(item).__name__}")
    return items


def _is_file(text: str) -> bool:
    try:
        return Path(text).is_file()
    except (OSError, ValueError):          # a text too long, or with a NUL, for a file name
        return False


def _load(source):
    """(model in eval mode, the recipe's data section, the folder its field states restore from)."""
    text = str(source)
    if text.startswith("hf-hub:"):
        from .hub.pretrained import resolve
        path = resolve(text)
    else:
        path = Path(source)
        if not path.exists():
            raise ModalzooError(f"{path} does not exist (expected a run directory or a modalzoo export)")
    if (path / "config.yaml").exists():
        from .training.runs import load_run_model
        cfg, model, _, _ = load_run_model(path)
        return model, cfg.get("data"), path
    if (path / "config.json").exists():
        from .hub.pretrained import from_pretrained
        model = from_pretrained(path)
        return model, model.recipe.get("data"), path
    raise ModalzooError(f"{path} is neither a run directory (config.yaml) nor a modalzoo export (config.json)")
