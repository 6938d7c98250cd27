"""The graph batch transforms and heads' inputs: attribute masking (how many nodes per graph, never a virtual
token or padding, labels, bond types hidden and kept true), masked edges (removed from the structure the model
sees, negatives that are non-edges of the same graph), determinism under the per-batch generator (a resumed
run masks alike), and per-graph pooling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import sibling
from modalzoo.modalities.graph.batches import blocks, pool_graphs
from modalzoo.modalities.graph.fields import GraphField, GraphState
from modalzoo.modalities.graph.graphs import Graph
from modalzoo.modalities.graph.objectives import AttributeMasking, EdgeMasking
from modalzoo.modalities.graph.structure import VIRTUAL, encode
from modalzoo.pretrain_tasks.base import IGNORE

HOPS = 4
MASKED_TYPE = 2                                           # the embedding's edge_types (2): the "masked" type




graph_data = sibling(__file__, "graph_data")


def collate(graphs: list[Graph], packing: str = "packed", virtual_token: bool = True) -> dict:
    f = GraphField(max_nodes=15, pack_len=16, hops=HOPS, packing=packing, virtual_token=virtual_token)
    state = GraphState(graph_data.SCHEMA, list(graph_data.SCHEMA.labels), f.hops)
    return f.collate([f.decode({"json": g.to_json()}, state) for g in graphs], state)


def sample_graphs(count: int = 16, seed: int = 0) -> list[Graph]:
    return graph_data.graphs(count, seed)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def expected_count(rate: float, n: int) -> int:
    return max(1, int(round(rate * n)))


# --- attribute masking ----------------------------------------------------------------------------------
@pytest.mark.parametrize("rate", [0.15, 0.3, 0.5, 0.9])
@pytest.mark.parametrize("packing", ["packed", "padded"])
def test_attribute_masking_counts_and_places(rate, packing):
    graphs = sample_graphs(16)
    batch = collate(graphs, packing)
    original = batch["node_cat"].clone()
    out = AttributeMasking(rate, 0.0, MASKED_TYPE, HOPS)(batch, gen())
    mask = out["node_mask"]
    assert mask.dtype == torch.bool and mask.shape == batch["graph_of"].shape
    for i, (row, start, n) in enumerate(blocks(out)):
        assert int(mask[row, start:start + n].sum()) == expected_count(rate, graphs[i].num_nodes)
    assert int(mask.sum()) == sum(expected_count(rate, g.num_nodes) for g in graphs)
    assert not (mask & out["is_virtual"]).any()
    assert not (mask & (out["graph_of"] == -1)).any()
    labels = out["attr_labels"]
    assert labels.shape == original.shape
    np.testing.assert_array_equal(labels[mask].numpy(), original[mask].numpy() - 1)
    assert (labels[~mask] == IGNORE).all()
    assert (labels[mask] >= 0).all()
    assert torch.equal(out["node_cat"], original)            # the features stay; the embedding hides them
    assert "bond_pairs" not in out and "edge_type_true" not in out


def test_attribute_masking_one_node_graph_masks_its_node():
    batch = collate([graph_data.isolated(), graph_data.isolated()])
    out = AttributeMasking(0.15, 0.0, MASKED_TYPE, HOPS)(batch, gen())
    for row, start, _ in blocks(out):
        assert out["node_mask"][row, start]
    assert int(out["node_mask"].sum()) == 2


def _clone(batch: dict) -> dict:
    return {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def test_attribute_masking_is_deterministic_under_the_generator():
    base = collate(sample_graphs(16))
    transform = AttributeMasking(0.3, 0.4, MASKED_TYPE, HOPS)
    a, b = transform(_clone(base), gen(7)), transform(_clone(base), gen(7))
    for key in ("node_mask", "attr_labels", "edge_type", "bond_pairs", "bond_labels", "spd", "path_edges"):
        assert torch.equal(a[key], b[key]), key
    c = transform(_clone(base), gen(8))
    assert not torch.equal(a["node_mask"], c["node_mask"])


def test_bond_masking_hides_types_and_keeps_the_true_ones():
    graphs = sample_graphs(16)
    batch = collate(graphs)
    true = batch["edge_type"].clone()
    out = AttributeMasking(0.15, 0.4, MASKED_TYPE, HOPS)(batch, gen(1))
    assert torch.equal(out["edge_type_true"], true)
    hidden = out["edge_type"] == MASKED_TYPE
    real = out["edge_index"][..., 0] >= 0
    assert not (hidden & ~real).any()
    pairs = out["bond_pairs"]
    assert pairs.shape == (int(hidden.sum()), 3) and out["bond_labels"].shape == (len(pairs),)
    listed = set()
    for (row, i, j), label in zip(pairs.tolist(), out["bond_labels"].tolist()):
        e = ((out["edge_index"][row, :, 0] == i) & (out["edge_index"][row, :, 1] == j)).nonzero()
        assert len(e) == 1
        e = int(e[0, 0])
        assert hidden[row, e] and label == int(true[row, e])
        listed.add((row, e))
    assert listed == {tuple(x) for x in hidden.nonzero().tolist()}
    for g, (row, start, n) in zip(graphs, blocks(out)):
        mine = (out["edge_index"][row, :, 0] >= start) & (out["edge_index"][row, :, 0] < start + n)
        assert int(hidden[row][mine].sum()) == (expected_count(0.4, len(g.edges)) if len(g.edges) else 0)
        # the structure shows the masked type (code MASKED_TYPE + 1) on the hidden edges' paths; distances stay
        idx = mine.nonzero()[:, 0]
        edges = out["edge_index"][row, idx].numpy() - start
        s = encode(n, edges, out["edge_type"][row, idx].numpy(), HOPS)
        nodes = slice(start, start + n)
        np.testing.assert_array_equal(out["path_edges"][row, nodes, nodes].numpy(), s.path)
        np.testing.assert_array_equal(out["spd"][row, nodes, nodes].numpy(),
                                      encode(n, g.edges, g.edge_type, HOPS).spd)
        np.testing.assert_array_equal(out["degree"][row, nodes].numpy(), s.degree)
        assert (out["spd"][row, start - 1, start - 1:start + n] == VIRTUAL).all()
    assert (out["path_edges"] == MASKED_TYPE + 1).any()


# --- masked edges ---------------------------------------------------------------------------------------
def _check_edge_masking(graphs: list[Graph], before: dict, out: dict, rate: float) -> None:
    pairs, labels, types = out["edge_pairs"], out["edge_pair_labels"], out["edge_pair_types"]
    assert pairs.shape == (len(labels), 3) and types.shape == labels.shape
    true = before.get("edge_type_true", before["edge_type"])
    removed = (before["edge_index"][..., 0] >= 0) & (out["edge_index"][..., 0] < 0)
    kept = out["edge_index"][..., 0] >= 0
    assert torch.equal(out["edge_index"][kept], before["edge_index"][kept])
    assert (out["edge_index"][removed] == -1).all()
    positives = pairs[labels == 1]
    assert len(positives) == int(removed.sum())
    removed_pairs = {(r, *before["edge_index"][r, e].tolist()) for r, e in removed.nonzero().tolist()}
    assert {tuple(p) for p in positives.tolist()} == removed_pairs
    for (r, i, j), t in zip(positives.tolist(), types[labels == 1].tolist()):
        e = int(((before["edge_index"][r, :, 0] == i) & (before["edge_index"][r, :, 1] == j)).nonzero()[0, 0])
        assert t == int(true[r, e])
    assert (types[labels == 0] == IGNORE).all() and set(labels.tolist()) <= {0.0, 1.0}
    where = blocks(before)
    for g, (row, start, n) in zip(graphs, where):
        mine = (before["edge_index"][row, :, 0] >= start) & (before["edge_index"][row, :, 0] < start + n)
        assert int(removed[row][mine].sum()) == (expected_count(rate, len(g.edges)) if len(g.edges) else 0)
        # what the model sees: the structure of the graph without the removed edges (with the types the batch
        # shows: bond masking may have hidden some)
        left = (mine & ~removed[row]).numpy()
        left_edges = before["edge_index"][row].numpy()[left] - start
        left_types = before["edge_type"][row].numpy()[left]
        assert len(left_edges) == len(g.edges) - int(removed[row][mine].sum())
        s = encode(n, left_edges, left_types, HOPS)
        nodes = slice(start, start + n)
        np.testing.assert_array_equal(out["degree"][row, nodes].numpy(), s.degree)
        np.testing.assert_array_equal(out["spd"][row, nodes, nodes].numpy(), s.spd)
        np.testing.assert_array_equal(out["path_edges"][row, nodes, nodes].numpy(), s.path)
        if out["is_virtual"][row, start - 1]:
            assert (out["spd"][row, start - 1, start - 1:start + n] == VIRTUAL).all()
            assert (out["spd"][row, start - 1:start + n, start - 1] == VIRTUAL).all()
    # negatives: node pairs of one graph (never a virtual token), never an edge of the original graph
    edges = {(r, *sorted(before["edge_index"][r, e].tolist())) for r, e in
             (before["edge_index"][..., 0] >= 0).nonzero().tolist()}
    negatives = [tuple(p) for p in pairs[labels == 0].tolist()]
    assert len(set(negatives)) == len(negatives)
    for r, i, j in negatives:
        assert i < j and (r, i, j) not in edges
        assert int(before["graph_of"][r, i]) == int(before["graph_of"][r, j]) >= 0
        assert not before["is_virtual"][r, i] and not before["is_virtual"][r, j]
    # as many negatives as positives per graph, unless the graph has fewer non-edges (a triangle has none)
    for gi, (g, (row, start, n)) in enumerate(zip(graphs, where)):
        k = int(sum(1 for r, i, _ in positives.tolist() if r == row and start <= i < start + n))
        free = n * (n - 1) // 2 - len(g.edges)
        got = sum(1 for r, i, _ in negatives if r == row and start <= i < start + n)
        assert got == min(k, free), f"graph {gi}: {got} negatives for {k} positives, {free} non-edges"


@pytest.mark.parametrize("rate", [0.15, 0.5, 0.9])
@pytest.mark.parametrize("packing", ["packed", "padded"])
def test_edge_masking(rate, packing):
    graphs = sample_graphs(16, seed=1)
    batch = collate(graphs, packing)
    before = _clone(batch)
    out = EdgeMasking(rate, HOPS)(batch, gen(3))
    _check_edge_masking(graphs, before, out, rate)
    labels = out["edge_pair_labels"]
    assert (labels == 1).sum() > 0 and (labels == 0).sum() > 0


def test_edge_masking_without_virtual_tokens():
    graphs = sample_graphs(10, seed=2)
    batch = collate(graphs, virtual_token=False)
    before = _clone(batch)
    _check_edge_masking(graphs, before, EdgeMasking(0.3, HOPS)(batch, gen(4)), 0.3)


def test_graphs_without_edges_contribute_nothing():
    graphs = [graph_data.isolated(), Graph(np.zeros((3, 2), dtype=np.int64), np.zeros((0, 2), dtype=np.int64),
                                           np.zeros(0, dtype=np.int64))]
    batch = collate(graphs)
    before = _clone(batch)
    out = EdgeMasking(0.3, HOPS)(batch, gen())
    assert out["edge_pairs"].shape == (0, 3) and out["edge_pair_labels"].shape == (0,)
    assert out["edge_pair_types"].shape == (0,)
    for key in ("spd", "path_edges", "degree", "edge_index"):
        assert torch.equal(out[key], before[key]), key
    # beside graphs with edges: the edgeless ones add no pair
    mixed = [graph_data.isolated(), graph_data.ring(5, 1), graphs[1]]
    out = EdgeMasking(0.3, HOPS)(collate(mixed), gen())
    where = blocks(out)
    owners = {int(out["graph_of"][r, i]) for r, i, _ in out["edge_pairs"].tolist()}
    assert owners == {1} and len(where) == 3


def test_complete_graph_has_no_negatives_to_offer():
    triangle = Graph(np.zeros((3, 2), dtype=np.int64), np.array([[0, 1], [1, 2], [0, 2]]), np.array([0, 1, 0]))
    batch = collate([triangle])
    before = _clone(batch)
    out = EdgeMasking(0.3, HOPS)(batch, gen())
    assert out["edge_pair_labels"].tolist() == [1.0]
    _check_edge_masking([triangle], before, out, 0.3)


def test_edge_masking_is_deterministic_under_the_generator():
    base = collate(sample_graphs(16, seed=5))
    a, b = EdgeMasking(0.3, HOPS)(_clone(base), gen(11)), EdgeMasking(0.3, HOPS)(_clone(base), gen(11))
    for key in ("edge_pairs", "edge_pair_labels", "edge_pair_types", "edge_index", "spd", "path_edges", "degree"):
        assert torch.equal(a[key], b[key]), key
    c = EdgeMasking(0.3, HOPS)(_clone(base), gen(12))
    assert not torch.equal(a["edge_pairs"], c["edge_pairs"])


def test_edge_masking_after_bond_masking_predicts_the_true_types():
    graphs = sample_graphs(16, seed=6)
    batch = collate(graphs)
    true = batch["edge_type"].clone()
    g = gen(2)
    batch = AttributeMasking(0.15, 0.9, MASKED_TYPE, HOPS)(batch, g)
    assert torch.equal(batch["edge_type_true"], true)
    before = _clone(batch)
    out = EdgeMasking(0.9, HOPS)(batch, g)
    _check_edge_masking(graphs, before, out, 0.9)       # positives' types checked against edge_type_true
    positives = out["edge_pair_labels"] == 1
    pos_types = out["edge_pair_types"][positives]
    assert (pos_types < MASKED_TYPE).all()              # never the "masked" type
    # at least one removed edge had its type hidden: the true type differs from what the batch shows
    shown = []
    for r, i, j in out["edge_pairs"][positives].tolist():
        e = int(((before["edge_index"][r, :, 0] == i) & (before["edge_index"][r, :, 1] == j)).nonzero()[0, 0])
        shown.append(int(before["edge_type"][r, e]))
    assert MASKED_TYPE in shown
    np.testing.assert_array_equal(pos_types.numpy(),
                                  [int(true[r][(before["edge_index"][r, :, 0] == i)
                                               & (before["edge_index"][r, :, 1] == j)][0])
                                   for r, i, j in out["edge_pairs"][positives].tolist()])


def test_the_harness_pretraining_batch():
    harness = sibling(__file__, "harness", "graph_harness_graph_objectives")
    a, b = harness.pretrain_batch(), harness.pretrain_batch()
    for key in ("node_mask", "edge_pairs", "edge_pair_types", "bond_pairs", "spd", "path_edges"):
        assert torch.equal(a[key], b[key]), key
    assert (a["edge_pair_labels"] == 1).any() and (a["edge_pair_labels"] == 0).any() and a["node_mask"].any()


# --- pooling --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("packing", ["packed", "padded"])
def test_mean_pooling_by_hand(packing):
    graphs = sample_graphs(12, seed=7)
    batch = collate(graphs, packing)
    R, L = batch["graph_of"].shape
    hidden = torch.randn(R, L, 5, generator=gen(1))
    pooled = pool_graphs(hidden, batch, "mean")
    assert pooled.shape == (len(graphs), 5)
    for i, g in enumerate(graphs):
        rows, cols = (batch["graph_of"] == i).nonzero(as_tuple=True)
        row, at = int(rows[0]), int(cols.min())
        nodes = hidden[row, at + 1:at + 1 + g.num_nodes]         # after its virtual token
        torch.testing.assert_close(pooled[i], nodes.sum(0) / g.num_nodes)
        with_virtual = hidden[row, at:at + 1 + g.num_nodes].mean(0)
        assert not torch.allclose(pooled[i], with_virtual)


def test_virtual_pooling_picks_the_virtual_token():
    graphs = sample_graphs(12, seed=8)
    batch = collate(graphs)
    R, L = batch["graph_of"].shape
    hidden = torch.randn(R, L, 4, generator=gen(2))
    pooled = pool_graphs(hidden, batch, "virtual")
    for i in range(len(graphs)):
        rows, cols = (batch["graph_of"] == i).nonzero(as_tuple=True)
        row, at = int(rows[0]), int(cols.min())
        assert batch["is_virtual"][row, at]
        assert torch.equal(pooled[i], hidden[row, at])


def test_mean_pooling_without_virtual_tokens():
    graphs = sample_graphs(6, seed=9)
    batch = collate(graphs, virtual_token=False)
    hidden = torch.randn(*batch["graph_of"].shape, 3, generator=gen(3))
    pooled = pool_graphs(hidden, batch)
    for i, (row, start, n) in enumerate(blocks(batch)):
        torch.testing.assert_close(pooled[i], hidden[row, start:start + n].mean(0))
