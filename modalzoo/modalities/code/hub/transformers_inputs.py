"""A zoo `code` batch -> the inputs transformers' `RobertaForMaskedLM` / `RobertaModel` take for GraphCodeBERT.

    inputs = transformers_inputs(model.get_input_embeddings(), batch)
    logits = model(inputs_embeds=inputs["inputs_embeds"], position_ids=inputs["position_ids"],
                   attention_mask=inputs["attention_mask"]).logits

``batch`` is the `code` dataset's layout (`modalities/code/layout.py`): ``input_ids`` [B, L], ``position_idx``
[B, L] (0 data-flow nodes, 1 padding, 2.. comment/code/special tokens), ``attn_mask`` [B, L, L] bool (the
graph-guided mask) and optionally ``node_span`` [B, L, 2]. The three outputs are what the zoo's `code_dataflow`
embedding and encoder compute before the first layer:

- ``inputs_embeds`` [B, L, D]: the word vectors, a node's being the mean of its code subwords' vectors (from
  ``node_span`` when the batch has it, else from the node's code links in ``attn_mask``) - before positions,
  token type and LayerNorm, which RoBERTa's embedding adds itself;
- ``position_ids`` = ``position_idx`` (RoBERTa's table is indexed directly: row 1 is its padding row);
- ``attention_mask`` [B, 1, L, L]: the zoo's final mask (`encoders/masks.py::build_attention_mask`: the graph mask,
  no padded keys, every token seeing itself) as a FLOAT additive mask, 0 where a query may attend a key and
  ``torch.finfo(dtype).min`` where it may not. transformers 5 passes any 4-D mask through unchanged: a 3-D
  [B, L, L] mask (what GraphCodeBERT's own code passes) raises once it masks anything, and a 4-D bool mask is
  right under SDPA but silently wrong under eager attention (eager adds it to the scores: True = +1, False = 0).
  The float one is right under both.

Only torch: the module needs neither the zoo model nor the rest of modalzoo, so it can be copied next to a
transformers-only script.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

NODE, PAD, FIRST = 0, 1, 2          # position_idx of a data-flow node, of padding, of the first text token


def node_averaged(words: Tensor, position_idx: Tensor, attn_mask: Tensor, node_span: Tensor | None = None) -> Tensor:
    """[B, L, D]: ``words`` (the word vectors of ``input_ids``) with each data-flow node's replaced by the mean of
    its code subwords' vectors - the subwords in its ``node_span`` [start, end) when given, else the text tokens
    ``attn_mask`` links it to (GraphCodeBERT's rule). A node with no subword gets a zero vector."""
    nodes, text = position_idx.eq(NODE), position_idx.ge(FIRST)
    if node_span is not None:
        at = torch.arange(words.shape[1], device=words.device)
        links = (at[None, None, :] >= node_span[..., :1]) & (at[None, None, :] < node_span[..., 1:])
    else:
        links = attn_mask.bool()
    links = (nodes[:, :, None] & text[:, None, :] & links).to(words.dtype)
    links = links / links.sum(-1, keepdim=True).clamp(min=1e-10)
    return torch.where(nodes[..., None], torch.einsum("bnt,btd->bnd", links, words), words)


def final_mask(position_idx: Tensor, attn_mask: Tensor) -> Tensor:
    """[B, L, L] bool, True = the query (row) may attend the key (column): the graph-guided mask without padded
    keys, with the diagonal (so no row is empty), as the zoo's encoder builds it."""
    L = position_idx.shape[1]
    eye = torch.eye(L, dtype=torch.bool, device=position_idx.device)
    return (attn_mask.bool() & position_idx.ne(PAD)[:, None, :]) | eye


def additive_mask(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """A bool [B, L, L] mask as transformers' 4-D float additive mask [B, 1, L, L]: 0 allowed, finfo.min not."""
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)[:, None]


def transformers_inputs(word_embeddings: nn.Embedding, batch: Mapping[str, Tensor], prefix: str = "") -> dict:
    """``inputs_embeds``, ``position_ids`` and ``attention_mask`` for a RoBERTa-class model (see the module
    docstring) from its word table (``model.get_input_embeddings()``) and a `code` batch (keys under ``prefix``,
    as the stream's embedding reads them)."""
    position_idx, graph = batch[prefix + "position_idx"], batch[prefix + "attn_mask"]
    words = word_embeddings(batch[prefix + "input_ids"])
    embeds = node_averaged(words, position_idx, graph, batch.get(prefix + "node_span"))
    return {"inputs_embeds": embeds, "position_ids": position_idx,
            "attention_mask": additive_mask(final_mask(position_idx, graph), embeds.dtype)}
