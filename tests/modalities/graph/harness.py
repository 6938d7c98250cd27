"""Graph's test harness: a tiny Graphormer-style shape pretrained by attribute masking (with bond types) and
masked edges, one fine-tuned with a property head, and the checks of the `graph` dataset, the `molecules`
builder and `pack-graphs`. Merged with the other modalities' by tests/harnesses.py."""

from __future__ import annotations

import pytest
import torch

from conftest import sibling
from modalzoo.modalities.graph.objectives import AttributeMasking, EdgeMasking
from modalzoo.registry import REGISTRIES
from tiny_models import D, enc

graph_data = sibling(__file__, "graph_data")
SCHEMA, collated, write = graph_data.SCHEMA, graph_data.collated, graph_data.write

EMBED = {"name": "graph", "dim": D, "heads": 2, "node_vocab": SCHEMA.vocab, "node_features": ["kind", "flag"],
         "edge_types": 2, "max_distance": 4, "max_hops": 3}


def pretrain_batch():
    batch = collated()
    g = torch.Generator().manual_seed(0)
    batch = AttributeMasking(0.3, 0.3, masked_type=2, hops=5)(batch, g)
    return EdgeMasking(0.3, hops=5)(batch, g)


SHAPES = {
    "graphormer": (  # per-head structural bias, packed rows, two pretraining heads
        {"streams": {"graph": {"embedding": EMBED, "encoder": enc(heads=2)}},
         "targets": {"attributes": {"name": "attribute_masking", "stream": "graph", "bond_mask_rate": 0.3},
                     "edges": {"name": "masked_edges", "stream": "graph"}}},
        pretrain_batch),
    "graph_property": (
        {"streams": {"graph": {"embedding": {**EMBED, "edge_bias": "direct", "mask_token": False},
                               "encoder": enc(heads=2)}},
         "targets": {"property": {"name": "graph_property", "stream": "graph", "labels": [0],
                                  "label_mean": [6.0], "label_std": [3.0]}}},
        lambda: collated(packing="padded")),
}

COVERS = {("embedding", "graph"): "graphormer", ("target", "attribute_masking"): "graphormer",
          ("target", "masked_edges"): "graphormer", ("target", "graph_property"): "graph_property"}


def exercise_graph_dataset(kind, name, fixtures):
    path = write(fixtures["tmp_path"] / "graphs", extra={"train": [b"{not json", b'{"node_cat": [[0, 0]], '
                                                                                  b'"edges": [[0, 5]]}']})
    data = REGISTRIES[kind].build({"name": name, "path": str(path), "max_nodes": 15, "pack_len": 16,
                                   "num_workers": 0})
    data.prepare(None)
    batch = next(iter(data.loader("train", 20, [], seed=0, train=True)))
    assert data.throughput_unit == "graphs" and data.tokens_in(batch) == 20
    assert batch["node_cat"].shape[1] == 16 and batch["graph_labels"].shape == (20, 1)
    every = list(data.loader("train", 42, [], seed=0, train=False))
    assert sum(int(b["graph_count"]) for b in every) == 40 and sum(int(b["_skipped"]) for b in every) == 2


def exercise_molecules(kind, name, fixtures):
    pytest.importorskip("rdkit", reason="the molecules builder needs RDKit: pip install 'modalzoo[graph]'")
    out = fixtures["molecules"]
    info = (out / "info.json").read_text()
    assert '"solubility"' in info and (out / "tasks" / "freesolv" / "test").is_dir()


def exercise_pack_graphs(packer, tmp_path):
    import json

    import networkx as nx
    (tmp_path / "in").mkdir()
    g = nx.path_graph(4)
    nx.set_node_attributes(g, {i: "CN"[i % 2] for i in g}, "kind")
    (tmp_path / "in" / "one.json").write_text(json.dumps(nx.node_link_data(g, edges="links")))
    (tmp_path / "in" / "bad.json").write_text("{oops")
    summary = packer.pack([tmp_path / "in"], tmp_path / "out")
    assert "packed 1" in summary and "skipped 1" in summary, summary


DATASETS = {"graph": exercise_graph_dataset}
SAMPLE_DATA = {"molecules": exercise_molecules}
PACKERS = {"pack-graphs": exercise_pack_graphs}
