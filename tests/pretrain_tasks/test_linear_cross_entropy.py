"""The chunked head + cross-entropy equals autograd's F.cross_entropy(F.linear(h, W)): loss, accuracy and both
gradients, over one chunk and many, scaled and summed with another loss, under bf16 autocast, without grad."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from modalzoo.pretrain_tasks import linear_cross_entropy as lce


def inputs(n: int, vocab: int, dim: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, dim, generator=g).requires_grad_()
    w = (torch.randn(vocab, dim, generator=g) * 0.3).requires_grad_()
    t = torch.randint(0, vocab, (n,), generator=g)
    t[: n // 4] = (h[: n // 4].detach() @ w.detach().t()).argmax(-1)       # some rows right: accuracy > 0
    return h, w, t


def reference(h, w, t, scale=1.0):
    logits = F.linear(h, w).float()
    loss = F.cross_entropy(logits, t)
    gh, gw = torch.autograd.grad(loss * scale, (h, w))
    return loss.detach(), (logits.argmax(-1) == t).float().mean(), gh, gw


@pytest.mark.parametrize("n, vocab, dim, chunk_bytes, chunks", [(300, 50, 16, 1 << 20, 1),
                                                                 (700, 1000, 32, 1 << 20, 3),
                                                                 (1000, 9000, 8, 1 << 14, 4)])
def test_equals_autograd(monkeypatch, n, vocab, dim, chunk_bytes, chunks):
    monkeypatch.setattr(lce, "CHUNK_BYTES", chunk_bytes)
    h, w, t = inputs(n, vocab, dim)
    assert -(-n // lce.chunk_rows(n, vocab)) == chunks
    loss_ref, acc_ref, gh_ref, gw_ref = reference(h, w, t, scale=3.0)
    loss, acc = lce.linear_cross_entropy(h, w, t)
    (3.0 * loss + 0.0 * h.sum()).backward()                 # scaled, and summed with another term
    torch.testing.assert_close(loss.detach(), loss_ref, rtol=1e-5, atol=1e-5)
    assert float(acc) == float(acc_ref) > 0
    torch.testing.assert_close(h.grad, gh_ref, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(w.grad, gw_ref, rtol=1e-4, atol=1e-7)


def test_chunk_rows(monkeypatch):
    monkeypatch.setattr(lce, "CHUNK_BYTES", 1 << 14)       # 4096 floats: 1 row of 4096 classes, but 256 at least
    assert lce.chunk_rows(1000, 4096) == 256 and lce.chunk_rows(100, 4096) == 100 and lce.chunk_rows(1000, 4) == 1000


def test_no_grad_gives_the_same_loss():
    h, w, t = inputs(200, 300, 16)
    with torch.no_grad():
        loss, acc = lce.linear_cross_entropy(h, w, t)
    assert not loss.requires_grad
    torch.testing.assert_close(loss, reference(h, w, t)[0], rtol=1e-5, atol=1e-5)


def test_only_the_weight_needs_grad():
    h, w, t = inputs(200, 300, 16)
    loss, _ = lce.linear_cross_entropy(h.detach(), w, t)
    loss.backward()
    torch.testing.assert_close(w.grad, reference(h, w, t)[3], rtol=1e-4, atol=1e-7)


def test_bf16_autocast_is_close_to_fp32():
    h, w, t = inputs(256, 500, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = lce.linear_cross_entropy(h, w, t)
    loss.backward()
    loss_ref, _, gh_ref, gw_ref = reference(h, w, t)
    assert loss.dtype == torch.float32
    assert abs(float(loss.detach()) - float(loss_ref)) < 0.05 * float(loss_ref)
    assert F.cosine_similarity(h.grad.flatten(), gh_ref.flatten(), dim=0) > 0.99
    assert F.cosine_similarity(w.grad.flatten(), gw_ref.flatten(), dim=0) > 0.99
    assert h.grad.dtype == w.grad.dtype == torch.float32


def test_no_rows_is_nan_like_cross_entropy():
    h, w, _ = inputs(4, 10, 8)
    loss, _ = lce.linear_cross_entropy(h[:0], w, torch.zeros(0, dtype=torch.long))
    assert torch.isnan(loss)
