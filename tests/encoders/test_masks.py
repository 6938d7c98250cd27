"""Masks: `build_attention_mask` itself, and what it must guarantee end to end through a Transformer stack.

Padding, packing, causality, prefix-LM, per-sample masks and additive biases are checked by their observable
contract (the bias also against an explicit softmax):
a token that must not be seen has no influence on the outputs that must not see it.
"""

from __future__ import annotations

import pytest
import torch

from modalzoo.encoders.masks import build_attention_mask, causal_mask, is_right_padded, key_padding_mask, with_bias
from modalzoo.encoders.positions import alibi_bias, alibi_slopes
from modalzoo.encoders.transformer import Transformer, TransformerConfig
from modalzoo.tokens import Tokens

DIM, HEADS = 32, 4
ATOL = 1e-5
POSITIONS = ["none", "rope", "alibi"]


pytestmark = pytest.mark.usefixtures("one_thread")


def make(mask="bidirectional", positions="none", layers=2, seed=0, **kw) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(TransformerConfig(dim=DIM, heads=HEADS, layers=layers, mask=mask,
                                         positions=positions, **kw)).eval()


def rand(*shape, seed=1) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def run(model, x, **kw) -> torch.Tensor:
    with torch.no_grad():
        return model(Tokens(x=x, **kw)).x


def close(a, b):
    torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


# --------------------------------------------------------------------------------------------------
# build_attention_mask: the mask it builds, entry by entry
# --------------------------------------------------------------------------------------------------

def test_no_ingredients_means_no_mask():
    assert build_attention_mask(Tokens(x=torch.zeros(2, 5, 4))) == (None, False)


def test_pure_causal_takes_the_fast_path():
    assert build_attention_mask(Tokens(x=torch.zeros(2, 5, 4)), causal=True) == (None, True)


def test_padding_alone_is_a_cheap_key_mask():
    pad = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    mask, is_causal = build_attention_mask(Tokens(x=torch.zeros(2, 5, 4), pad_mask=pad))
    assert not is_causal and mask.shape == (2, 1, 1, 5)
    assert torch.equal(mask[:, 0, 0], pad)


def test_causal_with_padding_is_lower_triangular_and_hides_pads():
    pad = torch.tensor([[1, 1, 1, 0, 0]], dtype=torch.bool)
    mask, is_causal = build_attention_mask(Tokens(x=torch.zeros(1, 5, 4), pad_mask=pad), causal=True)
    assert not is_causal and mask.shape == (1, 1, 5, 5)
    expected = torch.ones(5, 5).tril().bool() & pad[0][None, :]
    expected |= torch.eye(5, dtype=torch.bool)        # pads see themselves only
    assert torch.equal(mask[0, 0], expected)


def test_causal_with_right_padding_takes_the_fast_path():
    """Right-padded rows need no explicit mask in a causal stack: real tokens only look back at real ones."""
    pad = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    tokens = Tokens(x=torch.zeros(2, 5, 4), pad_mask=pad, right_padded=True)
    assert build_attention_mask(tokens, causal=True) == (None, True)
    mask, is_causal = build_attention_mask(tokens)                 # bidirectional still hides the pads
    assert not is_causal and torch.equal(mask[:, 0, 0], pad)


def test_right_padded_flag_does_not_drop_other_ingredients():
    pad = torch.tensor([[1, 1, 1, 1, 0]], dtype=torch.bool)
    x = torch.zeros(1, 5, 4)
    cases = [({"segment_ids": torch.tensor([[0, 0, 1, 1, 2]])}, {"causal": True}),
             ({"attn_mask": torch.ones(1, 5, 5, dtype=torch.bool)}, {"causal": True}),
             ({"prefix_len": torch.tensor([2])}, {"prefix": True})]
    for fields, how in cases:
        flagged = build_attention_mask(Tokens(x=x, pad_mask=pad, right_padded=True, **fields), **how)
        explicit = build_attention_mask(Tokens(x=x, pad_mask=pad, **fields), **how)
        assert flagged[0] is not None and flagged[0].shape == (1, 1, 5, 5) and not flagged[1], fields
        assert torch.equal(flagged[0], explicit[0]), fields


