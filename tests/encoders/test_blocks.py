"""The shared Transformer block and stack: options, cross-attention, checkpointing, and SDPA vs a naive reference."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from modalzoo.encoders.blocks import MLP, BlockConfig, QuickGELU, TransformerBlock
from modalzoo.encoders.masks import build_attention_mask, with_bias
from modalzoo.encoders.positions import Rotary, alibi_bias, alibi_slopes, apply_rotary
from modalzoo.encoders.transformer import Transformer, TransformerConfig, TransformerDecoderConfig
from modalzoo.tokens import Tokens
from tiny_models import rand

pytestmark = pytest.mark.usefixtures("one_thread")

DIM, HEADS = 32, 4
ATOL = 1e-5
ACTIVATIONS = ["gelu", "gelu_tanh", "quick_gelu", "relu", "swiglu"]






def randomize_norms(module: nn.Module, seed=3):
    """Fresh norms are the identity affine; give them real weights so a wrong norm order shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.LayerNorm, nn.RMSNorm)):
                m.weight.copy_(1 + 0.3 * torch.randn(m.weight.shape, generator=g))
                if getattr(m, "bias", None) is not None:
                    m.bias.copy_(0.3 * torch.randn(m.bias.shape, generator=g))
    return module


def make(seed=0, **kw) -> Transformer:
    torch.manual_seed(seed)
    kw = {"dim": DIM, "heads": HEADS, "layers": 2, **kw}
    return Transformer(TransformerConfig(**kw)).eval()


def close(a, b):
    torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


# --------------------------------------------------------------------------------------------------
# A naive reference for one block
# --------------------------------------------------------------------------------------------------

def naive_attention(attn, x, bias=None, rope=None, context=None):
    """softmax(Q K^T / sqrt(d) + bias) V with the module's own weights; bias is additive, [.., Lq, Lk]."""
    B, L, D = x.shape
    H, hd = attn.heads, attn.head_dim

    def split(t):
        return t.reshape(t.shape[0], t.shape[1], H, hd).transpose(1, 2)

    if context is None:
        q, k, v = (split(t) for t in attn.qkv(x).chunk(3, dim=-1))
        if rope is not None:
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
    else:
        q = split(attn.q(x))
        k, v = (split(t) for t in attn.kv(context).chunk(2, dim=-1))
    scores = q @ k.transpose(-1, -2) / math.sqrt(hd)
    if bias is not None:
        scores = scores + bias
    out = scores.softmax(dim=-1) @ v
    return attn.proj(out.transpose(1, 2).reshape(B, L, D))


def naive_block(block, x, bias=None, rope=None, context=None, context_bias=None):
    def mlp(h):
        h = block.mlp.fc1(h)
        if block.mlp.gated:
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        else:
            h = block.mlp.act(h)
        return block.mlp.fc2(h)

    def sub(x, norm, fn):
        return x + fn(norm(x)) if block.prenorm else norm(x + fn(x))

    x = sub(x, block.norm1, lambda h: naive_attention(block.attn, h, bias, rope))
    if block.cross_attn is not None:
        x = sub(x, block.norm_cross, lambda h: naive_attention(block.cross_attn, h, context_bias, context=context))
    return sub(x, block.norm2, mlp)


def additive(mask, is_causal, L):
    """A boolean SDPA mask (or causality) as the additive bias the naive reference adds."""
    if is_causal:
        mask = torch.ones(L, L, dtype=torch.bool).tril()
    if mask is None:
        return None
    if mask.dtype != torch.bool:
        return mask
    return torch.zeros(mask.shape).masked_fill(~mask, float("-inf"))


def mask_case(case, B, L):
    """Tokens carrying each mask ingredient, and the causal flag of the stack that uses it."""
    x = rand(B, L, DIM)
    pad = torch.arange(L)[None] < torch.tensor([L, L - 4])[:, None]
    causal = False
    if case == "none":
        tokens = Tokens(x=x)
    elif case == "padding":
        tokens = Tokens(x=x, pad_mask=pad)
    elif case == "causal":
        tokens, causal = Tokens(x=x), True
    elif case == "causal+padding":
        tokens, causal = Tokens(x=x, pad_mask=pad), True
    elif case == "segments":
        tokens = Tokens(x=x, segment_ids=(torch.arange(L) >= 5).long().expand(B, L))
    elif case == "per-sample":
        attn = torch.rand(B, L, L, generator=torch.Generator().manual_seed(0)) < 0.5
        tokens = Tokens(x=x, attn_mask=attn)
    else:
        raise AssertionError(case)
    return tokens, causal


