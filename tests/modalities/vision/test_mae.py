"""The `mae` target predicts and scores only the hidden patches: the same loss and gradients as MAE's
formulation (predict every patch, mask the per-patch loss), and `reconstruct` still covers every patch."""

from __future__ import annotations

import pytest
import torch

from modalzoo import build_model
from modalzoo.modalities.vision.mae import MAETargetEmbedding, MAETargetEmbeddingConfig, patchify, take_rows
from modalzoo.tokens import Tokens
from tiny_models import SHAPES


def mae_model(norm_pix_loss: bool):
    spec, make_batch = SHAPES["mae"]
    spec = {**spec, "targets": {"mae": {**spec["targets"]["mae"], "norm_pix_loss": norm_pix_loss}}}
    torch.manual_seed(0)
    return build_model({"model": spec}), make_batch()


def reference_loss(target, out, batch):
    """MAE's and transformers' ViTMAEForPreTraining loss: pixels for all patches, mean over hidden ones."""
    pred = target.reconstruct(out.decoded)
    t = patchify(batch[target.key], target.patch)
    if target.cfg.norm_pix_loss:
        t = (t - t.mean(-1, keepdim=True)) / (t.var(-1, keepdim=True) + 1e-6) ** 0.5
    mask = out.decoded.extras["mae_mask"]
    return (((pred - t) ** 2).mean(-1) * mask).sum() / mask.sum()


@pytest.mark.parametrize("norm_pix_loss", [True, False])
def test_hidden_only_loss_equals_the_masked_full_loss(norm_pix_loss):
    model, batch = mae_model(norm_pix_loss)
    batch["mae_noise"] = torch.rand(batch["pixel_values"].shape[0], 16, generator=torch.Generator().manual_seed(3))
    target = model.targets["mae"]

    def run(loss_of):
        model.zero_grad()
        loss = loss_of(model.streams["image"](batch))
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    task = target({"image": model.streams["image"](batch)}, batch)
    loss, grads = run(lambda out: target({"image": out}, batch).loss)
    ref_loss, ref_grads = run(lambda out: reference_loss(target, out, batch))
    torch.testing.assert_close(loss, ref_loss, atol=1e-6, rtol=1e-6)
    assert grads.keys() == ref_grads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], atol=1e-6, rtol=1e-5, msg=name)
    assert task.count == 3 * 12                                   # 3 images x 12 hidden patches of 16


def test_reconstruct_still_covers_every_patch():
    model, batch = mae_model(True)
    out = model.streams["image"](batch)
    assert model.targets["mae"].reconstruct(out.decoded).shape == (3, 16, 4 * 4 * 3)


@pytest.mark.parametrize("cls_token", [True, False])
def test_target_embedding_unshuffles_as_mae_does(cls_token):
    torch.manual_seed(0)
    emb = MAETargetEmbedding(MAETargetEmbeddingConfig(encoder_dim=12, dim=8, grid=4, cls_token=cls_token))
    emb.init_weights()
    B, keep = 3, 4
    ids_restore = torch.rand(B, 16, generator=torch.Generator().manual_seed(1)).argsort(1).argsort(1)
    memory = Tokens(x=torch.randn(B, keep + cls_token, 12), extras={"ids_restore": ids_restore})
    out = emb({}, memory).x
    x = emb.proj(memory.x)                                        # MAE's order: cat, gather, cat
    visible = x[:, int(cls_token):]
    full = torch.cat([visible, emb.mask_token.expand(B, 16 - keep, -1)], dim=1)
    full = full.gather(1, ids_restore[..., None].expand(-1, -1, 8))
    if cls_token:
        full = torch.cat([x[:, :1], full], dim=1)
    torch.testing.assert_close(out, full + emb.position, atol=0, rtol=0)


def test_take_rows():
    x = torch.randn(3, 7, 5, requires_grad=True)
    idx = torch.tensor([[6, 0], [3, 3], [1, 2]])
    expected = x.gather(1, idx[..., None].expand(-1, -1, 5))
    assert torch.equal(take_rows(x, idx), expected)
    g = torch.randn(3, 2, 5)
    (grad,) = torch.autograd.grad(take_rows(x, idx), x, g)
    (expected_grad,) = torch.autograd.grad(expected, x, g)
    torch.testing.assert_close(grad, expected_grad)
