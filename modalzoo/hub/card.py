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

from ..training.logging import read_metrics

LICENSE_PLACEHOLDER = "other"     # the user picks the real one; the card says so

USAGE = {
    "bert": '''import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("{model_id}")
model = AutoModelForMaskedLM.from_pretrained("{model_id}").eval()
inputs = tokenizer(f"the {{tokenizer.mask_token}} of the function", return_tensors="pt")
with torch.no_grad():
    logits = model(**inputs).logits
masked = inputs["input_ids"][0] == tokenizer.mask_token_id
print(tokenizer.convert_ids_to_tokens(logits[0, masked].topk(5).indices[0].tolist()))''',
    "vit": '''import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModel

processor = AutoImageProcessor.from_pretrained("{model_id}")
model = AutoModel.from_pretrained("{model_id}", add_pooling_layer=False).eval()
image = Image.new("RGB", (64, 48), (200, 30, 30))      # your image here
with torch.no_grad():
    features = model(**processor(image, return_tensors="pt")).last_hidden_state[:, 0]
print(features.shape)''',
    "vit_mae": '''import torch
from PIL import Image
from transformers import AutoImageProcessor, ViTMAEForPreTraining

processor = AutoImageProcessor.from_pretrained("{model_id}")
model = ViTMAEForPreTraining.from_pretrained("{model_id}").eval()
image = Image.new("RGB", (64, 48), (200, 30, 30))      # your image here
with torch.no_grad():
    out = model(**processor(image, return_tensors="pt"))
print(f"reconstruction loss {{out.loss.item():.4f}}, hidden patches {{int(out.mask.sum())}}")''',
    "clip": '''import torch
from PIL import Image
from transformers import AutoProcessor, CLIPModel

processor = AutoProcessor.from_pretrained("{model_id}")
model = CLIPModel.from_pretrained("{model_id}").eval()
image = Image.new("RGB", (64, 48), (200, 30, 30))      # your image here
labels = {labels}
inputs = processor(text=[{template!r}.format(c) for c in labels], images=image, return_tensors="pt",
                   padding="max_length", truncation=True)
with torch.no_grad():
    probs = model(**inputs).logits_per_image.softmax(-1)[0]
print({{label: round(p, 3) for label, p in zip(labels, probs.tolist())}})''',
    "modalzoo": '''import modalzoo

model = modalzoo.from_pretrained("{model_id}")      # a PretrainModel in eval mode; its recipe: model.recipe
print(sum(p.numel() for p in model.parameters()), "parameters;", list(model.streams), "->", list(model.targets))''',
}
USAGE["roberta"] = USAGE["bert"]
# modalzoo-format exports: the Hub task a model's targets amount to
PIPELINE_BY_TARGET = {"mlm": "fill-mask", "clm": "text-generation", "contrastive": "zero-shot-image-classification",
                      "mae": "image-feature-extraction"}
TAGS = {"bert": ["bert", "fill-mask", "text"], "roberta": ["roberta", "fill-mask", "text"],
        "vit": ["vit", "image-feature-extraction", "vision"], "vit_mae": ["vit_mae", "mae", "vision"],
        "clip": ["clip", "zero-shot-image-classification", "vision", "text"]}


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
    result = json.loads(path.read_text())
    keep = ("zero_shot_top1", "linear_probe_top1", "linear_probe_top1_random_init")
    return {"step": result.get("step"), **{k: result[k] for k in keep if k in result}}


def _zero_shot_prompts(run) -> tuple[list[str], str]:
    """A few class names and the first prompt template, from the run's dataset when it has them."""
    from ..registry import DATASETS
    info = {}
    if run.cfg.get("data"):
        dataset = DATASETS.build(run.cfg.data, "data")
        info = dataset.classes() if hasattr(dataset, "classes") else {}
    if info.get("classes"):
        templates = info.get("templates") or ["a photo of {}."]
        return [str(n) for n in info["classes"][:5]], str(templates[0])
    return ["cat", "dog", "car"], "a photo of {}."


def _pipeline_of(cfg) -> str:
    kinds = [t.get("name") for t in (cfg.model.get("targets") or {}).values()]
    return next((PIPELINE_BY_TARGET[k] for k in kinds if k in PIPELINE_BY_TARGET), "feature-extraction")


def write_card(out: Path, run, format: str, arch, figures: list[str], verified: dict[str, float],
               repo_id: str | None = None) -> Path:
    """Write ``out/README.md``; ``run`` is an `export.RunForExport`."""
    kind = arch.name if arch is not None else "modalzoo"
    recipe = run.cfg.get("recipe") or "custom"
    meta = {"library_name": "transformers" if arch is not None else "modalzoo",
            "license": LICENSE_PLACEHOLDER,
            "tags": ["modalzoo", f"modalzoo-recipe-{recipe}", *TAGS.get(kind, [])],
            "pipeline_tag": arch.pipeline_tag if arch is not None else _pipeline_of(run.cfg)}
    data = OmegaConf.to_container(run.cfg.data, resolve=True) if run.cfg.get("data") else {}
    model_id = repo_id or str(Path(out).resolve().parent / Path(out).name).replace(".tmp-", "", 1)
    labels, template = _zero_shot_prompts(run)
    snippet = USAGE[kind].format(model_id=model_id, labels=labels, template=template)
    final = _final_metrics(run.run_dir)
    evals = _eval_summary(run.run_dir)
    lines = ["---", yaml.safe_dump(meta, sort_keys=False).strip(), "---", "",
             f"# {recipe} (modalzoo, step {run.step})", "",
             f"Pretrained with modalzoo's `{recipe}` recipe for "
             f"{run.step} steps on `{data.get('name', '?')}` data (`{data.get('path', '?')}`)."
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
    for name in figures:
        lines += [f"![{name.removesuffix('.png').replace('_', ' ')}]({name})", ""]
    if verified:
        lines += ["## Export check", "", f"Loaded back with `transformers.{arch.auto_class}` and run next to the zoo "
                  "model on the same inputs (fp32): " + ", ".join(f"max |Δ {k}| = {v:.2g}" for k, v in
                                                                    verified.items()) + ".", ""]
    lines += ["## Usage", "", "```python", snippet, "```", ""]
    if kind == "vit":
        lines += ["ViTModel's optional pooler is not part of the export (the zoo has none): load with "
                  "`add_pooling_layer=False`.", ""]
    if arch is not None:
        tokenizer = f" data.tokenizer.path={model_id}/tokenizer.json" if arch.text_style else ""
        lines += [f"To continue pretraining in modalzoo: `modalzoo train {recipe} init_from=hf:{model_id}{tokenizer}`",
                  ""]
    resolved = OmegaConf.to_container(run.cfg, resolve=True)
    resolved.pop("run_dir", None)
    lines += ["## Recipe", "", "<details><summary>the resolved recipe</summary>", "", "```yaml",
              yaml.safe_dump(resolved, sort_keys=False).strip(), "```", "</details>", ""]
    path = Path(out) / "README.md"
    path.write_text("\n".join(lines))
    return path