def test_without_the_flag_causal_padding_keeps_the_explicit_mask():
    pad = torch.tensor([[1, 1, 1, 0, 0]], dtype=torch.bool)
    mask, is_causal = build_attention_mask(Tokens(x=torch.zeros(1, 5, 4), pad_mask=pad), causal=True)
    assert not is_causal and mask.shape == (1, 1, 5, 5)


def test_is_right_padded():
    assert is_right_padded(torch.tensor([[1, 1, 0], [1, 1, 1], [0, 0, 0]], dtype=torch.bool))
    assert not is_right_padded(torch.tensor([[0, 1, 1]], dtype=torch.bool))          # left padding
    assert not is_right_padded(torch.tensor([[1, 1, 0], [1, 0, 1]], dtype=torch.bool))   # a hole


def test_segments_are_block_diagonal():
    seg = torch.tensor([[0, 0, 1, 1, 1]])
    mask, _ = build_attention_mask(Tokens(x=torch.zeros(1, 5, 4), segment_ids=seg))
    expected = torch.zeros(5, 5, dtype=torch.bool)
    expected[:2, :2] = expected[2:, 2:] = True
    assert torch.equal(mask[0, 0], expected)


@pytest.mark.parametrize("prefix_len", [0, 1, 3, 5])
def test_prefix_mask_entries(prefix_len):
    L = 5
    tokens = Tokens(x=torch.zeros(1, L, 4), prefix_len=torch.tensor([prefix_len]))
    mask, is_causal = build_attention_mask(tokens, prefix=True)
    assert not is_causal
    for i in range(L):
        for j in range(L):
            allowed = j <= i or (i < prefix_len and j < prefix_len)
            assert mask[0, 0, i, j].item() == allowed, (i, j)


def test_prefix_needs_prefix_len():
    with pytest.raises(ValueError, match="prefix_len"):
        build_attention_mask(Tokens(x=torch.zeros(1, 4, 4)), prefix=True)


def test_per_sample_mask_is_anded_and_diagonal_kept():
    attn = torch.zeros(2, 4, 4, dtype=torch.bool)
    attn[0, 0, 3] = True
    attn[1] = True
    mask, _ = build_attention_mask(Tokens(x=torch.zeros(2, 4, 4), attn_mask=attn), causal=True)
    expected0 = torch.eye(4, dtype=torch.bool)        # (0, 3) is anti-causal, so dropped
    assert torch.equal(mask[0, 0], expected0)
    assert torch.equal(mask[1, 0], torch.ones(4, 4).tril().bool())


def test_key_padding_mask():
    assert key_padding_mask(Tokens(x=torch.zeros(2, 3, 4))) is None
    pad = torch.tensor([[1, 0, 1], [1, 1, 1]], dtype=torch.bool)
    m = key_padding_mask(Tokens(x=torch.zeros(2, 3, 4), pad_mask=pad))
    assert m.shape == (2, 1, 1, 3) and torch.equal(m[:, 0, 0], pad)


def test_with_bias_folds_masks_into_minus_inf():
    bias = rand(2, HEADS, 4, 4)
    assert torch.equal(with_bias(None, False, bias, 4), bias)
    causal = with_bias(None, True, bias, 4)
    upper = ~causal_mask(4, bias.device)
    assert torch.isinf(causal[..., upper]).all() and torch.equal(causal[..., ~upper], bias[..., ~upper])
    pad = torch.tensor([[1, 1, 0, 1], [1, 1, 1, 1]], dtype=torch.bool)
    folded = with_bias(pad[:, None, None, :], False, bias, 4)
    assert torch.isinf(folded[0, :, :, 2]).all() and torch.isfinite(folded[1]).all()


# --------------------------------------------------------------------------------------------------
# Padding: pad content is invisible, and a padded sequence equals the shorter one run alone
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("positions", POSITIONS)
@pytest.mark.parametrize("mask", ["bidirectional", "causal"])
def test_right_padding_changes_nothing(mask, positions):
    model = make(mask, positions)
    n, L = 9, 14
    real = rand(1, n, DIM)
    zeros = torch.cat([real, torch.zeros(1, L - n, DIM)], dim=1)
    garbage = torch.cat([real, 100 * rand(1, L - n, DIM, seed=7)], dim=1)
    pad = (torch.arange(L) < n)[None]
    out_zero = run(model, zeros, pad_mask=pad)[:, :n]
    out_garbage = run(model, garbage, pad_mask=pad)[:, :n]
    alone = run(model, real)
    close(out_zero, out_garbage)
    close(out_zero, alone)


