"""Text embedding: token + absolute position (+ segment type) embeddings, optional norm and dropout."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from ..encoders.blocks import make_norm
from ..encoders.positions import AbsolutePositions
from ..registry import EMBEDDINGS, TARGET_EMBEDDINGS
from ..tokens import Tokens


@dataclass
class TokenEmbeddingConfig:
    vocab_size: int = 1000
    dim: int = 64
    positions: Literal["learned", "sinusoidal", "none"] = "learned"   # "none" with RoPE/ALiBi encoders
    max_positions: int = 512
    position_offset: int = 0         # RoBERTa counts positions from padding_idx + 1 = 2
    type_vocab_size: int = 0         # BERT's segment (token type) embeddings; 0 = none
    norm: Literal["layernorm", "rmsnorm", "none"] = "none"
    norm_eps: float = 1e-12
    dropout: float = 0.0
    prefix: str = ""                 # reads batch[prefix + "input_ids"], ...: two text streams can coexist


@EMBEDDINGS.register("token")
class TokenEmbedding(nn.Module):
    """Token ids -> vectors (BERT/RoBERTa/GPT/T5-style), with padding, packing and position ids."""

    Config = TokenEmbeddingConfig

    def __init__(self, cfg: TokenEmbeddingConfig, **_context):
        super().__init__()
        self.cfg = cfg
        self.word = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.position = (AbsolutePositions(cfg.positions, cfg.max_positions + cfg.position_offset, cfg.dim)
                         if cfg.positions != "none" else None)
        self.token_type = nn.Embedding(cfg.type_vocab_size, cfg.dim) if cfg.type_vocab_size else None
        self.norm = make_norm(cfg.norm, cfg.dim, cfg.norm_eps) if cfg.norm != "none" else nn.Identity()
        self.drop = nn.Dropout(cfg.dropout)

    @property
    def output_weight(self) -> Tensor:
        """The matrix an output head ties to (MLM/LM decoders)."""
        return self.word.weight

    def forward(self, batch: dict[str, Tensor]) -> Tokens:
        p = self.cfg.prefix
        ids = batch[p + "input_ids"]
        B, L = ids.shape
        if L > self.cfg.max_positions and self.position is not None:
            raise ValueError(f"sequence length {L} exceeds max_positions {self.cfg.max_positions}")
        positions = batch.get(p + "position_ids")
        if positions is None:
            positions = torch.arange(L, device=ids.device).expand(B, L)
        x = self.word(ids)
        if self.position is not None:
            x = x + self.position(positions + self.cfg.position_offset)
        if self.token_type is not None:
            types = batch.get(p + "token_type_ids")
            x = x + (self.token_type(types) if types is not None else self.token_type.weight[0])
        pad = batch.get(p + "attention_mask")
        return Tokens(x=self.drop(self.norm(x)), pad_mask=None if pad is None else pad.bool(),
                      segment_ids=batch.get(p + "segment_ids"), positions=positions,
                      prefix_len=batch.get(p + "prefix_len"))


@dataclass
class TargetTokenEmbeddingConfig(TokenEmbeddingConfig):
    prefix: str = "decoder_"         # reads batch["decoder_input_ids"], ...


@TARGET_EMBEDDINGS.register("token")
class TargetTokenEmbedding(TokenEmbedding):
    """Decoder-side token embedding (T5/BART): the shifted target tokens, read under a prefix."""

    Config = TargetTokenEmbeddingConfig

    def forward(self, batch: dict[str, Tensor], memory: Tokens | None = None) -> Tokens:
        return super().forward(batch)
