"""The code objectives on real laid-out functions: what edge prediction and node alignment hide and predict,
balance, determinism, alternation; MLM never touches nodes or padding; node inputs survive hidden links;
identifier tagging labels; a tiny model learns the structure."""

from __future__ import annotations

import pytest
import torch

from conftest import sibling
from modalzoo.modalities.code.layout import CODE, NODE, PAD_ROLE, collate, lay_out
from modalzoo.modalities.code.objectives import DataFlowConfig, DataFlowMasking
from modalzoo.model import build_model

code_data = sibling(__file__, "code_data")
harness = sibling(__file__, "harness", "code_harness")


@pytest.fixture(scope="module")
def batch():
    tok = code_data.tokenizer()
    return collate([lay_out(s, tok, 128, 32, 16) for s in code_data.samples()], tok.pad_id)


def masked(batch, seed=0, **cfg):
    return DataFlowMasking(DataFlowConfig(**cfg))(batch, torch.Generator().manual_seed(seed))


def test_edge_prediction_hides_the_drawn_nodes_edges_and_balances(batch):
    out = masked(batch, combine="sum", node_alignment=False, node_fraction=0.5)
    pairs, labels = out["edge_pairs"], out["edge_labels"]
    assert "align_pairs" not in out and len(pairs) > 0
    assert labels.sum() == len(labels) - labels.sum()                           # balanced
    role = batch["token_role"]
    for (b, i, j), y in zip(pairs.tolist(), labels.tolist()):
        assert role[b, i] == NODE and role[b, j] == NODE and i < j
        edge = bool(batch["dfg_edges"][b, i, j] or batch["dfg_edges"][b, j, i])
        assert edge == bool(y)
        assert not out["attn_mask"][b, i, j] and not out["attn_mask"][b, j, i]  # hidden from attention
    kinds = out["edge_kind"][labels > 0]
    assert set(kinds.tolist()) <= {1, 2} and (out["edge_kind"][labels == 0] == 0).all()
    # nothing else changed: text rows and node-code links are as before
    changed = out["attn_mask"] != batch["attn_mask"]
    assert (role[:, :, None].expand_as(changed)[changed] == NODE).all()
    assert (role[:, None, :].expand_as(changed)[changed] == NODE).all()


def test_node_alignment_hides_links_both_ways_and_positives_are_the_span(batch):
    out = masked(batch, combine="sum", edge_prediction=False, node_fraction=0.5)
    pairs, labels = out["align_pairs"], out["align_labels"]
    assert len(pairs) and labels.sum() * 2 == len(labels)
    for (b, i, j), y in zip(pairs.tolist(), labels.tolist()):
        start, end = batch["node_span"][b, i].tolist()
        assert batch["token_role"][b, j] == CODE and (start <= j < end) == bool(y)
        assert not out["attn_mask"][b, i, j] and not out["attn_mask"][b, j, i]
    assert torch.equal(out["node_span"], batch["node_span"])                     # the node's input is kept


def test_draws_are_deterministic_and_alternate_picks_one(batch):
    a, b = masked(batch, seed=3), masked(batch, seed=3)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a if isinstance(a[k], torch.Tensor))
    picked = {("edge_pairs" in masked(batch, seed=s), "align_pairs" in masked(batch, seed=s)) for s in range(12)}
    assert picked == {(True, False), (False, True)}
    both = masked(batch, combine="sum")
    assert "edge_pairs" in both and "align_pairs" in both


def test_about_a_fifth_of_nodes_are_drawn(batch):
    out = masked(batch, combine="sum", node_alignment=False)
    for b in range(batch["token_role"].shape[0]):
        nodes = int((batch["token_role"][b] == NODE).sum())
        hidden_rows = {i for bb, i, j in out["edge_pairs"].tolist() if bb == b}
        assert nodes == 0 or len(hidden_rows) <= nodes


def test_mlm_never_masks_nodes_pads_or_specials():
    batch = harness.pretrain_batch()
    selected = batch["labels"] != -100
    role = batch["token_role"]
    assert selected.any()
    assert not (selected & ((role == NODE) | (role == PAD_ROLE))).any()
    assert set(role[selected].tolist()) <= {2, 3}                                 # comment and code only


def test_node_inputs_are_their_spans_mean_even_when_links_are_hidden(batch):
    spec, _ = harness.SHAPES["graphcodebert_full"]
    model = build_model({"model": spec}).eval()
    emb = model.streams["code"].embedding
    hidden = masked(batch, combine="sum", edge_prediction=False, node_fraction=1.0)
    words = emb.word(batch["input_ids"])
    pos = emb.position(batch["position_idx"])
    for b in range(2):
        for i in (batch["token_role"][b] == NODE).nonzero().flatten().tolist():
            start, end = batch["node_span"][b, i].tolist()
            want = words[b, start:end].mean(0) + pos[b, i] + emb.token_type.weight[0]
            x = emb.norm(want[None])[0]
            assert torch.allclose(emb(hidden).x[b, i], x, atol=1e-5)


def test_a_tiny_model_learns_the_structure():
    spec, _ = harness.SHAPES["graphcodebert_full"]
    torch.manual_seed(0)
    model = build_model({"model": spec})
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        batch = harness.pretrain_batch()
        out = model(batch)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        first = first if first is not None else {k: float(v) for k, v in out.metrics.items()}
    last = {k: float(v) for k, v in out.metrics.items()}
    assert last["data_flow/edge_loss"] < 0.7 * first["data_flow/edge_loss"]
    assert last["data_flow/align_loss"] < 0.7 * first["data_flow/align_loss"]
    assert last["tags/accuracy"] > 0.9 and last["mlm/loss"] < first["mlm/loss"]