@pytest.mark.parametrize("positions", POSITIONS)
@pytest.mark.parametrize("mask", ["bidirectional", "causal"])
def test_left_padding_with_position_ids_changes_nothing(mask, positions):
    model = make(mask, positions)
    n, L = 7, 12
    real = rand(1, n, DIM)
    x = torch.cat([100 * rand(1, L - n, DIM, seed=3), real], dim=1)
    pad = (torch.arange(L) >= L - n)[None]
    pos = (torch.arange(L) - (L - n)).clamp(min=0)[None]
    close(run(model, x, pad_mask=pad, positions=pos)[:, L - n:], run(model, real))


@pytest.mark.parametrize("positions", POSITIONS)
@pytest.mark.parametrize("mask", ["bidirectional", "causal"])
def test_batch_of_different_lengths_equals_each_alone(mask, positions):
    model = make(mask, positions)
    lengths, L = [5, 11, 16], 16
    seqs = [rand(1, n, DIM, seed=10 + n) for n in lengths]
    x = torch.stack([torch.cat([s[0], rand(L - s.shape[1], DIM, seed=99)]) for s in seqs])
    pad = torch.arange(L)[None] < torch.tensor(lengths)[:, None]
    out = run(model, x, pad_mask=pad)
    for b, (n, s) in enumerate(zip(lengths, seqs)):
        close(out[b : b + 1, :n], run(model, s))


@pytest.mark.parametrize("positions", POSITIONS)
def test_right_padded_causal_fast_path_equals_explicit_mask(positions):
    """Causal stack, rows of different lengths padded at the end: with ``right_padded`` (no mask, SDPA's
    causal path) every real token's output equals the explicit causal-and-padding mask's, forward and
    backward, and pad rows stay finite."""
    model = make("causal", positions, layers=3).train()
    lengths, L = [4, 9, 16, 1], 16
    pad = torch.arange(L)[None] < torch.tensor(lengths)[:, None]
    x = rand(len(lengths), L, DIM)
    x[~pad] = 100 * rand(int((~pad).sum()), DIM, seed=8)          # pads hold garbage
    outs, grads = [], []
    for right_padded in (True, False):
        xi = x.clone().requires_grad_()
        out = model(Tokens(x=xi, pad_mask=pad, right_padded=right_padded)).x
        (out * pad[..., None]).pow(2).sum().backward()             # a loss on real tokens only
        outs.append(out.detach())
        grads.append(xi.grad)
    fast, explicit = outs
    torch.testing.assert_close(fast[pad], explicit[pad], atol=1e-6, rtol=0)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=0)
    assert torch.count_nonzero(grads[0][~pad]) == 0               # pads still influence nothing real
    assert torch.isfinite(fast).all()


@pytest.mark.parametrize("mask", ["bidirectional", "causal"])
def test_no_gradient_flows_into_pad_tokens(mask):
    model = make(mask)
    n, L = 6, 10
    x = rand(2, L, DIM).requires_grad_()
    pad = (torch.arange(L) < n)[None].expand(2, L)
    model(Tokens(x=x, pad_mask=pad)).x[:, :n].sum().backward()
    assert torch.count_nonzero(x.grad[:, n:]) == 0
    assert torch.count_nonzero(x.grad[:, :n]) > 0


# --------------------------------------------------------------------------------------------------
# Packing: documents in one row behave as if run alone
# --------------------------------------------------------------------------------------------------

def packed(doc_a, doc_b, tail_pad=0, pad_seed=5):
    """Pack two [1, n, D] documents (plus optional trailing padding) into one row."""
    na, nb = doc_a.shape[1], doc_b.shape[1]
    parts = [doc_a, doc_b] + ([100 * rand(1, tail_pad, DIM, seed=pad_seed)] if tail_pad else [])
    x = torch.cat(parts, dim=1)
    seg = torch.tensor([[0] * na + [1] * nb + [2] * tail_pad])
    pos = torch.cat([torch.arange(na), torch.arange(nb), torch.arange(tail_pad)])[None]
    pad = (torch.arange(na + nb + tail_pad) < na + nb)[None]
    return {"x": x, "segment_ids": seg, "positions": pos, "pad_mask": pad if tail_pad else None}


