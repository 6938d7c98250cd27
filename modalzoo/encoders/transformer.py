"""The Transformer stack: the zoo's encoder and decoder, N shared blocks plus positions and masking."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..registry import DECODERS, ENCODERS
from ..tokens import Tokens
from .blocks import BlockConfig, TransformerBlock, make_norm
from .masks import build_attention_mask, key_padding_mask
from .positions import Rotary, alibi_bias, alibi_slopes


@dataclass
class TransformerConfig(BlockConfig):
    layers: int = 2
    mask: Literal["bidirectional", "causal", "prefix"] = "bidirectional"
    positions: Literal["none", "rope", "alibi"] = "none"   # absolute positions live in the embedding
    rope_base: float = 10000.0
    final_norm: bool = True          # a last norm after the stack (pre-norm stacks want it)
    grad_checkpointing: bool = False


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

    @property
    def dim(self) -> int:
        return self.cfg.dim

    def fsdp_units(self) -> list[nn.Module]:
        return list(self.blocks)

    def _positions(self, tokens: Tokens) -> torch.Tensor:
        if tokens.positions is not None:
            return tokens.positions
        B, L = tokens.x.shape[:2]
        return torch.arange(L, device=tokens.x.device).expand(B, L)

    def forward(self, tokens: Tokens, memory: Tokens | None = None) -> Tokens:
        cfg = self.cfg
        alibi = None
        if cfg.positions == "alibi":
            # Only a fully causal stack may clamp the distance: a prefix-LM attends forward inside its
            # prefix, and those keys need the same |i - j| penalty as bidirectional ones.
            alibi = alibi_bias(self.alibi, self._positions(tokens), causal=cfg.mask == "causal")
        # One mask for every layer: booleans, ALiBi and the sequence's own attn_bias (Graphormer) folded once.
        mask, is_causal = build_attention_mask(tokens, causal=cfg.mask == "causal", prefix=cfg.mask == "prefix",
                                               bias=alibi)
        rope = self.rotary(self._positions(tokens)) if self.rotary is not None else None
        context = context_mask = None
        if cfg.cross_attention:
            if memory is None:
                raise ValueError("a decoder with cross-attention needs the encoder's output (memory)")
            context, context_mask = memory.x, key_padding_mask(memory)
        x = tokens.x
        for block in self.blocks:
            if cfg.grad_checkpointing and self.training:
                x = checkpoint(block, x, mask, is_causal, rope, context, context_mask, use_reentrant=False)
            else:
                x = block(x, mask, is_causal, rope, context, context_mask)
        return tokens.replace(x=self.norm(x))


DECODERS.register("transformer", TransformerDecoderConfig)(Transformer)
