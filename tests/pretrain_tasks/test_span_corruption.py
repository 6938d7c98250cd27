"""T5 span corruption: the noise mask's counts and randomness, inputs + targets giving back the documents
(padded and packed rows), determinism, the decoder-only layout, and the sentinel checks."""

from __future__ import annotations

import pickle
from collections import Counter
from types import SimpleNamespace

import pytest
import torch

from modalzoo import build_model
from modalzoo.datasets.fields import DataContext
from modalzoo.errors import ModalzooError
from modalzoo.pretrain_tasks.base import IGNORE
from modalzoo.pretrain_tasks.span_corruption import (
    Layout,
    SpanCorruption,
    noise_counts,
    random_segmentation,
    random_spans_noise_mask,
    sentinels_needed,
)

PAD, BOS, EOS = 0, 2, 3
SENTINELS = list(range(900, 1000))           # outside the ordinary ids 5..899 used below
TOK = SimpleNamespace(sentinel_ids=SENTINELS, pad_id=PAD, bos_id=BOS, eos_id=EOS, vocab_size=1000,
                      special_ids=[0, 1, 2, 3, 4, *SENTINELS])


def spans_of(mask: torch.Tensor) -> list[int]:
    """Lengths of the runs of True."""
    runs, n = [], 0
    for m in mask.tolist() + [False]:
        if m:
            n += 1
        elif n:
            runs.append(n)
            n = 0
    return runs


def test_counts_are_t5s():
    # round(L * 0.15) noise tokens (halves to even, as tf.round), round(noise / 3) spans, at least one each
    assert noise_counts(512, 0.15, 3.0)[:2] == (77, 26)
    assert noise_counts(114, 0.15, 3.0)[:2] == (17, 6)
    assert noise_counts(10, 0.15, 3.0)[:2] == (2, 1)
    assert noise_counts(1, 0.15, 3.0) == (1, 1, 2)                  # the length is raised to 2
    assert noise_counts(100, 0.5, 32.0)[:2] == (50, 2)
    assert noise_counts(5, 0.9, 1.0)[:2] == (4, 1)                  # no more spans than non-noise tokens


def test_mask_statistics_over_many_draws():
    g = torch.Generator().manual_seed(0)
    noise = total = 0
    span_lengths, first, last = [], [], []
    for _ in range(1500):
        length = int(torch.randint(20, 200, (1,), generator=g))
        mask = random_spans_noise_mask(length, 0.15, 3.0, g)
        want_noise, want_spans, _ = noise_counts(length, 0.15, 3.0)
        assert int(mask.sum()) == want_noise and len(spans_of(mask)) == want_spans     # exact per draw
        noise, total = noise + int(mask.sum()), total + length
        span_lengths += spans_of(mask)
        first.append(bool(mask[0]))
        last.append(bool(mask[-1]))
    assert abs(noise / total - 0.15) < 0.005
    assert abs(sum(span_lengths) / len(span_lengths) - 3.0) < 0.15
    assert len(set(span_lengths)) > 5                                # lengths vary, not all 3
    assert not any(first) and all(last)                              # non-noise first; T5 ends on noise


def test_segmentations_are_uniform():
    """4 items in 2 non-empty segments: (1,3) (2,2) (3,1) equally likely."""
    g = torch.Generator().manual_seed(1)
    seen = Counter(tuple(random_segmentation(4, 2, g).tolist()) for _ in range(3000))
    assert set(seen) == {(1, 3), (2, 2), (3, 1)}
    assert all(abs(n / 3000 - 1 / 3) < 0.03 for n in seen.values())


