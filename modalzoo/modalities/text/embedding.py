"""Text embedding: token + absolute position (+ segment type) embeddings, optional norm, dropout and projection.

One embedding may read another's tables (``shares``): T5's decoder input and ELECTRA's generator use the
same token vectors as their encoder / discriminator. The sharer holds no copy and no alias, only a reference
bound by the model (`PretrainModel`), so state dicts, checkpoints and exports list each tensor once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from ...encoders.blocks import make_norm
from ...encoders.masks import RealPositions, is_right_padded
from ...encoders.positions import AbsolutePositions
from ...errors import ModalzooError
from ...registry import EMBEDDINGS, TARGET_EMBEDDINGS
from ...tokens import Tokens


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
    # Padding only ever follows the real tokens (every zoo collator pads right), so a causal encoder can
    # use SDPA's causal path without an explicit [B, 1, L, L] mask. Set false for left-padded batches;
    # a left-padded mask on CPU with this on is refused (on an accelerator it is not checked: no sync).
    right_padded: bool = True
    # Read the word/position/type tables and norm of the token embedding at this module path (e.g.
    # "streams.text.embedding"); the table options above must then equal that embedding's.
    shares: str = ""
    output_dim: int = 0              # > 0 and != dim: a Linear `project` to the encoder's width (ELECTRA)


TABLE_OPTIONS = ("vocab_size", "dim", "positions", "max_positions", "position_offset", "type_vocab_size",
                 "norm", "norm_eps")


@EMBEDDINGS.register("token")
class TokenEmbedding(nn.Module):
    """Token ids -> vectors (BERT/RoBERTa/GPT/T5-style), with padding, packing and position ids."""

    Config = TokenEmbeddingConfig

    def __init__(self, cfg: TokenEmbeddingConfig, **_context):
        super().__init__()
        self.cfg = cfg
        if not cfg.shares:
            self.word = nn.Embedding(cfg.vocab_size, cfg.dim)
            self.position = (AbsolutePositions(cfg.positions, cfg.max_positions + cfg.position_offset, cfg.dim)
                             if cfg.positions != "none" else None)
            self.token_type = nn.Embedding(cfg.type_vocab_size, cfg.dim) if cfg.type_vocab_size else None
            self.norm = make_norm(cfg.norm, cfg.dim, cfg.norm_eps) if cfg.norm != "none" else nn.Identity()
        self.drop = nn.Dropout(cfg.dropout)
        self.project = nn.Linear(cfg.dim, cfg.output_dim) if cfg.output_dim not in (0, cfg.dim) else None

    @property
    def tables(self) -> TokenEmbedding:
        """The module that owns the word/position/type tables and norm: this one, or the one it shares."""
        if not self.cfg.shares:
            return self
        source = self.__dict__.get("_source")
        if source is None:
            raise ModalzooError(f"this token embedding shares '{self.cfg.shares}' but was never bound to it; "
                                "build it as part of a PretrainModel")
        return source

    def share_from(self, source: nn.Module, where: str) -> None:
        """Bind the embedding named by ``cfg.shares`` (called by `PretrainModel`). A plain attribute, not a
        submodule: the tables stay registered once, in their owner."""
        if not isinstance(source, TokenEmbedding) or source.cfg.shares:
            what = "a token embedding that shares another's" if isinstance(source, TokenEmbedding) \
                else f"a {type(source).__name__}"
            raise ModalzooError(f"'{where}.shares' = '{self.cfg.shares}' must name a token embedding that owns "
                                f"its tables, not {what}")
        differ = [f"{k} ({getattr(self.cfg, k)!r} vs {getattr(source.cfg, k)!r})" for k in TABLE_OPTIONS
                  if getattr(self.cfg, k) != getattr(source.cfg, k)]
        if differ:
            raise ModalzooError(f"'{where}' shares the tables of '{self.cfg.shares}' but its options differ: "
                                f"{', '.join(differ)}; set them equal (e.g. vocab_size: "
                                f"${{model.{self.cfg.shares}.vocab_size}})")
        self.__dict__["_source"] = source

    @property
    def out_dim(self) -> int:
        """The width of the vectors this embedding hands the encoder."""
        return self.project.out_features if self.project is not None else self.cfg.dim

    @property
    def output_weight(self) -> Tensor:
        """The matrix an output head ties to (MLM/LM decoders)."""
        return self.tables.word.weight

    def maskable(self) -> RealPositions:
        """A picklable ``fn(batch) -> BoolTensor[B, L]``: where a token-level target (MLM) may mask or
        predict. Here every real token of this stream (its own, prefixed padding mask); the target still
        leaves special tokens alone."""
        p = self.cfg.prefix
        return RealPositions(p + "attention_mask", p + "input_ids")

    def forward(self, batch: dict[str, Tensor]) -> Tokens:
        p = self.cfg.prefix
        ids = batch[p + "input_ids"]
        B, L = ids.shape
        t = self.tables
        if L > self.cfg.max_positions and t.position is not None:
            raise ValueError(f"sequence length {L} exceeds max_positions {self.cfg.max_positions}")
        positions = batch.get(p + "position_ids")
        x = t.word(ids)
        if t.position is not None:
            offset = self.cfg.position_offset
            if positions is None:       # 0..L-1 for every row: a slice of the table, no ids to keep for backward
                x = x + t.position.first(L, offset)
            else:
                x = x + t.position(positions + offset)
        if positions is None:
            positions = torch.arange(L, device=ids.device).expand(B, L)
        if t.token_type is not None:
            types = batch.get(p + "token_type_ids")
            x = x + (t.token_type(types) if types is not None else t.token_type.weight[0])
        x = self.drop(t.norm(x))
        if self.project is not None:
            x = self.project(x)
        pad = batch.get(p + "attention_mask")
        if pad is not None:
            pad = pad.bool()
            if self.cfg.right_padded:
                self._check_right_padded(pad)
        return Tokens(x=x, pad_mask=pad, segment_ids=batch.get(p + "segment_ids"),
                      positions=positions, prefix_len=batch.get(p + "prefix_len"),
                      right_padded=self.cfg.right_padded)

    def _check_right_padded(self, pad: Tensor) -> None:
        """Refuse a mask with padding before real tokens: with ``right_padded`` a causal encoder would let
        real tokens attend to those pads. Checked on CPU only, where it is cheap; on an accelerator the
        check would be a host sync every step, and under torch.compile a graph break."""
        if pad.device.type != "cpu" or torch.compiler.is_compiling() or is_right_padded(pad):
            return
        key = self.cfg.prefix + "attention_mask"
        raise ModalzooError(
            f"batch['{key}'] has padding before real tokens (left padding?), but this token embedding "
            f"assumes right padding (its option right_padded is true, the default). Set right_padded: false "
            f"in the embedding's config for left-padded batches.")


@dataclass
class TargetTokenEmbeddingConfig(TokenEmbeddingConfig):
    prefix: str = "decoder_"         # reads batch["decoder_input_ids"], ...


@TARGET_EMBEDDINGS.register("token")
class TargetTokenEmbedding(TokenEmbedding):
    """Decoder-side token embedding (T5/BART): the shifted target tokens, read under a prefix."""

    Config = TargetTokenEmbeddingConfig

    def forward(self, batch: dict[str, Tensor], memory: Tokens | None = None) -> Tokens:
        return super().forward(batch)
