"""A finished (or interrupted) run read back: its saved recipe, a checkpoint, and the model with those
weights. `modalzoo eval`, `modalzoo export` and `checkpoint consolidate` all start here."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from omegaconf import OmegaConf

from ..errors import ModalzooError
from ..model import build_model, import_components
from . import checkpoint as ckpt


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModalzooError(f"trainer.device={name} but no CUDA device is visible")
    return device


def find_checkpoint(run_dir: Path, step: int | None = None) -> Path:
    if step is None:
        path = ckpt.latest_checkpoint(run_dir)
        if path is None:
            raise ModalzooError(f"no complete checkpoint under {Path(run_dir) / 'checkpoints'}")
        return path
    path = ckpt.checkpoint_dir(run_dir) / f"{ckpt.PREFIX}{step:08d}"
    if not (path / "meta.json").exists():
        have = [p.name for p in ckpt.complete_checkpoints(run_dir)]
        raise ModalzooError(f"no complete checkpoint for step {step} in {run_dir}; have {have}")
    return path


def run_config(run_dir: Path):
    """A run's saved (resolved) recipe; a clear error if ``run_dir`` is not a run."""
    import_components()
    config = Path(run_dir) / "config.yaml"
    if not config.exists():
        raise ModalzooError(f"{run_dir} is not a run directory (no config.yaml)")
    return OmegaConf.load(config)


def load_run_model(run_dir: Path, step: int | None = None, checkpoint: Path | None = None):
    """``(cfg, model, checkpoint, step)``: a run's model with a checkpoint's weights (default: the newest
    complete one; single-file or sharded), in eval mode on the CPU."""
    cfg = run_config(run_dir)
    checkpoint = checkpoint or find_checkpoint(Path(run_dir), step)
    model = build_model(cfg)
    ckpt.load_weights(model, checkpoint)
    step = json.loads((Path(checkpoint) / "meta.json").read_text())["step"]
    return cfg, model.eval(), checkpoint, step


def consolidate_run(run_dir: Path, out: Path, step: int | None = None) -> Path:
    """One safetensors file (plus config and tokenizer) from a run's single or sharded checkpoint."""
    run_dir = Path(run_dir)
    model = build_model(run_config(run_dir))
    path = ckpt.consolidate(find_checkpoint(run_dir, step), model, out)
    for name in ("config.yaml", "tokenizer.json"):
        if (run_dir / name).exists():
            shutil.copy(run_dir / name, Path(out) / name)
    return path
