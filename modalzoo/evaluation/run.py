"""`modalzoo eval RUN_DIR`: rebuild the run's model from its config and newest checkpoint, evaluate it
on the validation split, run every report that applies to each target, print a table and write eval.json.

Reports live with their modality (``modalities/<name>/reports.py``, each listing its ``REPORTS``) and are
imported only here, through `components.modality_modules`. A `Report` decides for itself whether it fits
a target of a run, from what the target's streams read and what the run's data offers: the image
zero-shot report wants a contrastive target over one image and one text stream and class names, not
merely a target called ``contrastive``.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..registry import DATASETS
from ..training.logging import read_metrics
from ..training.metrics import evaluate
from ..training.runs import load_run_model, resolve_device


class LoadedRun:
    """A run ready to evaluate: model on ``device`` plus its data (tokenizer, validation loader)."""

    eval_options: dict = {}          # report options from eval.REPORT.KEY=V overrides (`split_overrides`)

    def __init__(self, run_dir: Path, checkpoint: Path | None = None, device: str = "cpu",
                 data_overrides: list[str] | None = None):
        self.run_dir = Path(run_dir)
        self.cfg, self.model, self.checkpoint, self.step = load_run_model(self.run_dir, checkpoint=checkpoint)
        self.tag = ""                # what this evaluation's files are named by, beside the run's own
        data_items, options = split_overrides(data_overrides or [])
        if options:
            self.eval_options = options
        if data_overrides:
            if data_items:
                self.cfg.data = override_data(self.cfg.data, data_items)
            self.tag = "-" + "_".join(re.sub(r"[^A-Za-z0-9_.]+", "-", f"{k[len('data.'):]}-{Path(v).name}")
                                      for k, _, v in (o.partition("=") for o in data_overrides))
        self.device = resolve_device(device)
        self.data = DATASETS.build(self.cfg.data, "data")
        self.data_ctx = self.data.prepare(self.run_dir)
        self.model.to(self.device)
        self.transforms = self.data.batch_transforms(self.model)

    def for_target(self, target_name: str) -> LoadedRun:
        """The run as one target sees it: with a `mixture`, a view whose data, states and validation batches
        are those of the source feeding ``target_name`` (the same model); otherwise the run itself."""
        source = getattr(self.data, "source_for", lambda _: None)(target_name)
        if source is None:
            return self
        view = copy.copy(self)
        view.whole = self                            # reports across sources (emergent retrieval) read all of it
        view.tag = f"{self.tag}-{target_name}"      # its PNGs: zero_shot_confusion-image_text.png
        view.data, view.data_ctx = source.data, source.data.ctx
        view.transforms = self.transforms[source.name]
        view.cfg = copy.deepcopy(self.cfg)
        view.cfg.data = self.cfg.data.sources[source.name].data
        return view

    def artifact(self, name: str) -> Path:
        """Where a report writes file ``name`` (a PNG): in the run folder, tagged with the data overrides
        (``zero_shot_confusion-path-other.png``) so evaluating on other data never replaces the run's own."""
        path = Path(name)
        return self.run_dir / f"{path.stem}{self.tag}{path.suffix}"

    def val_loader(self, batch_size: int | None = None):
        return self.data.loader("val", batch_size or self.cfg.trainer.batch_size, self.transforms,
                                seed=self.cfg.seed + 1, train=False)


def split_overrides(overrides: list[str]) -> tuple[list[str], dict]:
    """``data.KEY=V`` items (the dataset's) and ``eval.REPORT.KEY=V`` items as a nested mapping of a report's options
    (``eval.code_search.pairs=500`` -> ``{"code_search": {"pairs": 500}}``; the report checks its own keys)."""
    import yaml
    data, options = [], {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not key.startswith("eval."):
            data.append(item)
            continue
        *path, leaf = key[len("eval."):].split(".")
        node = options
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value) if value else value
    return data, options


def override_data(data_cfg, overrides: list[str]):
    """The run's ``data`` section with ``data.KEY=VALUE`` overrides (evaluate on another packed dataset of the
    same kind: ``data.path=OTHER``). Only data keys: the model and its checkpoint stay the run's; the dataset
    registry then validates the result (unknown keys named with the closest valid one)."""
    import yaml
    from omegaconf import OmegaConf

    from ..errors import ConfigError

    merged = OmegaConf.create(OmegaConf.to_container(data_cfg, resolve=True))
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("data."):
            raise ConfigError(f"eval takes data and report overrides only (data.KEY=VALUE, e.g. data.path=OTHER, or "
                              f"eval.REPORT.KEY=VALUE), got '{item}': the model and checkpoint are the run's")
        OmegaConf.update(merged, key[len("data."):], yaml.safe_load(value) if value else value, force_add=True)
    DATASETS.make_config(OmegaConf.to_container(merged), "data")        # validate now, with the key's path
    return merged


