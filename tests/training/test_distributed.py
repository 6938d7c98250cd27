"""Distributed training on CPU with gloo, launched the way users launch it (torchrun, 2 processes).

Exact resume: a run killed with SIGKILL after a checkpoint and resumed reaches bitwise the same
weights as an uninterrupted run, for single-process, DDP and FSDP.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import modalzoo
from conftest import tiny_overrides
from modalzoo.training import checkpoint as ckpt

pytestmark = pytest.mark.timeout(900)


def command(strategy: str, nproc: int) -> list[str]:
    if strategy == "single":
        return [sys.executable, "-m", "modalzoo", "train", "bert_mlm_tiny"]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "modalzoo", "train", "bert_mlm_tiny", f"trainer.strategy={strategy}"]


def overrides(text_sample, run_dir, **extra) -> list[str]:
    base = {"trainer.max_steps": 8, "trainer.checkpoint_every": 2, "trainer.keep_last": 10, "trainer.log_every": 1,
            "trainer.eval_every": 100, "model.streams.text.encoder.dropout": 0.1,
            "model.streams.text.embedding.dropout": 0.1, "trainer.collective_timeout_s": 60}
    return tiny_overrides(text_sample, run_dir, **{**base, **extra})


def env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def launch(strategy, nproc, args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command(strategy, nproc) + args, capture_output=True, text=True, env=env(), timeout=600,
                          **kwargs)


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    model = modalzoo.build_model(OmegaConf.load(run_dir / "config.yaml"))
    ckpt.load_weights(model, ckpt.latest_checkpoint(run_dir))
    return model.state_dict()


def train_losses(run_dir: Path) -> list[float]:
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if r["split"] == "train"]


@pytest.mark.parametrize("strategy,nproc,workers", [("single", 1, 2), ("ddp", 2, 1), ("fsdp", 2, 0)])
def test_exact_resume_after_sigkill(text_sample, tmp_path, strategy, nproc, workers):
    extra = {"data.num_workers": workers}
    straight = launch(strategy, nproc, overrides(text_sample, tmp_path / "straight", **extra))
    assert straight.returncode == 0, straight.stderr[-3000:]

    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen(command(strategy, nproc) + overrides(text_sample, killed_dir, **extra),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env(), start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and not (killed_dir / "checkpoints" / "step_00000004" / "meta.json").exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)                     # the whole launcher and every rank, mid-run
    proc.wait()
    stopped_at = int(ckpt.latest_checkpoint(killed_dir).name.split("_")[1])
    assert 4 <= stopped_at < 8, "the run finished before it could be killed"

    resumed = launch(strategy, nproc, overrides(text_sample, killed_dir, **extra, **{"trainer.resume": "auto"}))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {ckpt.checkpoint_dir(killed_dir)}" in resumed.stderr
    a, b = weights(tmp_path / "straight"), weights(killed_dir)
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"resumed run differs from the uninterrupted one in {different[:5]}"


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_data_parallel_matches_single_process(text_sample, tmp_path, strategy):
    """Same global batch (2 x 8 rows) and seed: per-step losses match the single-process run.

    Single process reads with 2 loader workers and accumulates 2 micro-batches; each of the 2 ranks
    reads with 1 worker. Both have 2 readers, so the global batches are identical row for row.
    """
    common = {"model.streams.text.encoder.dropout": 0.0, "model.streams.text.embedding.dropout": 0.0}
    single = launch("single", 1, overrides(text_sample, tmp_path / "single", **common, **{
        "data.num_workers": 2, "trainer.grad_accum": 2, "trainer.max_steps": 6}))
    assert single.returncode == 0, single.stderr[-3000:]
    parallel = launch(strategy, 2, overrides(text_sample, tmp_path / strategy, **common, **{
        "data.num_workers": 1, "trainer.global_batch_size": 16, "trainer.max_steps": 6}))
    assert parallel.returncode == 0, parallel.stderr[-3000:]
    assert "world size 2" in parallel.stderr and "global batch 16" in parallel.stderr
    expected, got = train_losses(tmp_path / "single"), train_losses(tmp_path / strategy)
    assert len(expected) == len(got) == 6
    assert expected[0] != expected[-1]
    for step, (e, g) in enumerate(zip(expected, got), 1):
        assert abs(e - g) <= 1e-4 * abs(e), f"step {step}: single {e} vs {strategy} {g}"


def test_dead_rank_stops_the_others(text_sample, tmp_path):
    proc = subprocess.Popen(command("ddp", 2) + overrides(text_sample, tmp_path / "r", **{
        "trainer.max_steps": 100000, "trainer.checkpoint_every": 100000}), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, env=env(), start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(train_losses_safe(tmp_path / "r")) < 2:   # both ranks are training
        time.sleep(0.2)
    workers = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    assert len(workers) == 2, workers
    started = time.time()
    os.kill(int(workers[1]), signal.SIGKILL)                # rank 1 dies mid-training
    try:
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert code != 0 and time.time() - started < 120
    err = proc.stderr.read().decode()
    assert "SIGKILL" in err and "ChildFailedError" in err, err[-2000:]


def test_sigterm_writes_a_checkpoint_and_exits_cleanly(text_sample, tmp_path):
    run_dir = tmp_path / "r"
    proc = subprocess.Popen(command("single", 1) + overrides(text_sample, run_dir, **{
        "trainer.max_steps": 100000, "trainer.checkpoint_every": 100000}),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env(), text=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(train_losses_safe(run_dir)) < 3:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert "SIGTERM: checkpoint written" in err
    latest = ckpt.latest_checkpoint(run_dir)
    assert latest is not None and int(latest.name.split("_")[1]) >= 3


def train_losses_safe(run_dir: Path) -> list[float]:
    try:
        return train_losses(run_dir)
    except (FileNotFoundError, json.JSONDecodeError):
        return []
