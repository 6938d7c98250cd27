"""Every modality's test harness, `tests/modalities/<name>/harness.py`, found through
`modalzoo.components.MODALITIES` (so a new modality's tests need no edit here or in test_registry.py).

A harness may define ``SHAPES`` (name -> (model spec, batch maker)) and ``COVERS`` ((kind, name) -> shape)
for its model components, and ``DATASETS`` / ``SAMPLE_DATA`` / ``PACKERS`` (registered name ->
``fn(kind, name, fixtures)``, ``fn(packer, tmp_path)`` for packers) for the rest."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from modalzoo.components import MODALITIES

HERE = Path(__file__).parent


def _load(modality: str):
    path = HERE / "modalities" / modality / "harness.py"
    spec = importlib.util.spec_from_file_location(f"harness_{modality}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HARNESSES = {m: _load(m) for m in MODALITIES if (HERE / "modalities" / m / "harness.py").exists()}


def merged(attr: str) -> dict:
    """One dict of every harness's ``attr``; a name defined by two modalities is an error."""
    out: dict = {}
    for modality, harness in HARNESSES.items():
        for key, value in getattr(harness, attr, {}).items():
            if key in out:
                raise ValueError(f"{attr}[{key!r}] is defined twice (again by tests/modalities/{modality})")
            out[key] = value
    return out