@dataclass(frozen=True)
class Report:
    """An extra evaluation of one target: ``run(run, target_name, batches)`` returns a dict with optional
    ``summary`` (copied to eval.json's top level), ``lines`` (printed) and ``baseline`` (a table column)."""
    name: str
    applies: Callable[[LoadedRun, str], bool]       # (run, target name) -> does this report fit it?
    run: Callable[[LoadedRun, str, int], dict]


def all_reports() -> list[Report]:
    """Every modality's reports, in `components.MODALITIES` order, then those over several streams of any
    modality (emergent retrieval)."""
    from .. import components
    from .emergent import REPORTS as CROSS_MODAL
    return [*(report for module in components.modality_modules("reports") for report in module.REPORTS),
            *CROSS_MODAL]


def reports_for(run: LoadedRun, target_name: str) -> list[Report]:
    return [report for report in all_reports() if report.applies(run, target_name)]


def merge_reports(outputs: list[dict]) -> dict:
    """Several reports' results for one target as one: summaries merged, lines concatenated."""
    merged: dict = {}
    for out in outputs:
        for key, value in out.items():
            if key == "summary":
                merged.setdefault(key, {}).update(value)
            elif key == "lines":
                merged.setdefault(key, []).extend(value)
            else:
                merged[key] = value
    return merged


def evaluate_run(run_dir: Path, batches: int = 50, device: str = "cpu", echo: Callable = print,
                 data_overrides: list[str] | None = None, out: Path | None = None) -> dict:
    """Evaluate and write ``out`` (default RUN_DIR/eval.json; with ``data_overrides`` the default is
    RUN_DIR/eval-<overrides>.json, e.g. eval-path-other.json, so the run's own evaluation is kept)."""
    run = LoadedRun(run_dir, device=device, data_overrides=data_overrides)
    torch.manual_seed(run.cfg.seed)
    result: dict = {"run_dir": str(run.run_dir), "checkpoint": str(run.checkpoint), "step": run.step}
    if data_overrides:
        result["data_overrides"] = list(data_overrides)
        out = out or run.artifact("eval.json")
    result["val"] = evaluate(run.model, run.val_loader(), run.device, "fp32", batches)
    before = [r for r in read_metrics(run.run_dir) if r["split"] == "val" and r["step"] == 0]
    if before:
        result["val_before_training"] = {k: v for k, v in before[0].items() if k not in ("step", "split")}
    for name in run.model.targets:
        view = run.for_target(name)
        outputs = [report.run(view, name, batches) for report in reports_for(view, name)]
        if outputs:
            result[name] = merge_reports(outputs)
    # The reports' numbers at the top level (zero_shot_top1); one that several targets report is named
    # "TARGET/KEY" there instead (a binding run's image_text/zero_shot_top1 and audio_text/zero_shot_top1).
    summaries = {n: result[n].get("summary", {}) for n in run.model.targets if n in result}
    seen = [k for summary in summaries.values() for k in summary]
    for name, summary in summaries.items():
        result.update({(k if seen.count(k) == 1 else f"{name}/{k}"): v for k, v in summary.items()})
    Path(out or run.run_dir / "eval.json").write_text(json.dumps(result, indent=2))
    echo(format_table(result))
    for name in run.model.targets:
        lines = result.get(name, {}).get("lines", [])
        if lines and len(run.model.targets) > 1:
            echo(f"\n[{name}]")
        for line in lines:
            echo(line)
    return result


def format_table(result: dict) -> str:
    cols = [("before training", result.get("val_before_training", {})), (f"step {result['step']}", result["val"])]
    for value in result.values():
        if isinstance(value, dict) and "baseline" in value:
            cols.insert(0, (value["baseline"]["label"], value["baseline"]["metrics"]))
    keys = sorted({k for _, c in cols for k in c if isinstance(c.get(k), (int, float))},
                  key=lambda k: (k != "loss", k))
    width = max((len(k) for k in keys), default=6) + 2
    lines = [f"validation metrics, {result['run_dir']}",
             "metric".ljust(width) + "".join(title.rjust(18) for title, _ in cols)]
    for key in keys:
        row = key.ljust(width)
        for _, col in cols:
            row += (f"{col[key]:.4f}" if key in col else "-").rjust(18)
        lines.append(row)
    return "\n".join(lines)