@pytest.mark.parametrize("tail_pad", [0, 3])
@pytest.mark.parametrize("positions", POSITIONS)
@pytest.mark.parametrize("mask", ["bidirectional", "causal"])
def test_packed_documents_equal_each_document_alone(mask, positions, tail_pad):
    model = make(mask, positions)
    a, b = rand(1, 6, DIM, seed=1), rand(1, 7, DIM, seed=2)
    out = run(model, **packed(a, b, tail_pad))
    close(out[:, :6], run(model, a))
    close(out[:, 6:13], run(model, b))


@pytest.mark.parametrize("positions", POSITIONS)
@pytest.mark.parametrize("mask", ["bidirectional", "causal"])
def test_perturbing_one_document_never_touches_the_other(mask, positions):
    model = make(mask, positions)
    a, b = rand(1, 6, DIM, seed=1), rand(1, 7, DIM, seed=2)
    base = run(model, **packed(a, b))
    for j in range(6):
        a2 = a.clone()
        a2[:, j] += 10 * rand(DIM, seed=20 + j)
        out = run(model, **packed(a2, b))
        close(out[:, 6:], base[:, 6:])
        assert (out[:, j] - base[:, j]).abs().max() > 1e-3       # A itself did change
    b2 = b + rand(1, 7, DIM, seed=30)
    close(run(model, **packed(a, b2))[:, :6], base[:, :6])


def test_packing_without_segment_ids_would_leak():
    """Sanity check that the packing tests can fail: without segment ids, A does influence B."""
    model = make()
    a, b = rand(1, 6, DIM, seed=1), rand(1, 7, DIM, seed=2)
    pack = packed(a, b)
    base = run(model, pack["x"])
    pack["x"] = pack["x"].clone()
    pack["x"][:, 0] += 10 * rand(DIM, seed=9)     # not a constant shift: LayerNorm would erase that
    assert (run(model, pack["x"])[:, 6:] - base[:, 6:]).abs().max() > 1e-3


# --------------------------------------------------------------------------------------------------
# Causality and prefix-LM
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("positions", POSITIONS)
@pytest.mark.parametrize("j", [0, 4, 9])
def test_causal_is_causal(positions, j):
    model = make("causal", positions)
    L = 10
    x = rand(2, L, DIM)
    x2 = x.clone()
    x2[:, j] = rand(2, DIM, seed=42)
    out, out2 = run(model, x), run(model, x2)
    close(out2[:, :j], out[:, :j])
    assert (out2[:, j:] - out[:, j:]).abs().amax(dim=-1).min() > 1e-4   # every later position sees it


@pytest.mark.parametrize("positions", POSITIONS)
def test_prefix_lm_bidirectional_inside_causal_after(positions):
    model = make("prefix", positions)
    L, P = 10, 4
    x = rand(1, L, DIM)
    prefix = torch.tensor([P])
    base = run(model, x, prefix_len=prefix)
    for j in range(L):
        x2 = x.clone()
        x2[:, j] = rand(DIM, seed=50 + j)
        out = run(model, x2, prefix_len=prefix)
        changed = (out - base).abs().amax(dim=-1)[0] > 1e-4
        if j < P:   # a prefix token is seen by everyone, before it too
            assert changed.all(), j
        else:       # after the prefix: strictly causal
            assert not changed[:j].any() and changed[j:].all(), j


@pytest.mark.parametrize("positions", POSITIONS)
def test_prefix_covering_everything_is_bidirectional(positions):
    """A prefix spanning the whole sequence is plain bidirectional attention (same weights)."""
    L = 9
    x = rand(2, L, DIM)
    prefix_model, bidi = make("prefix", positions), make("bidirectional", positions)
    close(run(prefix_model, x, prefix_len=torch.tensor([L, L])), run(bidi, x))