@pytest.mark.parametrize("positions", ["none", "rope", "alibi"])
@pytest.mark.parametrize("case", ["none", "padding", "causal", "causal+padding", "segments", "per-sample"])
def test_sdpa_block_matches_naive_reference(case, positions):
    B, L = 2, 12
    torch.manual_seed(0)
    block = randomize_norms(TransformerBlock(BlockConfig(dim=DIM, heads=HEADS))).eval()
    tokens, causal = mask_case(case, B, L)
    mask, is_causal = build_attention_mask(tokens, causal=causal)
    pos = torch.arange(L).expand(B, L)
    rope = Rotary(DIM // HEADS)(pos) if positions == "rope" else None
    if positions == "alibi":
        mask, is_causal = with_bias(mask, is_causal, alibi_bias(alibi_slopes(HEADS), pos, causal), L), False
    with torch.no_grad():
        got = block(tokens.x, mask, is_causal, rope)
        want = naive_block(block, tokens.x, additive(mask, is_causal, L), rope)
    assert (got - want).abs().max() <= 1e-5


@pytest.mark.parametrize("prenorm", [True, False])
def test_cross_attention_block_matches_naive_reference(prenorm):
    torch.manual_seed(0)
    block = randomize_norms(TransformerBlock(BlockConfig(dim=DIM, heads=HEADS, cross_attention=True,
                                                         prenorm=prenorm))).eval()
    x, memory = rand(2, 6, DIM), rand(2, 9, DIM, seed=2)
    mem_pad = torch.arange(9)[None] < torch.tensor([9, 5])[:, None]
    cmask = mem_pad[:, None, None, :]
    self_mask = torch.ones(6, 6, dtype=torch.bool).tril()
    with torch.no_grad():
        got = block(x, None, True, None, memory, cmask)
        want = naive_block(block, x, additive(self_mask, False, 6), None, memory, additive(cmask, False, 9))
    assert (got - want).abs().max() <= 1e-5


# --------------------------------------------------------------------------------------------------
# Block options
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
@pytest.mark.parametrize("prenorm", [True, False])
def test_block_options_match_reference(prenorm, norm, activation, bias):
    torch.manual_seed(0)
    cfg = BlockConfig(dim=DIM, heads=HEADS, prenorm=prenorm, norm=norm, activation=activation, bias=bias)
    block = randomize_norms(TransformerBlock(cfg)).eval()
    x = rand(2, 7, DIM)
    with torch.no_grad():
        out = block(x)
        close(out, naive_block(block, x))
    assert out.shape == x.shape and torch.isfinite(out).all()
    norm_type = nn.RMSNorm if norm == "rmsnorm" else nn.LayerNorm
    assert all(isinstance(m, norm_type) for m in (block.norm1, block.norm2))
    linears = [m for m in block.modules() if isinstance(m, nn.Linear)]
    assert all((m.bias is not None) == bias for m in linears)


@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
def test_post_norm_output_is_normalized_and_pre_norm_is_not(norm):
    torch.manual_seed(0)
    x = 3 * rand(2, 7, DIM) + 1
    with torch.no_grad():
        post = TransformerBlock(BlockConfig(dim=DIM, heads=HEADS, norm=norm, prenorm=False)).eval()(x)
        pre = TransformerBlock(BlockConfig(dim=DIM, heads=HEADS, norm=norm, prenorm=True)).eval()(x)

    def rms(t):
        return t.pow(2).mean(-1).sqrt()

    close(rms(post), torch.ones(2, 7))                     # fresh norm: unit scale (LayerNorm: also mean 0)
    if norm == "layernorm":
        close(post.mean(-1), torch.zeros(2, 7))
    assert (rms(pre) - 1).abs().max() > 0.5               # the residual stream keeps its scale


@pytest.mark.parametrize("activation,fn", [
    ("gelu", lambda h: 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))),
    ("gelu_tanh", lambda h: 0.5 * h * (1 + torch.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h**3)))),
    ("quick_gelu", lambda h: h * torch.sigmoid(1.702 * h)),
    ("relu", lambda h: h.clamp(min=0)),
])
def test_mlp_activation_formulas(activation, fn):
    torch.manual_seed(0)
    mlp = MLP(BlockConfig(dim=DIM, heads=HEADS, activation=activation)).eval()
    x = rand(3, DIM)
    with torch.no_grad():
        close(mlp(x), mlp.fc2(fn(mlp.fc1(x))))
    assert mlp.fc1.out_features == 4 * DIM


