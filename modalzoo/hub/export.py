"""`modalzoo export RUN_DIR --format hf|modalzoo --out DIR [--push REPO_ID]`: a run's weights as a folder
that `transformers` (``--format hf``) or `modalzoo.from_pretrained` (``--format modalzoo``) loads.

An hf export is verified before it is kept: the written folder is loaded back with the transformers Auto
class and run next to the zoo model on the same inputs; a difference above ``TOLERANCE`` aborts the export.
The folder is assembled under a temporary name and renamed into place, so ``--out`` is never half-written.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import save_file

from ..datasets.fields import DataContext
from ..errors import ModalzooError, unknown_name_message
from ..registry import DATASETS, to_plain
from ..training.runs import load_run_model
from . import architecture
from .architecture import Architecture
from .card import write_card

TOLERANCE = 1e-4        # max |difference| between the zoo model and the exported one, fp32


@dataclass
class RunForExport:
    run_dir: Path
    cfg: DictConfig
    model: torch.nn.Module
    checkpoint: Path
    step: int
    data_ctx: DataContext                     # the run's data states: tokenizer, sizes, class names and prompts
    data: object = None                       # the run's dataset (states restored), for `one_target`


def load_run(run_dir: str | Path, step: int | None = None) -> RunForExport:
    """A run's config, model with the chosen (default: newest) checkpoint's weights, and its data states
    restored from the run directory (tokenizer.json, the data config): the shards need not be here."""
    run_dir = Path(run_dir)
    cfg, model, checkpoint, step = load_run_model(run_dir, step)
    data = DATASETS.build(cfg.data, "data") if cfg.get("data") else None
    data_ctx = data.context(run_dir) if data is not None else DataContext()
    return RunForExport(run_dir, cfg, model, checkpoint, int(step), data_ctx, data)


def one_target(run: RunForExport, target: str) -> RunForExport:
    """The run narrowed to one target and the streams it reads (a binding run's image-text target alone is a
    CLIP): their weights, copied, and, in a `mixture`, the data config and states of the source feeding it. A
    target that borrows another's projections (``shares``) gets copies of them as its own."""
    from ..model import build_model

    spec = to_plain(run.cfg.model)
    targets = spec.get("targets") or {}
    if target not in targets:
        raise ModalzooError(unknown_name_message("target", target, targets))
    reads = run.model.targets[target].reads()
    if reads is None:
        raise ModalzooError(f"target '{target}' does not say which streams it reads; export the whole model")
    t_spec = dict(targets[target])
    owner = t_spec.pop("shares", "") or ""
    narrow = {**spec, "streams": {n: s for n, s in spec["streams"].items() if n in reads}, "targets": {target: t_spec}}
    state = run.model.state_dict()
    keep = {k: v for k, v in state.items()
            if (k.startswith("streams.") and k.split(".")[1] in reads) or k.startswith(f"targets.{target}.")}
    for stream in getattr(run.model.targets[target], "shared_projections", {}):
        lead = f"targets.{owner}.projections.{stream}."
        keep.update({f"targets.{target}.projections.{stream}." + k[len(lead):]: v
                     for k, v in state.items() if k.startswith(lead)})
    try:
        model = build_model({"model": narrow})
    except ModalzooError as err:
        raise ModalzooError(f"target '{target}' with its streams {list(reads)} alone is not a model: {err}") from None
    model.load_state_dict({k: v.clone() for k, v in keep.items()}, strict=True)
    cfg = OmegaConf.create(OmegaConf.to_container(run.cfg, resolve=True))
    cfg.model = narrow
    data_ctx = run.data_ctx
    source = run.data.source_for(target) if hasattr(run.data, "source_for") else None
    if source is not None:
        cfg.data, data_ctx = to_plain(run.cfg.data)["sources"][source.name]["data"], source.data.ctx
    return RunForExport(run.run_dir, cfg, model.eval(), run.checkpoint, run.step, data_ctx)


