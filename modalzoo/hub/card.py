"""The model card (`README.md` with Hub metadata) every export writes.

It says what was trained (recipe, steps, data), how well (final validation metrics, `eval.json`'s
summary), shows the run's figures, and gives a usage snippet that runs as written against the folder
(or the pushed repo). The license is a placeholder the user sets before publishing.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from omegaconf import OmegaConf

from ..registry import TARGETS, to_plain
from ..training.logging import read_metrics
from . import architecture

LICENSE_PLACEHOLDER = "other"     # the user picks the real one; the card says so

# A modalzoo-format export's snippet; a transformers export uses its architecture's `usage`.
MODALZOO_USAGE = '''import modalzoo

model = modalzoo.from_pretrained("{model_id}")      # a PretrainModel in eval mode; its recipe: model.recipe
print(sum(p.numel() for p in model.parameters()), "parameters;", list(model.streams), "->", list(model.targets))'''


def _final_metrics(run_dir: Path) -> dict[str, float]:
    val = [r for r in read_metrics(run_dir) if r.get("split") == "val"]
    if not val:
        return {}
    last = val[-1]
    return {k: v for k, v in last.items() if k not in ("split",) and isinstance(v, (int, float))}


def _eval_summary(run_dir: Path) -> dict:
    path = run_dir / "eval.json"
    if not path.exists():
        return {}
    result = json.loads(path.read_text())      # the reports' summary numbers sit at its top level
    numbers = {k: v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {"step": result.get("step"), **numbers}


def _zero_shot_prompts(run) -> tuple[list[str], str]:
    """A few class names and the first prompt template, from the run's data when it has them (the first field
    holding class names: a mixture's sources may each have their own)."""
    for state in run.data_ctx.states.values():
        found = getattr(state, "__dict__", {})
        if found.get("classes"):
            templates = found.get("templates") or ["a photo of {}."]
            return [str(n) for n in found["classes"][:5]], str(templates[0])
    return ["cat", "dog", "car"], "a photo of {}."


def _data_line(data: dict) -> str:
    """"`image_text` data (`data/digits`)", or for a mixture each source's, with its weight and targets."""
    sources = data.get("sources") if data.get("name") == "mixture" else None
    if not isinstance(sources, dict):
        return f"`{data.get('name', '?')}` data (`{data.get('path', '?')}`)"
    parts = [f"{name}: `{(s.get('data') or {}).get('name', '?')}` data (`{(s.get('data') or {}).get('path', '?')}`, "
             f"weight {s.get('weight', 1.0)}, feeding {', '.join(s.get('targets') or [])})"
             for name, s in sources.items()]
    return "a mixture of " + "; ".join(parts)


def _pipeline_of(cfg) -> str:
    """A modalzoo-format card's Hub task: that of the architecture the model has the shape of (its options
    may still keep it from exporting there), else one its targets declare (``pipeline_tag`` on the
    registered class), else feature extraction."""
    model = to_plain(cfg.model)
    arch = architecture.find(model)
    if arch is not None:
        return arch.pipeline_tag
    declared = (getattr(TARGETS.get(str(t.get("name"))).cls, "pipeline_tag", None)
                for t in (model.get("targets") or {}).values())
    return next((tag for tag in declared if tag), "feature-extraction")


def write_card(out: Path, run, format: str, arch, figures: list[str], verified: dict[str, float],
               repo_id: str | None = None) -> Path:
    """Write ``out/README.md``; ``run`` is an `export.RunForExport`."""
    recipe = run.cfg.get("recipe") or "custom"
    shaped = architecture.find(to_plain(run.cfg.model)) if arch is None else None
    kind = arch if arch is not None else shaped              # a zoo export still carries its kind's tags
    meta = {"library_name": "transformers" if arch is not None else "modalzoo",
            "license": LICENSE_PLACEHOLDER,
            "tags": ["modalzoo", f"modalzoo-recipe-{recipe}", *(kind.tags if kind is not None else ())],
            "pipeline_tag": arch.pipeline_tag if arch is not None else _pipeline_of(run.cfg)}
    data = OmegaConf.to_container(run.cfg.data, resolve=True) if run.cfg.get("data") else {}
    model_id = repo_id or str(Path(out).resolve().parent / Path(out).name).replace(".tmp-", "", 1)
    labels, template = _zero_shot_prompts(run)
    zoo_usage = (shaped.zoo_usage if shaped is not None else "") or MODALZOO_USAGE
    snippet = (arch.usage if arch is not None else zoo_usage).format(model_id=model_id, labels=labels,
                                                                     template=template)
    final = _final_metrics(run.run_dir)
    evals = _eval_summary(run.run_dir)
    lines = ["---", yaml.safe_dump(meta, sort_keys=False).strip(), "---", "",
             f"# {recipe} (modalzoo, step {run.step})", "",
             f"Pretrained with modalzoo's `{recipe}` recipe for "
             f"{run.step} steps on {_data_line(data)}."
             + (f" Exported as `transformers.{arch.model_class}`: it loads with `{arch.auto_class}` and no remote "
                f"code." if arch is not None else " Exported in modalzoo's own format (the zoo model has no "
                                                   "faithful transformers class, or you asked for this format)."),
             "", "> **License:** the `license` field above is a placeholder; set it to the license of your "
             "training data and code before publishing.", ""]
    if final or evals:
        lines += ["## Results", "", "| metric | value |", "|---|---:|"]
        lines += [f"| validation {k} (step {final.get('step')}) | {v:.4g} |" for k, v in final.items() if k != "step"]
        lines += [f"| {k} (eval at step {evals.get('step')}) | {v:.4g} |" for k, v in evals.items() if k != "step"]
        lines.append("")
    if kind is not None and kind.card_results is not None and (run.run_dir / "eval.json").exists():
        extra = kind.card_results(json.loads((run.run_dir / "eval.json").read_text()))
        lines += [*extra, ""] if extra else []
    for name in figures:
        lines += [f"![{name.removesuffix('.png').replace('_', ' ')}]({name})", ""]
    if verified:
        lines += ["## Export check", "", f"Loaded back with `transformers.{arch.auto_class}` and run next to the zoo "
                  "model on the same inputs (fp32): " + ", ".join(f"max |Δ {k}| = {v:.2g}" for k, v in
                                                                    verified.items()) + ".", ""]
    lines += ["## Usage", "", "```python", snippet, "```", ""]
    if arch is not None and arch.card_note:
        lines += [arch.card_note, ""]
    if arch is not None:
        tokenizer = f" data.tokenizer.path={model_id}/tokenizer.json" if "text" in arch.preprocessing else ""
        lines += [f"To continue pretraining in modalzoo: `modalzoo train {recipe} init_from=hf:{model_id}{tokenizer}`",
                  ""]
    resolved = OmegaConf.to_container(run.cfg, resolve=True)
    resolved.pop("run_dir", None)
    lines += ["## Recipe", "", "<details><summary>the resolved recipe</summary>", "", "```yaml",
              yaml.safe_dump(resolved, sort_keys=False).strip(), "```", "</details>", ""]
    path = Path(out) / "README.md"
    path.write_text("\n".join(lines))
    return path
