"""Helpers over a collated graph batch (`fields.py`): each graph's block, pooling, and rebuilding a graph's
structural encodings after a batch transform changed its edges (edge masking hides edges; bond masking hides
edge types), so the structure the model sees never reveals what it must predict."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ...errors import ModalzooError
from .fields import place_structure
from .structure import encode


def blocks(batch: dict[str, Tensor]) -> list[tuple[int, int, int]]:
    """(row, first node token, node count) of every graph, in graph order (virtual tokens excluded)."""
    graph_of = batch["graph_of"].numpy()
    nodes = (graph_of >= 0) & ~batch["is_virtual"].numpy()
    out = [(0, 0, 0)] * int(batch["graph_count"])
    rows, cols = np.nonzero(nodes)
    for g in np.unique(graph_of[rows, cols]):
        sel = graph_of[rows, cols] == g
        r, c = rows[sel], cols[sel]
        out[int(g)] = (int(r[0]), int(c.min()), int(sel.sum()))
    return out


def graph_edges(batch: dict[str, Tensor], row: int, start: int, n: int) -> np.ndarray:
    """Indexes into ``batch["edge_index"][row]`` of the edges of the graph whose nodes are start .. start+n-1."""
    e = batch["edge_index"][row].numpy()
    return np.nonzero((e[:, 0] >= start) & (e[:, 0] < start + n))[0]


def rebuild(batch: dict[str, Tensor], graphs: list[int], hops: int) -> None:
    """Recompute degree, SPD and path edges of ``graphs`` from the batch's current ``edge_index`` (rows of -1:
    removed) and ``edge_type``, in place."""
    spd, path, degree = batch["spd"].numpy(), batch["path_edges"].numpy(), batch["degree"].numpy()
    where = blocks(batch)
    for g in graphs:
        row, start, n = where[g]
        idx = graph_edges(batch, row, start, n)
        edges = batch["edge_index"][row].numpy()[idx] - start
        types = batch["edge_type"][row].numpy()[idx]
        # the virtual token's pairs keep their code: only node-node pairs change
        place_structure(spd[row], path[row], degree[row], start, encode(n, edges, types, hops), virtual=0)


def pool_graphs(hidden: Tensor, batch: dict[str, Tensor], mode: str = "mean") -> Tensor:
    """[G, D] per-graph features: the mean of its node tokens ("mean") or its virtual token ("virtual")."""
    graph_of, virtual = batch["graph_of"], batch["is_virtual"]
    G = int(batch["graph_count"])
    if mode == "virtual":
        if not bool(virtual.any()):
            raise ModalzooError("pool_graphs(mode='virtual') needs the virtual graph token "
                                "(data.virtual_token=true); use mode='mean' for a run without one")
        out = hidden.new_zeros(G, hidden.shape[-1])
        return out.index_copy(0, graph_of[virtual], hidden[virtual])
    nodes = (graph_of >= 0) & ~virtual
    sums = hidden.new_zeros(G, hidden.shape[-1]).index_add(0, graph_of[nodes], hidden[nodes])
    counts = torch.zeros(G, device=hidden.device).index_add(0, graph_of[nodes],
                                                            torch.ones_like(graph_of[nodes], dtype=torch.float))
    return sums / counts.clamp(min=1)[:, None].to(hidden.dtype)
