"""`structure.encode` against networkx: degrees, shortest-path distances (with the UNREACHABLE code between
components, the MAX_STORED cap, self-loops ignored, graphs without edges) and the path edge types (exact on
trees, where shortest paths are unique; on graphs with cycles, the listed types must be those of one of the
shortest paths)."""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
import pytest

from modalzoo.modalities.graph.structure import MAX_STORED, UNREACHABLE, encode


def _random_graph(n: int, p: float, seed: int, types: int = 3) -> tuple[nx.Graph, np.ndarray, np.ndarray]:
    """A G(n, p) graph (often disconnected at small p) with random edge types, stored as an edge attribute."""
    rng = np.random.default_rng(seed)
    g = nx.gnp_random_graph(n, p, seed=seed)
    edges = np.array(list(g.edges()), dtype=np.int64).reshape(-1, 2)
    rng.shuffle(edges)                                   # the order of the edge list must not matter
    edges = np.where(rng.random((len(edges), 1)) < 0.5, edges, edges[:, ::-1])   # nor their orientation
    edge_type = rng.integers(0, types, len(edges)).astype(np.int64)
    for (u, v), t in zip(edges.tolist(), edge_type.tolist()):
        g[u][v]["type"] = t
    return g, edges, edge_type


def _random_tree(n: int, seed: int, types: int = 4) -> tuple[nx.Graph, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    parents = [int(rng.integers(0, i)) for i in range(1, n)]
    order = rng.permutation(n)                           # node labels not in BFS order
    edges = np.array([[order[i], order[p]] for i, p in zip(range(1, n), parents)], dtype=np.int64).reshape(-1, 2)
    edge_type = rng.integers(0, types, len(edges)).astype(np.int64)
    g = nx.Graph()
    g.add_nodes_from(range(n))
    for (u, v), t in zip(edges.tolist(), edge_type.tolist()):
        g.add_edge(u, v, type=t)
    return g, edges, edge_type


GRAPHS = [(n, p, seed) for seed, (n, p) in enumerate(itertools.product((1, 2, 5, 9, 14), (0.0, 0.15, 0.4, 0.9)))]


@pytest.mark.parametrize("n,p,seed", GRAPHS)
def test_degree_and_spd_match_networkx(n, p, seed):
    g, edges, edge_type = _random_graph(n, p, seed)
    s = encode(n, edges, edge_type, hops=3)
    assert s.degree.dtype == np.int64 and s.spd.dtype == np.uint8 and s.path.dtype == np.uint8
    assert s.degree.shape == (n,) and s.spd.shape == (n, n) and s.path.shape == (n, n, 3)
    np.testing.assert_array_equal(s.degree, [g.degree(i) for i in range(n)])
    lengths = dict(nx.all_pairs_shortest_path_length(g))
    expected = np.full((n, n), UNREACHABLE, dtype=np.uint8)
    for i, row in lengths.items():
        for j, d in row.items():
            expected[i, j] = d
    np.testing.assert_array_equal(s.spd, expected)
    # unreachable pairs and a node with itself have no path edges
    far = (s.spd == UNREACHABLE) | np.eye(n, dtype=bool)
    assert not s.path[far].any()


def test_disconnected_pairs_are_unreachable_and_symmetric():
    # two components {0, 1, 2} (a path) and {3, 4} plus an isolated node 5
    s = encode(6, np.array([[0, 1], [1, 2], [3, 4]]), np.array([0, 1, 0]), hops=2)
    comp = np.array([0, 0, 0, 1, 1, 2])
    across = comp[:, None] != comp[None, :]
    assert (s.spd[across] == UNREACHABLE).all()
    np.testing.assert_array_equal(s.spd[:3, :3], [[0, 1, 2], [1, 0, 1], [2, 1, 0]])
    np.testing.assert_array_equal(s.spd[3:5, 3:5], [[0, 1], [1, 0]])
    assert s.spd[5, 5] == 0
    np.testing.assert_array_equal(s.spd, s.spd.T)
    np.testing.assert_array_equal(s.degree, [1, 2, 1, 1, 1, 0])
    assert not s.path[across].any()


def test_no_edges():
    s = encode(4, np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.int64), hops=3)
    expected = np.full((4, 4), UNREACHABLE, dtype=np.uint8)
    np.fill_diagonal(expected, 0)
    np.testing.assert_array_equal(s.spd, expected)
    np.testing.assert_array_equal(s.degree, np.zeros(4))
    assert s.path.shape == (4, 4, 3) and not s.path.any()
    one = encode(1, np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.int64), hops=2)
    assert one.spd.tolist() == [[0]] and one.degree.tolist() == [0] and one.path.shape == (1, 1, 2)


def test_only_self_loops_is_no_edges():
    s = encode(3, np.array([[1, 1], [2, 2]]), np.array([0, 1]), hops=2)
    expected = np.full((3, 3), UNREACHABLE, dtype=np.uint8)
    np.fill_diagonal(expected, 0)
    np.testing.assert_array_equal(s.spd, expected)
    np.testing.assert_array_equal(s.degree, [0, 0, 0])
    assert not s.path.any()


