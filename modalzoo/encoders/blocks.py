"""The one Transformer block every encoder and decoder in the zoo is built from.

Options: pre/post norm, LayerNorm/RMSNorm, GELU/GELU-tanh/QuickGELU/ReLU/SwiGLU/GEGLU, dropout, optional
cross-attention, RoPE (via cos/sin passed in), any SDPA mask or additive bias (padding, causal, prefix,
packed block-diagonal, per-sample, ALiBi, T5's relative bias, a per-sample per-head bias such as
Graphormer's), a fixed attention scale (T5: 1), and a KV cache for incremental decoding (`KVCache`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .positions import apply_rotary

Activation = Literal["gelu", "gelu_tanh", "quick_gelu", "relu", "swiglu", "geglu"]
GATED = {"swiglu": nn.SiLU, "geglu": lambda: nn.GELU(approximate="tanh")}   # act(gate) * up; GEGLU: T5 v1.1


@dataclass
class BlockConfig:
    dim: int = 64
    heads: int = 4
    kv_heads: int = 0                # key/value heads, shared by groups of query heads (GQA, Llama 2+); 0: heads
    ffn_dim: int = 0                 # 0: 4 * dim (SwiGLU/GEGLU: 8/3 * dim rounded up to a multiple of 64)
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    norm_eps: float = 1e-5
    prenorm: bool = True
    activation: Activation = "gelu"
    dropout: float = 0.0
    attn_dropout: float = 0.0
    bias: bool = True
    cross_attention: bool = False
    attn_scale: float = 0.0          # softmax(scale * q k^T); 0: 1/sqrt(head_dim). T5: 1 (folded into its init)

    def __post_init__(self):
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by heads ({self.heads})")
        if self.kv_heads < 0 or (self.kv_heads and self.heads % self.kv_heads):
            raise ValueError(f"kv_heads ({self.kv_heads}) must divide heads ({self.heads}); 0 means heads")

    @property
    def key_value_heads(self) -> int:
        return self.kv_heads or self.heads

    @property
    def hidden_ffn(self) -> int:
        if self.ffn_dim:
            return self.ffn_dim
        if self.activation in GATED:
            return 64 * -(-(8 * self.dim // 3) // 64)
        return 4 * self.dim


@dataclass
class LayerCache:
    """One block's cache: its self-attention keys and values [B, kv_heads, capacity, head_dim], valid up to
    the stack's `KVCache.length`, and its cross-attention's keys and values of the encoder memory (computed
    at the first step: the memory does not change while decoding)."""
    capacity: int = 0                # tokens to preallocate for; doubled when a longer sequence arrives
    k: Tensor | None = None
    v: Tensor | None = None
    cross: tuple[Tensor, Tensor] | None = None

    def append(self, k: Tensor, v: Tensor, start: int) -> tuple[Tensor, Tensor]:
        """Write the new keys/values at ``start`` and return views of everything cached so far. Preallocated
        buffers: a decoding step copies one token's keys and values, not the whole history as a
        concatenation would."""
        end = start + k.shape[2]
        if self.k is None or end > self.k.shape[2]:
            size = max(end, self.capacity, 2 * self.k.shape[2] if self.k is not None else 0)
            grown_k, grown_v = (t.new_empty(*t.shape[:2], size, t.shape[3]) for t in (k, v))
            if self.k is not None:
                grown_k[:, :, :start], grown_v[:, :, :start] = self.k[:, :, :start], self.v[:, :, :start]
            self.k, self.v = grown_k, grown_v
        self.k[:, :, start:end], self.v[:, :, start:end] = k, v
        return self.k[:, :, :end], self.v[:, :, :end]


@dataclass
class KVCache:
    """What one Transformer stack has seen, for incremental decoding (inference only: the buffers are written
    in place). Pass the same cache to every forward of the stack: the first takes the prompt (with the
    stack's own mask: causal, or prefix-LM), each later one the new tokens, which attend to everything
    cached. ``length`` is the number of cached tokens, i.e. the position of the next one."""
    capacity: int = 0                # tokens to preallocate for (prompt + new tokens); grows if exceeded
    length: int = 0
    layers: list[LayerCache] = field(default_factory=list)
    positions: Tensor | None = None  # [1 or B, length] the cached tokens' position ids (ALiBi, T5 bias)
    pad_mask: Tensor | None = None   # [B, length] True = real; only once a forward brought padding

    def layer(self, i: int) -> LayerCache:
        while len(self.layers) <= i:
            self.layers.append(LayerCache(self.capacity))
        return self.layers[i]


def make_norm(kind: str, dim: int, eps: float) -> nn.Module:
    return nn.RMSNorm(dim, eps=eps) if kind == "rmsnorm" else nn.LayerNorm(dim, eps=eps)


class QuickGELU(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


ACTIVATIONS = {"gelu": nn.GELU, "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
               "quick_gelu": QuickGELU, "relu": nn.ReLU}


class MLP(nn.Module):
    def __init__(self, cfg: BlockConfig):
        super().__init__()
        self.gated = cfg.activation in GATED
        hidden = cfg.hidden_ffn
        self.fc1 = nn.Linear(cfg.dim, 2 * hidden if self.gated else hidden, bias=cfg.bias)   # gated: [gate | up]
        self.act = (GATED if self.gated else ACTIVATIONS)[cfg.activation]()
        self.fc2 = nn.Linear(hidden, cfg.dim, bias=cfg.bias)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor) -> Tensor:
        h = self.fc1(x)
        if self.gated:
            gate, up = h.chunk(2, dim=-1)
            h = self.act(gate) * up
        else:
            h = self.act(h)
        return self.drop(self.fc2(h))


class Attention(nn.Module):
    """Multi-head attention through `F.scaled_dot_product_attention`; fused QKV for self-attention.

    With ``kv_heads`` < ``heads`` (grouped-query attention) keys and values have ``kv_heads`` heads, each
    shared by ``heads // kv_heads`` consecutive query heads (Llama's layout: query head h reads kv head
    h // group); the fused projection is then [q (heads x d) | k (kv_heads x d) | v (kv_heads x d)]."""

    def __init__(self, cfg: BlockConfig, cross: bool = False):
        super().__init__()
        self.heads, self.head_dim, self.cross = cfg.heads, cfg.dim // cfg.heads, cross
        self.kv_heads = cfg.key_value_heads
        kv_dim = self.kv_heads * self.head_dim
        if cross:
            self.q = nn.Linear(cfg.dim, cfg.dim, bias=cfg.bias)
            self.kv = nn.Linear(cfg.dim, 2 * kv_dim, bias=cfg.bias)
        else:
            self.qkv = nn.Linear(cfg.dim, cfg.dim + 2 * kv_dim, bias=cfg.bias)
        self.proj = nn.Linear(cfg.dim, cfg.dim, bias=cfg.bias)
        self.attn_dropout = cfg.attn_dropout
        self.scale = cfg.attn_scale or None      # None: SDPA's 1/sqrt(head_dim)
        self.drop = nn.Dropout(cfg.dropout)

    def _heads(self, t: Tensor, n: int) -> tuple[Tensor, ...]:
        """[B, L, n*D] -> n views [B, heads, L, head_dim], no copy. Unbinding dim 2 (not a leading
        permuted dim) matters for backward: the n gradients are stacked straight back into the
        [B, L, n, heads, head_dim] layout the projection's backward reads, one copy instead of a stack
        plus a contiguous copy (CPU SDPA returns [B, L, heads, head_dim]-major gradients)."""
        B, L, _ = t.shape
        return tuple(h.transpose(1, 2) for h in t.view(B, L, n, self.heads, self.head_dim).unbind(2))

    def _grouped(self, qkv: Tensor | None, q: Tensor | None, kv: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """The GQA split: q [B, heads, L, d], k and v [B, kv_heads, Lk, d] (views, no copy)."""
        if qkv is not None:
            q, kv = qkv.split([self.heads * self.head_dim, 2 * self.kv_heads * self.head_dim], dim=-1)
        B, L, _ = q.shape
        q = q.view(B, L, self.heads, self.head_dim).transpose(1, 2)
        k, v = (h.transpose(1, 2) for h in kv.view(B, kv.shape[1], 2, self.kv_heads, self.head_dim).unbind(2))
        return q, k, v

    def forward(self, x: Tensor, mask: Tensor | None = None, is_causal: bool = False,
                rope: tuple[Tensor, Tensor] | None = None, context: Tensor | None = None,
                cache: LayerCache | None = None, start: int = 0) -> Tensor:
        """``cache``: this block's `LayerCache`; self-attention appends its keys/values at ``start`` and attends
        to all cached ones (``mask`` then covers [L, start + L]); cross-attention projects ``context`` once."""
        B, L, D = x.shape
        grouped = self.kv_heads != self.heads
        if self.cross:
            if cache is not None and cache.cross is not None:
                (q,), (k, v) = self._heads(self.q(x), 1), cache.cross
            elif grouped:
                q, k, v = self._grouped(None, self.q(x), self.kv(context))
            else:
                (q,) = self._heads(self.q(x), 1)
                k, v = self._heads(self.kv(context), 2)
            if cache is not None:
                cache.cross = (k, v)
        else:
            q, k, v = self._grouped(self.qkv(x), None, None) if grouped else self._heads(self.qkv(x), 3)
            if rope is not None:
                q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
            if cache is not None:
                k, v = cache.append(k, v, start)
        if mask is not None and mask.dtype != torch.bool:     # an additive bias, maybe one per head
            if mask.dim() == 4 and mask.shape[1] not in (1, self.heads):
                raise ValueError(f"an attention bias of shape {list(mask.shape)} has {mask.shape[1]} heads, but "
                                 f"this block has {self.heads}: give [B, {self.heads}, L, L] or [B, 1, L, L]")
            mask = mask.to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal,
                                             dropout_p=self.attn_dropout if self.training else 0.0,
                                             scale=self.scale, enable_gqa=grouped)
        return self.drop(self.proj(out.transpose(1, 2).reshape(B, L, D)))


class TransformerBlock(nn.Module):
    def __init__(self, cfg: BlockConfig):
        super().__init__()
        self.prenorm = cfg.prenorm
        self.attn = Attention(cfg)
        self.norm1 = make_norm(cfg.norm, cfg.dim, cfg.norm_eps)
        if cfg.cross_attention:
            self.cross_attn = Attention(cfg, cross=True)
            self.norm_cross = make_norm(cfg.norm, cfg.dim, cfg.norm_eps)
        else:
            self.cross_attn = None
        self.mlp = MLP(cfg)
        self.norm2 = make_norm(cfg.norm, cfg.dim, cfg.norm_eps)

    def _sublayer(self, x: Tensor, norm: nn.Module, fn, *args, **kwargs) -> Tensor:
        if self.prenorm:
            return x + fn(norm(x), *args, **kwargs)
        return norm(x + fn(x, *args, **kwargs))

    def forward(self, x: Tensor, mask: Tensor | None = None, is_causal: bool = False,
                rope: tuple[Tensor, Tensor] | None = None, context: Tensor | None = None,
                context_mask: Tensor | None = None, cache: LayerCache | None = None, start: int = 0) -> Tensor:
        """``cache``, ``start``: incremental decoding (see `Attention.forward`, `KVCache`)."""
        x = self._sublayer(x, self.norm1, self.attn, mask, is_causal, rope, cache=cache, start=start)
        if self.cross_attn is not None:
            if context is None:
                raise ValueError("this block has cross-attention; pass the encoder output as context")
            x = self._sublayer(x, self.norm_cross, self.cross_attn, context_mask, context=context, cache=cache)
        return self._sublayer(x, self.norm2, self.mlp)