def test_activations_differ():
    x = torch.linspace(-3, 3, 61)
    outs = {a: MLP(BlockConfig(dim=4, heads=1, activation=a)).act(x) for a in ACTIVATIONS if a != "swiglu"}
    for a, out_a in outs.items():
        for b, out_b in outs.items():
            if a < b:
                assert (out_a - out_b).abs().max() > 1e-4, (a, b)
    close(QuickGELU()(x), x * torch.sigmoid(1.702 * x))


def test_swiglu_mlp():
    torch.manual_seed(0)
    mlp = MLP(BlockConfig(dim=96, heads=4, activation="swiglu")).eval()
    assert mlp.fc1.out_features == 2 * 256 and mlp.fc2.in_features == 256    # 8/3 * 96 = 256
    x = rand(3, 96)
    with torch.no_grad():
        gate, up = mlp.fc1(x).chunk(2, dim=-1)
        close(mlp(x), mlp.fc2(F.silu(gate) * up))


@pytest.mark.parametrize("dim,activation,ffn_dim,hidden", [
    (32, "gelu", 0, 128), (32, "swiglu", 0, 128), (64, "swiglu", 0, 192), (100, "swiglu", 0, 320),
    (32, "gelu", 48, 48), (32, "swiglu", 48, 48),
])
def test_hidden_ffn(dim, activation, ffn_dim, hidden):
    assert BlockConfig(dim=dim, heads=4, activation=activation, ffn_dim=ffn_dim).hidden_ffn == hidden


@pytest.mark.parametrize("which", ["dropout", "attn_dropout"])
def test_dropout_only_in_train_mode(which):
    model = make(**{which: 0.3})
    reference = make(dropout=0.0)                           # same seed, same weights
    x = rand(2, 8, DIM)
    with torch.no_grad():
        a, b = model(Tokens(x=x)).x, model(Tokens(x=x)).x
        close(a, b)                                         # eval: deterministic
        close(a, reference(Tokens(x=x)).x)                  # ... and dropout is the identity
        model.train()
        t1, t2 = model(Tokens(x=x)).x, model(Tokens(x=x)).x
    assert (t1 - t2).abs().max() > 1e-3 and (t1 - a).abs().max() > 1e-3


def test_final_norm_toggle():
    with_norm, without = make(final_norm=True), make(final_norm=False)
    assert isinstance(without.norm, nn.Identity) and isinstance(with_norm.norm, nn.LayerNorm)
    x = rand(2, 5, DIM)
    with torch.no_grad():
        close(with_norm(Tokens(x=x)).x, with_norm.norm(without(Tokens(x=x)).x))


def test_stack_is_its_blocks_in_order():
    model = make(layers=3)
    assert model.fsdp_units() == list(model.blocks) and len(model.blocks) == 3 and model.dim == DIM
    x = rand(2, 5, DIM)
    with torch.no_grad():
        h = x
        for block in model.blocks:
            h = block(h)
        close(model(Tokens(x=x)).x, model.norm(h))


def test_tokens_other_fields_pass_through():
    model = make()
    pad = torch.ones(1, 4, dtype=torch.bool)
    tokens = Tokens(x=rand(1, 4, DIM), pad_mask=pad, extras={"ids_restore": 1})
    with torch.no_grad():
        out = model(tokens)
    assert out.pad_mask is pad and out.extras == {"ids_restore": 1} and out.x is not tokens.x


# --------------------------------------------------------------------------------------------------
# Cross-attention (decoder)
# --------------------------------------------------------------------------------------------------

def make_decoder(seed=0, **kw) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(TransformerDecoderConfig(dim=DIM, heads=HEADS, layers=2, **kw)).eval()


def test_decoder_defaults_are_causal_with_cross_attention():
    cfg = TransformerDecoderConfig(dim=DIM, heads=HEADS)
    assert cfg.cross_attention and cfg.mask == "causal"
    assert all(b.cross_attn is not None for b in make_decoder().blocks)
    assert all(b.cross_attn is None for b in make().blocks)


