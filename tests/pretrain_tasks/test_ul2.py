"""UL2's mixture of denoisers: per-row draws at the configured rates with their mode tokens, each denoiser's
rows giving back the document, both layouts (encoder-decoder, decoder-only under a prefix mask), and the
checks on packing, mode tokens and sentinels."""

from __future__ import annotations

import pickle
from collections import Counter
from types import SimpleNamespace

import pytest
import torch
from test_span_corruption import BOS, EOS, PAD, SENTINELS, packed_batch, padded_batch, reconstruct, t5_spec

from modalzoo import build_model
from modalzoo.datasets.fields import DataContext
from modalzoo.errors import ModalzooError
from modalzoo.pretrain_tasks.base import IGNORE
from modalzoo.pretrain_tasks.span_corruption import row_documents

MODES = {"[NLU]": 896, "[NLG]": 897, "[S2S]": 898}
TOK = SimpleNamespace(sentinel_ids=SENTINELS, pad_id=PAD, bos_id=BOS, eos_id=EOS, vocab_size=1000,
                      extra_special_ids=MODES, special_ids=[0, 1, 2, 3, 4, *MODES.values(), *SENTINELS])


def ul2_spec(decoder_only=False, **target):
    return t5_spec({"name": "ul2", "stream": "text", **({"source": "encoder"} if decoder_only else {}), **target},
                   decoder_only=decoder_only)


def transform(decoder_only=False, **target):
    (fn,) = build_model(ul2_spec(decoder_only, **target)).batch_transforms(DataContext(tokenizer=TOK))
    return fn


def rows(out, decoder_only):
    """(mode, input without the mode token, targets) of every row."""
    result = []
    for r in range(out["input_ids"].shape[0]):
        n = int(out["attention_mask"][r].sum())
        ids = out["input_ids"][r, :n].tolist()
        if decoder_only:
            p = int(out["prefix_len"][r])
            inputs, targets = ids[:p], ids[p:]
        else:
            inputs = ids
            m = int(out["decoder_attention_mask"][r].sum())
            targets = out["decoder_labels"][r, :m].tolist()
        result.append((inputs[0], inputs[1:], targets))
    return result


@pytest.mark.parametrize("decoder_only", [False, True])
def test_each_denoiser_gives_back_the_document(decoder_only):
    batch = padded_batch(B=300, L=64, seed=1)
    out = transform(decoder_only)(batch, torch.Generator().manual_seed(0))
    docs = [d[0] for d in row_documents(batch)]
    dropped = {"[NLU]": [0, 0], "[NLG]": [0, 0]}
    seen = Counter()
    for doc, (mode, inputs, targets) in zip(docs, rows(out, decoder_only)):
        kind = {v: k for k, v in MODES.items()}[mode]
        seen[kind] += 1
        assert targets[-1] == EOS
        if kind == "[S2S]":                                  # prefix LM: input + targets = the document
            assert not set(inputs + targets) & set(SENTINELS)
            assert inputs + targets == doc and len(targets) >= 2 and inputs[0] == BOS
        else:
            assert targets[0] == SENTINELS[0] and reconstruct(inputs, targets[:-1]) == doc
            spans = sum(t in SENTINELS for t in targets)
            dropped[kind][0] += len(targets) - 1 - spans
            dropped[kind][1] += len(doc) - 2
    assert set(seen) == set(MODES)
    assert abs(dropped["[NLU]"][0] / dropped["[NLU]"][1] - 0.15) < 0.02
    assert dropped["[NLG]"][0] / dropped["[NLG]"][1] > 0.25              # half of X drops 50%


def test_rows_draw_the_denoisers_at_their_rates():
    batch = padded_batch(B=2000, L=8, seed=2)
    out = transform()(batch, torch.Generator().manual_seed(0))
    share = Counter(out["input_ids"][:, 0].tolist())
    assert abs(share[MODES["[NLU]"]] / 2000 - 0.5) < 0.04
    assert abs(share[MODES["[NLG]"]] / 2000 - 0.25) < 0.04                # the two X denoisers
    assert abs(share[MODES["[S2S]"]] / 2000 - 0.25) < 0.04
    only_s = transform(denoisers={"S": {"kind": "prefix", "mode": "[S2S]"}, "R": {"rate": 0.0, "mode": "[NLU]"}})
    assert (only_s(batch, torch.Generator().manual_seed(0))["input_ids"][:, 0] == MODES["[S2S]"]).all()


