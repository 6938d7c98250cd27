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
    out: dict = dict(CORE.get(attr, {}))
    for modality, harness in HARNESSES.items():
        for key, value in getattr(harness, attr, {}).items():
            if key in out:
                raise ValueError(f"{attr}[{key!r}] is defined twice (again by tests/modalities/{modality})")
            out[key] = value
    return out


def exercise_mixture(kind, name, fixtures):
    """Two sources over the same digits (one captioned, one not) feeding different targets: training batches
    are tagged with their source and drawn by weight; validation reads both."""
    from modalzoo.registry import REGISTRIES

    digits = str(fixtures["digits"])
    tok = {"name": "bytelevel_bpe", "vocab_size": 300}
    data = REGISTRIES[kind].build({"name": name, "sources": {
        "pairs": {"weight": 3, "targets": ["clip"],
                  "data": {"name": "image_text", "path": digits, "seq_len": 16, "num_workers": 0, "tokenizer": tok}},
        "plain": {"weight": 1, "targets": ["mae"],
                  "data": {"name": "image_text", "path": digits, "captions": False, "num_workers": 0}}}}, "data")
    data.prepare(None)
    train = [b for _, b in zip(range(40), data.loader("train", 8, {}, seed=0, train=True))]
    seen = [b["_source"] for b in train]
    assert 20 < seen.count("pairs") < 40 and seen.count("plain") > 0         # weight 3 : 1
    assert all("input_ids" in b for b in train if b["_source"] == "pairs")
    assert all("input_ids" not in b and b["_targets"] == ("mae",) for b in train if b["_source"] == "plain")
    assert {b["_source"] for b in data.loader("val", 8, {}, seed=0, train=False)} == {"pairs", "plain"}


CORE = {"DATASETS": {"mixture": exercise_mixture}}      # components of no modality (modalzoo/datasets)
