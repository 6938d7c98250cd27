"""Graphormer's structural encodings of one graph, computed in loader workers (numpy + scipy).

* degree: how many edges touch each node (undirected: in = out degree, one centrality table);
* shortest-path distance (SPD) between every pair of nodes, stored as a uint8 code: the hop count (capped at
  `MAX_STORED`), `UNREACHABLE` between the components of a disconnected graph, `VIRTUAL` for every pair that
  involves the graph's virtual token, `PAD` for pairs across graphs of a packed row or with padding (masked
  anyway). The embedding turns codes into buckets with its own ``max_distance`` (`spd_buckets`);
* path edges: the type (+1; 0 = none) of the k-th edge along one shortest path from node i to node j, for
  k < ``hops``; Graphormer averages learned per-hop edge encodings along this path.

Breadth-first shortest paths on an unweighted graph (scipy's csgraph, C code): a 30-atom molecule takes
about 0.1 ms, so Graphormer's Floyd-Warshall preprocessing does not dominate a step (BENCHMARKS.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_STORED, VIRTUAL, UNREACHABLE, PAD = 250, 253, 254, 255


@dataclass
class Structure:
    degree: np.ndarray       # [N] int64
    spd: np.ndarray          # [N, N] uint8 codes
    path: np.ndarray         # [N, N, hops] uint8, edge type + 1 along a shortest path (0: no k-th edge)


def encode(num_nodes: int, edges: np.ndarray, edge_type: np.ndarray, hops: int) -> Structure:
    """The encodings of one graph of ``num_nodes`` nodes with undirected ``edges`` [E, 2] of ``edge_type``."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import shortest_path

    n = num_nodes
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    keep = edges[:, 0] != edges[:, 1]                     # a self-loop is no path and no degree
    edges, edge_type = edges[keep], np.asarray(edge_type, dtype=np.int64).reshape(-1)[keep]
    degree = np.zeros(n, dtype=np.int64)
    np.add.at(degree, edges.ravel(), 1)
    path = np.zeros((n, n, hops), dtype=np.uint8)
    if len(edges) == 0:
        spd = np.full((n, n), UNREACHABLE, dtype=np.uint8)
        np.fill_diagonal(spd, 0)
        return Structure(degree, spd, path)
    types = np.zeros((n, n), dtype=np.uint8)              # edge type + 1 between adjacent nodes
    etype = edge_type + 1
    types[edges[:, 0], edges[:, 1]] = etype
    types[edges[:, 1], edges[:, 0]] = etype
    adjacency = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n)).tocsr()
    dist, pred = shortest_path(adjacency, directed=False, unweighted=True, return_predecessors=True)
    reachable = np.isfinite(dist)
    spd = np.where(reachable, np.minimum(np.nan_to_num(dist, posinf=0), MAX_STORED), UNREACHABLE).astype(np.uint8)
    # pred[j, x] is the node before x on a shortest path from j, i.e. the next node from x towards j: walking
    # it from i lists the path from i to j in order.
    target = np.broadcast_to(np.arange(n)[None, :], (n, n))
    current = np.broadcast_to(np.arange(n)[:, None], (n, n)).copy()
    for k in range(hops):
        going = reachable & (current != target)
        if not going.any():
            break
        nxt = np.where(going, pred[target, current], current)
        path[..., k] = np.where(going, types[current, nxt], 0)
        current = nxt
    return Structure(degree, spd, path)