def test_same_generator_same_rows():
    batch = padded_batch(B=16)
    fn = transform()
    a = fn(batch, torch.Generator().manual_seed(5))
    b = pickle.loads(pickle.dumps(fn))(batch, torch.Generator().manual_seed(5))
    c = fn(batch, torch.Generator().manual_seed(6))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["input_ids"], c["input_ids"])


def test_decoder_only_loss_is_on_the_targets_and_the_input_is_bidirectional():
    torch.manual_seed(0)
    model = build_model(ul2_spec(decoder_only=True)).eval()
    (fn,) = model.batch_transforms(DataContext(tokenizer=TOK))
    out = fn(padded_batch(B=4, L=24), torch.Generator().manual_seed(1))
    for r in range(4):
        p, n = int(out["prefix_len"][r]), int(out["attention_mask"][r].sum())
        assert (out["lm_labels"][r, :p - 1] == IGNORE).all() and (out["lm_labels"][r, p - 1:n - 1] != IGNORE).all()
        assert out["lm_labels"][r, p - 1:n - 1].tolist() == out["input_ids"][r, p:n].tolist()
    stream = model.streams["text"]
    hidden = stream(out).hidden.x
    p = int(out["prefix_len"][0])
    later_input, target = dict(out), dict(out)
    later_input["input_ids"] = out["input_ids"].clone()
    later_input["input_ids"][0, p - 2] = 7                    # a late input token: early inputs see it
    target["input_ids"] = out["input_ids"].clone()
    target["input_ids"][0, p] = 7                             # a target token: no input position sees it
    assert not torch.allclose(stream(later_input).hidden.x[0, 0], hidden[0, 0])
    assert torch.allclose(stream(target).hidden.x[0, :p], hidden[0, :p], atol=1e-6)
    model.train()
    loss = model(out).loss
    loss.backward()
    assert torch.isfinite(loss)


def test_encoder_decoder_trains():
    torch.manual_seed(0)
    model = build_model(ul2_spec())
    (fn,) = model.batch_transforms(DataContext(tokenizer=TOK))
    batch = fn(padded_batch(), torch.Generator().manual_seed(0))
    out = model(batch)
    out.loss.backward()
    assert torch.isfinite(out.loss) and out.counts["t5"] == int((batch["decoder_labels"] != IGNORE).sum())


def test_packed_rows_and_packing_data_are_refused():
    with pytest.raises(ModalzooError, match="data.packing=false"):
        transform()(packed_batch(), None)
    model = build_model(ul2_spec())
    packing = DataContext(fields={"text": SimpleNamespace(packing=True)}, states={"text": SimpleNamespace(
        tokenizer=TOK, seq_len=64)})
    with pytest.raises(ModalzooError, match="data.packing=false"):
        model.batch_transforms(packing)


def test_missing_mode_tokens_and_sentinels_are_named():
    model = build_model(ul2_spec())
    no_modes = SimpleNamespace(**{**vars(TOK), "extra_special_ids": {"[NLU]": 896}})
    with pytest.raises(ModalzooError, match=r"extra_specials to \['\[NLG\]', '\[NLU\]', '\[S2S\]'\]"):
        model.batch_transforms(DataContext(tokenizer=no_modes))
    no_sentinels = SimpleNamespace(**{**vars(TOK), "sentinel_ids": []})
    with pytest.raises(ModalzooError, match="data.tokenizer.extra_ids"):
        model.batch_transforms(DataContext(tokenizer=no_sentinels))
    only_s = build_model(ul2_spec(denoisers={"S": {"kind": "prefix", "mode": ""}}))
    assert only_s.batch_transforms(DataContext(tokenizer=no_sentinels))          # S needs no sentinels


@pytest.mark.parametrize("denoisers, message", [
    ({}, "at least one denoiser"),
    ({"R": {"rate": 0.0}}, "rates sum to 0"),
    ({"R": {"rat": 1.0}}, "did you mean 'denoisers.R.rate'"),
    ({"R": {"kind": "spans"}}, "expected one of"),
    ({"X": {"density": 0.0}}, "denoisers.X.noise_density"),
])
def test_bad_denoisers_are_named(denoisers, message):
    with pytest.raises(ModalzooError, match=message):
        build_model(ul2_spec(denoisers=denoisers))
