"""A mixture under torchrun (2 CPU processes, gloo): every rank draws the same source each step, so DDP (looking
for the streams a step leaves unused) and FSDP2 train a binding model, and a resumed run reaches bitwise the
weights of the uninterrupted one."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import torch
from test_distributed import env, weights

from conftest import bind_overrides

pytestmark = pytest.mark.timeout(900)


def launch(strategy: str, args: list[str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "modalzoo",
           "train", "bind_tiny", f"trainer.strategy={strategy}", "trainer.collective_timeout_s=60", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=600)


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_a_mixture_trains_and_resumes_exactly_under_torchrun(digits, audio_clips, tmp_path, strategy):
    straight = tmp_path / "straight"
    done = launch(strategy, bind_overrides(digits, audio_clips, straight))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "world size 2" in done.stderr
    resumed = tmp_path / "resumed"
    shutil.copytree(straight, resumed)
    for path in (resumed / "checkpoints").glob("step_*"):
        if path.name != "step_00000003":
            shutil.rmtree(path)
    again = launch(strategy, bind_overrides(digits, audio_clips, resumed, **{"trainer.resume": "auto"}))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resumed from" in again.stderr
    a, b = weights(straight), weights(resumed)
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