def padded_batch(B=6, L=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(4, L + 1, (B,), generator=g)
    lengths[0] = L
    ids = torch.randint(5, 900, (B, L), generator=g)
    mask = torch.arange(L)[None] < lengths[:, None]
    ids[:, 0] = BOS
    ids[torch.arange(B), lengths - 1] = EOS
    ids[~mask] = PAD
    return {"input_ids": ids, "attention_mask": mask, "word_ids": torch.where(mask, 0, -1)}


def packed_batch(B=4, L=48, seed=0):
    """Rows of several [bos] body [eos] documents, as the text field packs them."""
    g = torch.Generator().manual_seed(seed)
    ids, segs, pos = torch.full((B, L), PAD), torch.zeros(B, L, dtype=torch.long), torch.zeros(B, L, dtype=torch.long)
    for r in range(B):
        at, d = 0, 0
        while True:
            n = int(torch.randint(3, 20, (1,), generator=g))
            if at + n > L:
                break
            d += 1
            ids[r, at:at + n] = torch.cat([torch.tensor([BOS]), torch.randint(5, 900, (n - 2,), generator=g),
                                           torch.tensor([EOS])])
            segs[r, at:at + n], pos[r, at:at + n] = d, torch.arange(n)
            at += n
    return {"input_ids": ids, "segment_ids": segs, "position_ids": pos, "attention_mask": segs > 0}


def documents(batch):
    from modalzoo.pretrain_tasks.span_corruption import row_documents
    return row_documents(batch)


def reconstruct(inputs: list[int], targets: list[int]) -> list[int]:
    """Put every sentinel's span (what follows it in the targets) back in its place in the input."""
    spans, current = {}, None
    for t in targets:
        if t in SENTINELS:
            current = spans.setdefault(t, [])
        elif current is not None:
            current.append(t)
    out = []
    for t in inputs:
        out += spans[t] if t in SENTINELS else [t]
    return out


def transform(decoder_only=False, density=0.15, mean=3.0, roll=False):
    return SpanCorruption(density, mean, SENTINELS, PAD, BOS, EOS, Layout(decoder_only), random_roll=roll)


def test_random_roll_spreads_the_noise():
    """Without the roll a 20-token body (one span) always loses its last 3 tokens; rolled, every position
    is dropped about equally often, and the counts stay T5's (a span cut by the end becomes two)."""
    g = torch.Generator().manual_seed(0)
    masks = torch.stack([random_spans_noise_mask(20, 0.15, 3.0, g, random_roll=True) for _ in range(4000)])
    assert (masks.sum(1) == 3).all()
    assert set(len(spans_of(m)) for m in masks) == {1, 2}
    assert ((masks.float().mean(0) - 0.15).abs() < 0.03).all()
    plain = random_spans_noise_mask(20, 0.15, 3.0, g)
    assert plain[-3:].all() and not plain[:-3].any()


@pytest.mark.parametrize("roll", [False, True])
@pytest.mark.parametrize("make", [padded_batch, packed_batch])
def test_inputs_and_targets_give_back_the_documents(make, roll):
    batch = make()
    out = transform(roll=roll)(batch, torch.Generator().manual_seed(3))
    before = documents(batch)
    after = documents(out)
    assert "word_ids" not in out                                     # no longer describes the tokens
    for r in range(len(before)):
        n = int(out["decoder_attention_mask"][r].sum())
        targets = out["decoder_labels"][r, :n].tolist()
        assert targets[-1] == EOS and (out["decoder_labels"][r, n:] == IGNORE).all()
        assert out["decoder_input_ids"][r, :n].tolist() == [PAD] + targets[:-1]   # pad starts the decoder
        assert len(after[r]) == len(before[r])                       # one corrupted copy per document
        used = [t for doc in after[r] for t in doc if t in SENTINELS]
        assert used == SENTINELS[:len(used)] and len(used) > 0       # counted on across the row's documents
        for doc_before, doc_after in zip(before[r], after[r]):
            assert doc_after[0] == BOS and doc_after[-1] == EOS      # the framing is never corrupted
            assert len(doc_after) <= len(doc_before)
        assert reconstruct(sum(after[r], []), targets[:-1]) == sum(before[r], [])
    if "segment_ids" in batch:                                       # each document restarts its positions
        seg, pos = out["segment_ids"], out["position_ids"]
        starts = torch.ones_like(seg, dtype=torch.bool)
        starts[:, 1:] = seg[:, 1:] != seg[:, :-1]
        assert (pos[starts & (seg > 0)] == 0).all()
        assert ((pos[:, 1:] == pos[:, :-1] + 1) | starts[:, 1:] | (seg[:, 1:] == 0)).all()


def test_noise_rate_on_real_rows():
    batch = padded_batch(B=64, L=128)
    out = transform()(batch, torch.Generator().manual_seed(0))
    sentinels = torch.isin(out["decoder_labels"], torch.tensor(SENTINELS))
    dropped = int(((out["decoder_labels"] != IGNORE) & ~sentinels).sum()) - 64      # minus one eos per row
    bodies = int(batch["attention_mask"].sum()) - 2 * 64
    assert abs(dropped / bodies - 0.15) < 0.01
    assert abs(dropped / int(sentinels.sum()) - 3.0) < 0.3


@pytest.mark.parametrize("make, roll", [(padded_batch, False), (packed_batch, True)])
def test_same_generator_same_corruption(make, roll):
    batch = make()
    a = transform(roll=roll)(batch, torch.Generator().manual_seed(7))
    b = pickle.loads(pickle.dumps(transform(roll=roll)))(batch, torch.Generator().manual_seed(7))   # in a worker
    c = transform(roll=roll)(batch, torch.Generator().manual_seed(8))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["decoder_labels"], c["decoder_labels"])


