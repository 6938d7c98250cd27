"""The `hubert` target: span masking against torchaudio's `_compute_mask_indices` (counts, fraction, padding),
exact resume from the per-batch generator, labels mapped from the label rate to frames, the loss formula,
and the errors a recipe without (or with mismatched) units gets."""

from __future__ import annotations

import pickle

import pytest
import torch
import torch.nn.functional as F
from torchaudio.models.wav2vec2.components import _compute_mask_indices

import modalzoo.modalities.audio.hubert as hubert
import modalzoo.modalities.audio.waveform  # noqa: F401  (registers waveform_conv)
from modalzoo.datasets.fields import DataContext
from modalzoo.errors import ModalzooError
from modalzoo.model import build_model
from modalzoo.pretrain_tasks.base import IGNORE

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_spec(**target) -> dict:
    return {"streams": {"audio": {
        "embedding": {"name": "waveform_conv", "dim": 32, "conv_dim": [16] * 7, "pos_conv_kernel": 16,
                      "pos_conv_groups": 4},
        "encoder": {"name": "transformer", "layers": 1, "dim": 32, "heads": 4, "ffn_dim": 64, "prenorm": False,
                    "final_norm": False}}},
        "targets": {"hubert": {"name": "hubert", "stream": "audio", "num_classes": 12, "final_dim": 8, **target}}}


def batch_of(lengths, label_rate=50, classes=12, seed=0, short_by=0) -> dict:
    g = torch.Generator().manual_seed(seed)
    waves = torch.zeros(len(lengths), max(lengths))
    counts = [round(n * label_rate / 16000) - short_by for n in lengths]
    units = torch.full((len(lengths), max(counts)), IGNORE)
    for i, (n, c) in enumerate(zip(lengths, counts)):
        waves[i, :n] = torch.randn(n, generator=g) * 0.1
        units[i, :c] = torch.randint(classes, (c,), generator=g)
    return {"input_values": waves, "audio_lengths": torch.tensor(lengths), "units": units,
            "unit_lengths": torch.tensor(counts)}


def test_mask_statistics_match_torchaudio():
    """Same algorithm: every row masks the same number of frames, none in the padding, and the masked fraction
    (~0.5 at p 0.8 with overlapping spans of 10) matches torchaudio's to within sampling noise."""
    sizes, frames = [200, 180, 150, 199], 200
    padding = torch.arange(frames)[None] >= torch.tensor(sizes)[:, None]
    ours, theirs = [], []
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        mine = hubert.span_mask(sizes, frames, 0.8, 10, 2, g)
        ref = _compute_mask_indices((4, frames), padding, 0.8, 10, "static", 0.0, min_masks=2)
        for m in (mine, ref):
            counts = m.sum(1)
            assert (counts == counts[0]).all() and not (m & padding).any()
        ours.append(mine.sum() / (~padding).sum())
        theirs.append(ref.sum() / (~padding).sum())
    ours, theirs = torch.stack(ours), torch.stack(theirs)
    assert abs(ours.mean() - theirs.mean()) < 0.01 and 0.4 < ours.mean() < 0.6
    assert abs(ours.std() - theirs.std()) < 0.01


def test_short_rows_and_min_masks():
    g = torch.Generator().manual_seed(0)
    mask = hubert.span_mask([3, 0, 25], 30, 0.8, 10, 2, g)
    assert mask[1].sum() == 0 and mask[0].sum() == mask[2].sum() and not mask[0, 3:].any()
    assert hubert.span_mask([0, 0], 5, 0.8, 10, 2, g).sum() == 0


def test_label_rate_mapping():
    real = torch.ones(2, 6, dtype=torch.bool)
    real[1, 4:] = False
    units = torch.arange(24).view(2, 12)
    # iteration 1: 100 Hz MFCC labels on 50 Hz frames -> every 2nd label (Kaldi frame 2i is centred on frame i)
    got = hubert.frame_units(units, torch.tensor([12, 12]), real, 2.0)
    assert got[0].tolist() == [0, 2, 4, 6, 8, 10] and got[1].tolist() == [12, 14, 16, 18, IGNORE, IGNORE]
    # iteration 2: 50 Hz labels, one per frame; labels shorter than the audio: trimmed to the shorter
    got = hubert.frame_units(units, torch.tensor([5, 12]), real, 1.0)
    assert got[0].tolist() == [0, 1, 2, 3, 4, IGNORE] and got[1].tolist() == [12, 13, 14, 15, IGNORE, IGNORE]