@pytest.mark.parametrize("positions", POSITIONS)
@pytest.mark.parametrize("prefix_len", [0, 1])
def test_empty_prefix_is_causal(positions, prefix_len):
    L = 9
    x = rand(2, L, DIM)
    prefix_model, causal = make("prefix", positions), make("causal", positions)
    close(run(prefix_model, x, prefix_len=torch.tensor([prefix_len] * 2)), run(causal, x))


def test_prefix_lengths_differ_per_sample():
    model = make("prefix")
    L = 8
    x = rand(1, L, DIM).expand(2, L, DIM)
    prefix = torch.tensor([2, 6])
    both = run(model, x, prefix_len=prefix)
    close(both[:1], run(model, x[:1], prefix_len=prefix[:1]))
    close(both[1:], run(model, x[1:], prefix_len=prefix[1:]))
    assert (both[0, :6] - both[1, :6]).abs().max() > 1e-4


# --------------------------------------------------------------------------------------------------
# Arbitrary per-sample masks
# --------------------------------------------------------------------------------------------------

def random_masks(B, L, seed=0, p=0.4):
    g = torch.Generator().manual_seed(seed)
    m = torch.rand(B, L, L, generator=g) < p
    return m | torch.eye(L, dtype=torch.bool)


@pytest.mark.parametrize("positions", POSITIONS)
@pytest.mark.parametrize("mask", ["bidirectional", "causal"])
def test_masked_key_has_no_influence(mask, positions):
    """One layer, so influence is direct: a key masked for query i never moves output i."""
    model = make(mask, positions, layers=1)
    B, L = 2, 8
    attn = random_masks(B, L)
    x = rand(B, L, DIM)
    base = run(model, x, attn_mask=attn)
    effective = attn & (torch.ones(L, L).tril().bool() if mask == "causal" else True)
    for j in range(L):
        x2 = x.clone()
        x2[:, j] += 10 * rand(B, DIM, seed=60 + j)
        changed = (run(model, x2, attn_mask=attn) - base).abs().amax(dim=-1) > 1e-4   # [B, L]
        assert torch.equal(changed, effective[:, :, j]), j      # changed exactly where j is visible


def test_different_masks_per_sample_in_one_batch():
    model = make()
    L = 8
    x = rand(1, L, DIM).expand(2, L, DIM)
    attn = random_masks(2, L, seed=3)
    assert not torch.equal(attn[0], attn[1])
    both = run(model, x, attn_mask=attn)
    close(both[:1], run(model, x[:1], attn_mask=attn[:1]))
    close(both[1:], run(model, x[1:], attn_mask=attn[1:]))
    assert (both[0] - both[1]).abs().max() > 1e-4


def test_per_sample_mask_combines_with_padding():
    model = make(layers=1)
    n, L = 6, 9
    attn = random_masks(1, L, seed=4)
    x = rand(1, L, DIM)
    garbage = x.clone()
    garbage[:, n:] = 100 * rand(1, L - n, DIM, seed=8)
    pad = (torch.arange(L) < n)[None]
    close(run(model, x, pad_mask=pad, attn_mask=attn)[:, :n],
          run(model, garbage, pad_mask=pad, attn_mask=attn)[:, :n])
    close(run(model, x, pad_mask=pad, attn_mask=attn)[:, :n], run(model, x[:, :n], attn_mask=attn[:, :n, :n]))


# --------------------------------------------------------------------------------------------------
# No NaN, even where a row may attend to nothing (or only to itself)
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("positions", POSITIONS)
@pytest.mark.parametrize("mask", ["bidirectional", "causal", "prefix"])
def test_fully_padded_row_stays_finite(mask, positions):
    model = make(mask, positions).train()      # train mode: gradients too
    L = 7
    x = rand(2, L, DIM).requires_grad_()
    pad = torch.zeros(2, L, dtype=torch.bool)
    pad[0, :4] = True                          # sample 1 is entirely padding
    out = model(Tokens(x=x, pad_mask=pad, prefix_len=torch.tensor([2, 0]))).x
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("positions", POSITIONS)
def test_self_only_mask_stays_finite_and_is_tokenwise(positions):
    model = make(positions=positions)
    L = 7
    x = rand(2, L, DIM).requires_grad_()
    attn = torch.zeros(2, L, L, dtype=torch.bool)   # nothing allowed; the diagonal is added back
    out = model(Tokens(x=x, attn_mask=attn)).x
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
    # each token only sees itself, so it equals running it as a length-1 sequence
    with torch.no_grad():
        close(out.detach()[:, 3:4], run(model, x.detach()[:, 3:4]))


