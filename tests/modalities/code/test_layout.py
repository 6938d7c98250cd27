"""layout.py: subword spans of nodes, positions, truncation budgets, parts and the graph-guided mask."""

from __future__ import annotations

import pytest
import torch

from conftest import sibling
from modalzoo.modalities.code.layout import CODE, COMMENT, NODE, SPECIAL, collate, lay_out

code_data = sibling(__file__, "code_data")


@pytest.fixture(scope="module")
def tok():
    return code_data.tokenizer()


@pytest.mark.parametrize("index", range(4))
def test_every_node_spans_the_subwords_of_its_leaf(tok, index):
    s = code_data.samples()[index]
    x = lay_out(s, tok, 256, 64, 64)
    assert len(x.node_span) == len(s.nodes)
    for k, (start, end) in enumerate(x.node_span):
        assert set(x.role[start:end]) == {CODE}
        assert tok.decode(x.ids[start:end].tolist()).strip() == s.token_text(s.nodes[k])
    assert sorted(map(tuple, x.edges.tolist())) == sorted(s.edges)


def test_positions_roles_and_special_tokens(tok):
    s = code_data.samples()[0]
    x = lay_out(s, tok, 256, 64, 64)
    n_text = x.first_node
    assert x.position[:n_text].tolist() == list(range(2, 2 + n_text))
    assert set(x.position[n_text:].tolist()) == {0} and set(x.role[n_text:].tolist()) == {NODE}
    assert x.ids[0] == tok.bos_id and x.role[0] == SPECIAL
    sep = [i for i in range(n_text) if x.role[i] == SPECIAL]
    assert len(sep) == 3 and x.ids[sep[1]] == tok.eos_id and x.ids[n_text - 1] == tok.eos_id
    assert tok.decode(x.ids[1:sep[1]].tolist()) == s.docstring
    assert set(x.role[1:sep[1]].tolist()) == {COMMENT}


def test_truncation_keeps_budgets_and_drops_nodes_of_cut_leaves(tok):
    s = code_data.samples()[0]
    full = lay_out(s, tok, 256, 64, 64)
    x = lay_out(s, tok, 30, 4, 5)
    assert len(x.ids) <= 30
    assert (x.role == COMMENT).sum() == 5
    assert (x.role == NODE).sum() <= 4 and len(x.node_span) < len(full.node_span)
    code_end = x.first_node - 1
    assert all(e <= code_end for _, e in x.node_span)             # every kept node's leaf is wholly kept
    assert all(a < len(x.node_span) and b < len(x.node_span) for a, b, _ in x.edges.tolist())
    # the kept nodes are the first ones in source order whose leaf survived
    shift = int(full.node_span[0][0] - x.node_span[0][0])           # the comment is shorter here
    assert (x.node_span + shift).tolist() == full.node_span[:len(x.node_span)].tolist()


def test_parts(tok):
    s = code_data.samples()[1]
    query = lay_out(s, tok, 256, 64, 64, parts=("comment",))
    assert set(query.role.tolist()) == {SPECIAL, COMMENT} and len(query.node_span) == 0
    code_only = lay_out(s, tok, 256, 64, 64, parts=("code",))
    assert COMMENT not in code_only.role and NODE not in code_only.role and CODE in code_only.role
    with_nodes = lay_out(s, tok, 256, 64, 64, parts=("code", "nodes"))
    assert NODE in with_nodes.role and COMMENT not in with_nodes.role


def test_graph_guided_mask(tok):
    items = [lay_out(s, tok, 256, 64, 64) for s in code_data.samples()[:2]]
    batch = collate(items, tok.pad_id)
    mask, role = batch["attn_mask"], batch["token_role"]
    for b, x in enumerate(items):
        t, n = x.first_node, len(x.ids)
        assert mask[b, :t, :t].all()                                  # text sees text
        assert not mask[b, n:].any() and not mask[b, :, n:].any()     # padding: nothing (the encoder adds eye)
        edges = {(int(a) + t, int(c) + t) for a, c, _ in x.edges}
        for k, (start, end) in enumerate(x.node_span):
            i = t + k
            code = (role[b] == CODE).nonzero().flatten().tolist()
            assert [j for j in code if mask[b, i, j]] == list(range(start, end))
            assert [j for j in code if mask[b, j, i]] == list(range(start, end))
            sees = {(i, j) for j in range(t, n) if mask[b, i, j]}
            assert sees == {(i, j) for (a, j) in edges if a == i}     # a node sees exactly its sources
            assert batch["node_span"][b, i].tolist() == [start, end]
        specials = (role[b, :t] == SPECIAL).nonzero().flatten()
        assert mask[b][specials][:, t:n].all()                         # <s> and </s> see the nodes
        kinds = batch["dfg_edges"][b]
        assert {(int(i), int(j)) for i, j in kinds.nonzero()} == edges


def test_identifier_flags(tok):
    s = code_data.samples()[2]
    x = lay_out(s, tok, 256, 64, 64)
    words = tok.decode(x.ids[x.identifier].tolist()).split()
    assert "values" in words and "factor" in words and "for" not in words and "return" not in words
    assert not x.identifier[x.role != CODE].any()


def test_collate_pads_to_the_longest(tok):
    items = [lay_out(s, tok, 256, 64, 64) for s in code_data.samples()]
    batch = collate(items, tok.pad_id)
    L = max(len(x.ids) for x in items)
    assert batch["input_ids"].shape == (4, L) and batch["attn_mask"].shape == (4, L, L)
    short = min(range(4), key=lambda i: len(items[i].ids))
    assert (batch["input_ids"][short, len(items[short].ids):] == tok.pad_id).all()
    assert (batch["position_idx"][short, len(items[short].ids):] == 1).all()
    assert batch["input_ids"].dtype == torch.long
