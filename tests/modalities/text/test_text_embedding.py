"""The `token` embedding's padding contract: ``right_padded`` (the default) lets a causal encoder skip the
explicit mask, is refused for left-padded batches on CPU, and can be turned off for them."""

from __future__ import annotations

import pytest
import torch

from modalzoo import ModalzooError, build_model
from modalzoo.encoders.masks import build_attention_mask
from modalzoo.modalities.text.embedding import TargetTokenEmbedding, TokenEmbedding, TokenEmbeddingConfig
from tiny_models import SHAPES, text_batch

V, D = 50, 32


def embedding(**kw) -> TokenEmbedding:
    torch.manual_seed(0)
    return TokenEmbedding(TokenEmbeddingConfig(vocab_size=V, dim=D, **kw)).eval()


def left_padded(B=3, L=10):
    lengths = torch.tensor([L, L - 3, L - 6])[:B]
    mask = torch.arange(L)[None] >= (L - lengths)[:, None]
    ids = torch.randint(5, V, (B, L), generator=torch.Generator().manual_seed(0)).masked_fill(~mask, 0)
    return {"input_ids": ids, "attention_mask": mask}


def test_right_padding_is_the_default_and_takes_the_causal_fast_path():
    batch = text_batch(with_labels=False)
    assert not batch["attention_mask"].all()                     # there is padding, at the end
    tokens = embedding()(batch)
    assert tokens.right_padded and torch.equal(tokens.pad_mask, batch["attention_mask"])
    assert build_attention_mask(tokens, causal=True) == (None, True)


@pytest.mark.parametrize("layout", ["left", "mixed"])
def test_left_padding_with_the_option_on_is_refused(layout):
    batch = left_padded()
    if layout == "mixed":                                         # one row right-padded, one left-padded
        batch = {k: torch.stack([text_batch(with_labels=False, L=10)[k][1], v[1]]) for k, v in batch.items()}
    with pytest.raises(ModalzooError, match=r"right_padded: false"):
        embedding()(batch)


def test_the_error_names_the_prefixed_key():
    batch = {f"decoder_{k}": v for k, v in left_padded().items()}
    emb = TargetTokenEmbedding(TargetTokenEmbedding.Config(vocab_size=V, dim=D))
    with pytest.raises(ModalzooError, match=r"decoder_attention_mask"):
        emb(batch)


def test_option_off_keeps_the_explicit_mask():
    batch = left_padded()
    tokens = embedding(right_padded=False)(batch)
    assert not tokens.right_padded
    mask, is_causal = build_attention_mask(tokens, causal=True)
    assert not is_causal and mask.shape == (3, 1, 10, 10)
    assert not mask[1, 0, 5, :3].any()                            # a real token never sees the left pads


def test_no_padding_mask_is_fine_either_way():
    ids = torch.randint(5, V, (2, 6))
    assert embedding()({"input_ids": ids}).pad_mask is None


@pytest.mark.parametrize("shape", ["gpt", "clip"])
def test_model_loss_and_gradients_equal_with_and_without_the_fast_path(shape):
    """Causal text streams (GPT with RoPE, CLIP's text tower with `last` pooling) on right-padded batches:
    the same loss and gradients whether the encoder builds the explicit mask or not."""
    spec, make_batch = SHAPES[shape]
    batch = make_batch()
    results = []
    for right_padded in (True, False):
        torch.manual_seed(0)
        spec_i = {**spec, "streams": {**spec["streams"], "text": {
            **spec["streams"]["text"],
            "embedding": {**spec["streams"]["text"]["embedding"], "right_padded": right_padded}}}}
        model = build_model({"model": spec_i})
        out = model(batch)
        out.loss.backward()
        results.append((out.loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}))
    (loss_fast, grads_fast), (loss_explicit, grads_explicit) = results
    torch.testing.assert_close(loss_fast, loss_explicit, atol=1e-6, rtol=0)
    assert grads_fast.keys() == grads_explicit.keys()
    for name in grads_fast:
        torch.testing.assert_close(grads_fast[name], grads_explicit[name], atol=1e-6, rtol=1e-5, msg=name)


def test_left_padded_causal_model_trains_with_the_option_off():
    spec, _ = SHAPES["gpt"]
    spec = {**spec, "streams": {"text": {**spec["streams"]["text"], "embedding": {
        **spec["streams"]["text"]["embedding"], "right_padded": False}}}}
    model = build_model({"model": spec})
    batch = left_padded()
    batch["position_ids"] = (batch["attention_mask"].long().cumsum(1) - 1).clamp(min=0)
    out = model(batch)
    out.loss.backward()
    assert torch.isfinite(out.loss)
