"""Faults: non-finite steps are skipped and counted, then stop the run; an interrupted sharded
checkpoint write leaves the previous checkpoint loadable."""

from __future__ import annotations

import json

import pytest
import torch
import torch.distributed as dist

import modalzoo
from conftest import tiny_overrides
from modalzoo.training import checkpoint as ckpt
from modalzoo.training.trainer import Trainer


def poisoned(trainer: Trainer, bad_calls: set[int]):
    """Make the model's loss NaN on the given training forward calls (counting from 1)."""
    real, calls = trainer.forward, [0]

    def forward(batch):
        out = real(batch)
        if not trainer.model.training:
            return out
        calls[0] += 1
        if calls[0] in bad_calls:
            out.loss = out.loss * float("nan")
        return out

    trainer.forward = forward


def test_nonfinite_steps_are_skipped_and_counted(text_sample, tmp_path):
    cfg = modalzoo.load_recipe("bert_mlm_tiny", tiny_overrides(text_sample, tmp_path, **{
        "trainer.max_steps": 6, "trainer.log_every": 1}))
    trainer = Trainer(cfg)
    poisoned(trainer, {2, 4})
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.fit()
    records = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    counts = [r["nonfinite_steps"] for r in records if r["split"] == "train"]
    assert counts == [0, 1, 1, 2, 2, 2]
    after = trainer.model.state_dict()
    assert all(torch.isfinite(v).all() for v in after.values())
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_too_many_nonfinite_steps_stop_with_the_step(text_sample, tmp_path):
    cfg = modalzoo.load_recipe("bert_mlm_tiny", tiny_overrides(text_sample, tmp_path, **{
        "trainer.max_steps": 20, "trainer.checkpoint_every": 2, "trainer.max_nonfinite_steps": 3}))
    trainer = Trainer(cfg)
    poisoned(trainer, set(range(5, 100)))
    with pytest.raises(modalzoo.ModalzooError, match=r"3 non-finite steps in a row, the last at step 7") as err:
        trainer.fit()
    good = ckpt.latest_checkpoint(tmp_path)
    assert good.name == "step_00000004" and str(good) in str(err.value)
    model = modalzoo.build_model(cfg)
    ckpt.load_weights(model, good)
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())


@pytest.fixture
def one_rank_group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_interrupted_sharded_write_keeps_the_previous_checkpoint(tmp_path, one_rank_group, monkeypatch):
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    run = tmp_path / "run"
    good = ckpt.save_sharded(run, 2, model, opt, {"step": 2}, keep_last=3, rank=0)

    def crash(*args, **kwargs):
        raise OSError("node lost")

    monkeypatch.setattr(ckpt.dcp, "save", crash)
    with pytest.raises(OSError):
        ckpt.save_sharded(run, 4, model, opt, {"step": 4}, keep_last=3, rank=0)
    assert ckpt.latest_checkpoint(run) == good
    fresh = torch.nn.Sequential(torch.nn.Linear(4, 4))
    ckpt.load_weights(fresh, good)
    assert torch.equal(fresh[0].weight, model[0].weight)
