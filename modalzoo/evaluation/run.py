"""`modalzoo eval RUN_DIR`: rebuild the run's model from its config and newest checkpoint, evaluate it
on the validation split, run the reports its targets have, print a table and write eval.json."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import OmegaConf

from ..errors import ModalzooError
from ..model import build_model
from ..registry import DATASETS
from ..training import checkpoint as ckpt
from ..training.logging import read_metrics
from ..training.trainer import evaluate, resolve_device

REPORTS: dict[str, Callable] = {}


def report(target_name: str):
    """Register an extra report for runs whose model has a target of this registered name."""
    def decorate(fn: Callable) -> Callable:
        REPORTS[target_name] = fn
        return fn
    return decorate


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
    from ..model import import_components
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
    import shutil

    run_dir = Path(run_dir)
    model = build_model(run_config(run_dir))
    path = ckpt.consolidate(find_checkpoint(run_dir, step), model, out)
    for name in ("config.yaml", "tokenizer.json"):
        if (run_dir / name).exists():
            shutil.copy(run_dir / name, Path(out) / name)
    return path


class LoadedRun:
    """A run ready to evaluate: model on ``device`` plus its data (tokenizer, validation loader)."""

    def __init__(self, run_dir: Path, checkpoint: Path | None = None, device: str = "cpu"):
        self.run_dir = Path(run_dir)
        self.cfg, self.model, self.checkpoint, self.step = load_run_model(self.run_dir, checkpoint=checkpoint)
        self.device = resolve_device(device)
        self.data = DATASETS.build(self.cfg.data, "data")
        self.data_ctx = self.data.prepare(self.run_dir)
        self.model.to(self.device)
        self.transforms = self.model.batch_transforms(self.data_ctx)

    def val_loader(self, batch_size: int | None = None):
        return self.data.loader("val", batch_size or self.cfg.trainer.batch_size, self.transforms,
                                seed=self.cfg.seed + 1, train=False)


def evaluate_run(run_dir: Path, batches: int = 50, device: str = "cpu", echo: Callable = print) -> dict:
    run = LoadedRun(run_dir, device=device)
    torch.manual_seed(run.cfg.seed)
    result: dict = {"run_dir": str(run.run_dir), "checkpoint": str(run.checkpoint), "step": run.step}
    result["val"] = evaluate(run.model, run.val_loader(), run.device, "fp32", batches)
    before = [r for r in read_metrics(run.run_dir) if r["split"] == "val" and r["step"] == 0]
    if before:
        result["val_before_training"] = {k: v for k, v in before[0].items() if k not in ("step", "split")}
    for name, target in run.model.targets.items():
        fn = REPORTS.get(target.registered_name)
        if fn is not None:
            result[name] = fn(run, name, batches)
            result.update(result[name].get("summary", {}))     # e.g. zero_shot_top1 at the top level
    (run.run_dir / "eval.json").write_text(json.dumps(result, indent=2))
    echo(format_table(result))
    for name in run.model.targets:
        for line in result.get(name, {}).get("lines", []):
            echo(line)
    return result


def format_table(result: dict) -> str:
    cols = [("before training", result.get("val_before_training", {})), (f"step {result['step']}", result["val"])]
    for value in result.values():
        if isinstance(value, dict) and "baseline" in value:
            cols.insert(0, (value["baseline"]["label"], value["baseline"]["metrics"]))
    keys = sorted({k for _, c in cols for k in c if isinstance(c.get(k), (int, float))},
                  key=lambda k: (k != "loss", k))
    width = max(len(k) for k in keys) + 2
    lines = [f"validation metrics, {result['run_dir']}",
             "metric".ljust(width) + "".join(title.rjust(18) for title, _ in cols)]
    for key in keys:
        row = key.ljust(width)
        for _, col in cols:
            row += (f"{col[key]:.4f}" if key in col else "-").rjust(18)
        lines.append(row)
    return "\n".join(lines)
