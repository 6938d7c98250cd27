"""One graph sample, as shards hold it and fields decode it.

A shard member ``KEY.json`` is ``{"node_cat": [[int] * F] * N, "node_num": [[float] * G] * N (optional),
"edges": [[u, v], ...], "edge_type": [int] * E (optional, 0 for all), "labels": {name: float} (optional),
"smiles": str (optional), "descriptors": [float] (optional)}``. Edges are undirected (each listed once);
categorical values count from 0 (the embedding shifts them by one: 0 is padding there). What every column
means is the dataset's ``graph_schema.json`` (`GraphSchema`), written beside the shards.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import ModalzooError

SCHEMA_FILE = "graph_schema.json"


@dataclass
class Graph:
    node_cat: np.ndarray                     # [N, F] int64, categorical node attributes
    edges: np.ndarray                        # [E, 2] int64, undirected, each once
    edge_type: np.ndarray                    # [E] int64
    node_num: np.ndarray | None = None       # [N, G] float32, continuous node attributes
    labels: dict[str, float] = field(default_factory=dict)
    descriptors: list[float] | None = None   # graph-level features of a baseline (RDKit descriptors)
    smiles: str | None = None

    @property
    def num_nodes(self) -> int:
        return int(self.node_cat.shape[0])

    def to_json(self) -> bytes:
        out: dict = {"node_cat": self.node_cat.tolist(), "edges": self.edges.tolist(),
                     "edge_type": self.edge_type.tolist()}
        if self.node_num is not None:
            out["node_num"] = np.round(self.node_num.astype(np.float64), 6).tolist()
        for key in ("labels", "descriptors", "smiles"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        return json.dumps(out, separators=(",", ":")).encode()


def from_json(raw: bytes | str | dict, features: int | None = None, numeric: int | None = None) -> Graph:
    """Parse and check one sample against the schema's ``features`` categorical and ``numeric`` continuous
    node features; a malformed one raises ValueError (the dataset skips and counts it)."""
    data = raw if isinstance(raw, dict) else json.loads(raw)
    node_cat = np.asarray(data.get("node_cat", []), dtype=np.int64)
    if node_cat.ndim != 2 or node_cat.shape[0] == 0:
        raise ValueError(f"node_cat must be a non-empty [nodes, features] list, got shape {list(node_cat.shape)}")
    if features is not None and node_cat.shape[1] != features:
        raise ValueError(f"nodes have {node_cat.shape[1]} categorical features, the schema says {features}")
    if (node_cat < 0).any():
        raise ValueError("negative categorical node value")
    n = node_cat.shape[0]
    edges = np.asarray(data.get("edges", []), dtype=np.int64)
    if edges.size == 0:
        edges = edges.reshape(0, 2)
    elif edges.ndim != 2 or edges.shape[1] != 2:
        raise ValueError(f"edges must be a list of [source, target] pairs, got shape {list(edges.shape)}")
    if edges.size and (edges.min() < 0 or edges.max() >= n):
        bad = edges[(edges < 0).any(1) | (edges >= n).any(1)][0].tolist()
        raise ValueError(f"edge {bad} names a node that does not exist (the graph has {n} nodes)")
    edge_type = np.asarray(data.get("edge_type", [0] * len(edges)), dtype=np.int64).reshape(-1)
    if len(edge_type) != len(edges):
        raise ValueError(f"{len(edges)} edges but {len(edge_type)} edge types")
    if (edge_type < 0).any():
        raise ValueError("negative edge type")
    node_num = data.get("node_num")
    if node_num is not None:
        node_num = np.asarray(node_num, dtype=np.float32)
        if node_num.ndim != 2 or node_num.shape[0] != n:
            raise ValueError(f"node_num must be a [nodes, features] list for {n} nodes, got shape "
                             f"{list(node_num.shape)}")
        if not np.isfinite(node_num).all():
            raise ValueError("node_num has a NaN or infinite value")
    if numeric is not None and (node_num.shape[1] if node_num is not None else 0) != numeric:
        got = 0 if node_num is None else node_num.shape[1]
        raise ValueError(f"nodes have {got} continuous features, the schema says {numeric}")
    return Graph(node_cat, edges, edge_type, node_num, dict(data.get("labels") or {}), data.get("descriptors"),
                 data.get("smiles"))


def truncate(graph: Graph, max_nodes: int) -> Graph:
    """The first ``max_nodes`` nodes and the edges among them (documented: `GraphDataConfig.oversize`)."""
    keep = (graph.edges < max_nodes).all(1)
    num = None if graph.node_num is None else graph.node_num[:max_nodes]
    return Graph(graph.node_cat[:max_nodes], graph.edges[keep], graph.edge_type[keep], num, graph.labels,
                 graph.descriptors, graph.smiles)


@dataclass
class GraphSchema:
    """What the columns of a graph dataset mean: categorical node features (name, vocabulary size, optional
    value names), continuous node features, edge types, graph labels (name -> task: regression/binary)."""
    node_features: list[dict]
    edge_types: list[str]
    numeric_features: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    source: str = ""
    numeric_scaling: dict[str, list[float]] = field(default_factory=dict)   # name -> [mean, sd] the pack applied

    @property
    def vocab(self) -> list[int]:
        return [int(f["size"]) for f in self.node_features]

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / SCHEMA_FILE
        path.write_text(json.dumps(vars(self), indent=2))
        return path

    @classmethod
    def load(cls, folder: str | Path) -> GraphSchema:
        path = Path(folder) / SCHEMA_FILE
        if not path.exists():
            raise ModalzooError(f"{path} is missing: a graph dataset keeps its schema beside its shards "
                                f"(modalzoo data build molecules, or modalzoo data pack-graphs)")
        try:
            return cls(**json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError) as err:
            raise ModalzooError(f"{path}: not a graph schema ({err})") from None
