"""The vision recipes end to end through the CLI on the digits data: train a few steps, then eval; and which
evaluation reports apply to which models."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from conftest import run_cli
from tiny_models import SHAPES, enc

SHRINK = {"trainer.max_steps": 6, "trainer.batch_size": 32, "trainer.log_every": 3, "trainer.eval_every": 6,
          "trainer.eval_batches": 2, "trainer.checkpoint_every": 6, "trainer.warmup_steps": 2,
          "trainer.progress": False, "data.num_workers": 0}


@pytest.mark.parametrize("recipe,keys", [
    ("clip_vit_tiny", ["zero_shot_top1", "linear_probe_top1", "linear_probe_top1_random_init"]),
    ("mae_vit_tiny", ["linear_probe_top1", "linear_probe_top1_random_init"]),
])
def test_vision_recipe_trains_and_evaluates(digits, tmp_path, recipe, keys):
    run_dir = tmp_path / recipe
    args = [f"{k}={v}" for k, v in {**SHRINK, "run_dir": run_dir, "data.path": digits}.items()]
    trained = run_cli("train", recipe, *args)
    assert trained.returncode == 0, trained.stderr[-3000:]
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert "images_per_s" in [r for r in records if r["split"] == "train"][-1]
    evaluated = run_cli("eval", str(run_dir), "--batches", "2")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    report = json.loads((run_dir / "eval.json").read_text())
    for key in keys:
        assert 0.0 <= report[key] <= 1.0, key
    png = run_dir / ("zero_shot_confusion.png" if recipe.startswith("clip") else "mae_reconstructions.png")
    assert png.stat().st_size > 10_000


@pytest.mark.parametrize("recipe", ["clip_vit_b32", "clip_vit_b16", "mae_vit_b16", "bert_base_mlm",
                                    "roberta_base_mlm"])
def test_published_recipes_load_and_build(recipe):
    import modalzoo
    cfg = modalzoo.load_recipe(recipe)
    model = modalzoo.build_model(cfg)
    n = sum(p.numel() for p in model.parameters())
    expected = {"clip_vit_b32": 151e6, "clip_vit_b16": 150e6, "mae_vit_b16": 111e6, "bert_base_mlm": 110e6,
                "roberta_base_mlm": 125e6}[recipe]
    assert abs(n - expected) / expected < 0.03, f"{recipe}: {n / 1e6:.1f}M parameters"


TEXT_AND_CODE = {  # contrastive, but over text and code: no image report applies
    "streams": {"text": {"embedding": {"name": "token", "vocab_size": 50, "dim": 32}, "encoder": enc(mask="causal")},
                "code": {"embedding": {"name": "code_dataflow", "vocab_size": 50, "dim": 32}, "encoder": enc()}},
    "targets": {"pair": {"name": "contrastive", "streams": ["text", "code"], "pooling": ["last", "mean"],
                         "embed_dim": 16}}}
TWO_TEXTS = {**TEXT_AND_CODE, "streams": {
    "text": TEXT_AND_CODE["streams"]["text"],
    "code": {"embedding": {"name": "token", "vocab_size": 50, "dim": 32, "prefix": "code_"}, "encoder": enc()}}}


@pytest.mark.parametrize("spec,classes,expected", [
    (SHAPES["clip"][0], ["zero", "one"], ["zero-shot image classification", "linear probe vs random init"]),
    (SHAPES["clip_timm"][0], ["zero", "one"], ["zero-shot image classification", "linear probe vs random init"]),
    (SHAPES["clip"][0], [], []),                                   # no class names: nothing to classify
    (SHAPES["mae"][0], ["zero", "one"], ["linear probe vs random init", "MAE reconstruction grid"]),
    (SHAPES["bert"][0], [], ["mlm fill-mask and unigram baseline"]),
    (SHAPES["graphcodebert"][0], [],                               # no fill-mask (it cannot feed the data-flow
     ["code search MRR (contrastive fine-tune from the run and from random init)"]),   # graph): code's own report
    (TEXT_AND_CODE, ["zero", "one"], []),
    (TWO_TEXTS, ["zero", "one"], []),
])
def test_reports_apply_by_what_the_streams_read_and_the_data_offers(spec, classes, expected):
    import modalzoo
    from modalzoo.evaluation.run import reports_for
    model = modalzoo.build_model({"model": spec})
    run = SimpleNamespace(model=model, data=SimpleNamespace(texts=lambda split: iter(())),
                          data_ctx=SimpleNamespace(tokenizer=object(), get={"classes": classes}.get))
    for target in model.targets:
        assert [r.name for r in reports_for(run, target)] == expected
