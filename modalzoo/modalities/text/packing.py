"""Turn a stream of tokenized documents into fixed-length packed rows or padded batches.

Packed rows hold several documents back to back; ``segment_ids`` (1, 2, ... and 0 for padding) give
the encoder a block-diagonal mask so documents never attend to each other, and ``position_ids``
restart at 0 for each document.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch

Document = tuple[list[int], list[int]]          # token ids, word ids (-1 for special tokens)


@dataclass
class SpecialIds:
    pad: int
    bos: int | None
    eos: int | None


def chunk_document(ids: list[int], words: list[int | None], seq_len: int, sp: SpecialIds) -> Iterator[Document]:
    """Split one document into pieces of at most ``seq_len`` tokens, each wrapped in bos/eos."""
    wrap = (sp.bos is not None) + (sp.eos is not None)
    body = seq_len - wrap
    words = [-1 if w is None else w for w in words]
    for start in range(0, max(len(ids), 1), body):
        piece, piece_words = ids[start:start + body], words[start:start + body]
        if not piece:
            return
        head, tail = ([sp.bos], [-1]) if sp.bos is not None else ([], [])
        end, end_w = ([sp.eos], [-1]) if sp.eos is not None else ([], [])
        yield head + piece + end, tail + piece_words + end_w


def pack(docs: Iterable[Document], seq_len: int, pad_id: int) -> Iterator[dict[str, torch.Tensor]]:
    """Greedy packing in stream order: start a new row when the next document does not fit."""
    ids: list[int] = []
    segs: list[int] = []
    pos: list[int] = []
    words: list[int] = []
    n_docs = 0
    for doc_ids, doc_words in docs:
        if len(ids) + len(doc_ids) > seq_len and ids:
            yield _row(ids, segs, pos, words, seq_len, pad_id)
            ids, segs, pos, words, n_docs = [], [], [], [], 0
        n_docs += 1
        offset = max(words, default=-1) + 1
        ids += doc_ids
        segs += [n_docs] * len(doc_ids)
        pos += range(len(doc_ids))
        words += [w + offset if w >= 0 else -1 for w in doc_words]
    if ids:
        yield _row(ids, segs, pos, words, seq_len, pad_id)


def _row(ids, segs, pos, words, seq_len, pad_id) -> dict[str, torch.Tensor]:
    fill = seq_len - len(ids)
    return {"input_ids": torch.tensor(ids + [pad_id] * fill),
            "segment_ids": torch.tensor(segs + [0] * fill),
            "position_ids": torch.tensor(pos + [0] * fill),
            "attention_mask": torch.tensor([True] * len(ids) + [False] * fill),
            "word_ids": torch.tensor(words + [-1] * fill)}


def pad_batch(docs: list[Document], pad_id: int) -> dict[str, torch.Tensor]:
    """One document per row, padded to the longest row in the batch."""
    longest = max(len(ids) for ids, _ in docs)
    out = {"input_ids": torch.full((len(docs), longest), pad_id),
           "attention_mask": torch.zeros(len(docs), longest, dtype=torch.bool),
           "word_ids": torch.full((len(docs), longest), -1)}
    for row, (ids, words) in enumerate(docs):
        out["input_ids"][row, :len(ids)] = torch.tensor(ids)
        out["attention_mask"][row, :len(ids)] = True
        out["word_ids"][row, :len(ids)] = torch.tensor(words)
    return out


def stack(rows: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {key: torch.stack([r[key] for r in rows]) for key in rows[0]}
