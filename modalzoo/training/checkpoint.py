"""Checkpoints that are never half-written.

A checkpoint is a folder ``RUN_DIR/checkpoints/step_XXXXXXXX``. Single-process runs write
``model.safetensors`` (weights) and ``trainer_state.pt`` (optimizer, scheduler, step, data position,
RNG; loaded with ``weights_only=True``, so it never unpickles code). Distributed runs (DDP, FSDP) write
a `torch.distributed.checkpoint` (DCP) of model and optimizer — sharded under FSDP — plus the same
``trainer_state.pt`` and one ``rng_rankN.pt`` per rank. ``meta.json`` is written last.

Everything is written under ``.tmp-step_XXXXXXXX`` and renamed into place by rank 0 once complete, so a
crash mid-write leaves only a temporary folder that is ignored and cleaned up later.
`consolidate` turns a DCP checkpoint into one ``model.safetensors``.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from safetensors.torch import load_file, save_file
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from ..errors import ModalzooError

PREFIX = "step_"


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def complete_checkpoints(run_dir: Path) -> list[Path]:
    root = checkpoint_dir(run_dir)
    if not root.exists():
        return []
    done = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and (p / "meta.json").exists()]
    return sorted(done, key=lambda p: int(p.name[len(PREFIX):]))


def latest_checkpoint(run_dir: Path) -> Path | None:
    done = complete_checkpoints(run_dir)
    return done[-1] if done else None


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir: Path, step: int, model: nn.Module, trainer_state: dict, keep_last: int,
                    meta: dict | None = None) -> Path:
    root = checkpoint_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{PREFIX}{step:08d}"
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(weights, tmp / "model.safetensors", metadata={"step": str(step), "format": "modalzoo"})
    torch.save(trainer_state, tmp / "trainer_state.pt")
    (tmp / "meta.json").write_text(json.dumps({"step": step, **(meta or {})}, indent=2))
    for f in tmp.iterdir():
        _fsync_file(f)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(root)
    _prune(run_dir, keep_last, keep=final)
    return final


def _prune(run_dir: Path, keep_last: int, keep: Path) -> None:
    for old in complete_checkpoints(run_dir)[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    for stale in checkpoint_dir(run_dir).glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)


def is_sharded(path: Path) -> bool:
    return (Path(path) / ".metadata").exists()


def load_weights(model: nn.Module, path: Path) -> None:
    """Strictly load a checkpoint's weights (safetensors file, or a DCP folder) into a plain model."""
    path = Path(path)
    if path.is_dir() and is_sharded(path):
        state = {"model": model.state_dict()}
        try:
            with warnings.catch_warnings():      # "no process group: loading in a single process" is the intent
                warnings.simplefilter("ignore", UserWarning)
                dcp.load(state, checkpoint_id=str(path))
        except Exception as err:   # DCP reports missing keys as a generic CheckpointException
            raise ModalzooError(f"checkpoint {path} does not fit the model: {err}") from None
        model.load_state_dict(state["model"])
        return
    file = path / "model.safetensors" if path.is_dir() else path
    if not file.exists():
        raise ModalzooError(f"no model.safetensors (nor a sharded DCP checkpoint) in {path}")
    state = load_file(str(file))
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ModalzooError(f"checkpoint {file} does not fit the model: missing {result.missing_keys[:10]}, "
                            f"unexpected {result.unexpected_keys[:10]}")


def save_sharded(run_dir: Path, step: int, model: nn.Module, optimizer, trainer_state: dict, keep_last: int,
                 rank: int, meta: dict | None = None) -> Path:
    """Collective: every rank calls it. DCP writes each rank's shards; rank 0 commits by rename."""
    root = checkpoint_dir(run_dir)
    final = root / f"{PREFIX}{step:08d}"
    tmp = root / f".tmp-{final.name}"
    if rank == 0:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
    dist.barrier()
    state = {"model": get_model_state_dict(model), "optimizer": get_optimizer_state_dict(model, optimizer)}
    dcp.save(state, checkpoint_id=str(tmp))
    torch.save(rng_state(), tmp / f"rng_rank{rank}.pt")
    _fsync_file(tmp / f"rng_rank{rank}.pt")
    dist.barrier()                                        # every rank's shards are on disk
    if rank == 0:
        torch.save(trainer_state, tmp / "trainer_state.pt")
        (tmp / "meta.json").write_text(json.dumps({"step": step, "sharded": True, **(meta or {})}, indent=2))
        for f in tmp.iterdir():
            _fsync_file(f)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(root)
        _prune(run_dir, keep_last, keep=final)
    dist.barrier()
    return final


def load_sharded(path: Path, model: nn.Module, optimizer, rank: int) -> dict:
    """Collective: restore model, optimizer and this rank's RNG; returns the trainer state."""
    state = {"model": get_model_state_dict(model), "optimizer": get_optimizer_state_dict(model, optimizer)}
    dcp.load(state, checkpoint_id=str(path))
    set_model_state_dict(model, state["model"])
    set_optimizer_state_dict(model, optimizer, state["optimizer"])
    rng_file = Path(path) / f"rng_rank{rank}.pt"
    if rng_file.exists():                                 # absent when the world size changed
        set_rng_state(torch.load(rng_file, weights_only=True))
    return load_trainer_state(path)


def consolidate(path: Path, model: nn.Module, out: Path) -> Path:
    """Write a (sharded) checkpoint's weights as one ``model.safetensors`` under ``out``."""
    load_weights(model, path)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(weights, out / "model.safetensors", metadata={"format": "modalzoo", "source": str(path)})
    meta = json.loads((Path(path) / "meta.json").read_text()) if (Path(path) / "meta.json").exists() else {}
    (out / "meta.json").write_text(json.dumps({**meta, "sharded": False, "consolidated_from": str(path)}, indent=2))
    return out / "model.safetensors"


def load_trainer_state(path: Path) -> dict:
    return torch.load(Path(path) / "trainer_state.pt", map_location="cpu", weights_only=True)
