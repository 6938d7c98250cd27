"""Position encodings: learned absolute, sinusoidal (1D and 2D sin-cos), RoPE, ALiBi and T5's bucketed
relative bias.

Absolute kinds are added by embeddings; RoPE, ALiBi and the relative bias act inside attention.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def sinusoidal_table(length: int, dim: int, base: float = 10000.0) -> Tensor:
    """The Transformer paper's table: [length, dim], sin on even and cos on odd channels."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(base) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return table


def sincos_2d_table(grid_h: int, grid_w: int, dim: int) -> Tensor:
    """MAE's fixed 2D sin-cos table: [grid_h * grid_w, dim], half the channels per axis."""
    if dim % 4:
        raise ValueError(f"2D sin-cos positions need a dim divisible by 4, got {dim}")

    def axis(values: Tensor, d: int) -> Tensor:
        omega = 1.0 / 10000 ** (torch.arange(d // 2, dtype=torch.float64) / (d / 2.0))
        out = values.reshape(-1).double()[:, None] * omega[None]
        return torch.cat([out.sin(), out.cos()], dim=1)

    gh, gw = torch.meshgrid(torch.arange(grid_h), torch.arange(grid_w), indexing="ij")
    # MAE/transformers order: the first half encodes the width index, the second the height index.
    return torch.cat([axis(gw, dim // 2), axis(gh, dim // 2)], dim=1).float()


class AbsolutePositions(nn.Module):
    """Learned (BERT) or fixed sinusoidal position vectors, looked up by position id."""

    def __init__(self, kind: str, max_positions: int, dim: int):
        super().__init__()
        self.kind = kind
        if kind == "learned":
            self.table = nn.Embedding(max_positions, dim)
        elif kind == "sinusoidal":
            self.register_buffer("fixed", sinusoidal_table(max_positions, dim), persistent=False)
        else:
            raise ValueError(f"unknown absolute position kind {kind!r}")

    def forward(self, position_ids: Tensor) -> Tensor:
        return self.table(position_ids) if self.kind == "learned" else self.fixed[position_ids]

    def first(self, length: int, offset: int = 0) -> Tensor:
        """Positions offset .. offset+length-1 as a [length, dim] slice: the same vectors as ``forward`` of
        an arange, without materialising (and keeping for backward) an id tensor."""
        table = self.table.weight if self.kind == "learned" else self.fixed
        return table[offset:offset + length]


class Rotary(nn.Module):
    """Rotary position embedding (RoPE), rotate-half convention, driven by per-token position ids."""

    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """positions [B, L] -> (cos, sin) each [B, 1, L, head_dim] in float32."""
        angles = positions.float()[..., None] * self.inv_freq
        angles = torch.cat([angles, angles], dim=-1)[:, None]
        return angles.cos(), angles.sin()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return (x.float() * cos + rotated.float() * sin).to(x.dtype)


def alibi_slopes(heads: int) -> Tensor:
    """ALiBi head slopes (Press et al.), including the non-power-of-two interpolation."""
    def power_of_two(n: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(heads).is_integer():
        return torch.tensor(power_of_two(heads))
    closest = 2 ** math.floor(math.log2(heads))
    extra = power_of_two(2 * closest)[0::2][: heads - closest]
    return torch.tensor(power_of_two(closest) + extra)


def alibi_bias(slopes: Tensor, positions: Tensor, causal: bool, key_positions: Tensor | None = None) -> Tensor:
    """[B, H, Lq, Lk] additive bias: -slope * distance between position ids (``key_positions``: those of the
    keys when they are not the queries', e.g. cached keys while decoding)."""
    keys = positions if key_positions is None else key_positions
    dist = positions[:, None, :, None] - keys[:, None, None, :]          # query - key
    dist = dist.clamp(min=0) if causal else dist.abs()
    return -slopes.to(positions.device)[None, :, None, None] * dist.float()


def relative_bucket(relative: Tensor, bidirectional: bool, buckets: int = 32, max_distance: int = 128) -> Tensor:
    """T5's bucket of each key - query distance (Raffel et al. 2020, from Mesh TensorFlow).

    Bidirectional: half the buckets for keys after the query, half for keys at or before it. Within a half,
    the first half of its buckets are the exact distances 0, 1, ...; the rest cover larger distances on a
    log scale up to ``max_distance``, beyond which all share the last bucket. Causal: keys after the query
    count as distance 0 (the mask hides them anyway), so every bucket goes to looking back.
    """
    if bidirectional:
        buckets //= 2
        offset = (relative > 0).long() * buckets
        distance = relative.abs()
    else:
        offset = 0
        distance = (-relative).clamp(min=0)
    exact = buckets // 2
    # log-spaced buckets exact .. buckets-1 for distances exact .. max_distance (clamped: log(0) stays unused)
    log_ratio = torch.log(distance.clamp(min=1).float() / exact) / math.log(max_distance / exact)
    far = (exact + (log_ratio * (buckets - exact)).long()).clamp(max=buckets - 1)
    return offset + torch.where(distance < exact, distance, far)


class RelativePositionBias(nn.Module):
    """T5's learned relative position bias: one scalar per head and distance bucket, ``table`` [buckets, heads],
    added to the attention logits. A stack computes it once per forward and every layer shares it."""

    def __init__(self, heads: int, buckets: int = 32, max_distance: int = 128, bidirectional: bool = True):
        super().__init__()
        self.buckets, self.max_distance, self.bidirectional = buckets, max_distance, bidirectional
        self.table = nn.Embedding(buckets, heads)

    def forward(self, positions: Tensor, key_positions: Tensor | None = None) -> Tensor:
        """positions [1 or B, Lq] (and the keys' [1 or B, Lk]) -> bias [1 or B, heads, Lq, Lk]."""
        keys = positions if key_positions is None else key_positions
        relative = keys[:, None, :] - positions[:, :, None]                # key - query, as T5
        bucket = relative_bucket(relative, self.bidirectional, self.buckets, self.max_distance)
        return self.table(bucket).permute(0, 3, 1, 2)