# --------------------------------------------------------------------------------------------------
# A per-sample, per-head additive bias (Tokens.attn_bias: Graphormer's spatial and edge biases)
# --------------------------------------------------------------------------------------------------

def explicit_attention(attn, x, additive):
    """softmax(Q K^T / sqrt(d) + additive) V by hand, with the module's own weights."""
    B, L, _ = x.shape
    q, k, v = (t.reshape(B, L, attn.heads, attn.head_dim).transpose(1, 2) for t in attn.qkv(x).chunk(3, dim=-1))
    scores = q @ k.transpose(-1, -2) / attn.head_dim ** 0.5 + additive
    return attn.proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(B, L, -1))


BIAS_CASES = ["bias only", "padding", "right padding", "packing", "packing+padding", "per-sample", "prefix"]


def bias_case(case, causal, heads, B=2, L=10, seed=0):
    """Tokens with an attn_bias plus one combination of the other ingredients, and the mask written out
    by hand from those ingredients (True = may attend), independently of `build_attention_mask`."""
    x, bias = rand(B, L, DIM, seed=seed), rand(B, heads, L, L, seed=seed + 1)
    lengths = torch.tensor([L, L - 3])
    pad = torch.arange(L)[None] < lengths[:, None]
    seg = (torch.arange(L) >= 4).long().expand(B, L)
    fields = {"attn_bias": bias}
    allowed = torch.ones(B, L, L, dtype=torch.bool)
    if case in ("padding", "right padding", "packing+padding"):
        fields |= {"pad_mask": pad, "right_padded": case == "right padding"}
        allowed &= pad[:, None, :]
    if case.startswith("packing"):
        fields["segment_ids"] = seg
        allowed &= seg[:, :, None] == seg[:, None, :]
    if case == "per-sample":
        fields["attn_mask"] = random_masks(B, L, seed=seed + 2)
        allowed &= fields["attn_mask"]
    tri = torch.ones(L, L, dtype=torch.bool).tril()
    if case == "prefix":
        fields["prefix_len"] = torch.tensor([3, 6])
        in_prefix = torch.arange(L)[None] < fields["prefix_len"][:, None]
        allowed &= tri | (in_prefix[:, :, None] & in_prefix[:, None, :])
    elif causal:
        allowed &= tri
    allowed |= torch.eye(L, dtype=torch.bool)              # a token may see itself: no empty row
    return Tokens(x=x, **fields), allowed[:, None]


def additive_by_hand(bias, allowed):
    return bias + torch.zeros(allowed.shape).masked_fill(~allowed, float("-inf"))


def attention_inputs_outputs(model, tokens):
    """Each layer's attention input and output, captured from a real forward of the stack."""
    seen = []
    hooks = [b.attn.register_forward_hook(lambda m, i, o: seen.append((m, i[0], o))) for b in model.blocks]
    with torch.no_grad():
        model(tokens)
    for h in hooks:
        h.remove()
    return seen


@pytest.mark.parametrize("positions", ["none", "alibi"])
@pytest.mark.parametrize("heads", [HEADS, 1])
@pytest.mark.parametrize("case,causal", [(c, causal) for c in BIAS_CASES for causal in (False, True)
                                         if not (c == "prefix" and causal)])     # prefix: its own mask kind
def test_attn_bias_matches_explicit_softmax(case, causal, heads, positions):
    """Every layer of the stack computes softmax(QK^T/sqrt(d) + bias + mask) V, the mask written by hand."""
    mask = "prefix" if case == "prefix" else "causal" if causal else "bidirectional"
    model = make(mask, positions, layers=2)
    tokens, allowed = bias_case(case, causal, heads)
    additive = additive_by_hand(tokens.attn_bias, allowed)
    if positions == "alibi":
        pos = torch.arange(tokens.x.shape[1]).expand(tokens.x.shape[:2])
        additive = additive + alibi_bias(alibi_slopes(HEADS), pos, causal=mask == "causal")
    layers = attention_inputs_outputs(model, tokens)
    assert len(layers) == 2
    for attn, x, got in layers:
        with torch.no_grad():
            close(got, explicit_attention(attn, x, additive))
        assert torch.isfinite(got).all()


