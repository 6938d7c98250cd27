"""Every architecture shape the five slots must carry, built from the registry and trained one step."""

from __future__ import annotations

import pytest
import torch

from modalzoo import build_model
from modalzoo.registry import ENCODERS
from tiny_models import SHAPES


def forward_backward(name: str):
    spec, make_batch = SHAPES[name]
    torch.manual_seed(0)
    model = build_model({"model": spec})
    batch = make_batch()
    out = model(batch)
    out.loss.backward()
    return model, batch, out


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_shape_trains_one_step(name):
    model, _, out = forward_backward(name)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    for target in model.targets:
        assert f"{target}/loss" in out.metrics
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, f"parameters that got no gradient: {no_grad}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_timm_encoder_in_place_of_the_zoo_vit():
    model, batch, out = forward_backward("clip_timm")
    encoder = model.streams["image"].encoder
    assert encoder.model.__class__.__module__.startswith("timm.")
    assert encoder.dim == model.targets["clip"].projections["image"].in_features
    assert encoder.model.patch_embed.proj.weight.grad is not None


def test_two_tower_clip_mixes_streams():
    model, batch, out = forward_backward("clip")
    assert set(model.streams) == {"image", "text"}
    g_img = model.streams["image"].encoder.blocks[0].attn.qkv.weight.grad
    g_txt = model.streams["text"].encoder.blocks[0].attn.qkv.weight.grad
    assert g_img.abs().sum() > 0 and g_txt.abs().sum() > 0
    assert 0 <= float(out.metrics["clip/accuracy"]) <= 1


def test_mae_encoder_sees_only_visible_patches():
    model, batch, _ = forward_backward("mae")
    stream = model.streams["image"]
    hidden = stream.encoder(stream.embedding(batch))
    patches = (16 // 4) ** 2
    assert hidden.x.shape[1] == 1 + patches // 4            # class token + 25% of the patches
    decoded = stream.decoder(stream.target_embedding(batch, hidden))
    assert decoded.x.shape[1] == 1 + patches and decoded.x.shape[-1] == 16
    assert hidden.extras["mae_mask"].sum(1).eq(patches * 3 // 4).all()


def test_mae_same_noise_same_mask():
    model, batch, _ = forward_backward("mae")
    emb = model.streams["image"].embedding
    noise = torch.rand(3, 16)
    a = emb({**batch, "mae_noise": noise}).extras["mae_mask"]
    b = emb({**batch, "mae_noise": noise}).extras["mae_mask"]
    assert torch.equal(a, b)


def test_t5_decoder_reads_the_encoder():
    model, batch, _ = forward_backward("t5")
    model.eval()
    base = model(batch).loss
    changed = dict(batch, input_ids=batch["input_ids"].roll(1, dims=1))
    assert not torch.allclose(base, model(changed).loss), "the decoder ignores the encoder output"


def test_gpt_is_causal_through_the_model():
    model, batch, _ = forward_backward("gpt")
    model.eval()
    stream = model.streams["text"]
    ids = batch["input_ids"][:1]
    h1 = stream({"input_ids": ids}).hidden.x
    ids2 = ids.clone()
    ids2[0, -1] = (ids2[0, -1] + 1) % 50
    h2 = stream({"input_ids": ids2}).hidden.x
    assert torch.allclose(h1[:, :-1], h2[:, :-1], atol=1e-6)
    assert not torch.allclose(h1[:, -1], h2[:, -1])


def test_graphcodebert_per_sample_graph_mask():
    model, batch, _ = forward_backward("graphcodebert")
    model.eval()
    stream = model.streams["code"]
    base = stream(batch).hidden.x
    # sample 0's node 0 is linked only to code token 0: changing code token 5 leaves that node's input alone
    emb = stream.embedding(batch)
    changed = dict(batch, input_ids=batch["input_ids"].clone())
    changed["input_ids"][0, 5] = (changed["input_ids"][0, 5] + 1) % 50
    emb2 = stream.embedding(changed)
    node0 = 8
    assert torch.allclose(emb.x[0, node0], emb2.x[0, node0])
    assert not torch.allclose(base, stream(changed).hidden.x)
    assert emb.attn_mask is not None and not torch.equal(emb.attn_mask[0], emb.attn_mask[1])


def test_encoder_is_the_shared_block_everywhere():
    for name in set(SHAPES) - {"clip_timm"}:          # (except where a timm tower is asked for)
        model = build_model({"model": SHAPES[name][0]})
        for stream in model.streams.values():
            assert isinstance(stream.encoder, ENCODERS.get("transformer").cls)
