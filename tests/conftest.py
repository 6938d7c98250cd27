"""Shared fixtures: a small docstring corpus and the digits images, built once per session, and a
tiny-recipe helper."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(2)


@pytest.fixture(scope="session")
def text_sample(tmp_path_factory) -> Path:
    """A ~0.4 MB text-sample (real docstrings), built the way users build it."""
    from modalzoo.datasets.samples import TextSample, TextSampleConfig
    out = tmp_path_factory.mktemp("data") / "text-sample"
    TextSample(TextSampleConfig(max_mb=0.4, docs_per_shard=100, val_fraction=0.1)).build(out)
    return out


@pytest.fixture(scope="session")
def digits(tmp_path_factory) -> Path:
    """scikit-learn's handwritten digits as image-text shards (1,437 train / 360 test), built once."""
    from modalzoo.datasets.samples import Digits, DigitsConfig
    out = tmp_path_factory.mktemp("data") / "digits"
    Digits(DigitsConfig()).build(out)
    return out


def tiny_overrides(data_path: Path, run_dir: Path, **extra) -> list[str]:
    """Overrides that shrink bert_mlm_tiny to seconds on CPU."""
    base = {"run_dir": str(run_dir), "data.path": str(data_path), "data.num_workers": 0,
            "data.tokenizer.vocab_size": 2000, "data.seq_len": 64,
            "model.streams.text.embedding.vocab_size": 2000, "model.streams.text.embedding.dim": 64,
            "model.streams.text.embedding.max_positions": 64,
            "model.streams.text.encoder.dim": 64, "model.streams.text.encoder.ffn_dim": 128,
            "model.streams.text.encoder.layers": 2, "trainer.batch_size": 8, "trainer.max_steps": 10,
            "trainer.log_every": 5, "trainer.eval_every": 10, "trainer.eval_batches": 2,
            "trainer.checkpoint_every": 10, "trainer.warmup_steps": 2, "trainer.progress": False}
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the installed CLI the way a user does, capturing output."""
    return subprocess.run([sys.executable, "-m", "modalzoo", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=600)
