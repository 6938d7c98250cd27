"""The trainer through the Python API: determinism, accumulation, resume, no-decay groups, bf16."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import modalzoo
from conftest import tiny_overrides
from modalzoo.training.optim import AdamW, AdamWConfig


def train(text_sample, run_dir, **extra):
    cfg = modalzoo.load_recipe("bert_mlm_tiny", tiny_overrides(text_sample, run_dir, **extra))
    return modalzoo.train(cfg)


def final_weights(run_dir):
    last = sorted((run_dir / "checkpoints").glob("step_*"))[-1]
    return load_file(last / "model.safetensors")


def test_same_seed_same_weights(text_sample, tmp_path):
    a = final_weights(train(text_sample, tmp_path / "a", **{"trainer.max_steps": 4}))
    b = final_weights(train(text_sample, tmp_path / "b", **{"trainer.max_steps": 4}))
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = final_weights(train(text_sample, tmp_path / "c", **{"trainer.max_steps": 4, "seed": 1}))
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_grad_accum_and_bf16_run(text_sample, tmp_path):
    run = train(text_sample, tmp_path / "r", **{"trainer.max_steps": 3, "trainer.grad_accum": 2,
                                                "trainer.precision": "bf16", "trainer.log_every": 1})
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    train_recs = [r for r in records if r["split"] == "train"]
    assert len(train_recs) == 3 and all(r["loss"] == r["loss"] for r in train_recs)
    # 2 micro-batches of 8 rows x 64 tokens per step, most of them real tokens
    assert train_recs[-1]["tokens_per_s"] > 0


def test_resume_continues_from_the_checkpoint(text_sample, tmp_path):
    run_dir = tmp_path / "r"
    train(text_sample, run_dir, **{"trainer.max_steps": 4, "trainer.checkpoint_every": 2})
    train(text_sample, run_dir, **{"trainer.max_steps": 6, "trainer.checkpoint_every": 2, "trainer.resume": "auto"})
    steps = [json.loads(x)["step"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()
             if json.loads(x)["split"] == "val"]
    assert steps.count(0) == 1                       # the resumed run did not start over
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("step_*")) == ["step_00000004",
                                                                                  "step_00000006"]


def test_no_weight_decay_on_norms_biases_embeddings(text_sample, tmp_path):
    cfg = modalzoo.load_recipe("bert_mlm_tiny", tiny_overrides(text_sample, tmp_path))
    model = modalzoo.build_model(cfg)
    opt = AdamW(AdamWConfig(weight_decay=0.1)).build(model, lr=1e-3)
    decayed = {id(p) for p in opt.param_groups[0]["params"]}
    names = {n: id(p) in decayed for n, p in model.named_parameters()}
    assert names["streams.text.encoder.blocks.0.attn.qkv.weight"]
    assert names["targets.mlm.dense.weight"]
    for frozen in ("streams.text.encoder.blocks.0.attn.qkv.bias", "streams.text.encoder.blocks.0.norm1.weight",
                   "streams.text.embedding.word.weight", "streams.text.embedding.position.table.weight",
                   "targets.mlm.bias"):
        assert not names[frozen], frozen
    opt = AdamW(AdamWConfig(weight_decay=0.1, decay_embeddings=True)).build(model, lr=1e-3)
    decayed = {id(p) for p in opt.param_groups[0]["params"]}
    assert id(model.streams.text.embedding.word.weight) in decayed


def test_vocab_larger_than_embedding_is_refused(text_sample, tmp_path):
    cfg = modalzoo.load_recipe("bert_mlm_tiny", tiny_overrides(
        text_sample, tmp_path, **{"model.streams.text.embedding.vocab_size": 100}))
    with pytest.raises(modalzoo.ModalzooError, match="raise vocab_size"):
        modalzoo.train(cfg)


def test_evaluate_calls_a_compiled_style_wrapper():
    """torch.compile's wrapper raises on len()/bool(): evaluate must not test its truth value."""
    from modalzoo.training.trainer import evaluate
    from tiny_models import SHAPES

    model = modalzoo.build_model({"model": SHAPES["bert"][0]})

    class Wrapper:
        def __len__(self):
            raise TypeError("does not support len()")

        def __call__(self, batch):
            return model(batch)

    result = evaluate(model, [SHAPES["bert"][1]()], torch.device("cpu"), "fp32", 1, forward=Wrapper())
    assert "mlm/accuracy" in result
