"""Shared fixtures: a small docstring corpus and the digits images, built once per session, and a
tiny-recipe helper; the session starts only on the torch family pyproject.toml pins."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import torch


def sibling(here: str, name: str, module_name: str | None = None):
    """The module ``NAME.py`` beside the file ``here`` (a harness's or test's ``__file__``), loaded by path once
    and registered in sys.modules under ``module_name`` (default: ``name``), so a harness loaded by path by
    tests/harnesses.py and the tests of its folder share one module without the folder on sys.path."""
    import importlib.util
    key = module_name or name
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, Path(here).with_name(f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]

ROOT = Path(__file__).resolve().parents[1]
TORCH_FAMILY = ("torch", "torchvision", "torchaudio")


def torch_family_pins() -> dict[str, str]:
    """The exact torch/torchvision/torchaudio versions pyproject.toml pins, e.g. {"torch": "2.14.1", ...}."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = {}
    for dep in deps:
        name = re.match(r"[A-Za-z0-9._-]+", dep).group().lower()
        if name in TORCH_FAMILY:
            exact = re.fullmatch(r"[A-Za-z0-9._-]+==([\w.]+)", dep.replace(" ", ""))
            if exact is None:
                raise pytest.UsageError(f"pyproject.toml: {dep!r} must be an exact pin ({name}==X.Y.Z); "
                                        "the torch family is ABI-tied")
            pins[name] = exact.group(1)
    return pins


def torch_family_mismatch() -> str | None:
    """One line naming installed and pinned versions if the installed torch family is not the pinned one."""
    pins = torch_family_pins()
    installed = {}
    for name in TORCH_FAMILY:
        try:
            installed[name] = metadata.version(name).split("+")[0]  # 2.14.1+cpu is a build of 2.14.1
        except metadata.PackageNotFoundError:
            installed[name] = "missing"
    if installed == pins:
        return None
    have = ", ".join(f"{n} {installed[n]}" for n in TORCH_FAMILY)
    want = ", ".join(f"{n}=={pins.get(n, '?')}" for n in TORCH_FAMILY)
    return (f"installed {have} but pyproject.toml pins {want} (ABI-tied: a mixed set fails to load); "
            "reinstall with: make install")


def pytest_sessionstart(session):
    """Refuse to run on a torch family other than the pinned one, in one line instead of a traceback per test."""
    if (problem := torch_family_mismatch()) is not None:
        raise pytest.UsageError(problem)


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(2)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module (``pytestmark = pytest.mark.usefixtures("one_thread")``): exact comparisons
    and step timings then do not depend on thread scheduling on a shared machine (2 shared cores made SDPA
    calls 1000x slower with 2 threads)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def text_sample(tmp_path_factory) -> Path:
    """A ~0.4 MB text-sample (real docstrings), built the way users build it."""
    from modalzoo.modalities.text.samples import TextSample, TextSampleConfig
    out = tmp_path_factory.mktemp("data") / "text-sample"
    TextSample(TextSampleConfig(max_mb=0.4, docs_per_shard=100, val_fraction=0.1)).build(out)
    return out


@pytest.fixture(scope="session")
def digits(tmp_path_factory) -> Path:
    """scikit-learn's handwritten digits as image-text shards (1,437 train / 360 test), built once."""
    from modalzoo.modalities.vision.samples import Digits, DigitsConfig
    out = tmp_path_factory.mktemp("data") / "digits"
    Digits(DigitsConfig()).build(out)
    return out


@pytest.fixture(scope="session")
def molecules(tmp_path_factory) -> Path:
    """`data build molecules` with 150 pool molecules per source (the two property tasks whole), built once."""
    pytest.importorskip("rdkit", reason="the molecules builder needs RDKit: pip install 'modalzoo[graph]'")
    from modalzoo.modalities.graph.samples import Molecules, MoleculesConfig
    out = tmp_path_factory.mktemp("data") / "molecules"
    Molecules(MoleculesConfig(pool_limit=150)).build(out)
    return out


def write_audio_clips(out: Path, per_split: int = 24, rate: int = 16000, seed: int = 0) -> Path:
    """Synthetic clips in the `audio` layout: class k is a tone of 300 * (k + 1) Hz in noise, 0.1 to 1.5 s
    long, with a caption, a class id and (``KEY.json``) its metadata; plus info.json and classes.json."""
    import json

    import numpy as np

    from modalzoo.datasets.shards import ShardWriter
    from modalzoo.modalities.audio.io import encode_audio

    rng = np.random.default_rng(seed)
    classes = ["low tone", "middle tone", "high tone"]
    counts = {}
    for split in ("train", "validation"):
        with ShardWriter(out, split, max_count=per_split // 2) as writer:
            for i in range(per_split):
                k, n = i % 3, int(rng.integers(rate // 10, rate * 3 // 2))
                t = np.arange(n) / rate
                wave = 0.3 * np.sin(2 * np.pi * 300 * (k + 1) * t) + 0.02 * rng.standard_normal(n)
                writer.write({"__key__": f"{split}-{i:04d}", "flac": encode_audio(wave, rate), "cls": str(k),
                              "txt": f"a {classes[k]} for {n / rate:.1f} seconds",
                              "json": json.dumps({"seconds": n / rate, "class": classes[k]})})
        counts[split] = per_split
    (out / "info.json").write_text(json.dumps({"name": "test-clips", "sample_rate": rate, "clips": counts}))
    (out / "classes.json").write_text(json.dumps({"classes": classes, "templates": ["the sound of a {}."]}))
    return out


@pytest.fixture(scope="session")
def audio_clips(tmp_path_factory) -> Path:
    """48 synthetic 16 kHz clips (3 tone classes) in the `audio` dataset layout, built once."""
    return write_audio_clips(tmp_path_factory.mktemp("data") / "audio-clips")


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


def bind_overrides(digits, clips, run_dir, **extra) -> list[str]:
    """bind_tiny shrunk to seconds: 1-layer towers of width 32, the digits and the synthetic tone clips."""
    tower = {"layers": 1, "dim": 32, "heads": 2, "ffn_dim": 64}
    base = {"run_dir": run_dir, "data.sources.digits.data.path": digits, "data.sources.words.data.path": clips,
            "data.sources.digits.data.num_workers": 0, "data.sources.words.data.num_workers": 0,
            "data.sources.words.data.val_split": "validation", "data.sources.words.data.max_seconds": 1.0,
            "data.sources.digits.data.tokenizer.vocab_size": 300, "data.sources.words.data.tokenizer.vocab_size": 300,
            "model.streams.image.embedding.dim": 32, "model.streams.audio.embedding.dim": 32,
            "model.streams.audio.embedding.max_frames": 100, "model.streams.text.embedding.dim": 32,
            "model.streams.text.embedding.vocab_size": 300,
            "model.targets.image_text.embed_dim": 16, "model.targets.audio_text.embed_dim": 16,
            "trainer.batch_size": 8, "trainer.max_steps": 6, "trainer.log_every": 1, "trainer.eval_every": 100,
            "trainer.eval_batches": 2, "trainer.checkpoint_every": 3, "trainer.keep_last": 5,
            "trainer.warmup_steps": 2, "trainer.progress": False,
            "model.streams.image.encoder.dropout": 0.1, "model.streams.text.encoder.dropout": 0.1}
    for stream in ("image", "audio", "text"):
        base.update({f"model.streams.{stream}.encoder.{k}": v for k, v in tower.items()})
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the installed CLI the way a user does, capturing output."""
    return subprocess.run([sys.executable, "-m", "modalzoo", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=600)
