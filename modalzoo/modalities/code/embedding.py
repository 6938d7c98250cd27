"""Code embedding with data flow (GraphCodeBERT): code tokens plus data-flow nodes in one sequence.

Batch (as GraphCodeBERT builds it): ``input_ids`` holds code tokens then variable (node) tokens;
``position_idx`` is 0 for nodes, 1 for padding and 2, 3, ... for code tokens; ``attn_mask`` [B, L, L]
is the graph-guided mask (nodes see the code tokens they come from and the nodes they flow from).
A node's input vector is the mean of the embeddings of the code tokens it is linked to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ...registry import EMBEDDINGS
from ...tokens import Tokens
from ..text.embedding import TokenEmbedding, TokenEmbeddingConfig

NODE, PAD = 0, 1


class CodeTokens:
    """``fn(batch) -> BoolTensor[B, L]``: the code tokens (``position_idx >= 2``), neither data-flow nodes nor
    padding. What MLM may mask in GraphCodeBERT's input; picklable (a key name, no module)."""

    def __init__(self, position_key: str = "position_idx"):
        self.position_key = position_key

    def __call__(self, batch: dict[str, Tensor]) -> Tensor:
        return batch[self.position_key].gt(PAD)


@dataclass
class CodeDataFlowConfig(TokenEmbeddingConfig):
    max_positions: int = 512
    type_vocab_size: int = 1
    norm: Literal["layernorm", "rmsnorm", "none"] = "layernorm"
    norm_eps: float = 1e-5


@EMBEDDINGS.register("code_dataflow")
class CodeDataFlowEmbedding(TokenEmbedding):
    """GraphCodeBERT's input: code tokens + data-flow nodes, with a per-sample graph-guided mask."""

    Config = CodeDataFlowConfig

    def maskable(self) -> CodeTokens:
        """Only code tokens may be masked: a data-flow node's input is the mean of its code tokens' vectors,
        so masking its id would predict nothing; padding is never a target."""
        return CodeTokens(self.cfg.prefix + "position_idx")

    def forward(self, batch: dict[str, Tensor]) -> Tokens:
        p = self.cfg.prefix
        ids, position_idx, graph = batch[p + "input_ids"], batch[p + "position_idx"], batch[p + "attn_mask"].bool()
        nodes, code = position_idx.eq(NODE), position_idx.ge(2)
        words = self.word(ids)
        links = (nodes[:, :, None] & code[:, None, :] & graph).float()
        links = links / links.sum(-1, keepdim=True).clamp(min=1e-10)
        averaged = torch.einsum("bnt,btd->bnd", links, words)
        x = torch.where(nodes[..., None], averaged, words)
        if self.position is not None:
            x = x + self.position(position_idx)
        if self.token_type is not None:
            x = x + self.token_type.weight[0]
        return Tokens(x=self.drop(self.norm(x)), pad_mask=position_idx.ne(PAD), positions=position_idx,
                      attn_mask=graph)
