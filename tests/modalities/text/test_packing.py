"""Packing and padding of tokenized documents."""

from __future__ import annotations

import torch

from modalzoo.modalities.text.packing import SpecialIds, chunk_document, pack, pad_batch

SP = SpecialIds(pad=0, bos=2, eos=3)


def test_chunk_wraps_every_piece_and_loses_nothing():
    ids = list(range(10, 30))
    pieces = list(chunk_document(ids, list(range(20)), seq_len=8, sp=SP))
    assert all(len(p) <= 8 and p[0] == 2 and p[-1] == 3 for p, _ in pieces)
    assert [t for p, _ in pieces for t in p[1:-1]] == ids
    assert all(w[0] == -1 and w[-1] == -1 for _, w in pieces)


def test_pack_segments_positions_and_padding():
    docs = [([2, 11, 12, 3], [-1, 0, 1, -1]), ([2, 21, 3], [-1, 0, -1]), ([2, 31, 32, 33, 3], [-1, 0, 0, 1, -1])]
    rows = list(pack(docs, seq_len=8, pad_id=0))
    assert len(rows) == 2
    first = rows[0]
    assert first["input_ids"].tolist() == [2, 11, 12, 3, 2, 21, 3, 0]
    assert first["segment_ids"].tolist() == [1, 1, 1, 1, 2, 2, 2, 0]
    assert first["position_ids"].tolist() == [0, 1, 2, 3, 0, 1, 2, 0]
    assert first["attention_mask"].tolist() == [True] * 7 + [False]
    # word ids stay unique across the documents of a row (whole-word masking must not join them)
    assert first["word_ids"].tolist() == [-1, 0, 1, -1, -1, 2, -1, -1]
    assert rows[1]["segment_ids"].tolist()[:5] == [1] * 5


def test_every_token_is_packed_exactly_once():
    g = torch.Generator().manual_seed(0)
    docs = []
    for i in range(50):
        n = int(torch.randint(3, 20, (1,), generator=g))
        docs.append(([2] + [100 + i] * (n - 2) + [3], [-1] + [0] * (n - 2) + [-1]))
    rows = list(pack(docs, seq_len=24, pad_id=0))
    packed = torch.cat([r["input_ids"][r["attention_mask"]] for r in rows]).tolist()
    assert packed == [t for d, _ in docs for t in d]
    assert all(r["input_ids"].shape == (24,) for r in rows)


def test_pad_batch_pads_to_longest():
    out = pad_batch([([2, 5, 3], [-1, 0, -1]), ([2, 5, 6, 7, 3], [-1, 0, 1, 2, -1])], pad_id=0)
    assert out["input_ids"].tolist() == [[2, 5, 3, 0, 0], [2, 5, 6, 7, 3]]
    assert out["attention_mask"].sum(1).tolist() == [3, 5]
