"""The `table_cells` embedding: one token per cell (`cells.py`), plus a [CLS] token that pools the row.

A cell is ``LayerNorm(name + value + kind)``: ``name`` the mean of its column-name token embeddings (one word
table for names and values, so a column and a value that share words share meaning across tables); ``value``
the mean of its value tokens (each plus an embedding of its place in the value, so digits keep their order),
or a scaled number times a learned vector plus a bias (TransTab's numeric embedding), or the missing vector;
``kind`` says which. A cell hidden by masked-cell modelling shows the mask vector as its value. No positions
between cells: a row is a set, and its cells come shuffled.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ...errors import ModalzooError
from ...registry import EMBEDDINGS
from ...tokens import Tokens
from .cells import MISSING, NUMBER, TOKENS

MASKED = 4


@dataclass
class TableEmbeddingConfig:
    dim: int = 128
    vocab_size: int = 4000           # at least the tokenizer's
    max_value_tokens: int = 16       # places within a value (the dataset's cap)
    dropout: float = 0.0


def mean_tokens(table: nn.Embedding, ids: Tensor, places: nn.Embedding | None = None) -> Tensor:
    """[..., T] ids (0 = padding) -> [..., D] mean of their embeddings (zeros where there is none)."""
    real = (ids > 0).unsqueeze(-1)
    x = table(ids)
    if places is not None:
        x = x + places(torch.arange(ids.shape[-1], device=ids.device).clamp(max=places.num_embeddings - 1))
    x = x * real.to(x.dtype)
    return x.sum(-2) / real.sum(-2).clamp(min=1).to(x.dtype)


@EMBEDDINGS.register("table_cells")
class TableEmbedding(nn.Module):
    """Table rows as cells: column-name tokens plus a value (tokens, a scaled number or missing), one position
    per cell, a [CLS] token first."""

    Config = TableEmbeddingConfig

    def __init__(self, cfg: TableEmbeddingConfig, **_context):
        super().__init__()
        self.cfg = cfg
        self.words = nn.Embedding(cfg.vocab_size, cfg.dim, padding_idx=0)
        self.places = nn.Embedding(cfg.max_value_tokens, cfg.dim)
        self.kinds = nn.Embedding(MASKED + 1, cfg.dim)
        self.number_scale = nn.Parameter(torch.zeros(cfg.dim))
        self.number_bias = nn.Parameter(torch.zeros(cfg.dim))
        self.missing = nn.Parameter(torch.zeros(cfg.dim))
        self.mask = nn.Parameter(torch.zeros(cfg.dim))
        self.cls = nn.Parameter(torch.zeros(cfg.dim))
        self.norm = nn.LayerNorm(cfg.dim)
        self.drop = nn.Dropout(cfg.dropout)
        self._checked = False

    def init_weights(self) -> None:
        for p in (self.number_scale, self.number_bias, self.missing, self.mask, self.cls):
            nn.init.normal_(p, std=0.02)
        with torch.no_grad():
            self.words.weight[0].zero_()

    def value_vectors(self, ids: Tensor) -> Tensor:
        """[..., T] value token ids -> [..., D]: how a token value enters a cell (masked-cell candidates too)."""
        return mean_tokens(self.words, ids, self.places)

    def forward(self, batch: dict[str, Tensor]) -> Tokens:
        kind = batch["cell_kind"]
        if not self._checked and kind.device.type == "cpu":   # once: a later bad id is torch's IndexError
            self._checked = True
            top = max(int(batch["name_ids"].max()), int(batch["value_ids"].max()))
            if top >= self.cfg.vocab_size:
                raise ModalzooError(f"a token id ({top}) is past the table embedding's vocab_size="
                                    f"{self.cfg.vocab_size}: raise it to the tokenizer's size")
        name = mean_tokens(self.words, batch["name_ids"])
        value = self.value_vectors(batch["value_ids"])
        number = batch["cell_num"].unsqueeze(-1).to(name.dtype) * self.number_scale + self.number_bias
        value = torch.where((kind == NUMBER).unsqueeze(-1), number, value)
        value = torch.where((kind == MISSING).unsqueeze(-1), self.missing.to(value.dtype), value)
        # always through the mask vector (all False outside masked-cell modelling), so that it has a gradient
        # every step: DDP without find_unused_parameters needs every parameter used
        masked = batch.get("cell_masked")
        if masked is None:
            masked = torch.zeros_like(kind, dtype=torch.bool)
        value = torch.where(masked.unsqueeze(-1), self.mask.to(value.dtype), value)
        shown = torch.where(masked, MASKED, kind)
        cells = self.norm(name + value + self.kinds(shown))
        R = kind.shape[0]
        x = torch.cat([self.cls.to(cells.dtype).expand(R, 1, -1), cells], dim=1)
        real = torch.cat([torch.ones(R, 1, dtype=torch.bool, device=kind.device), kind > 0], dim=1)
        return Tokens(x=self.drop(x), pad_mask=real)


__all__ = ["TableEmbedding", "TableEmbeddingConfig", "TOKENS", "mean_tokens"]