def test_batch_transform_is_picklable_deterministic_and_masks_labelled_frames_only():
    model = build_model(tiny_spec())
    transform = model.batch_transforms(DataContext(label_rate=100.0, sample_rate=16000))[0]
    transform = pickle.loads(pickle.dumps(transform))
    batch = batch_of([16000, 11000], label_rate=100, short_by=6)       # 3 frames of each row have no label
    a = transform(dict(batch), torch.Generator().manual_seed(5))
    b = transform(dict(batch), torch.Generator().manual_seed(5))
    assert torch.equal(a["mask_frames"], b["mask_frames"]) and torch.equal(a["frame_units"], b["frame_units"])
    assert a["frame_units"].shape == a["mask_frames"].shape == (2, 49)
    # 94 and 63 labels at 100 Hz cover frames i with 2i < 94 (47 of 49) and 2i < 63 (32 of 34 real frames)
    assert (a["frame_units"] != IGNORE).sum(1).tolist() == [47, 32]
    assert not (a["mask_frames"] & (a["frame_units"] == IGNORE)).any()
    assert a["mask_frames"].sum(1).tolist()[0] == a["mask_frames"].sum(1).tolist()[1] > 0


def test_loss_is_fairseqs_formula():
    torch.manual_seed(0)
    model = build_model(tiny_spec(unmasked_weight=0.5)).eval()
    batch = model.batch_transforms(DataContext(label_rate=50.0, sample_rate=16000))[0](
        batch_of([16000, 12800]), torch.Generator().manual_seed(0))
    out = model(batch)
    stream = model.streams.audio(batch)
    target = model.targets.hubert
    units, masked = batch["frame_units"], batch["mask_frames"]
    unmasked = (units != IGNORE) & ~masked
    ce_m = F.cross_entropy(target.logits(stream.hidden.x[masked]), units[masked], reduction="sum")
    ce_u = F.cross_entropy(target.logits(stream.hidden.x[unmasked]), units[unmasked], reduction="sum")
    pen = stream.hidden.extras["features_pen"]
    want = (ce_m + 0.5 * ce_u) / (masked.sum() + unmasked.sum()) + 10 * pen
    assert out.loss.item() == pytest.approx(want.item(), rel=1e-5)
    m = out.metrics
    assert m["hubert/loss_m"].item() == pytest.approx((ce_m / masked.sum()).item(), rel=1e-5)
    assert {"hubert/features_pen", "hubert/loss_u", "hubert/accuracy", "hubert/accuracy_u"} <= set(m)
    assert out.counts["hubert"] == int(masked.sum())
    logits = target.logits(stream.hidden.x[:1, :3].reshape(3, -1))
    assert logits.shape == (3, 12) and logits.abs().max() <= 10 + 1e-4               # cosine / 0.1


def test_training_steps_skip_the_unmasked_head_unless_weighted():
    model = build_model(tiny_spec()).train()
    batch = model.batch_transforms(DataContext(label_rate=50.0, sample_rate=16000))[0](
        batch_of([8000, 8000]), torch.Generator().manual_seed(0))
    out = model(batch)
    assert "hubert/loss_u" not in out.metrics and "hubert/loss_m" in out.metrics
    out.loss.backward()
    assert model.targets.hubert.label_embeddings.grad is not None
    assert model.streams.audio.embedding.mask_emb.grad.abs().sum() > 0
    model.eval()
    assert "hubert/loss_u" in model(batch).metrics


def test_units_are_required_and_must_match_the_clusters():
    model = build_model(tiny_spec())
    with pytest.raises(ModalzooError, match="data.units=UNITS"):
        model.batch_transforms(DataContext(sample_rate=16000))

    class Labels:
        clusters, path = 50, "units/iter1"

    with pytest.raises(ModalzooError, match="num_classes=50"):
        model.batch_transforms(DataContext(label_rate=100.0, sample_rate=16000, labels=Labels()))
    transform = model.batch_transforms(DataContext(label_rate=100.0, sample_rate=16000))[0]
    with pytest.raises(ModalzooError, match="data.units"):
        transform({"input_values": torch.zeros(1, 800), "audio_lengths": torch.tensor([800])})
    with pytest.raises(ModalzooError, match="batch transform"):
        model(batch_of([800]))
    with pytest.raises(ModalzooError, match="waveform"):
        build_model({"streams": {"audio": {"embedding": {"name": "token", "vocab_size": 10, "dim": 32},
                                           "encoder": tiny_spec()["streams"]["audio"]["encoder"]}},
                     "targets": {"hubert": {"name": "hubert", "stream": "audio"}}})