def test_attn_bias_changes_the_output():
    """Sanity check that the comparison above can fail: the bias is really added."""
    model = make()
    tokens, _ = bias_case("padding", False, HEADS)
    with_b, without = run(model, **vars(tokens)), run(model, **vars(tokens.replace(attn_bias=None)))
    assert (with_b - without).abs().max() > 1e-3


@pytest.mark.parametrize("heads", [HEADS, 1])
@pytest.mark.parametrize("case", ["packing+padding", "per-sample"])
def test_gradients_flow_into_the_bias(case, heads):
    """d loss / d attn_bias through SDPA equals the explicit softmax's, and is zero where a key is masked."""
    model = make(layers=1).train()
    tokens, allowed = bias_case(case, True, heads)
    attn = model.blocks[0].attn
    x = model.blocks[0].norm1(tokens.x).detach()
    grads = []
    for use_sdpa in (True, False):
        bias = tokens.attn_bias.clone().requires_grad_()
        if use_sdpa:
            mask, is_causal = build_attention_mask(tokens.replace(attn_bias=bias), causal=True)
            out = attn(x, mask, is_causal)
        else:
            out = explicit_attention(attn, x, additive_by_hand(bias, allowed))
        (out * rand(*out.shape, seed=11)).sum().backward()
        grads.append(bias.grad)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=0)
    assert grads[0].shape == tokens.attn_bias.shape
    assert torch.count_nonzero(grads[0].expand(-1, -1, *allowed.shape[2:])[~allowed.expand_as(grads[0])]) == 0
    assert torch.count_nonzero(grads[0]) > 0


def test_attn_bias_gets_the_full_mask_and_keeps_every_row_finite():
    """Padding alone normally makes a [B,1,1,L] key mask; with a bias the mask is the full [B,H,L,L], with the
    diagonal kept, so even a fully padded row (and its gradients) stays finite."""
    L = 6
    pad = torch.zeros(2, L, dtype=torch.bool)
    pad[0, :3] = True                                     # sample 1 is entirely padding
    bias = rand(2, HEADS, L, L)
    mask, is_causal = build_attention_mask(Tokens(x=torch.zeros(2, L, 4), pad_mask=pad, attn_bias=bias))
    assert not is_causal and mask.shape == (2, HEADS, L, L) and mask.is_floating_point()
    assert torch.equal(mask.diagonal(dim1=-2, dim2=-1), bias.diagonal(dim1=-2, dim2=-1))
    for how in ({"causal": True}, {}):
        fast = build_attention_mask(Tokens(x=torch.zeros(2, L, 4), pad_mask=pad, right_padded=True, attn_bias=bias),
                                    **how)
        assert fast[0].shape == (2, HEADS, L, L) and not fast[1]      # no is_causal shortcut that hides pads
    model = make("causal").train()
    x = rand(2, L, DIM).requires_grad_()
    b = bias.clone().requires_grad_()
    out = model(Tokens(x=x, pad_mask=pad, attn_bias=b)).x
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all() and torch.isfinite(b.grad).all()


def test_attn_bias_with_the_wrong_heads_is_a_clear_error():
    model = make()
    with pytest.raises(ValueError, match=r"has 3 heads, but this block has 4: give \[B, 4, L, L\] or \[B, 1, L, L\]"):
        model(Tokens(x=rand(2, 5, DIM), attn_bias=rand(2, 3, 5, 5)))


@pytest.mark.parametrize("bias", [rand(2, 5, 5), rand(1, HEADS, 5, 5), rand(2, HEADS, 5, 4),
                                  torch.zeros(2, HEADS, 5, 5, dtype=torch.long)])
def test_attn_bias_of_the_wrong_shape_or_dtype_is_a_clear_error(bias):
    with pytest.raises(ValueError, match=r"tokens.attn_bias must be a float \[B, H, L, L\].*B=2, L=5"):
        build_attention_mask(Tokens(x=torch.zeros(2, 5, 4), attn_bias=bias))
