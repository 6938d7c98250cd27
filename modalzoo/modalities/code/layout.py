"""A `CodeSample` -> GraphCodeBERT's model input: subword ids, positions, roles, node spans and edges; a batch of
them -> padded tensors and the graph-guided attention mask.

Sequence: ``<s> comment </s> code </s> node node ... <pad> ...`` (paper §4.1; ``parts`` drops the comment for a
code-only encoding, or the code for a query-only one). Every leaf is encoded on its own as `` leaf`` (space-prefixed
byte-level BPE, the first leaf without the space: GraphCodeBERT's rule), so a leaf's subwords are exactly a span of
the sequence and a node (one leaf) links to that span. Comment tokens come from the docstring's text.

Truncation (GraphCodeBERT's budgets): the comment gets at most ``comment_len`` subwords, the nodes
``min(#nodes, max_nodes)`` slots, the code what is left of ``seq_len``; code is cut at a subword, a node whose leaf
is not wholly kept is dropped with its edges, and only the first ``max_nodes`` nodes (in source order) stay.

``position_idx``: 2, 3, ... along the text (specials, comment, code), 0 for nodes, 1 for padding (RoBERTa's
padding_idx), so a RoBERTa position table of ``seq_len + 2`` rows serves (514 for 512 tokens).

Graph-guided mask (paper eq. 6): text tokens see every text token; ``<s>``/``</s>`` also see the nodes; a node and
the code subwords of its leaf see each other; a node sees the nodes its value comes from (edge src -> dst: src
attends to dst); padding sees nothing (the encoder adds the diagonal). The released fine-tuning code differs: it
gives nodes no diagonal (the encoder's diagonal covers it here) - see research notes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .sample import IDENTIFIER, CodeSample

NODE_POS, PAD_POS, FIRST_POS = 0, 1, 2
PAD_ROLE, SPECIAL, COMMENT, CODE, NODE = range(5)
ROLES = ("pad", "special", "comment", "code", "node")


@dataclass
class Laid:
    """One sample's input (length n): ids, position_idx, role, identifier flags; node spans [k, 2] (sequence
    positions of each kept node's subwords) and edges [e, 3] (src node, dst node, kind) over kept nodes."""
    ids: np.ndarray
    position: np.ndarray
    role: np.ndarray
    identifier: np.ndarray
    node_span: np.ndarray
    edges: np.ndarray
    first_node: int                     # sequence position of node 0


def comment_text(docstring: str) -> str:
    return " ".join(docstring.split())


def lay_out(sample: CodeSample, tokenizer, seq_len: int, max_nodes: int, comment_len: int,
            parts: tuple[str, ...] = ("comment", "code", "nodes")) -> Laid:
    """``tokenizer``: a `TextTokenizer` (byte-level BPE with <s> </s> <pad> <unk>)."""
    tok = tokenizer.tokenizer
    use_comment, use_code, use_nodes = "comment" in parts, "code" in parts, "nodes" in parts and "code" in parts
    comment = tok.encode(comment_text(sample.docstring), add_special_tokens=False).ids if use_comment else []
    comment = comment[:comment_len]
    leaves = sample.leaves() if use_code else []
    encoded = tok.encode_batch([(" " if i else "") + leaf for i, leaf in enumerate(leaves)],
                               add_special_tokens=False) if leaves else []
    slots = min(len(sample.nodes), max_nodes) if use_nodes else 0
    specials = 1 + bool(comment) + bool(use_code)              # <s>, </s> after the comment, </s> after the code
    code_budget = max(seq_len - specials - len(comment) - slots, 0)

    ids, role, ident = [tokenizer.bos_id], [SPECIAL], [False]
    if comment:
        ids += comment + [tokenizer.eos_id]
        role += [COMMENT] * len(comment) + [SPECIAL]
        ident += [False] * (len(comment) + 1)
    code_start = len(ids)
    leaf_span: list[tuple[int, int] | None] = []
    used = 0
    for i, enc in enumerate(encoded):
        pieces = enc.ids
        room = code_budget - used
        if room <= 0:
            leaf_span.append(None)
            continue
        keep = pieces[:room]
        start = code_start + used
        ids += keep
        used += len(keep)
        is_id = sample.tokens[i][2] == IDENTIFIER
        role += [CODE] * len(keep)
        ident += [is_id] * len(keep)
        leaf_span.append((start, start + len(keep)) if len(keep) == len(pieces) else None)
    if use_code:
        ids.append(tokenizer.eos_id)
        role.append(SPECIAL)
        ident.append(False)
    n_text = len(ids)
    position = list(range(FIRST_POS, FIRST_POS + n_text))

    kept = [k for k, t in enumerate(sample.nodes) if leaf_span[t] is not None][:slots] if use_nodes else []
    new = {old: i for i, old in enumerate(kept)}
    spans = np.array([leaf_span[sample.nodes[k]] for k in kept], dtype=np.int64).reshape(-1, 2)
    edges = np.array([(new[a], new[b], kind) for a, b, kind in sample.edges if a in new and b in new],
                     dtype=np.int64).reshape(-1, 3)
    ids += [tokenizer.unk_id] * len(kept)
    role += [NODE] * len(kept)
    ident += [False] * len(kept)
    position += [NODE_POS] * len(kept)
    return Laid(np.array(ids, dtype=np.int64), np.array(position, dtype=np.int64), np.array(role, dtype=np.uint8),
                np.array(ident, dtype=bool), spans, edges, n_text)


def collate(items: list[Laid], pad_id: int, length: int | None = None) -> dict[str, torch.Tensor]:
    """Right-padded batch tensors: ``input_ids``, ``position_idx``, ``token_role`` [B, L]; ``is_identifier``
    [B, L]; ``node_span`` [B, L, 2] (at node positions); ``dfg_edges`` uint8 [B, L, L] (edge kind + 1 at
    (src position, dst position), 0 none); ``attn_mask`` bool [B, L, L] (the graph-guided mask)."""
    B = len(items)
    L = length or max(len(x.ids) for x in items)
    ids = np.full((B, L), pad_id, dtype=np.int64)
    position = np.full((B, L), PAD_POS, dtype=np.int64)
    role = np.zeros((B, L), dtype=np.uint8)
    ident = np.zeros((B, L), dtype=bool)
    span = np.zeros((B, L, 2), dtype=np.int64)
    dfg = np.zeros((B, L, L), dtype=np.uint8)
    mask = np.zeros((B, L, L), dtype=bool)
    for b, x in enumerate(items):
        n = len(x.ids)
        ids[b, :n], position[b, :n], role[b, :n], ident[b, :n] = x.ids, x.position, x.role, x.identifier
        t = x.first_node                                      # text: [0, t), nodes: [t, n)
        mask[b, :t, :t] = True
        specials = np.flatnonzero(x.role[:t] == SPECIAL)
        mask[b, specials, t:n] = True
        for k, (s, e) in enumerate(x.node_span):
            span[b, t + k] = (s, e)
            mask[b, t + k, s:e] = True
            mask[b, s:e, t + k] = True
        if len(x.edges):
            src, dst = x.edges[:, 0] + t, x.edges[:, 1] + t
            mask[b, src, dst] = True
            dfg[b, src, dst] = x.edges[:, 2] + 1
    return {"input_ids": torch.from_numpy(ids), "position_idx": torch.from_numpy(position),
            "token_role": torch.from_numpy(role), "is_identifier": torch.from_numpy(ident),
            "node_span": torch.from_numpy(span), "dfg_edges": torch.from_numpy(dfg),
            "attn_mask": torch.from_numpy(mask)}