def export_run(run_dir: str | Path, out: str | Path, format: str = "hf", arch: str | None = None,
               stream: str | None = None, step: int | None = None, push: str | None = None, private: bool = False,
               overwrite: bool = False, echo: Callable[[str], None] = print, target: str | None = None) -> Path:
    """Export a run (see the module docstring); returns the output folder. ``target``: only that target and
    the streams it reads (`one_target`)."""
    if format not in ("hf", "modalzoo"):
        raise ModalzooError(f"--format must be hf or modalzoo, not {format!r}")
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ModalzooError(f"{out} exists and is not empty; pass --overwrite or choose another --out")
    run = load_run(run_dir, step)
    left_out: list[str] = []
    if target:
        left_out = [t for t in run.model.targets if t != target]
        run = one_target(run, target)
    model_spec = to_plain(run.cfg.model)
    tmp = out.parent / f".tmp-{out.name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        if format == "hf":
            chosen = architecture.get(arch) if arch else architecture.detect(model_spec)
            if stream and chosen.whole_model:
                raise ModalzooError(f"--stream picks the one stream a single-stream architecture exports (--arch "
                                    f"vit); {chosen.name} exports the whole model")
            verified = _write_hf(run, chosen, model_spec, stream, tmp)
            echo(f"verified against transformers.{chosen.model_class}: "
                 + ", ".join(f"max |Δ {k}| = {v:.2g}" for k, v in verified.items()))
        else:
            if arch or stream:
                raise ModalzooError("--arch/--stream choose a transformers class; --format modalzoo exports the "
                                    "whole model")
            chosen, verified = None, {}
            _write_modalzoo(run, tmp)
        # the tokenizer / image-processor files: in the architecture's styles, or each field's default
        run.data_ctx.write_files(tmp, None if chosen is None else dict(chosen.preprocessing))
        figures = sorted(p.name for p in run.run_dir.glob("*.png"))      # the run's loss curve and report figures
        # not the figures of the targets left out (zero_shot_confusion-OTHER.png)
        figures = [f for f in figures if not any(f"-{t}." in f or f"-{t}-" in f for t in left_out)]
        for name in figures:
            shutil.copy(run.run_dir / name, tmp / name)
        write_card(tmp, run, format, chosen, figures, verified, repo_id=push)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    echo(f"wrote {out} ({format}{'' if chosen is None else ': ' + chosen.model_class})")
    if push:
        from .push import push_folder
        url = push_folder(out, push, private=private)
        echo(f"pushed to {url}")
    return out


def _write_hf(run: RunForExport, arch: Architecture, spec: dict, stream: str | None, out: Path) -> dict[str, float]:
    import transformers
    try:
        kwargs = arch.hf_config(spec, stream, run.data_ctx)
    except ModalzooError as err:
        raise ModalzooError(f"--format hf cannot export this run as transformers.{arch.model_class}: {err}. "
                            f"--format modalzoo exports any run") from None
    hf = architecture.hf_model(arch, kwargs)
    result = hf.load_state_dict(arch.to_hf(run.model, spec, stream, kwargs), strict=False)
    if result.missing_keys or result.unexpected_keys:      # the mapping and the HF class disagree: a bug
        raise ModalzooError(f"{arch.model_class} does not take the mapped weights: missing "
                            f"{result.missing_keys[:8]}, unexpected {result.unexpected_keys[:8]}")
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()        # one-shard writes and reads: bars are noise
    try:
        hf.save_pretrained(out)
        if arch.model_files is not None:
            arch.model_files(spec, stream, out)
        loaded = getattr(transformers, arch.auto_class).from_pretrained(out, use_safetensors=True,
                                                                        **arch.load_args).eval()
    finally:
        if bars:
            transformers.utils.logging.enable_progress_bar()
    if type(loaded).__name__ != arch.model_class:
        raise ModalzooError(f"{arch.auto_class} loaded {type(loaded).__name__}, not {arch.model_class}")
    diffs = arch.compare(run.model, loaded, spec, stream, run.data_ctx)
    worst = max(diffs.values())
    if not worst <= TOLERANCE:
        raise ModalzooError(f"the exported {arch.model_class} differs from the zoo model by {worst:.3g} "
                            f"(> {TOLERANCE}): {diffs}; nothing was written")
    return diffs


def _write_modalzoo(run: RunForExport, out: Path) -> None:
    from .. import __version__
    recipe = OmegaConf.to_container(run.cfg, resolve=True)
    recipe.pop("run_dir", None)
    config = {"modalzoo": {"version": __version__, "format": 1, "step": run.step,
                           "source_checkpoint": run.checkpoint.name}, **recipe}
    (out / "config.json").write_text(json.dumps(config, indent=2))
    weights = {k: v.detach().contiguous().cpu() for k, v in run.model.state_dict().items()}
    save_file(weights, out / "model.safetensors", metadata={"format": "modalzoo", "step": str(run.step)})
