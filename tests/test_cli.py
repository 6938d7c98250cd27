"""The command line as a user meets it: end-to-end training, evaluation, data tools and errors."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from conftest import run_cli, tiny_overrides


@pytest.fixture(scope="module")
def trained_run(text_sample, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    overrides = tiny_overrides(text_sample, run_dir, **{"trainer.max_steps": 40, "trainer.lr": 3e-3,
                                                        "trainer.eval_every": 20, "trainer.checkpoint_every": 20})
    result = run_cli("train", "bert_mlm_tiny", *overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir, result


def test_train_end_to_end(trained_run):
    run_dir, result = trained_run
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["split"] == "train"]
    val = [r for r in records if r["split"] == "val"]
    assert all({"step", "split", "loss"} <= set(r) for r in records)
    assert "mlm/accuracy" in train[-1] and "tokens_per_s" in train[-1]
    assert train[-1]["loss"] < train[0]["loss"] - 0.5, [r["loss"] for r in train]
    assert [r["step"] for r in val] == [0, 20, 40]
    assert val[-1]["loss"] < val[0]["loss"] - 0.5
    checkpoints = sorted((run_dir / "checkpoints").glob("step_*"))
    assert [c.name for c in checkpoints] == ["step_00000020", "step_00000040"]
    weights = load_file(checkpoints[-1] / "model.safetensors")
    assert "streams.text.embedding.word.weight" in weights
    assert (run_dir / "tokenizer.json").exists() and (run_dir / "config.yaml").exists()
    assert (run_dir / "loss_curve.png").stat().st_size > 10_000
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert "run finished" in result.stdout


def test_eval_prints_table_and_writes_json(trained_run):
    run_dir, _ = trained_run
    result = run_cli("eval", str(run_dir), "--batches", "3")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "unigram baseline" in result.stdout and "before training" in result.stdout
    assert "masks filled" in result.stdout
    report = json.loads((run_dir / "eval.json").read_text())
    assert report["step"] == 40
    assert report["val"]["mlm/loss"] < report["val_before_training"]["mlm/loss"]
    assert report["mlm"]["fill_masks"]


def test_eval_on_another_packed_dataset(trained_run, text_sample, tmp_path):
    """`modalzoo eval RUN data.path=OTHER`: the run's model and tokenizer on other shards, written beside
    eval.json as eval-path-OTHER.json (its PNGs tagged alike); only data keys are taken, misspelt ones named."""
    import shutil
    run_dir, _ = trained_run
    other = tmp_path / "other"
    shutil.copytree(text_sample / "train", other / "validation")       # other documents as its validation split
    shutil.copytree(text_sample / "validation", other / "train")       # (the MLM report's unigram counts)
    result = run_cli("eval", str(run_dir), f"data.path={other}", "--batches", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((run_dir / "eval-path-other.json").read_text())
    assert report["data_overrides"] == [f"data.path={other}"] and report["step"] == 40
    own = run_cli("eval", str(run_dir), "--batches", "2")
    assert own.returncode == 0
    assert json.loads((run_dir / "eval.json").read_text())["val"]["mlm/loss"] != report["val"]["mlm/loss"]
    for bad, expected in [("model.streams.text.encoder.layers=3", "eval takes data and report overrides only"),
                          (f"data.pth={other}", "did you mean 'data.path'?")]:
        result = run_cli("eval", str(run_dir), bad)
        assert result.returncode == 2 and expected in result.stderr, result.stderr[-2000:]
        assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args,expected", [
    (["train", "bert_mlm_tiy"], "unknown recipe 'bert_mlm_tiy'; did you mean 'bert_mlm_tiny'?"),
    (["train", "bert_mlm_tiny", "trainer.max_step=5"], "unknown key 'trainer.max_step' in 'trainer'; did you mean "
                                                       "'trainer.max_steps'?"),
    (["train", "bert_mlm_tiny", "model.streams.text.encoder.layrs=2"],
     "unknown key 'model.streams.text.encoder.layrs'; did you mean 'model.streams.text.encoder.layers'?"),
    (["train", "bert_mlm_tiny", "trainer.max_steps=ten"], "'trainer.max_steps'"),
    (["train", "bert_mlm_tiny", "trainer.precision=fp16"], "expected one of ['fp32', 'bf16']"),
    (["train", "bert_mlm_tiny", "model.targets.mlm.name=mlmm"], "unknown target 'mlmm'; did you mean 'mlm'?"),
    (["train", "bert_mlm_tiny", "+model.streams.text.encoder._target_=os.system"], "import paths are not allowed"),
    (["list", "encodr"], "did you mean 'encoder'?"),
    (["eval", "/nonexistent/run"], "is not a run directory"),
])
def test_errors_are_one_clear_line(args, expected):
    result = run_cli(*args)
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_data_names_the_build_command(tmp_path):
    result = run_cli("train", "bert_mlm_tiny", f"data.path={tmp_path}/nothing", f"run_dir={tmp_path}/run")
    assert result.returncode == 2
    assert "modalzoo data build text-sample" in result.stderr


@pytest.mark.parametrize("command", [[], ["list"], ["recipes"], ["train"], ["eval"], ["data"], ["data", "build"],
                                     ["data", "pack-text"], ["data", "pack-images"]])
def test_help_has_an_example(command):
    result = run_cli(*command, "--help")
    assert result.returncode == 0
    assert "example" in result.stdout and "modalzoo" in result.stdout


def test_list_and_recipes():
    listed = run_cli("list")
    assert listed.returncode == 0
    for kind in ("embedding:", "encoder:", "target:", "tokenizer:", "dataset:", "optimizer:", "scheduler:"):
        assert kind in listed.stdout
    lines = {line.split()[0]: line.split()[-1] for line in listed.stdout.splitlines() if line.startswith("  ")}
    assert lines["transformer"] == "modalzoo.encoders.transformer"     # the module each component lives in
    assert lines["mlm"] == "modalzoo.pretrain_tasks.mlm"
    assert lines["code_dataflow"] == "modalzoo.modalities.code.embedding"
    recipes = run_cli("recipes").stdout.split()
    assert {"bert_mlm_tiny", "bert_base_mlm", "roberta_base_mlm"} <= set(recipes)


def test_user_component_in_user_recipe(text_sample, tmp_path):
    """A user's module registers an encoder; their own recipe file extends a shipped one to use it."""
    (tmp_path / "my_parts.py").write_text(
        "from dataclasses import dataclass\n"
        "from torch import nn\n"
        "from modalzoo.registry import ENCODERS\n"
        "@dataclass\n"
        "class GRUConfig:\n"
        "    dim: int = 64\n"
        "@ENCODERS.register('my_gru', GRUConfig)\n"
        "class GRUEncoder(nn.Module):\n"
        "    '''A bidirectional GRU encoder (a user's own).'''\n"
        "    def __init__(self, cfg, **_):\n"
        "        super().__init__()\n"
        "        self.dim = cfg.dim\n"
        "        self.gru = nn.GRU(cfg.dim, cfg.dim // 2, batch_first=True, bidirectional=True)\n"
        "    def forward(self, tokens, memory=None):\n"
        "        return tokens.replace(x=self.gru(tokens.x)[0])\n")
    (tmp_path / "my_recipe.yaml").write_text(
        "# @package _global_\n"
        "defaults:\n  - /modalzoo_recipe\n  - /trainer: cpu_small\n  - /data: text_sample\n  - _self_\n"
        "model:\n  streams:\n    text:\n      embedding: {name: token, vocab_size: 2000, dim: 64}\n"
        "      encoder: {name: my_gru, dim: 64}\n"
        "  targets:\n    mlm: {name: mlm, stream: text}\n")
    overrides = [o for o in tiny_overrides(text_sample, tmp_path / "run", **{"trainer.max_steps": 4})
                 if not o.startswith("model.streams.text.encoder")]
    result = run_cli("train", str(tmp_path / "my_recipe.yaml"), "--import", "my_parts", *overrides, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "run" / "checkpoints" / "step_00000004" / "model.safetensors").exists()
    without = run_cli("train", str(tmp_path / "my_recipe.yaml"), *overrides, cwd=tmp_path)
    assert without.returncode == 2 and "unknown encoder 'my_gru'" in without.stderr
