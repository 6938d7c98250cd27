"""A fresh clone installs what CI tested: the ABI-tied torch family loads together with the libraries that import it,
and requirements/lock.txt agrees with pyproject.toml. (That the installed family is the pinned one is checked once at
session start, in conftest.py.)"""

from __future__ import annotations

import re
import tomllib
from contextlib import contextmanager
from importlib import metadata

import pytest
import torch

from conftest import ROOT, TORCH_FAMILY, torch_family_pins

LOCK = ROOT / "requirements" / "lock.txt"


def lock_pins() -> dict[str, str]:
    lines = [line.strip() for line in LOCK.read_text().splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    loose = [line for line in lines if not re.fullmatch(r"[A-Za-z0-9._-]+==[\w.+!-]+", line)]
    assert not loose, f"{LOCK.name}: every line must be name==version, not {loose[:3]}"
    return {canonical(name): version for name, version in (line.split("==") for line in lines)}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_lock_pins_the_torch_family_as_pyproject_and_every_dependency():
    lock = lock_pins()
    for name, version in torch_family_pins().items():
        assert lock.get(name) == version, f"{LOCK.name} has {name} {lock.get(name)}, pyproject.toml pins {version}"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["dev"]
    unlocked = [dep for dep in declared if canonical(re.match(r"[A-Za-z0-9._-]+", dep).group()) not in lock]
    assert not unlocked, f"{LOCK.name} is stale, it lacks {unlocked}: run make lock"


@contextmanager
def loads_in_one_line():
    """A library built against another torch fails on import (an OSError naming an undefined symbol): say so in one
    line with the installed versions instead of a traceback."""
    try:
        yield
    except (ImportError, OSError) as err:
        cause = f" ({err.__cause__})" if err.__cause__ else ""
        versions = ", ".join(f"{n} {metadata.version(n)}" for n in TORCH_FAMILY)
        raise pytest.fail.Exception(f"does not load on {versions}: {err}{cause}", pytrace=False) from None


def test_torchaudio_loads_on_this_torch():
    with loads_in_one_line():
        import torchaudio.compliance.kaldi
        import torchaudio.functional
    wave = torch.sin(torch.linspace(0, 100, 1600))[None]
    assert torchaudio.functional.resample(wave, 16000, 8000).shape == (1, 800)
    assert torchaudio.compliance.kaldi.fbank(wave, num_mel_bins=23).shape == (8, 23)  # 25 ms windows, 10 ms hop


def test_model_libraries_import_with_this_torch_family():
    with loads_in_one_line():  # transformers imports torchaudio whenever it is installed
        import open_clip
        import timm
        from transformers import BertForMaskedLM, CLIPModel, HubertModel
    for cls in (BertForMaskedLM, CLIPModel, HubertModel):
        assert issubclass(cls, torch.nn.Module), cls
    assert "ViT-B-32" in open_clip.list_models() and "vit_tiny_patch16_224" in timm.list_models()