def test_decoder_only_layout_predicts_the_targets_only():
    batch = padded_batch()
    out = transform(decoder_only=True)(batch, torch.Generator().manual_seed(3))
    assert "decoder_input_ids" not in out and "decoder_labels" not in out
    for r, (doc,) in enumerate(documents(batch)):
        n, p = int(out["attention_mask"][r].sum()), int(out["prefix_len"][r])
        row = out["input_ids"][r, :n].tolist()
        inputs, targets = row[:p], row[p:]
        assert inputs[0] == BOS and inputs[-1] == EOS and targets[0] == SENTINELS[0] and targets[-1] == EOS
        assert reconstruct(inputs, targets[:-1]) == doc
        labels = out["lm_labels"][r]
        assert labels[p - 1:n - 1].tolist() == targets                    # the last input token predicts S0
        assert (labels[:p - 1] == IGNORE).all() and (labels[n - 1:] == IGNORE).all()
    with pytest.raises(ModalzooError, match="data.packing=false"):
        transform(decoder_only=True)(packed_batch(), None)


def test_sentinels_needed_bounds_every_row():
    assert sentinels_needed(128, 0.15, 3.0, packed=False) == noise_counts(126, 0.15, 3.0)[1]
    assert sentinels_needed(128, 0.15, 3.0, packed=True) == 32        # 32 documents [bos] a b [eos], a span each
    g = torch.Generator().manual_seed(0)
    for roll in (False, True):
        worst = max(len([t for t in sum(documents(transform(roll=roll)(packed_batch(seed=s), g)), [])
                         if t in SENTINELS]) for s in range(20))
        assert worst <= sentinels_needed(48, 0.15, 3.0, packed=True, random_roll=roll)


# ----------------------------------------------------------------------------------- the target

def t5_spec(target: dict | None = None, V=1000, D=32, decoder_only=False):
    block = {"dim": D, "heads": 4, "ffn_dim": 64, "norm": "rmsnorm", "norm_eps": 1e-6, "bias": False,
             "activation": "relu", "positions": "t5_relative", "attn_scale": 1.0, "layers": 2}
    emb = {"name": "token", "vocab_size": V, "dim": D, "positions": "none"}
    if decoder_only:
        stream = {"embedding": emb, "encoder": {"name": "transformer", **block, "mask": "prefix"}}
    else:
        stream = {"embedding": emb, "encoder": {"name": "transformer", **block},
                  "target_embedding": {**emb, "shares": "streams.text.embedding"},
                  "decoder": {"name": "transformer", **block}}
    target = target or {"name": "span_corruption", "stream": "text", **({"source": "encoder"} if decoder_only else {})}
    return {"model": {"streams": {"text": stream}, "targets": {"t5": target}}}


@pytest.mark.parametrize("decoder_only", [False, True])
def test_the_target_trains_on_its_batches(decoder_only):
    torch.manual_seed(0)
    model = build_model(t5_spec(decoder_only=decoder_only))
    (fn,) = model.batch_transforms(DataContext(tokenizer=TOK))
    batch = fn(padded_batch(), torch.Generator().manual_seed(0))
    out = model(batch)
    out.loss.backward()
    assert torch.isfinite(out.loss) and out.counts["t5"] == int((batch.get("decoder_labels", batch.get(
        "lm_labels")) != IGNORE).sum())
    assert 6.0 < float(out.loss.detach()) < 8.0                                     # ~ln(1000) at init


def test_v1_0_scales_the_tied_head_and_v1_1_unties():
    tied = build_model(t5_spec(V=4000))
    untied = build_model(t5_spec({"name": "span_corruption", "tie_weights": False}, V=4000))
    assert tied.targets["t5"].output_scale == 32 ** -0.5 and tied.targets["t5"].head is None
    assert untied.targets["t5"].output_scale is None and untied.targets["t5"].head is not None
    forced = build_model(t5_spec({"name": "span_corruption", "scale_output": False}, V=4000))
    assert forced.targets["t5"].output_scale is None
    # T5's N(0, 1) table under a tied, scaled head; the zoo's N(0, 0.02) otherwise
    stds = [float(m.streams["text"].embedding.word.weight.detach().std()) for m in (tied, untied, forced)]
    assert abs(stds[0] - 1.0) < 0.02 and all(abs(s - 0.02) < 0.001 for s in stds[1:])


def test_a_tokenizer_without_sentinels_is_refused():
    model = build_model(t5_spec())
    bare = SimpleNamespace(**{**vars(TOK), "sentinel_ids": []})
    with pytest.raises(ModalzooError, match="data.tokenizer.extra_ids"):
        model.batch_transforms(DataContext(tokenizer=bare))
    few = SimpleNamespace(**{**vars(TOK), "sentinel_ids": SENTINELS[:10]})
    with pytest.raises(ModalzooError, match="raise data.tokenizer.extra_ids to 32"):
        model.batch_transforms(DataContext(tokenizer=few, seq_len=128))


def test_decoder_only_needs_a_prefix_mask():
    spec = t5_spec(decoder_only=True)
    spec["model"]["streams"]["text"]["encoder"]["mask"] = "causal"
    with pytest.raises(ModalzooError, match="encoder.mask' = prefix"):
        build_model(spec)


def test_bad_noise_settings_are_named():
    with pytest.raises(ModalzooError, match="noise_density"):
        build_model(t5_spec({"name": "span_corruption", "noise_density": 1.5}))
