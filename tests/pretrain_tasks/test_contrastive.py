"""The contrastive target's per-stream heads: run by the model right after each stream (so each head's
backward runs next to its tower's), they give the same loss and gradients as the target computing them
itself from the streams' outputs."""

from __future__ import annotations

import torch

from modalzoo import build_model
from tiny_models import SHAPES


def test_stream_heads_change_order_not_results():
    torch.manual_seed(0)
    spec, make_batch = SHAPES["clip"]
    model = build_model({"model": spec})
    batch = make_batch()
    target = model.targets["clip"]

    through_model = model(batch).loss
    through_model.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()

    outputs = {name: stream(batch) for name, stream in model.streams.items()}
    assert all(not out.heads for out in outputs.values())          # no heads: the target makes its own
    direct = target(outputs, batch).loss
    direct.backward()
    assert torch.equal(through_model.detach(), direct.detach())
    for name, p in model.named_parameters():
        assert torch.allclose(p.grad, grads[name], atol=1e-7), name

    with torch.no_grad():
        heads = {name: target.stream_head(name, out) for name, out in outputs.items()}
    assert all(h.shape == (batch["pixel_values"].shape[0], target.cfg.embed_dim) for h in heads.values())
    assert torch.allclose(heads["image"].norm(dim=-1), torch.ones(len(heads["image"])))


def test_the_logit_scale_is_one_element_and_older_scalar_checkpoints_load():
    """FSDP2 refuses 0-dim parameters, so the scale is [1]; a checkpoint written when it was a scalar loads."""
    spec, _ = SHAPES["clip"]
    model = build_model({"model": spec})
    assert model.targets["clip"].logit_scale.shape == (1,)
    state = model.state_dict()
    state["targets.clip.logit_scale"] = torch.tensor(1.25)             # the old layout
    fresh = build_model({"model": spec})
    fresh.load_state_dict(state)
    assert fresh.targets["clip"].logit_scale.tolist() == [1.25]
