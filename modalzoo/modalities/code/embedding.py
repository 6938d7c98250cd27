"""Code embedding with data flow (GraphCodeBERT): comment and code tokens plus data-flow nodes in one sequence.

Batch (the `code` dataset's layout, `layout.py`; GraphCodeBERT's own fine-tuning batches work too):
``input_ids`` [B, L]: ``<s>`` comment ``</s>`` code ``</s>`` then one token per data-flow node, then padding;
``position_idx`` [B, L]: 2, 3, ... for comment/code/special tokens, 0 for nodes, 1 for padding (RoBERTa's
padding_idx); ``attn_mask`` [B, L, L] bool: the graph-guided mask (text sees text; a node sees its code tokens and
they see it; a node sees the nodes its value comes from); ``node_span`` [B, L, 2] (optional): for each node
position the [start, end) sequence positions of the code subwords it was identified from.

A node's input vector is the mean of the word embeddings of its code subwords: from ``node_span`` when the batch
has it, else from the node's code links in ``attn_mask`` (GraphCodeBERT's rule). ``node_span`` keeps a node's input
when an objective hides its code links from attention (node alignment) - the model must then find which
occurrence it came from, not lose which name it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor

from ...registry import EMBEDDINGS
from ...tokens import Tokens
from ..text.embedding import TokenEmbedding, TokenEmbeddingConfig
from .hub.transformers_inputs import node_averaged

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
        x = node_averaged(self.word(ids), position_idx, graph, batch.get(p + "node_span"))
        if self.position is not None:
            x = x + self.position(position_idx)
        if self.token_type is not None:
            x = x + self.token_type.weight[0]
        return Tokens(x=self.drop(self.norm(x)), pad_mask=position_idx.ne(PAD), positions=position_idx,
                      attn_mask=graph)
