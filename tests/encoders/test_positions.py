"""Position encodings against their papers' formulas: sinusoidal, MAE's 2D sin-cos, RoPE and ALiBi."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from modalzoo.encoders.positions import (
    AbsolutePositions,
    Rotary,
    alibi_bias,
    alibi_slopes,
    apply_rotary,
    sincos_2d_table,
    sinusoidal_table,
)
from modalzoo.encoders.transformer import Transformer, TransformerConfig
from modalzoo.tokens import Tokens

pytestmark = pytest.mark.usefixtures("one_thread")




def rand(*shape, seed=0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------------------------------
# Absolute: learned and sinusoidal
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("length,dim", [(16, 32), (5, 8), (7, 7), (1, 2)])
def test_sinusoidal_table_matches_formula(length, dim):
    table = sinusoidal_table(length, dim)
    assert table.shape == (length, dim) and table.dtype == torch.float32
    ref = np.zeros((length, dim))
    for p in range(length):
        for i in range(0, dim, 2):                      # PE(p, 2i) = sin(p / 10000^(2i/d)), 2i+1: cos
            angle = p / 10000 ** (i / dim)
            ref[p, i] = math.sin(angle)
            if i + 1 < dim:
                ref[p, i + 1] = math.cos(angle)
    np.testing.assert_allclose(table.numpy(), ref, atol=1e-5)


def test_sinusoidal_table_base():
    assert not torch.allclose(sinusoidal_table(8, 16, base=100.0), sinusoidal_table(8, 16))
    np.testing.assert_allclose(sinusoidal_table(3, 4, base=100.0)[2, 2].item(), math.sin(2 / 100 ** 0.5), atol=1e-6)


@pytest.mark.parametrize("kind", ["learned", "sinusoidal"])
def test_absolute_positions_lookup(kind):
    torch.manual_seed(0)
    pos = AbsolutePositions(kind, max_positions=16, dim=32)
    ids = torch.tensor([[0, 1, 2, 0, 1], [5, 15, 3, 3, 0]])
    out = pos(ids)
    assert out.shape == (2, 5, 32)
    table = pos.table.weight if kind == "learned" else sinusoidal_table(16, 32)
    torch.testing.assert_close(out, table[ids])
    torch.testing.assert_close(out[0, 0], out[0, 3])   # same id, same vector
    assert not torch.allclose(out[0, 0], out[0, 1])


def test_learned_positions_are_trainable_and_sinusoidal_are_not():
    learned, fixed = AbsolutePositions("learned", 8, 4), AbsolutePositions("sinusoidal", 8, 4)
    assert sum(p.numel() for p in learned.parameters()) == 32
    assert not list(fixed.parameters())
    assert "fixed" not in fixed.state_dict()            # a recomputable buffer is not checkpointed


def test_unknown_absolute_kind_raises():
    with pytest.raises(ValueError, match="unknown"):
        AbsolutePositions("rotary", 8, 4)


# --------------------------------------------------------------------------------------------------
# MAE's 2D sin-cos table
# --------------------------------------------------------------------------------------------------

def mae_1d(embed_dim, pos):
    """MAE's get_1d_sincos_pos_embed_from_grid (facebookresearch/mae, util/pos_embed.py)."""
    omega = np.arange(embed_dim // 2, dtype=np.float64)
    omega /= embed_dim / 2.0
    omega = 1.0 / 10000**omega
    out = np.einsum("m,d->md", pos.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def mae_2d(embed_dim, grid_h, grid_w):
    """MAE's get_2d_sincos_pos_embed (no cls token), generalised from a square grid to h x w."""
    grid = np.meshgrid(np.arange(grid_w, dtype=np.float32), np.arange(grid_h, dtype=np.float32))  # w first
    grid = np.stack(grid, axis=0).reshape([2, 1, grid_h, grid_w])
    emb_h = mae_1d(embed_dim // 2, grid[0])
    emb_w = mae_1d(embed_dim // 2, grid[1])
    return np.concatenate([emb_h, emb_w], axis=1)


@pytest.mark.parametrize("grid_h,grid_w,dim", [(4, 4, 16), (3, 3, 32), (2, 5, 8), (1, 1, 4)])
def test_sincos_2d_matches_mae_reference(grid_h, grid_w, dim):
    table = sincos_2d_table(grid_h, grid_w, dim)
    assert table.shape == (grid_h * grid_w, dim) and table.dtype == torch.float32
    np.testing.assert_allclose(table.numpy(), mae_2d(dim, grid_h, grid_w), atol=1e-6)


def test_sincos_2d_row_major_and_distinct():
    table = sincos_2d_table(3, 4, 16)
    assert torch.unique(table, dim=0).shape[0] == 12
    torch.testing.assert_close(table[0], torch.tensor([0.0, 0, 0, 0, 1, 1, 1, 1] * 2))   # (0, 0)
    # moving along a row (width) only changes the first half, along a column only the second
    torch.testing.assert_close(table[1, 8:], table[0, 8:])
    torch.testing.assert_close(table[4, :8], table[0, :8])


@pytest.mark.parametrize("dim", [6, 10, 30])
def test_sincos_2d_needs_dim_divisible_by_4(dim):
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_2d_table(2, 2, dim)


# --------------------------------------------------------------------------------------------------
# RoPE
# --------------------------------------------------------------------------------------------------

def rope(x: torch.Tensor, positions: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """x [B, H, L, hd], positions [B, L] -> rotated x."""
    cos, sin = Rotary(x.shape[-1], base)(positions)
    return apply_rotary(x, cos, sin)


def test_rotary_shapes():
    cos, sin = Rotary(8)(torch.arange(5).expand(3, 5))
    assert cos.shape == sin.shape == (3, 1, 5, 8) and cos.dtype == torch.float32


def test_rotary_matches_pairwise_rotation_formula():
    """Rotate-half: channel i pairs with i + hd/2, rotated by angle p * base^(-2i/hd)."""
    hd, L = 8, 6
    x = rand(1, 1, L, hd)
    out = rope(x, torch.arange(L)[None])
    for p in range(L):
        for i in range(hd // 2):
            theta = p * 10000 ** (-2 * i / hd)
            a, b = x[0, 0, p, i].item(), x[0, 0, p, i + hd // 2].item()
            assert out[0, 0, p, i].item() == pytest.approx(a * math.cos(theta) - b * math.sin(theta), abs=1e-5)
            assert out[0, 0, p, i + hd // 2].item() == pytest.approx(b * math.cos(theta) + a * math.sin(theta),
                                                                   abs=1e-5)


def test_rotary_position_zero_is_identity():
    x = rand(2, 4, 3, 8)
    torch.testing.assert_close(rope(x, torch.zeros(2, 3, dtype=torch.long)), x)


def test_rotary_preserves_norms():
    x = rand(2, 4, 10, 8)
    pos = torch.randint(0, 1000, (2, 10), generator=torch.Generator().manual_seed(1))
    out = rope(x, pos)
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out, x)


@pytest.mark.parametrize("shift", [1, 7, 100])
def test_rotary_dot_product_depends_only_on_offset(shift):
    hd = 16
    q, k = rand(1, 1, 1, hd, seed=1), rand(1, 1, 1, hd, seed=2)

    def score(m, n):
        return (rope(q, torch.tensor([[m]])) * rope(k, torch.tensor([[n]]))).sum().item()

    for m, n in [(0, 0), (5, 2), (2, 5), (9, 0)]:
        assert score(m + shift, n + shift) == pytest.approx(score(m, n), abs=1e-4)
    assert abs(score(3, 0) - score(0, 0)) > 1e-3        # the offset does matter


def test_rotary_keeps_input_dtype():
    x = rand(1, 1, 4, 8).to(torch.bfloat16)
    assert rope(x, torch.arange(4)[None]).dtype == torch.bfloat16


# --------------------------------------------------------------------------------------------------
# ALiBi
# --------------------------------------------------------------------------------------------------

def test_alibi_slopes_eight_heads():
    torch.testing.assert_close(alibi_slopes(8), torch.tensor([2.0**-i for i in range(1, 9)]))


def test_alibi_slopes_power_of_two():
    torch.testing.assert_close(alibi_slopes(4), torch.tensor([2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8]))
    torch.testing.assert_close(alibi_slopes(16), torch.tensor([2.0 ** -(i / 2) for i in range(1, 17)]))


def test_alibi_slopes_non_power_of_two():
    # Press et al.: the 4 slopes of 4 heads, then every other slope of 8 heads, first 2
    torch.testing.assert_close(alibi_slopes(6), torch.tensor([2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8,
                                                              2.0**-1, 2.0**-3]))


@pytest.mark.parametrize("heads", [1, 2, 3, 5, 6, 7, 12, 20])
def test_alibi_slopes_length_and_range(heads):
    s = alibi_slopes(heads)
    assert s.shape == (heads,)
    assert (s > 0).all() and (s < 1.0 + 1e-6).all()
    assert torch.unique(s).numel() == heads


@pytest.mark.parametrize("causal", [False, True])
def test_alibi_bias_values(causal):
    slopes = alibi_slopes(4)
    pos = torch.tensor([[0, 1, 2, 3, 4], [0, 1, 2, 0, 1]])       # second row: two packed documents
    bias = alibi_bias(slopes, pos, causal=causal)
    assert bias.shape == (2, 4, 5, 5) and bias.dtype == torch.float32
    for b in range(2):
        for i in range(5):
            for j in range(5):
                d = pos[b, i] - pos[b, j]
                d = max(d.item(), 0) if causal else abs(d.item())
                torch.testing.assert_close(bias[b, :, i, j], -slopes * d)
    assert (bias.diagonal(dim1=-2, dim2=-1) == 0).all()


# --------------------------------------------------------------------------------------------------
# Inside the stack: RoPE and ALiBi read Tokens.positions (else 0..L-1), and only offsets matter
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mask", ["bidirectional", "causal"])
@pytest.mark.parametrize("positions", ["rope", "alibi"])
def test_stack_uses_position_ids_relatively(positions, mask):
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(dim=32, heads=4, layers=2, mask=mask, positions=positions)).eval()
    x = rand(2, 8, 32)
    ids = torch.arange(8).expand(2, 8)
    with torch.no_grad():
        default = model(Tokens(x=x)).x
        shifted = model(Tokens(x=x, positions=ids + 17)).x
        spread = model(Tokens(x=x, positions=3 * ids)).x
    torch.testing.assert_close(shifted, default, atol=1e-5, rtol=0)   # a common shift changes nothing
    assert (spread - default).abs().max() > 1e-3                      # other spacings do
