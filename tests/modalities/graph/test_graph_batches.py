"""The `graph` field's batches (packed and padded layout, segment ids, virtual tokens, structure blocks, edges
in row coordinates, labels), sample decoding (`from_json`, oversize skip/truncate), the `graph` embedding
(SPD buckets and the spatial/edge attention bias computed by hand, the vocabulary check) and the property
packing exists for: a graph's outputs do not depend on the graphs packed beside it or on padding."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import sibling
from modalzoo.errors import ModalzooError
from modalzoo.modalities.graph.batches import blocks
from modalzoo.modalities.graph.embedding import GraphEmbedding, GraphEmbeddingConfig
from modalzoo.modalities.graph.fields import GraphField, GraphState, OversizeGraph
from modalzoo.modalities.graph.graphs import Graph, from_json, truncate
from modalzoo.modalities.graph.structure import MAX_STORED, PAD, UNREACHABLE, VIRTUAL, encode

graph_data = sibling(__file__, "graph_data")
SCHEMA = graph_data.SCHEMA


def make_field(**kw) -> tuple[GraphField, GraphState]:
    kw = {"max_nodes": 15, "pack_len": 16, **kw}
    f = GraphField(**kw)
    return f, GraphState(SCHEMA, list(SCHEMA.labels), f.hops)


def collate(graphs: list[Graph], **kw) -> tuple[dict, list, GraphField]:
    f, state = make_field(**kw)
    values = [f.decode({"json": g.to_json()}, state) for g in graphs]
    return f.collate(values, state), values, f


def sample_graphs(count: int = 12, seed: int = 0) -> list[Graph]:
    return graph_data.graphs(count, seed)


# --- the layout -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(5))
def test_packed_layout_never_overlaps_and_fits(seed):
    rng = np.random.default_rng(seed)
    f, _ = make_field(max_nodes=20, pack_len=24)
    sizes = rng.integers(1, 22, int(rng.integers(1, 30))).tolist()
    places, rows, length = f.layout(sizes)
    assert length == 24 and len(places) == len(sizes)
    assert -(-sum(sizes) // 24) <= rows <= len(sizes)
    used = np.zeros((rows, 24), dtype=np.int64)
    for (row, at), size in zip(places, sizes):
        assert 0 <= row < rows and at >= 0 and at + size <= 24
        used[row, at:at + size] += 1
    assert used.max() == 1                               # no token holds two graphs
    assert (used.sum(1) > 0).all()                        # no empty row


def test_padded_layout_is_one_graph_per_row():
    f, _ = make_field(packing="padded")
    places, rows, length = f.layout([3, 7, 1, 5])
    assert places == [(0, 0), (1, 0), (2, 0), (3, 0)] and rows == 4 and length == 7


def test_pack_len_must_hold_the_largest_graph():
    with pytest.raises(ModalzooError, match="pack_len=15 cannot hold"):
        GraphField(max_nodes=15, pack_len=15)
    GraphField(max_nodes=15, pack_len=15, virtual_token=False)
    GraphField(max_nodes=15, pack_len=4, packing="padded")
    with pytest.raises(ModalzooError, match="oversize"):
        GraphField(oversize="drop")
    with pytest.raises(ModalzooError, match="packing"):
        GraphField(packing="dense")


# --- what a collated batch holds ------------------------------------------------------------------------
def check_batch(batch: dict, graphs: list[Graph], f: GraphField) -> None:
    """Every documented property of a collated batch, from the graphs it was made of."""
    v = f.virtual
    R, L = batch["segment_ids"].shape
    seg, graph_of, virtual = batch["segment_ids"].numpy(), batch["graph_of"].numpy(), batch["is_virtual"].numpy()
    node_cat, degree = batch["node_cat"].numpy(), batch["degree"].numpy()
    spd, path = batch["spd"].numpy(), batch["path_edges"].numpy()
    edge_index, edge_type = batch["edge_index"].numpy(), batch["edge_type"].numpy()
    assert node_cat.shape == (R, L, 2) and spd.shape == (R, L, L) and path.shape == (R, L, L, f.hops)
    assert spd.dtype == np.uint8 and path.dtype == np.uint8 and edge_index.shape[:2] == edge_type.shape
    assert int(batch["graph_count"]) == len(graphs)
    if f.packing == "packed":
        assert L == f.pack_len
    else:
        assert R == len(graphs) and L == max(g.num_nodes for g in graphs) + v
    # each graph: one contiguous block of one row, [virtual token,] then its nodes
    owner = np.full((R, L), -1)
    edges_seen = np.zeros(R, dtype=np.int64)
    for i, g in enumerate(graphs):
        rows, cols = np.nonzero(graph_of == i)
        assert len(set(rows.tolist())) == 1, f"graph {i} spans rows"
        row, at, n = int(rows[0]), int(cols.min()), g.num_nodes
        if f.packing == "padded":
            assert row == i and at == 0
        assert cols.tolist() == list(range(at, at + n + v))
        assert (owner[row, at:at + n + v] == -1).all()
        owner[row, at:at + n + v] = i
        start = at + v
        ids = seg[row, at:at + n + v]
        assert (ids == ids[0]).all() and ids[0] > 0
        assert virtual[row, at:at + n + v].tolist() == [True] * v + [False] * n
        np.testing.assert_array_equal(node_cat[row, start:start + n], g.node_cat + 1)
        if v:
            assert (node_cat[row, at] == 0).all() and degree[row, at] == 0
        s = encode(n, g.edges, g.edge_type, f.hops)
        nodes = slice(start, start + n)
        np.testing.assert_array_equal(degree[row, nodes], s.degree)
        np.testing.assert_array_equal(spd[row, nodes, nodes], s.spd)
        np.testing.assert_array_equal(path[row, nodes, nodes], s.path)
        block = slice(at, start + n)
        if v:                                              # every pair with the virtual token, both ways
            assert (spd[row, at, block] == VIRTUAL).all() and (spd[row, block, at] == VIRTUAL).all()
            assert not path[row, at, block].any() and not path[row, block, at].any()
        # pairs with any token outside the block: PAD, no path edges
        outside = np.ones(L, dtype=bool)
        outside[block] = False
        assert (spd[row, block][:, outside] == PAD).all() and (spd[row][outside][:, block] == PAD).all()
        assert not path[row, block][:, outside].any()
        # its edges, in row coordinates, with their types
        mine = np.nonzero((edge_index[row, :, 0] >= start) & (edge_index[row, :, 0] < start + n))[0]
        np.testing.assert_array_equal(edge_index[row, mine], g.edges + start)
        np.testing.assert_array_equal(edge_type[row, mine], g.edge_type)
        assert (graph_of[row, edge_index[row, mine]] == i).all() and not virtual[row, edge_index[row, mine]].any()
        edges_seen[row] += len(mine)
        # labels, in graph order
        want = g.labels.get("size")
        got = batch["graph_labels"][i, 0].item()
        assert (np.isnan(got) if want is None else got == want)
    # segment ids: distinct per graph within a row, 0 exactly on padding; padding is nobody's
    for r in range(R):
        in_row = [i for i in range(len(graphs)) if (graph_of[r] == i).any()]
        assert len({int(seg[r][graph_of[r] == i][0]) for i in in_row}) == len(in_row)
    np.testing.assert_array_equal(owner, graph_of)
    pad = graph_of == -1
    assert (seg[pad] == 0).all() and (seg[~pad] > 0).all()
    assert not virtual[pad].any() and (node_cat[pad] == 0).all() and (degree[pad] == 0).all()
    assert (spd[pad] == PAD).all() and (spd.transpose(0, 2, 1)[pad] == PAD).all()   # pad queries and keys
    assert not path[pad].any() and not path.transpose(0, 2, 1, 3)[pad].any()
    # every real edge belongs to a graph; the rest is -1 padding
    real = edge_index[..., 0] >= 0
    np.testing.assert_array_equal(real.sum(1), edges_seen)
    assert (edge_index[~real] == -1).all()
    assert batch["graph_labels"].shape == (len(graphs), 1)


@pytest.mark.parametrize("packing", ["packed", "padded"])
@pytest.mark.parametrize("virtual_token", [True, False])
def test_collated_batch(packing, virtual_token):
    graphs = sample_graphs(14)
    batch, _, f = collate(graphs, packing=packing, virtual_token=virtual_token, hops=3)
    check_batch(batch, graphs, f)
    if packing == "packed":
        assert batch["segment_ids"].shape[0] < len(graphs)       # several graphs per row
        assert (batch["segment_ids"].amax(1) > 1).any()
    assert int(batch["is_virtual"].sum()) == (len(graphs) if virtual_token else 0)


def test_collated_batch_with_disconnected_graphs_and_missing_labels():
    graphs = [graph_data.disconnected(), graph_data.isolated(), graph_data.ring(5, 3), graph_data.path(4, 2)]
    graphs[2].labels = {}
    batch, _, f = collate(graphs, hops=2)
    check_batch(batch, graphs, f)
    assert torch.isnan(batch["graph_labels"][2, 0]) and batch["graph_labels"][0, 0] == 4.0
    (row, start, n) = blocks(batch)[0]
    spd = batch["spd"][row, start:start + n, start:start + n]
    assert spd[0, 2] == UNREACHABLE and spd[1, 3] == UNREACHABLE and spd[0, 1] == 1


def test_blocks_lists_each_graphs_nodes_in_order():
    graphs = sample_graphs(10)
    batch, _, f = collate(graphs)
    for i, (row, start, n) in enumerate(blocks(batch)):
        assert n == graphs[i].num_nodes
        assert (batch["graph_of"][row, start:start + n] == i).all()
        assert batch["is_virtual"][row, start - 1] and not batch["is_virtual"][row, start:start + n].any()


def test_descriptors_only_when_every_graph_has_them():
    graphs = sample_graphs(3)
    for i, g in enumerate(graphs):
        g.descriptors = [float(i), 2.0 * i]
    batch, _, _ = collate(graphs)
    torch.testing.assert_close(batch["graph_descriptors"],
                               torch.tensor([[0.0, 0.0], [1.0, 2.0], [2.0, 4.0]], dtype=torch.float64))
    graphs[1].descriptors = None
    assert "graph_descriptors" not in collate(graphs)[0]


# --- decoding samples -----------------------------------------------------------------------------------
def test_oversize_skip_raises_oversize_graph():
    f, state = make_field(max_nodes=4, pack_len=8)
    big = graph_data.ring(6, 1)
    with pytest.raises(OversizeGraph, match="6 nodes, over the node budget max_nodes=4") as err:
        f.decode({"json": big.to_json()}, state)
    assert isinstance(err.value, ValueError)
    graph, _ = f.decode({"json": graph_data.ring(4, 1).to_json()}, state)      # at the budget: kept
    assert graph.num_nodes == 4


def test_oversize_truncate_keeps_the_first_nodes_and_their_edges():
    f, state = make_field(max_nodes=4, pack_len=8, oversize="truncate", hops=3)
    g = Graph(np.arange(14).reshape(7, 2) % 2, np.array([[0, 1], [5, 6], [1, 2], [3, 4], [2, 5], [2, 3]]),
              np.array([0, 1, 1, 0, 1, 1]), labels={"size": 7.0})
    graph, s = f.decode({"json": g.to_json()}, state)
    assert graph.num_nodes == 4
    np.testing.assert_array_equal(graph.node_cat, g.node_cat[:4])
    np.testing.assert_array_equal(graph.edges, [[0, 1], [1, 2], [2, 3]])
    np.testing.assert_array_equal(graph.edge_type, [0, 1, 1])
    assert graph.labels == {"size": 7.0}
    np.testing.assert_array_equal(s.degree, [1, 2, 2, 1])
    np.testing.assert_array_equal(s.spd[0], [0, 1, 2, 3])
    np.testing.assert_array_equal(s.path[0, 3], [1, 2, 2])
    num = Graph(g.node_cat, g.edges, g.edge_type, node_num=np.arange(7, dtype=np.float32)[:, None])
    np.testing.assert_array_equal(truncate(num, 3).node_num, [[0], [1], [2]])


def test_from_json_round_trip():
    g = Graph(np.array([[0, 1], [2, 0], [1, 1]]), np.array([[0, 1], [1, 2]]), np.array([1, 0]),
              node_num=np.array([[0.5], [1.25], [-2.0]], dtype=np.float32), labels={"size": 3.0},
              descriptors=[1.0, 2.0], smiles="CCO")
    back = from_json(g.to_json(), features=2)
    np.testing.assert_array_equal(back.node_cat, g.node_cat)
    np.testing.assert_array_equal(back.edges, g.edges)
    np.testing.assert_array_equal(back.edge_type, g.edge_type)
    np.testing.assert_array_equal(back.node_num, g.node_num)
    assert back.labels == {"size": 3.0} and back.descriptors == [1.0, 2.0] and back.smiles == "CCO"
    plain = from_json({"node_cat": [[0, 0], [1, 1]], "edges": [[0, 1]]})
    assert plain.edge_type.tolist() == [0] and plain.node_num is None and plain.labels == {}
    lonely = from_json({"node_cat": [[0, 0]]})
    assert lonely.edges.shape == (0, 2) and lonely.edge_type.shape == (0,)


@pytest.mark.parametrize("sample,features,message", [
    ({"node_cat": [[0, 0], [1, 1]], "edges": [[0, 2]]}, 2, r"edge \[0, 2\] names a node that does not exist"),
    ({"node_cat": [[0, 0], [1, 1]], "edges": [[0, 1], [-1, 0]]}, 2, r"edge \[-1, 0\] names a node"),
    ({"node_cat": [[0, -1], [1, 1]], "edges": [[0, 1]]}, 2, "negative categorical node value"),
    ({"node_cat": [[0, 0, 0], [1, 1, 1]], "edges": [[0, 1]]}, 2, "nodes have 3 categorical features, the schema "
                                                                  "says 2"),
    ({"node_cat": [0, 1], "edges": []}, 2, "node_cat must be a non-empty"),
    ({"node_cat": [], "edges": []}, 2, "node_cat must be a non-empty"),
    ({"node_cat": [[0, 0], [1, 1]], "edges": [[0, 1]], "edge_type": [0, 1]}, 2, "1 edges but 2 edge types"),
    ({"node_cat": [[0, 0], [1, 1]], "edges": [[0, 1]], "edge_type": [-1]}, 2, "negative edge type"),
])
def test_from_json_rejects(sample, features, message):
    with pytest.raises(ValueError, match=message):
        from_json(json.dumps(sample), features=features)


def test_decode_rejects_what_from_json_rejects():
    f, state = make_field()
    with pytest.raises(ValueError, match="names a node"):
        f.decode({"json": b'{"node_cat": [[0, 0]], "edges": [[0, 5]]}'}, state)
    with pytest.raises(ValueError, match="the schema says 2"):
        f.decode({"json": b'{"node_cat": [[0]], "edges": []}'}, state)


def test_from_json_rejects_edges_that_are_not_pairs():
    with pytest.raises(ValueError):
        from_json({"node_cat": [[0, 0], [1, 1], [0, 1]], "edges": [[0, 1, 2], [1, 2, 0]]}, features=2)


@pytest.mark.parametrize("node_num", [[[1.0, 2.0], [3.0, 4.0]], [[1.0], [2.0], [3.0], [4.0]]])
def test_decode_rejects_continuous_features_the_schema_does_not_have(node_num):
    from modalzoo.modalities.graph.graphs import GraphSchema

    schema = GraphSchema(SCHEMA.node_features, SCHEMA.edge_types, numeric_features=["charge"])
    f = GraphField(max_nodes=15, pack_len=16)
    state = GraphState(schema, [], f.hops)
    sample = {"node_cat": [[0, 0], [1, 1]], "edges": [[0, 1]], "node_num": node_num}
    good = f.decode({"json": json.dumps({**sample, "node_num": [[0.5], [1.5]]})}, state)
    assert f.collate([good], state)["node_num"][0, 1:3, 0].tolist() == [0.5, 1.5]
    with pytest.raises(ValueError):
        f.decode({"json": json.dumps(sample)}, state)


# --- the embedding --------------------------------------------------------------------------------------
def embedding(edge_bias: str = "path", seed: int = 0, **kw) -> GraphEmbedding:
    cfg = GraphEmbeddingConfig(dim=8, heads=3, node_vocab=[3, 2], node_features=["kind", "flag"], edge_types=2,
                               max_distance=4, max_hops=3, edge_bias=edge_bias, **kw)
    emb = GraphEmbedding(cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():                                   # random tables, so every term shows
        for p in emb.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return emb.eval()


def test_spd_buckets():
    emb = embedding()                                        # max_distance 4: far 5, virtual 6, unreachable 7, pad 8
    codes = torch.tensor([0, 1, 2, 3, 4, 5, 6, 17, MAX_STORED, VIRTUAL, UNREACHABLE, PAD], dtype=torch.uint8)
    assert emb.spd_buckets(codes).tolist() == [0, 1, 2, 3, 4, 5, 5, 5, 5, 6, 7, 8]
    assert emb.spatial.num_embeddings == 9
    assert emb.spd_buckets(codes.reshape(3, 4)).shape == (3, 4)


def _hand_batch():
    """One row: a 7-node path 0-1-...-6 (types 0 1 1 0 1 0) plus a 2-node second component (7-8, type 1), and a
    ring of 3 packed after it; virtual tokens on; 5 hops of path edges stored."""
    chain = Graph(np.zeros((9, 2), dtype=np.int64), np.array([[0, 1], [1, 2], [2, 3], [3, 4], [4, 5], [5, 6], [7, 8]]),
                  np.array([0, 1, 1, 0, 1, 0, 1]))
    batch, _, _ = collate([chain, graph_data.ring(3, 4)], max_nodes=12, pack_len=16, hops=5)
    assert batch["segment_ids"].shape[0] == 1
    return batch, chain


def test_path_bias_by_hand():
    emb = embedding("path")
    batch, chain = _hand_batch()
    (row, s, n), (row2, s2, n2) = blocks(batch)
    bias = emb.attention_bias(batch)
    R, L = batch["spd"].shape[:2]
    assert bias.shape == (R, 3, L, L) and bias.dtype == torch.float32
    S, E = emb.spatial.weight.detach(), emb.edges.weight.detach()
    assert E.shape == (3 * 4, 3)                             # max_hops x (2 types + none + masked)
    t = chain.edge_type.tolist()

    def got(i, j):
        return bias[row, :, s + i, s + j]

    def close(a, b):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)

    close(got(0, 0), S[0])
    close(got(0, 1), S[1] + E[t[0] + 1])
    close(got(1, 0), S[1] + E[t[0] + 1])
    close(got(0, 2), S[2] + (E[t[0] + 1] + E[4 + t[1] + 1]) / 2)
    close(got(2, 0), S[2] + (E[t[1] + 1] + E[4 + t[0] + 1]) / 2)           # from 2: first edge 2-1, then 1-0
    close(got(1, 4), S[3] + (E[t[1] + 1] + E[4 + t[2] + 1] + E[8 + t[3] + 1]) / 3)
    close(got(0, 4), S[4] + (E[t[0] + 1] + E[4 + t[1] + 1] + E[8 + t[2] + 1]) / 3)   # 4 hops, 3 averaged
    close(got(0, 6), S[5] + (E[t[0] + 1] + E[4 + t[1] + 1] + E[8 + t[2] + 1]) / 3)   # farther than max_distance
    close(got(7, 8), S[1] + E[t[6] + 1])
    close(got(0, 7), S[7])                                  # another component
    close(bias[row, :, s - 1, s + 3], S[6])                 # the virtual token, both ways, and with itself
    close(bias[row, :, s + 3, s - 1], S[6])
    close(bias[row, :, s - 1, s - 1], S[6])
    close(bias[row, :, s + 2, s2], S[8])                    # the graph packed beside it
    close(bias[row, :, s + 2, L - 1], S[8])                 # padding
    assert batch["graph_of"][row, L - 1] == -1


def test_path_bias_matches_a_reference_on_a_packed_batch():
    emb = embedding("path", seed=3)
    batch, _, _ = collate(sample_graphs(12), hops=5)
    bias = emb.attention_bias(batch)
    S, E = emb.spatial.weight.detach(), emb.edges.weight.detach()
    spd, path = batch["spd"].long(), batch["path_edges"].long()
    bucket = {VIRTUAL: 6, UNREACHABLE: 7, PAD: 8}
    want = torch.zeros_like(bias)
    for r, i, j in np.ndindex(*spd.shape):
        d = int(spd[r, i, j])
        b = bucket.get(d, min(d, 5))
        hops = [k * 4 + int(path[r, i, j, k]) for k in range(3) if path[r, i, j, k] > 0]
        edge = E[hops].mean(0) if hops else torch.zeros(3)
        want[r, :, i, j] = S[b] + edge
    torch.testing.assert_close(bias, want, atol=1e-5, rtol=1e-5)


def test_direct_bias_uses_only_the_direct_edge():
    emb = embedding("direct")
    batch, chain = _hand_batch()
    (row, s, _), _ = blocks(batch)
    S, E = emb.spatial.weight.detach(), emb.edges.weight.detach()
    assert E.shape == (4, 3)
    bias = emb.attention_bias(batch)
    t = chain.edge_type.tolist()
    torch.testing.assert_close(bias[row, :, s + 2, s + 3], S[1] + E[t[2] + 1])
    torch.testing.assert_close(bias[row, :, s + 3, s + 2], S[1] + E[t[2] + 1])
    # a pair further apart has no edge of its own: the same "no edge" row whatever its path
    torch.testing.assert_close(bias[row, :, s + 0, s + 2], S[2] + E[0])
    torch.testing.assert_close(bias[row, :, s + 0, s + 3], S[3] + E[0])
    # the later hops are never read
    other = dict(batch)
    other["path_edges"] = batch["path_edges"].clone()
    other["path_edges"][..., 1:] = torch.randint(1, 4, other["path_edges"][..., 1:].shape, dtype=torch.uint8)
    torch.testing.assert_close(emb.attention_bias(other), bias)
    other["path_edges"][row, s + 2, s + 3, 0] = 3 - int(other["path_edges"][row, s + 2, s + 3, 0])   # the direct
    torch.testing.assert_close(emb.attention_bias(other)[row, :, s + 2, s + 3], S[1] + E[(1 - t[2]) + 1])  # one is


def test_no_edge_bias_is_spatial_only():
    emb = embedding("none")
    assert emb.edges is None
    batch, _ = _hand_batch()
    torch.testing.assert_close(emb.attention_bias(batch),
                               emb.spatial(emb.spd_buckets(batch["spd"])).permute(0, 3, 1, 2))


def test_node_value_beyond_the_vocabulary_is_named():
    emb = embedding()
    batch, _, _ = collate(sample_graphs(4))
    (row, s, _) = blocks(batch)[2]
    bad = dict(batch)
    bad["node_cat"] = batch["node_cat"].clone()
    bad["node_cat"][row, s, 1] = 3                          # flag has 2 values: 2 (stored 3) is past it
    with pytest.raises(ModalzooError, match="node feature 'flag' has value 2 but node_vocab gives it 2"):
        emb(bad)
    three = dict(batch)
    three["node_cat"] = torch.cat([batch["node_cat"], batch["node_cat"][..., :1]], -1)
    with pytest.raises(ModalzooError, match="the batch has 3 categorical node features"):
        embedding()(three)
    emb(batch)                                              # in range: fine


def test_node_input():
    emb = embedding(max_degree=1)
    emb.init_weights()
    batch, _, _ = collate(sample_graphs(6))
    batch["node_mask"] = torch.zeros(batch["is_virtual"].shape, dtype=torch.bool)
    (row, s, n) = blocks(batch)[4]
    batch["node_mask"][row, s + 1] = True
    tokens = emb(batch)
    x = tokens.x.detach()
    W0, W1, D = emb.features[0].weight, emb.features[1].weight, emb.degree.weight
    cat, deg = batch["node_cat"][row], batch["degree"][row]
    with torch.no_grad():
        torch.testing.assert_close(x[row, s], W0[cat[s, 0]] + W1[cat[s, 1]] + D[min(int(deg[s]), 1) + 1])
        torch.testing.assert_close(x[row, s + 1], emb.mask_token + D[min(int(deg[s + 1]), 1) + 1])
        torch.testing.assert_close(x[row, s - 1], emb.virtual_token)
    pad = batch["graph_of"] == -1
    assert pad.any() and (x[pad] == 0).all()
    assert torch.equal(tokens.pad_mask, batch["segment_ids"] > 0)
    assert torch.equal(tokens.segment_ids, batch["segment_ids"])
    torch.testing.assert_close(tokens.attn_bias, emb.attention_bias(batch))


# --- packing never mixes graphs -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stream():
    from modalzoo.model import build_model
    from tiny_models import perturbed

    harness = sibling(__file__, "harness", "graph_harness_graph_batches")
    torch.manual_seed(0)
    model = perturbed(build_model({"model": harness.SHAPES["graphormer"][0]}), std=0.2)
    with torch.no_grad():                                   # a strong structural bias: leaks would show
        model.streams["graph"].embedding.spatial.weight.normal_(0, 2.0)
    return model.streams["graph"]


def _run(stream, batch, **replace):
    with torch.no_grad():
        tokens = stream.embedding(batch)
        return stream.encoder(tokens.replace(**replace) if replace else tokens).x


def _per_graph(hidden, batch, virtual=True):
    return [hidden[row, start - virtual:start + n] for row, start, n in blocks(batch)]


def test_packed_and_padded_give_the_same_outputs(stream):
    graphs = sample_graphs(14, seed=1)
    packed, _, _ = collate(graphs, hops=5)
    padded, _, _ = collate(graphs, packing="padded", hops=5)
    assert packed["segment_ids"].shape[0] < len(graphs) and padded["segment_ids"].shape[0] == len(graphs)
    a, b = _per_graph(_run(stream, packed), packed), _per_graph(_run(stream, padded), padded)
    for i, (x, y) in enumerate(zip(a, b)):
        assert x.shape == y.shape == (graphs[i].num_nodes + 1, 32)
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-5, msg=f"graph {i}")
    # the check can fail: without the segment ids packed graphs attend to each other
    leaky = _per_graph(_run(stream, packed, segment_ids=None), packed)
    shared = [i for i, (row, _, _) in enumerate(blocks(packed)) if (packed["segment_ids"][row] > 1).any()]
    assert max((leaky[i] - a[i]).abs().max().item() for i in shared) > 1e-3


def test_a_graph_alone_or_packed_with_others_is_the_same(stream):
    graphs = sample_graphs(10, seed=2)
    packed, _, _ = collate(graphs, hops=5)
    together = _per_graph(_run(stream, packed), packed)
    for i in (0, 3, 7):
        alone, _, _ = collate([graphs[i]], hops=5)
        torch.testing.assert_close(_per_graph(_run(stream, alone), alone)[0], together[i], atol=1e-5, rtol=1e-5)


def test_changing_one_graph_leaves_its_row_neighbours_unchanged(stream):
    graphs = sample_graphs(12, seed=3)
    batch, _, _ = collate(graphs, hops=5)
    where = blocks(batch)
    row = int(torch.argmax(batch["segment_ids"].amax(1)))
    in_row = [i for i, (r, _, _) in enumerate(where) if r == row]
    assert len(in_row) >= 3
    victim = in_row[1]
    before = _per_graph(_run(stream, batch), batch)
    changed = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
    _, s, n = where[victim]
    changed["node_cat"][row, s:s + n, 0] = changed["node_cat"][row, s:s + n, 0] % 3 + 1   # every node another kind
    changed["degree"][row, s:s + n] = 0
    changed["spd"][row, s:s + n, s:s + n] = changed["spd"][row, s:s + n, s:s + n].flip(0)
    after = _per_graph(_run(stream, changed), changed)
    assert (after[victim] - before[victim]).abs().max() > 1e-3
    for i in range(len(graphs)):
        if i != victim:
            torch.testing.assert_close(after[i], before[i], atol=1e-5, rtol=1e-5, msg=f"graph {i}")


def test_padding_content_changes_nothing(stream):
    graphs = sample_graphs(8, seed=4)
    batch, _, _ = collate(graphs, hops=5)
    before = _run(stream, batch)
    noisy = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
    pad = batch["graph_of"] == -1
    assert pad.any()
    noisy["node_cat"][pad] = 1
    noisy["degree"][pad] = 3
    noisy["spd"][pad] = 1                                   # pad rows (queries) ...
    noisy["spd"].transpose(1, 2)[pad] = 2                   # ... and pad columns (keys)
    after = _run(stream, noisy)
    real = ~pad
    torch.testing.assert_close(after[real], before[real], atol=1e-5, rtol=1e-5)
