"""The code recipes: they load and build at their published shapes, and graphcodebert_tiny trains end to end
through the CLI on code shards, then exports to RobertaForMaskedLM (verified on export) and imports back."""

from __future__ import annotations

import json

from conftest import run_cli, sibling

code_data = sibling(__file__, "code_data")

SHRINK = {"trainer.max_steps": 6, "trainer.batch_size": 8, "trainer.log_every": 3, "trainer.eval_every": 6,
          "trainer.eval_batches": 2, "trainer.checkpoint_every": 6, "trainer.warmup_steps": 2,
          "trainer.progress": False, "data.num_workers": 0, "data.tokenizer.vocab_size": 400,
          "data.tokenizer.min_frequency": 1, "model.streams.code.embedding.vocab_size": 400}


def test_published_shapes():
    import modalzoo
    base = modalzoo.load_recipe("graphcodebert_base")
    model = modalzoo.build_model(base)
    assert sum(p.numel() for p in model.parameters()) == 124_697_433        # RobertaForMaskedLM of roberta-base
    emb = model.streams["code"].embedding
    assert emb.position.table.weight.shape[0] == 514 and base.data.seq_len == 512 and base.data.max_nodes == 128
    mlm_only = modalzoo.load_recipe("graphcodebert_mlm_tiny")
    full = modalzoo.load_recipe("graphcodebert_tiny")
    assert set(mlm_only.model.targets) == {"mlm"} and set(full.model.targets) == {"mlm", "data_flow"}
    assert mlm_only.model.streams == full.model.streams and mlm_only.data == full.data
    assert full.model.streams.code.embedding.max_positions == full.data.seq_len + 2


def test_tiny_recipe_trains_exports_and_imports_back(tmp_path, recipe="graphcodebert_tiny"):
    """(The MLM-only arm is the same recipe less a target: test_published_shapes checks that.)"""
    data = code_data.write(tmp_path / "code", train=12, validation=2)
    run_dir = tmp_path / recipe
    args = [f"{k}={v}" for k, v in {**SHRINK, "run_dir": run_dir, "data.path": data}.items()]
    trained = run_cli("train", recipe, *args)
    assert trained.returncode == 0, trained.stderr[-3000:]
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in records if r["split"] == "val"][-1]
    assert "mlm/loss" in val and (("data_flow/loss" in val) == (recipe == "graphcodebert_tiny"))
    exported = run_cli("export", str(run_dir), "--format", "hf", "--out", str(tmp_path / "hf"))
    assert exported.returncode == 0, exported.stderr[-3000:]
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["architectures"] == ["RobertaForMaskedLM"] and config["max_position_embeddings"] == 130
    assert (tmp_path / "hf" / "model.safetensors").exists() and (tmp_path / "hf" / "README.md").exists()
    again = run_cli("train", recipe, *args, f"run_dir={tmp_path / 'again'}", f"init_from=hf:{tmp_path / 'hf'}",
                    "trainer.max_steps=1")
    assert again.returncode == 0, again.stderr[-3000:]
