"""The KV cache of the shared stack: decoding token by token (or in chunks) gives the full forward's outputs for
every position kind, grouped-query attention, prefix-LM prompts, padded prompts and cross-attention."""

from __future__ import annotations

import pytest
import torch

from modalzoo.encoders.blocks import KVCache
from modalzoo.encoders.transformer import Transformer, TransformerConfig, TransformerDecoderConfig
from modalzoo.tokens import Tokens
from tiny_models import rand

pytestmark = pytest.mark.usefixtures("one_thread")

DIM, HEADS = 32, 4
ATOL = 1e-5






def make(config=TransformerConfig, seed=0, **kw) -> Transformer:
    torch.manual_seed(seed)
    model = Transformer(config(**{"dim": DIM, "heads": HEADS, "layers": 2, "rel_buckets": 8,
                                  "rel_max_distance": 20, **kw})).eval()
    with torch.no_grad():                    # no identity norms or zero biases that could hide a mistake
        for p in model.parameters():
            p.add_(torch.randn(p.shape) * 0.1)
    return model


def close(a, b):
    torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


def incremental(model, x, chunks, memory=None, capacity=4, **first):
    """The stack over x in pieces of the given sizes (the first with ``first``'s Tokens fields), one cache."""
    cache, outs, at = KVCache(capacity=capacity), [], 0
    for i, n in enumerate(chunks):
        fields = first if i == 0 else {}
        outs.append(model(Tokens(x=x[:, at:at + n], **fields), memory=memory, cache=cache).x)
        at += n
    assert cache.length == at == x.shape[1]
    return torch.cat(outs, 1), cache


@pytest.mark.parametrize("kv_heads", [0, 2, 1])
@pytest.mark.parametrize("positions", ["none", "rope", "alibi", "t5_relative"])
@pytest.mark.parametrize("mask", ["causal", "prefix"])
def test_decoding_with_the_cache_equals_the_full_forward(positions, mask, kv_heads):
    model = make(positions=positions, mask=mask, kv_heads=kv_heads)
    x = rand(2, 12, DIM)
    prefix = {"prefix_len": torch.tensor([5, 5])} if mask == "prefix" else {}
    with torch.no_grad():
        full = model(Tokens(x=x, **prefix)).x
        # a prompt of 5 (a prefix-LM reads it both ways), a chunk of 3, then one token at a time; the
        # preallocated 4 positions are outgrown on the way
        got, cache = incremental(model, x, [5, 3, 1, 1, 1, 1], **prefix)
    close(got, full)
    assert cache.layers[0].k.shape[1] == (kv_heads or HEADS)         # grouped-query: kv_heads cached, not heads


def test_per_row_position_ids_continue_from_the_cache():
    model = make(positions="rope", mask="causal")
    x, positions = rand(2, 8, DIM), torch.tensor([[0, 1, 2, 3, 4, 5, 6, 7], [3, 4, 5, 6, 7, 8, 9, 10]])
    with torch.no_grad():
        full = model(Tokens(x=x, positions=positions)).x
        cache = KVCache()
        got = torch.cat([model(Tokens(x=x[:, :4], positions=positions[:, :4]), cache=cache).x,
                         *(model(Tokens(x=x[:, i:i + 1], positions=positions[:, i:i + 1]), cache=cache).x
                           for i in range(4, 8))], 1)
    close(got, full)


@pytest.mark.parametrize("positions", ["none", "alibi", "t5_relative"])
def test_a_left_padded_prompt_keeps_its_pads_hidden_while_decoding(positions):
    model = make(positions=positions, mask="causal")
    x = rand(2, 9, DIM)
    pad = torch.ones(2, 9, dtype=torch.bool)
    pad[1, :3] = False                                               # row 1: three pads before its prompt
    pos = (pad.cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        full = model(Tokens(x=x, pad_mask=pad, positions=pos)).x
        cache = KVCache()
        outs = [model(Tokens(x=x[:, :5], pad_mask=pad[:, :5], positions=pos[:, :5]), cache=cache).x]
        outs += [model(Tokens(x=x[:, i:i + 1], positions=pos[:, i:i + 1]), cache=cache).x for i in range(5, 9)]
    close(torch.cat(outs, 1)[pad], full[pad])
    assert cache.pad_mask.shape == (2, 9) and not cache.pad_mask[1, :3].any()


@pytest.mark.parametrize("positions", ["none", "t5_relative"])
def test_decoder_cache_projects_the_memory_once(positions, monkeypatch):
    model = make(TransformerDecoderConfig, positions=positions, kv_heads=2)
    y, memory = rand(2, 6, DIM), Tokens(x=rand(2, 5, DIM, seed=2),
                                        pad_mask=torch.tensor([[True] * 5, [True] * 3 + [False] * 2]))
    with torch.no_grad():
        full = model(Tokens(x=y), memory=memory).x
        projections = []
        for block in model.blocks:
            block.cross_attn.kv.register_forward_hook(lambda *_: projections.append(1))
        got, cache = incremental(model, y, [1] * 6, memory=memory)
    close(got, full)
    assert len(projections) == len(model.blocks)                     # once per layer, not once per step
    assert cache.layers[0].cross[0].shape == (2, 2, 5, DIM // HEADS)


def test_decoding_steps_write_into_the_preallocated_buffers():
    model = make(mask="causal")
    cache = KVCache(capacity=16)
    x = rand(1, 10, DIM)
    with torch.no_grad():
        model(Tokens(x=x[:, :4]), cache=cache)
        buffer = cache.layers[0].k.data_ptr()
        for i in range(4, 10):
            model(Tokens(x=x[:, i:i + 1]), cache=cache)
    assert cache.layers[0].k.shape[2] == 16 and cache.layers[0].k.data_ptr() == buffer


def test_a_bidirectional_stack_refuses_a_cache():
    with pytest.raises(ValueError, match="causal or prefix"):
        make()(Tokens(x=rand(1, 3, DIM)), cache=KVCache())


def test_packed_segments_after_the_first_forward_are_refused():
    model, cache = make(mask="causal"), KVCache()
    with torch.no_grad():
        model(Tokens(x=rand(1, 3, DIM)), cache=cache)
        with pytest.raises(ValueError, match="segment_ids"):
            model(Tokens(x=rand(1, 2, DIM), segment_ids=torch.ones(1, 2, dtype=torch.long)), cache=cache)


def test_the_cache_leaves_the_uncached_forward_alone():
    """The path without a cache is the training path: same outputs with or without the cache machinery."""
    model = make(positions="alibi", mask="causal")
    x = rand(2, 7, DIM)
    with torch.no_grad():
        close(model(Tokens(x=x), cache=KVCache()).x, model(Tokens(x=x)).x)
