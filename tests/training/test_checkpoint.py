"""Checkpoints: safetensors weights, atomic rename, keep-last, and a crash mid-write loses nothing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from modalzoo.errors import ModalzooError
from modalzoo.training import checkpoint as ckpt


def model_and_state(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8))
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    return model, {"optimizer": opt.state_dict(), "step": 1, "rng": ckpt.rng_state()}


def test_save_load_roundtrip_and_keep_last(tmp_path):
    model, state = model_and_state()
    for step in (10, 20, 30):
        ckpt.save_checkpoint(tmp_path, step, model, {**state, "step": step}, keep_last=2)
    names = [p.name for p in ckpt.complete_checkpoints(tmp_path)]
    assert names == ["step_00000020", "step_00000030"]
    other, _ = model_and_state(seed=1)
    ckpt.load_weights(other, ckpt.latest_checkpoint(tmp_path))
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)
    loaded = ckpt.load_trainer_state(ckpt.latest_checkpoint(tmp_path))
    assert loaded["step"] == 30 and "state" in loaded["optimizer"]


def test_crash_during_write_leaves_previous_checkpoint(tmp_path, monkeypatch):
    model, state = model_and_state()
    good = ckpt.save_checkpoint(tmp_path, 10, model, state, keep_last=3)

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", explode)
    with pytest.raises(OSError):
        ckpt.save_checkpoint(tmp_path, 20, model, state, keep_last=3)
    assert ckpt.latest_checkpoint(tmp_path) == good            # the half-written one is not "complete"
    assert not (tmp_path / "checkpoints" / "step_00000020").exists()
    fresh, _ = model_and_state(seed=3)
    ckpt.load_weights(fresh, good)                              # and the previous one still loads
    monkeypatch.undo()
    ckpt.save_checkpoint(tmp_path, 30, model, state, keep_last=3)
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))  # stale temporaries are cleaned up


def test_mismatched_weights_are_a_clear_error(tmp_path):
    model, state = model_and_state()
    path = ckpt.save_checkpoint(tmp_path, 1, model, state, keep_last=1)
    with pytest.raises(ModalzooError, match="missing"):
        ckpt.load_weights(nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2)), path)
    with pytest.raises(ModalzooError, match="no model.safetensors"):
        ckpt.load_weights(model, tmp_path)


def test_trainer_state_refuses_pickled_code(tmp_path):
    """trainer_state.pt is read with weights_only=True: a pickle that would run code is refused."""
    path = tmp_path / "ckpt"
    path.mkdir()

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, path / "trainer_state.pt")
    with pytest.raises(Exception, match="[Ww]eights only load failed|Unsupported"):
        ckpt.load_trainer_state(path)