def test_self_loop_adds_no_degree_and_no_distance():
    edges, types = np.array([[0, 1], [1, 2], [2, 3]]), np.array([0, 1, 0])
    plain = encode(4, edges, types, hops=3)
    looped = encode(4, np.concatenate([edges, [[2, 2]]]), np.concatenate([types, [1]]), hops=3)
    np.testing.assert_array_equal(looped.degree, plain.degree)
    np.testing.assert_array_equal(looped.degree, [1, 2, 2, 1])
    np.testing.assert_array_equal(looped.spd, plain.spd)
    np.testing.assert_array_equal(looped.path, plain.path)     # the loop is listed last: types still aligned


def test_self_loop_before_other_edges_keeps_their_types():
    # path 0 - 1 - 2 with types 0 then 1; a self-loop of type 5 listed first
    s = encode(3, np.array([[0, 0], [0, 1], [1, 2]]), np.array([5, 0, 1]), hops=3)
    np.testing.assert_array_equal(s.degree, [1, 2, 1])
    np.testing.assert_array_equal(s.path[0, 1], [1, 0, 0])
    np.testing.assert_array_equal(s.path[0, 2], [1, 2, 0])
    np.testing.assert_array_equal(s.path[2, 0], [2, 1, 0])


def test_distance_cap():
    n = MAX_STORED + 12
    edges = np.stack([np.arange(n - 1), np.arange(1, n)], 1)
    s = encode(n, edges, np.zeros(n - 1, dtype=np.int64), hops=1)
    np.testing.assert_array_equal(s.spd[0], np.minimum(np.arange(n), MAX_STORED))
    np.testing.assert_array_equal(s.spd[:, 0], np.minimum(np.arange(n), MAX_STORED))
    assert s.spd[0, n - 1] == MAX_STORED and s.spd[5, n - 1] == MAX_STORED and s.spd[12, n - 1] == MAX_STORED - 1
    assert (s.spd != UNREACHABLE).all()
    assert (s.path[..., 0][~np.eye(n, dtype=bool)] == 1).all()    # type 0 + 1 on every first hop


def _types_along(g: nx.Graph, nodes: list[int]) -> list[int]:
    return [g[u][v]["type"] + 1 for u, v in zip(nodes, nodes[1:])]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("hops", [1, 3, 20])
def test_path_edges_on_trees_are_exact(seed, hops):
    n = 4 + 3 * seed
    g, edges, edge_type = _random_tree(n, seed)
    s = encode(n, edges, edge_type, hops)
    for i in range(n):
        for j in range(n):
            nodes = nx.shortest_path(g, i, j)            # unique on a tree
            d = len(nodes) - 1
            assert s.spd[i, j] == d
            want = np.zeros(hops, dtype=np.uint8)
            k = min(d, hops)
            want[:k] = _types_along(g, nodes)[:k]
            np.testing.assert_array_equal(s.path[i, j], want, err_msg=f"pair {i} -> {j}, path {nodes}")


def test_path_edges_are_listed_from_i_to_j():
    # a path 0 - 1 - 2 - 3 with distinct types: the order of the hops, both ways
    s = encode(4, np.array([[2, 3], [1, 0], [1, 2]]), np.array([2, 0, 1]), hops=4)
    np.testing.assert_array_equal(s.path[0, 3], [1, 2, 3, 0])
    np.testing.assert_array_equal(s.path[3, 0], [3, 2, 1, 0])
    np.testing.assert_array_equal(s.path[1, 3], [2, 3, 0, 0])
    np.testing.assert_array_equal(s.path[3, 1], [3, 2, 0, 0])


@pytest.mark.parametrize("n,p,seed", [(7, 0.5, 1), (9, 0.35, 2), (10, 0.3, 3), (8, 0.6, 4), (10, 0.2, 5)])
def test_path_edges_follow_one_shortest_path_on_graphs_with_cycles(n, p, seed):
    hops = 3
    g, edges, edge_type = _random_graph(n, p, seed, types=5)
    assert len(nx.cycle_basis(g)) > 0                   # shortest paths are not unique everywhere
    s = encode(n, edges, edge_type, hops)
    for i in range(n):
        for j in range(n):
            if i == j or not nx.has_path(g, i, j):
                assert not s.path[i, j].any()
                continue
            d = int(s.spd[i, j])
            k = min(d, hops)
            assert (s.path[i, j, :k] > 0).all() and not s.path[i, j, k:].any()
            listed = s.path[i, j, :k].tolist()
            candidates = [_types_along(g, nodes)[:k] for nodes in nx.all_shortest_paths(g, i, j)]
            assert all(len(c) == k for c in candidates)
            assert listed in candidates, f"pair {i} -> {j}: {listed} is no shortest path's types {candidates}"


def test_path_edges_walk_a_shortest_path_when_types_identify_edges():
    """With every edge of its own type the listed types name the edges: they must chain from i to j."""
    for seed in range(4):
        n = 9
        g, edges, _ = _random_graph(n, 0.4, 10 + seed)
        edge_type = np.arange(len(edges), dtype=np.int64)  # type t + 1 <-> edge t
        s = encode(n, edges, edge_type, hops=n)
        for i, j in itertools.product(range(n), range(n)):
            if i == j or not nx.has_path(g, i, j):
                continue
            d = int(s.spd[i, j])
            walk = [edges[t - 1] for t in s.path[i, j, :d].tolist()]
            at = i
            for u, v in walk:
                assert at in (u, v), f"pair {i} -> {j}: edge {(u, v)} does not leave node {at}"
                at = v if at == u else u
            assert at == j and len(walk) == nx.shortest_path_length(g, i, j)
            assert not s.path[i, j, d:].any()
