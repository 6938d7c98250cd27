"""The Transformer stack: the zoo's encoder and decoder, N shared blocks plus positions and masking, and
incremental decoding with a `KVCache`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..registry import DECODERS, ENCODERS
from ..tokens import Tokens
from .blocks import BlockConfig, KVCache, TransformerBlock, make_norm
from .masks import build_attention_mask, cached_attention_mask, key_padding_mask
from .positions import RelativePositionBias, Rotary, alibi_bias, alibi_slopes


@dataclass
class TransformerConfig(BlockConfig):
    layers: int = 2
    mask: Literal["bidirectional", "causal", "prefix"] = "bidirectional"
    # absolute positions live in the embedding; t5_relative: T5's bucketed relative bias, one table per stack
    positions: Literal["none", "rope", "alibi", "t5_relative"] = "none"
    rope_base: float = 10000.0
    rel_buckets: int = 32            # t5_relative: distance buckets (half per direction unless causal)
    rel_max_distance: int = 128      # t5_relative: distances from here on share the last bucket
    final_norm: bool = True          # a last norm after the stack (pre-norm stacks want it)
    grad_checkpointing: bool = False

    def __post_init__(self):
        super().__post_init__()
        if self.positions == "t5_relative":
            exact = self.rel_buckets // (2 if self.mask == "causal" else 4)     # buckets of exact distances
            if exact < 1 or self.rel_max_distance <= exact:
                raise ValueError(f"rel_buckets={self.rel_buckets} leaves {exact} exact distances and "
                                 f"rel_max_distance={self.rel_max_distance} must exceed them (T5: 32 and 128)")


@dataclass
class TransformerDecoderConfig(TransformerConfig):
    cross_attention: bool = True     # T5-style; MAE's decoder turns it off
    mask: Literal["bidirectional", "causal", "prefix"] = "causal"


@ENCODERS.register("transformer")
class Transformer(nn.Module):
    """A stack of shared Transformer blocks (BERT, GPT, ViT, T5 encoder/decoder, MAE decoder...)."""

    Config = TransformerConfig

    def __init__(self, cfg: TransformerConfig, **_context):
        super().__init__()
        self.cfg = cfg
        self.blocks = nn.ModuleList(TransformerBlock(cfg) for _ in range(cfg.layers))
        self.norm = make_norm(cfg.norm, cfg.dim, cfg.norm_eps) if cfg.final_norm else nn.Identity()
        self.rotary = Rotary(cfg.dim // cfg.heads, cfg.rope_base) if cfg.positions == "rope" else None
        if cfg.positions == "alibi":
            self.register_buffer("alibi", alibi_slopes(cfg.heads), persistent=False)
        if cfg.positions == "t5_relative":    # bidirectional buckets for a prefix too: it attends forward
            self.relative = RelativePositionBias(cfg.heads, cfg.rel_buckets, cfg.rel_max_distance,
                                                 bidirectional=cfg.mask != "causal")

    @property
    def dim(self) -> int:
        return self.cfg.dim

    def fsdp_units(self) -> list[nn.Module]:
        return list(self.blocks)

    def _positions(self, tokens: Tokens, start: int = 0) -> torch.Tensor:
        """[1 or B, L] position ids: the tokens' own (per packed document), else ``start`` + 0..L-1. Rows that
        are one row expanded (an embedding's default arange) stay one row, so a bias is [1, H, L, L]."""
        positions = tokens.positions
        if positions is None:
            L = tokens.x.shape[1]
            return torch.arange(start, start + L, device=tokens.x.device)[None]
        return positions[:1] if positions.shape[0] > 1 and positions.stride(0) == 0 else positions

    def _position_bias(self, positions: torch.Tensor, keys: torch.Tensor) -> torch.Tensor | None:
        """The stack's additive bias over (queries, keys), computed once for all layers: ALiBi or T5's."""
        if self.cfg.positions == "alibi":
            # Only a fully causal stack may clamp the distance: a prefix-LM attends forward inside its
            # prefix, and those keys need the same |i - j| penalty as bidirectional ones.
            return alibi_bias(self.alibi, positions, causal=self.cfg.mask == "causal", key_positions=keys)
        if self.cfg.positions == "t5_relative":
            return self.relative(positions, keys)
        return None

    def forward(self, tokens: Tokens, memory: Tokens | None = None, cache: KVCache | None = None,
                output_layer: int | None = None) -> Tokens:
        """``cache``: incremental decoding (inference). The first forward with an empty cache is the ordinary
        one and stores every layer's keys and values; later forwards take only the new tokens. Their
        positions continue from ``cache.length``: ``tokens.positions`` when given (an embedding with
        ``position_ids`` offset by the cache length), else ``cache.length + 0..L-1``.

        ``output_layer`` L (1-based): stop after block L and return its output without the final norm (the
        features HuBERT's next k-means iteration clusters, fairseq's ``output_layer``); L = layers is the
        last block's output, before the final norm."""
        cfg = self.cfg
        if output_layer is not None and not 1 <= output_layer <= cfg.layers:
            raise ValueError(f"output_layer must be in 1..{cfg.layers} (this stack's layers), got {output_layer}")
        if output_layer is not None and cache is not None:
            raise ValueError("output_layer and a KV cache do not combine")
        start = 0 if cache is None else cache.length
        if cache is not None and cfg.mask == "bidirectional":
            raise ValueError("a KV cache needs a causal or prefix-LM stack (mask: causal or prefix); this one "
                             "is bidirectional: earlier tokens would have to see the new ones")
        positions = self._positions(tokens, start)
        keys = positions if not start else _cat_rows(cache.positions, positions)
        bias = self._position_bias(positions, keys)
        key_pad = None if cache is None else self._cached_pad(tokens, cache, start)
        if not start:
            # One mask for every layer: booleans, the position bias and the sequence's own attn_bias
            # (Graphormer) folded once.
            mask, is_causal = build_attention_mask(tokens, causal=cfg.mask == "causal",
                                                   prefix=cfg.mask == "prefix", bias=bias)
        else:
            mask, is_causal = cached_attention_mask(tokens, start, key_pad, bias), False
        rope = self.rotary(positions) if self.rotary is not None else None
        context = context_mask = None
        if cfg.cross_attention:
            if memory is None:
                raise ValueError("a decoder with cross-attention needs the encoder's output (memory)")
            context, context_mask = memory.x, key_padding_mask(memory)
        x = tokens.x
        for i, block in enumerate(self.blocks):
            if cache is not None:
                x = block(x, mask, is_causal, rope, context, context_mask, cache.layer(i), start)
            elif cfg.grad_checkpointing and self.training:
                x = checkpoint(block, x, mask, is_causal, rope, context, context_mask, use_reentrant=False)
            else:
                x = block(x, mask, is_causal, rope, context, context_mask)
            if output_layer == i + 1:
                return tokens.replace(x=x)
        if cache is not None:
            cache.length, cache.positions, cache.pad_mask = start + x.shape[1], keys, key_pad
        return tokens.replace(x=self.norm(x))

    @staticmethod
    def _cached_pad(tokens: Tokens, cache: KVCache, start: int) -> torch.Tensor | None:
        """[B, start + L] which cached keys are real, once any forward brought padding; else None."""
        if tokens.pad_mask is None and cache.pad_mask is None:
            return None
        B, L = tokens.x.shape[:2]
        ones = tokens.x.new_ones(B, start + L, dtype=torch.bool)
        before = cache.pad_mask if cache.pad_mask is not None else ones[:, :start]
        new = tokens.pad_mask if tokens.pad_mask is not None else ones[:, start:]
        return torch.cat([before, new], dim=1)


def _cat_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[1 or B, La] and [1 or B, Lb] -> [1 or B, La + Lb]."""
    if a.shape[0] != b.shape[0]:
        rows = max(a.shape[0], b.shape[0])
        a, b = a.expand(rows, -1), b.expand(rows, -1)
    return torch.cat([a, b], dim=1)


DECODERS.register("transformer", TransformerDecoderConfig)(Transformer)
