"""The `graph` field: graph samples decoded with their structural encodings, batched packed or padded.

Each graph becomes a block of tokens: its virtual graph token (Graphormer's [VNode], optional) then one token
per node. Packed (the default), the blocks of a batch's graphs are laid first-fit into rows of ``pack_len``
tokens, with ``segment_ids`` (1, 2, ... per graph, 0 padding) so the encoder's mask is block-diagonal and
graphs never attend to each other; padded, each graph has its own row, padded to the batch's largest.

Batch keys (R rows of L tokens, G graphs, F categorical and C continuous node features, K hops):
``node_cat`` long [R, L, F] (value + 1, 0 = none), ``node_num`` float [R, L, C] (when the schema has any),
``degree`` long [R, L], ``spd`` uint8 [R, L, L] and ``path_edges`` uint8 [R, L, L, K] (`structure.py` codes),
``segment_ids`` long [R, L], ``is_virtual`` bool [R, L], ``graph_of`` long [R, L] (the graph of each token,
-1 padding), ``edge_index`` long [R, E, 2] (row coordinates, -1 padding) with ``edge_type`` long [R, E],
``graph_labels`` float [G, T] (NaN: missing), ``graph_count``, and ``graph_descriptors`` float64 [G, K] when
every graph of the batch has descriptors (the property tasks' baseline features).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ...errors import ModalzooError
from .graphs import Graph, GraphSchema, from_json, truncate
from .structure import PAD, VIRTUAL, Structure, encode


@dataclass
class GraphState:
    schema: GraphSchema
    label_names: list[str]
    hops: int                        # path edges per pair: what a batch transform rebuilding structure keeps


class OversizeGraph(ValueError):
    """A graph with more nodes than the node budget (``oversize: skip``): skipped and counted."""


class GraphField:
    kind, keys, unit, rows = "graph", ("json",), "graphs", "graphs"

    def __init__(self, max_nodes: int = 128, oversize: str = "skip", virtual_token: bool = True, hops: int = 5,
                 packing: str = "packed", pack_len: int = 256):
        if oversize not in ("skip", "truncate"):
            raise ModalzooError(f"oversize must be 'skip' or 'truncate', got '{oversize}'")
        if packing not in ("packed", "padded"):
            raise ModalzooError(f"packing must be 'packed' or 'padded', got '{packing}'")
        if packing == "packed" and pack_len < max_nodes + virtual_token:
            raise ModalzooError(f"pack_len={pack_len} cannot hold a graph of max_nodes={max_nodes} nodes"
                                f"{' plus its virtual token' if virtual_token else ''}; raise pack_len")
        self.max_nodes, self.oversize, self.virtual = max_nodes, oversize, int(virtual_token)
        self.hops, self.packing, self.pack_len = hops, packing, pack_len

    # --- state -------------------------------------------------------------------------------------------
    def prepare(self, data, run_dir: Path | None) -> GraphState:
        schema = GraphSchema.load(data.cfg.path)
        if run_dir is not None:
            schema.save(run_dir)
        return GraphState(schema, list(schema.labels), self.hops)

    def restore(self, data, run_dir: Path) -> GraphState:
        schema = GraphSchema.load(run_dir)
        return GraphState(schema, list(schema.labels), self.hops)

    # --- one sample -------------------------------------------------------------------------------------
    def decode(self, sample: dict, state: GraphState) -> tuple[Graph, Structure]:
        graph = from_json(sample["json"], len(state.schema.node_features), len(state.schema.numeric_features))
        if graph.num_nodes > self.max_nodes:
            if self.oversize == "skip":
                raise OversizeGraph(f"{graph.num_nodes} nodes, over the node budget max_nodes={self.max_nodes}")
            graph = truncate(graph, self.max_nodes)
        return graph, encode(graph.num_nodes, graph.edges, graph.edge_type, self.hops)

    # --- a batch ----------------------------------------------------------------------------------------
    def layout(self, sizes: list[int]) -> tuple[list[tuple[int, int]], int, int]:
        """(row, offset) of each graph's block, the number of rows and the row length."""
        if self.packing == "padded":
            return [(i, 0) for i in range(len(sizes))], len(sizes), max(sizes)
        free: list[int] = []
        places: list[tuple[int, int]] = [(0, 0)] * len(sizes)
        for i in sorted(range(len(sizes)), key=lambda i: -sizes[i]):     # first fit, largest graphs first
            row = next((r for r, room in enumerate(free) if room >= sizes[i]), None)
            if row is None:
                free.append(self.pack_len)
                row = len(free) - 1
            places[i] = (row, self.pack_len - free[row])
            free[row] -= sizes[i]
        return places, len(free), self.pack_len

    def collate(self, values: list[tuple[Graph, Structure]], state: GraphState) -> dict[str, torch.Tensor]:
        graphs = [g for g, _ in values]
        sizes = [g.num_nodes + self.virtual for g in graphs]
        places, R, L = self.layout(sizes)
        F = graphs[0].node_cat.shape[1]
        C = len(state.schema.numeric_features)
        per_row_edges = np.zeros(R, dtype=np.int64)
        for (row, _), g in zip(places, graphs):
            per_row_edges[row] += len(g.edges)
        E = int(max(per_row_edges.max(), 1))
        node_cat = np.zeros((R, L, F), dtype=np.int64)
        node_num = np.zeros((R, L, C), dtype=np.float32) if C else None
        degree = np.zeros((R, L), dtype=np.int64)
        spd = np.full((R, L, L), PAD, dtype=np.uint8)
        path = np.zeros((R, L, L, self.hops), dtype=np.uint8)
        segment = np.zeros((R, L), dtype=np.int64)
        virtual = np.zeros((R, L), dtype=bool)
        graph_of = np.full((R, L), -1, dtype=np.int64)
        edge_index = np.full((R, E, 2), -1, dtype=np.int64)
        edge_type = np.zeros((R, E), dtype=np.int64)
        filled = np.zeros(R, dtype=np.int64)
        segments_in_row = np.zeros(R, dtype=np.int64)
        for i, ((row, at), (g, s)) in enumerate(zip(places, values)):
            n, start = g.num_nodes, at + self.virtual
            segments_in_row[row] += 1
            block = slice(at, start + n)
            segment[row, block] = segments_in_row[row]
            graph_of[row, block] = i
            nodes = slice(start, start + n)
            node_cat[row, nodes] = g.node_cat + 1
            if node_num is not None and g.node_num is not None:
                node_num[row, nodes] = g.node_num
            place_structure(spd[row], path[row], degree[row], start, s, self.virtual)
            k = len(g.edges)
            edge_index[row, filled[row]:filled[row] + k] = g.edges + start
            edge_type[row, filled[row]:filled[row] + k] = g.edge_type
            filled[row] += k
            if self.virtual:
                virtual[row, at] = True
        labels = np.full((len(graphs), len(state.label_names)), np.nan, dtype=np.float32)
        for i, g in enumerate(graphs):
            for j, name in enumerate(state.label_names):
                if g.labels.get(name) is not None:
                    labels[i, j] = g.labels[name]
        batch = {"node_cat": torch.from_numpy(node_cat), "degree": torch.from_numpy(degree),
                 "spd": torch.from_numpy(spd), "path_edges": torch.from_numpy(path),
                 "segment_ids": torch.from_numpy(segment), "is_virtual": torch.from_numpy(virtual),
                 "graph_of": torch.from_numpy(graph_of), "edge_index": torch.from_numpy(edge_index),
                 "edge_type": torch.from_numpy(edge_type), "graph_labels": torch.from_numpy(labels),
                 "graph_count": torch.tensor(len(graphs))}
        if node_num is not None:
            batch["node_num"] = torch.from_numpy(node_num)
        if all(g.descriptors for g in graphs):          # a baseline's graph-level features (task sets)
            batch["graph_descriptors"] = torch.tensor([g.descriptors for g in graphs], dtype=torch.float64)
        return batch

    def count(self, batch: dict) -> int:
        return int(batch["graph_count"])

    def files(self, state: GraphState, out: Path, style: str | None) -> list[Path]:
        return [state.schema.save(out)]


def place_structure(spd: np.ndarray, path: np.ndarray, degree: np.ndarray, start: int, s: Structure,
                    virtual: int) -> None:
    """Write one graph's encodings into its block of a row (``start``: its first node; the virtual token, if
    any, just before)."""
    n = len(s.degree)
    nodes = slice(start, start + n)
    spd[nodes, nodes] = s.spd
    path[nodes, nodes] = s.path[..., : path.shape[-1]]
    degree[nodes] = s.degree
    if virtual:
        block = slice(start - 1, start + n)
        spd[start - 1, block] = VIRTUAL
        spd[block, start - 1] = VIRTUAL
        path[start - 1, block] = 0
        path[block, start - 1] = 0
