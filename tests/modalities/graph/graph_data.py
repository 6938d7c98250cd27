"""Synthetic graph samples and shards for the graph tests (no RDKit): paths, rings, stars, a disconnected pair,
an isolated node, with two categorical node features (3 and 2 values), two edge types and one label."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from modalzoo.datasets.shards import ShardWriter
from modalzoo.modalities.graph.graphs import Graph, GraphSchema

SCHEMA = GraphSchema([{"name": "kind", "size": 3}, {"name": "flag", "size": 2}], ["single", "double"],
                     labels={"size": "regression"})


def ring(n: int, seed: int = 0) -> Graph:
    rng = np.random.default_rng(seed)
    edges = np.array([[i, (i + 1) % n] for i in range(n)] if n > 2 else [[0, 1]] if n == 2 else [],
                     dtype=np.int64).reshape(-1, 2)
    feats = np.stack([rng.integers(0, 3, n), rng.integers(0, 2, n)], 1)
    return Graph(feats, edges, rng.integers(0, 2, len(edges)), labels={"size": float(n)})


def path(n: int, seed: int = 0) -> Graph:
    g = ring(n, seed)
    return Graph(g.node_cat, g.edges[: max(n - 1, 0)], g.edge_type[: max(n - 1, 0)], labels={"size": float(n)})


def disconnected() -> Graph:
    return Graph(np.array([[0, 0], [1, 1], [2, 0], [0, 1]]), np.array([[0, 1], [2, 3]]), np.array([0, 1]),
                 labels={"size": 4.0})


def isolated() -> Graph:
    return Graph(np.array([[1, 0]]), np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.int64),
                 labels={"size": 1.0})


def graphs(count: int = 40, seed: int = 0) -> list[Graph]:
    rng = np.random.default_rng(seed)
    out = [disconnected(), isolated()]
    while len(out) < count:
        n = int(rng.integers(3, 12))
        out.append((ring if rng.random() < 0.5 else path)(n, int(rng.integers(1 << 30))))
    return out


def write(out: Path, per_split: int = 40, extra: dict[str, list[bytes]] | None = None) -> Path:
    """Shards of ``graphs()`` for train and validation, the schema beside them; ``extra``: raw members per split."""
    for s, split in enumerate(("train", "validation")):
        with ShardWriter(out, split, max_count=25) as writer:
            for i, g in enumerate(graphs(per_split, seed=s)):
                writer.write({"__key__": f"g{i:04d}", "json": g.to_json()})
            for j, raw in enumerate((extra or {}).get(split, [])):
                writer.write({"__key__": f"bad{j:03d}", "json": raw})
    SCHEMA.save(out)
    return out


def collated(graph_list: list[Graph] | None = None, packing: str = "packed", pack_len: int = 16, **field):
    from modalzoo.modalities.graph.fields import GraphField, GraphState

    f = GraphField(max_nodes=15, packing=packing, pack_len=pack_len, **field)
    state = GraphState(SCHEMA, list(SCHEMA.labels), f.hops)
    values = [f.decode({"json": g.to_json()}, state) for g in (graph_list or graphs(12))]
    return f.collate(values, state)