def test_decoder_output_depends_on_memory():
    dec = make_decoder()
    x = rand(2, 6, DIM)
    m1, m2 = rand(2, 9, DIM, seed=2), rand(2, 9, DIM, seed=3)
    with torch.no_grad():
        o1, o2 = dec(Tokens(x=x), Tokens(x=m1)).x, dec(Tokens(x=x), Tokens(x=m2)).x
    assert (o1 - o2).abs().amax(dim=-1).min() > 1e-4       # every position reads the memory


@pytest.mark.parametrize("mask", ["causal", "bidirectional"])
def test_decoder_ignores_memory_padding(mask):
    dec = make_decoder(mask=mask)
    x = rand(2, 6, DIM)
    n, Lm = 5, 9
    real = rand(2, n, DIM, seed=2)
    mem_pad = (torch.arange(Lm) < n)[None].expand(2, Lm)
    zeros = torch.cat([real, torch.zeros(2, Lm - n, DIM)], dim=1)
    garbage = torch.cat([real, 100 * rand(2, Lm - n, DIM, seed=4)], dim=1)
    with torch.no_grad():
        a = dec(Tokens(x=x), Tokens(x=zeros, pad_mask=mem_pad)).x
        b = dec(Tokens(x=x), Tokens(x=garbage, pad_mask=mem_pad)).x
        c = dec(Tokens(x=x), Tokens(x=real)).x
    close(a, b)
    close(a, c)


def test_decoder_memory_padding_differs_per_sample():
    dec = make_decoder()
    x = rand(1, 6, DIM).expand(2, 6, DIM)
    mem = rand(1, 8, DIM, seed=2).expand(2, 8, DIM)
    mem_pad = torch.arange(8)[None] < torch.tensor([8, 3])[:, None]
    with torch.no_grad():
        both = dec(Tokens(x=x), Tokens(x=mem, pad_mask=mem_pad)).x
        close(both[1:], dec(Tokens(x=x[1:]), Tokens(x=mem[1:, :3])).x)
        close(both[:1], dec(Tokens(x=x[:1]), Tokens(x=mem[:1])).x)


def test_decoder_with_fully_padded_memory_row_stays_finite():
    dec = make_decoder().train()
    x = rand(2, 6, DIM).requires_grad_()
    mem_pad = torch.tensor([[True] * 4, [False] * 4])
    out = dec(Tokens(x=x), Tokens(x=rand(2, 4, DIM, seed=2), pad_mask=mem_pad)).x
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()


def test_decoder_needs_memory():
    with pytest.raises(ValueError, match="memory"):
        make_decoder()(Tokens(x=rand(1, 4, DIM)))
    block = TransformerBlock(BlockConfig(dim=DIM, heads=HEADS, cross_attention=True))
    with pytest.raises(ValueError, match="context"):
        block(rand(1, 4, DIM))


# --------------------------------------------------------------------------------------------------
# Gradient checkpointing
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dropout", [0.0, 0.2])
@pytest.mark.parametrize("kind", ["encoder-rope-padding", "decoder-alibi"])
def test_grad_checkpointing_same_outputs_and_gradients(kind, dropout):
    decoder = kind.startswith("decoder")
    positions = kind.split("-")[1]
    maker = make_decoder if decoder else make
    results = []
    for ckpt in (False, True):
        model = maker(positions=positions, grad_checkpointing=ckpt, dropout=dropout, attn_dropout=dropout).train()
        x = rand(2, 10, DIM).requires_grad_()
        pad = torch.arange(10)[None] < torch.tensor([10, 7])[:, None]
        memory = Tokens(x=rand(2, 5, DIM, seed=2)) if decoder else None
        torch.manual_seed(123)                               # same dropout draws (checkpoint replays RNG)
        out = model(Tokens(x=x, pad_mask=pad), memory).x
        (out * rand(*out.shape, seed=9)).sum().backward()
        results.append((out.detach(), x.grad, [p.grad for p in model.parameters()]))
    (o0, gx0, g0), (o1, gx1, g1) = results
    close(o1, o0)
    close(gx1, gx0)
    assert len(g0) == len(g1) and all(a is not None for a in g0)
    for a, b in zip(g0, g1):
        close(b, a)


