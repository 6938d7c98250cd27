"""T5's options in the shared stack: the bucketed relative position bias, the attention scale, GEGLU, T5's RMS
norm, and a two-layer encoder and decoder stack against transformers' T5Stack with the same weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers import T5Config
from transformers.models.t5.modeling_t5 import T5Attention, T5LayerNorm, T5Stack

from modalzoo.encoders.blocks import MLP, Attention, BlockConfig
from modalzoo.encoders.positions import RelativePositionBias, relative_bucket
from modalzoo.encoders.transformer import Transformer, TransformerConfig, TransformerDecoderConfig
from modalzoo.errors import ConfigError
from modalzoo.registry import ENCODERS
from modalzoo.tokens import Tokens
from tiny_models import rand

pytestmark = pytest.mark.usefixtures("one_thread")

DIM, HEADS, BUCKETS, MAX_DISTANCE = 32, 4, 8, 20






@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("buckets,max_distance", [(32, 128), (8, 20), (64, 256), (6, 7)])
def test_relative_bucket_matches_transformers(bidirectional, buckets, max_distance):
    distances = torch.arange(-3 * max_distance, 3 * max_distance + 1)[None, :]
    ours = relative_bucket(distances, bidirectional, buckets, max_distance)
    theirs = T5Attention._relative_position_bucket(distances, bidirectional=bidirectional, num_buckets=buckets,
                                                   max_distance=max_distance)
    assert torch.equal(ours, theirs)
    assert ours.min() == 0 and ours.max() == buckets - 1            # every bucket is reachable on this grid


def test_relative_bias_is_one_table_shared_by_layers_and_computed_once(monkeypatch):
    model = Transformer(TransformerConfig(dim=DIM, heads=HEADS, layers=3, positions="t5_relative")).eval()
    assert [n for n, _ in model.named_parameters() if "relative" in n] == ["relative.table.weight"]
    assert model.relative.table.weight.shape == (32, HEADS)
    calls = []
    forward = RelativePositionBias.forward
    monkeypatch.setattr(RelativePositionBias, "forward", lambda self, *a: calls.append(1) or forward(self, *a))
    masks = []
    attend = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention",
                        lambda *a, **k: masks.append(k["attn_mask"]) or attend(*a, **k))
    model(Tokens(x=rand(2, 9, DIM)))
    assert len(calls) == 1 and len(masks) == 3 and all(m is masks[0] for m in masks)
    assert masks[0].shape == (1, HEADS, 9, 9)                        # one bias for every row: no per-row positions


def test_relative_bias_values_follow_the_buckets_and_packed_documents_restart():
    model = Transformer(TransformerConfig(dim=DIM, heads=HEADS, layers=1, positions="t5_relative",
                                          rel_buckets=BUCKETS, rel_max_distance=MAX_DISTANCE))
    table = model.relative.table.weight
    positions = torch.tensor([[0, 1, 2, 0, 1, 2, 3]])                  # two packed documents
    bias = model.relative(positions)
    assert bias.shape == (1, HEADS, 7, 7)
    for q in range(7):
        for k in range(7):
            bucket = relative_bucket(positions[0, k] - positions[0, q], True, BUCKETS, MAX_DISTANCE)
            torch.testing.assert_close(bias[0, :, q, k], table[bucket])
    torch.testing.assert_close(bias[0, :, 3:6, 3:6], bias[0, :, :3, :3])    # the second document restarts
    causal = Transformer(TransformerConfig(dim=DIM, heads=HEADS, layers=1, mask="causal", positions="t5_relative"))
    assert not causal.relative.bidirectional and model.relative.bidirectional


def test_packed_rows_with_relative_bias_equal_each_document_alone():
    model = Transformer(TransformerConfig(dim=DIM, heads=HEADS, layers=2, positions="t5_relative",
                                          rel_buckets=BUCKETS, rel_max_distance=MAX_DISTANCE)).eval()
    a, b = rand(1, 5, DIM, seed=2), rand(1, 4, DIM, seed=3)
    packed = Tokens(x=torch.cat([a, b], 1), segment_ids=torch.tensor([[1] * 5 + [2] * 4]),
                    positions=torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2, 3]]))
    out = model(packed).x
    torch.testing.assert_close(out[:, :5], model(Tokens(x=a)).x, atol=1e-5, rtol=0)
    torch.testing.assert_close(out[:, 5:], model(Tokens(x=b)).x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("buckets,max_distance,mask", [(2, 128, "bidirectional"), (8, 2, "bidirectional"),
                                                        (1, 128, "causal")])
def test_bucket_options_that_cannot_work_are_config_errors(buckets, max_distance, mask):
    with pytest.raises(ConfigError, match="rel_buckets"):
        ENCODERS.build({"name": "transformer", "dim": DIM, "heads": HEADS, "positions": "t5_relative",
                        "rel_buckets": buckets, "rel_max_distance": max_distance, "mask": mask})


@pytest.mark.parametrize("scale", [0.0, 1.0, 0.3])
def test_attention_scale(scale):
    torch.manual_seed(0)
    attn = Attention(BlockConfig(dim=DIM, heads=HEADS, attn_scale=scale)).eval()
    x = rand(2, 6, DIM)
    q, k, v = (t.reshape(2, 6, HEADS, DIM // HEADS).transpose(1, 2) for t in attn.qkv(x).chunk(3, -1))
    weights = ((q @ k.transpose(-1, -2)) * (scale or (DIM // HEADS) ** -0.5)).softmax(-1)
    expected = attn.proj((weights @ v).transpose(1, 2).reshape(2, 6, DIM))
    torch.testing.assert_close(attn(x), expected, atol=1e-5, rtol=0)


def test_geglu_is_a_tanh_gelu_gate_times_up():
    torch.manual_seed(0)
    mlp = MLP(BlockConfig(dim=DIM, heads=HEADS, activation="geglu", ffn_dim=48)).eval()
    assert mlp.fc1.weight.shape == (2 * 48, DIM)                     # [gate | up], as SwiGLU
    x = rand(3, DIM)
    gate, up = mlp.fc1(x).chunk(2, -1)
    torch.testing.assert_close(mlp(x), mlp.fc2(F.gelu(gate, approximate="tanh") * up))
    assert not torch.allclose(mlp(x), mlp.fc2(F.gelu(gate) * up), atol=1e-7)   # the tanh form, not erf
    assert BlockConfig(dim=96, activation="geglu").hidden_ffn == BlockConfig(dim=96, activation="swiglu").hidden_ffn


def test_rmsnorm_is_t5_layernorm():
    ours, theirs = nn.RMSNorm(DIM, eps=1e-6), T5LayerNorm(DIM, eps=1e-6)
    with torch.no_grad():
        ours.weight.copy_(rand(DIM, seed=4))
        theirs.weight.copy_(ours.weight)
    x = rand(3, 5, DIM) * 3 + 1                                       # a mean far from 0: no mean is subtracted
    torch.testing.assert_close(ours(x), theirs(x), atol=1e-6, rtol=0)


# --------------------------------------------------------------------------------------------------
# Two layers of T5 (v1.1: gated GELU, no biases) against transformers' T5Stack with copied weights
# --------------------------------------------------------------------------------------------------

T5_BLOCK = {"dim": DIM, "heads": HEADS, "ffn_dim": 48, "norm": "rmsnorm", "norm_eps": 1e-6, "bias": False,
            "activation": "geglu", "attn_scale": 1.0, "positions": "t5_relative", "rel_buckets": BUCKETS,
            "rel_max_distance": MAX_DISTANCE, "layers": 2}


def t5_stack(decoder: bool) -> T5Stack:
    cfg = T5Config(vocab_size=16, d_model=DIM, d_kv=DIM // HEADS, d_ff=48, num_layers=2, num_heads=HEADS,
                   relative_attention_num_buckets=BUCKETS, relative_attention_max_distance=MAX_DISTANCE,
                   dropout_rate=0.0, layer_norm_epsilon=1e-6, feed_forward_proj="gated-gelu",
                   is_decoder=decoder, use_cache=False, is_encoder_decoder=False)
    torch.manual_seed(5)
    stack = T5Stack(cfg).eval()
    with torch.no_grad():
        for p in stack.parameters():
            p.copy_(torch.randn_like(p) * 0.3 + (1.0 if p.dim() == 1 else 0.0))   # norms near 1
    return stack


def copy_t5_weights(ours: Transformer, theirs: T5Stack) -> None:
    sd = {"relative.table.weight": theirs.block[0].layer[0].SelfAttention.relative_attention_bias.weight,
          "norm.weight": theirs.final_layer_norm.weight}
    for i, block in enumerate(theirs.block):
        attn, ff = block.layer[0], block.layer[-1]
        sd |= {f"blocks.{i}.norm1.weight": attn.layer_norm.weight,
               f"blocks.{i}.attn.qkv.weight": torch.cat([attn.SelfAttention.q.weight, attn.SelfAttention.k.weight,
                                                         attn.SelfAttention.v.weight]),
               f"blocks.{i}.attn.proj.weight": attn.SelfAttention.o.weight,
               f"blocks.{i}.norm2.weight": ff.layer_norm.weight,
               f"blocks.{i}.mlp.fc1.weight": torch.cat([ff.DenseReluDense.wi_0.weight, ff.DenseReluDense.wi_1.weight]),
               f"blocks.{i}.mlp.fc2.weight": ff.DenseReluDense.wo.weight}
        if ours.cfg.cross_attention:
            cross = block.layer[1]
            sd |= {f"blocks.{i}.norm_cross.weight": cross.layer_norm.weight,
                   f"blocks.{i}.cross_attn.q.weight": cross.EncDecAttention.q.weight,
                   f"blocks.{i}.cross_attn.kv.weight": torch.cat([cross.EncDecAttention.k.weight,
                                                                  cross.EncDecAttention.v.weight]),
                   f"blocks.{i}.cross_attn.proj.weight": cross.EncDecAttention.o.weight}
    ours.load_state_dict(sd, strict=True)


def test_t5_encoder_stack_matches_transformers():
    theirs = t5_stack(decoder=False)
    ours = Transformer(TransformerConfig(**T5_BLOCK)).eval()
    copy_t5_weights(ours, theirs)
    x = rand(2, 11, DIM, seed=6)
    pad = torch.ones(2, 11, dtype=torch.bool)
    pad[1, 7:] = False
    with torch.no_grad():
        expected = theirs(inputs_embeds=x, attention_mask=pad.long()).last_hidden_state
        got = ours(Tokens(x=x, pad_mask=pad)).x
    torch.testing.assert_close(got[pad], expected[pad], atol=1e-4, rtol=0)


def test_t5_decoder_stack_matches_transformers():
    theirs = t5_stack(decoder=True)
    ours = Transformer(TransformerDecoderConfig(**T5_BLOCK)).eval()
    copy_t5_weights(ours, theirs)
    y, memory = rand(2, 9, DIM, seed=7), rand(2, 6, DIM, seed=8)
    memory_pad = torch.ones(2, 6, dtype=torch.bool)
    memory_pad[0, 4:] = False
    with torch.no_grad():
        expected = theirs(inputs_embeds=y, encoder_hidden_states=memory,
                          encoder_attention_mask=memory_pad.long()).last_hidden_state
        got = ours(Tokens(x=y), memory=Tokens(x=memory, pad_mask=memory_pad)).x
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