def test_grad_checkpointing_really_checkpoints(monkeypatch):
    """The checkpointed path is taken in train mode only (else the flag could silently do nothing)."""
    from modalzoo.encoders import transformer
    calls = []
    real = transformer.checkpoint
    monkeypatch.setattr(transformer, "checkpoint", lambda *a, **k: calls.append(1) or real(*a, **k))
    model = make(grad_checkpointing=True)
    x = rand(1, 4, DIM)
    with torch.no_grad():
        model(Tokens(x=x))
    assert not calls
    model.train()(Tokens(x=x)).x.sum().backward()
    assert len(calls) == 2


# --------------------------------------------------------------------------------------------------
# Config errors
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dim,heads", [(30, 4), (32, 5), (32, 3)])
def test_dim_not_divisible_by_heads_raises(dim, heads):
    with pytest.raises(ValueError, match="divisible"):
        BlockConfig(dim=dim, heads=heads)
    with pytest.raises(ValueError, match="divisible"):
        TransformerConfig(dim=dim, heads=heads)
    with pytest.raises(ValueError, match="divisible"):
        TransformerDecoderConfig(dim=dim, heads=heads)


# --------------------------------------------------------------------------------------------------
# Grouped-query attention (kv_heads < heads)
# --------------------------------------------------------------------------------------------------

def naive_gqa(attn, x, bias=None, rope=None, context=None):
    """Llama's GQA written out: kv head j serves query heads j*g .. j*g+g-1 (repeat_kv), then plain
    softmax(Q K^T / sqrt(d) + bias) V; weights laid out [q | k | v] (self) or q, [k | v] (cross)."""
    B, L, D = x.shape
    H, KV, hd = attn.heads, attn.kv_heads, attn.head_dim
    if context is None:
        q, k, v = attn.qkv(x).split([H * hd, KV * hd, KV * hd], dim=-1)
    else:
        q = attn.q(x)
        k, v = attn.kv(context).split([KV * hd, KV * hd], dim=-1)
    q = q.reshape(B, L, H, hd).transpose(1, 2)
    k, v = (t.reshape(B, t.shape[1], KV, hd).transpose(1, 2) for t in (k, v))
    if rope is not None:
        q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
    k, v = (t.repeat_interleave(H // KV, dim=1) for t in (k, v))
    scores = q @ k.transpose(-1, -2) / math.sqrt(hd)
    if bias is not None:
        scores = scores + bias
    return attn.proj((scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(B, L, D))


@pytest.mark.parametrize("kv_heads", [1, 2])
@pytest.mark.parametrize("case", ["bidirectional", "causal_rope", "padded"])
def test_grouped_query_attention_matches_repeated_kv_reference(kv_heads, case):
    torch.manual_seed(0)
    cfg = BlockConfig(dim=32, heads=4, kv_heads=kv_heads)
    block = randomize_norms(TransformerBlock(cfg)).eval()
    assert block.attn.qkv.weight.shape == (32 + 2 * kv_heads * 8, 32)          # smaller k/v projections
    B, L = 2, 7
    x = rand(B, L, 32)
    mask, is_causal, rope, bias = None, False, None, None
    if case == "causal_rope":
        is_causal, rope = True, Rotary(8)(torch.arange(L).expand(B, L))
        bias = torch.full((L, L), float("-inf")).triu(1)
    elif case == "padded":
        real = torch.tensor([[True] * L, [True] * 4 + [False] * 3])
        mask = real[:, None, None, :]
        bias = torch.zeros(B, 1, 1, L).masked_fill(~mask, float("-inf"))
    with torch.no_grad():
        got = block.attn(block.norm1(x), mask, is_causal, rope)
        want = naive_gqa(block.attn, block.norm1(x), bias, rope)
    close(got, want)


def test_grouped_query_cross_attention_and_backward():
    torch.manual_seed(0)
    block = TransformerBlock(BlockConfig(dim=32, heads=4, kv_heads=2, cross_attention=True)).eval()
    x, memory = rand(2, 5, 32), rand(2, 9, 32, seed=2)
    with torch.no_grad():
        close(block.cross_attn(x, context=memory), naive_gqa(block.cross_attn, x, context=memory))
    block.train()
    block(x, context=memory).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in block.parameters())


def test_kv_heads_must_divide_heads():
    with pytest.raises(ValueError, match=r"kv_heads \(3\) must divide heads \(4\)"):
        BlockConfig(dim=32, heads=4, kv_heads=3)
    assert BlockConfig(dim=32, heads=4).key_value_heads == 4
