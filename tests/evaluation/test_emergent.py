"""Emergent retrieval ("does it bind"): the scores on hand-made features whose answer is known, the chance
levels against brute-force enumeration, the streamed nearest neighbours against a full ranking, the image
and audio previews on real fixture data, and the whole report on a tiny two-source mixture model."""

from __future__ import annotations

import itertools
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import modalzoo.datasets.mixture  # noqa: F401  (registers `mixture`, until components imports it)
from conftest import write_audio_clips
from modalzoo.evaluation.emergent import REPORTS, Nearest, binding, chance_levels, emergent_applies, emergent_scores
from modalzoo.model import build_model, import_components
from modalzoo.registry import DATASETS

pytestmark = pytest.mark.usefixtures("one_thread")
import_components()          # the datasets and embeddings the tests build by name


def clustered(names: list[str], directions: dict[str, torch.Tensor], noise: float, g) -> torch.Tensor:
    x = torch.stack([directions[n] for n in names])
    return F.normalize(x + noise * torch.randn(x.shape, generator=g), dim=-1)


def test_chance_levels_equal_brute_force_enumeration():
    gallery = ["a"] * 3 + ["b"] * 2 + ["c"] + ["d"] * 2           # N = 8; "d" is no query's class
    queries = ["a"] * 5 + ["b"] + ["c"] * 2 + ["e"] * 2            # "e" has no gallery item
    top1, recall5 = chance_levels(queries, gallery, k=5)
    # every gallery item equally likely to be nearest; every 5-subset equally likely to be the 5 nearest
    exact1 = np.mean([np.mean([g == q for g in gallery]) for q in queries])
    subsets = list(itertools.combinations(range(len(gallery)), 5))
    exact5 = np.mean([np.mean([any(gallery[i] == q for i in s) for s in subsets]) for q in queries])
    assert top1 == pytest.approx(exact1, abs=1e-12) and recall5 == pytest.approx(exact5, abs=1e-12)
    assert 0 < top1 < recall5 < 1
    assert chance_levels(["a"], ["a", "b"], k=5) == (0.5, 1.0)      # k past the gallery: all of it


def test_aligned_features_retrieve_their_class_and_swapped_ones_never_do():
    g = torch.Generator().manual_seed(0)
    directions = dict(zip("abcd", torch.eye(16)[:4]))
    q_names = list("aaabbccddd") * 3
    g_names = list("aabbbbccdd") * 4
    q, gal = clustered(q_names, directions, 0.1, g), clustered(g_names, directions, 0.1, g)
    scores = emergent_scores(q, q_names, gal, g_names)
    assert scores["top1"] == 1.0 and scores["recall@5"] == 1.0
    assert scores["chance"] == pytest.approx(chance_levels(q_names, g_names)[0])
    assert 0.2 < scores["chance"] < 0.3 and scores["chance"] < scores["recall@5_chance"] < 1
    swapped = {"a": "b", "b": "c", "c": "d", "d": "a"}                  # each query lands on another class
    wrong = emergent_scores(clustered([swapped[n] for n in q_names], directions, 0.1, g), q_names, gal, g_names)
    assert wrong["top1"] == 0.0 and wrong["recall@5"] == 0.0


def test_random_features_score_near_chance():
    g = torch.Generator().manual_seed(1)
    q_names = ["a"] * 250 + ["b"] * 150 + ["c"] * 100
    g_names = ["a"] * 30 + ["b"] * 20 + ["c"] * 10
    runs = [emergent_scores(F.normalize(torch.randn(len(q_names), 8, generator=g), dim=-1), q_names,
                            F.normalize(torch.randn(len(g_names), 8, generator=g), dim=-1), g_names)
            for _ in range(20)]
    chance, chance5 = chance_levels(q_names, g_names)
    assert chance == pytest.approx(0.5 * 0.5 + 0.3 / 3 + 0.2 / 6)
    assert np.mean([r["top1"] for r in runs]) == pytest.approx(chance, abs=0.02)
    assert np.mean([r["recall@5"] for r in runs]) == pytest.approx(chance5, abs=0.02)


def test_streamed_nearest_neighbours_equal_a_full_ranking():
    g = torch.Generator().manual_seed(2)
    queries = F.normalize(torch.randn(4, 8, generator=g), dim=-1)
    gallery = F.normalize(torch.randn(37, 8, generator=g), dim=-1)
    nearest = Nearest(queries, 5)
    kept: set[int] = set()
    for start in range(0, 37, 10):
        kept = nearest.add(start, gallery[start:start + 10])
    full = (queries @ gallery.T).topk(5, dim=1).indices
    assert torch.equal(nearest.index, full)
    assert kept == set(full.flatten().tolist())


# ----------------------------------------------------------------------------------------- previews

def test_image_preview_undoes_the_normalisation(digits):
    data = DATASETS.build({"name": "image_text", "path": str(digits), "captions": False, "num_workers": 0}, "data")
    ctx = data.prepare(None)
    field, state = data.fields["image"], ctx.states["image"]
    raw = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    finished = field.finisher(state, train=False)({"pixel_values": raw.clone()}, torch.Generator())
    assert finished["pixel_values"].dtype == torch.float32
    back = field.preview(finished, 1, state)
    assert back.dtype == np.uint8 and back.shape == (32, 32, 3)
    assert np.abs(back.astype(int) - raw[1].permute(1, 2, 0).numpy().astype(int)).max() <= 1
    batch = next(iter(data.loader("val", 4, [], seed=0, train=False)))
    picture = field.preview(batch, 2, state)                     # a real digit: white ink on black
    assert picture.shape == (32, 32, 3) and picture.dtype == np.uint8
    assert picture.min() < 30 and picture.max() > 200


def test_audio_preview_is_the_log_mel_of_the_real_samples(audio_clips):
    data = DATASETS.build({"name": "audio", "path": str(audio_clips), "num_workers": 0, "max_seconds": None}, "data")
    ctx = data.prepare(None)
    field, state = data.fields["audio"], ctx.states["audio"]
    batch = next(iter(data.loader("val", 12, [], seed=0, train=False)))
    brightest = {}
    for row in range(6):
        picture = field.preview(batch, row, state)
        n = int(batch["audio_lengths"][row])
        assert picture.dtype == np.uint8 and picture.shape == (64, n // 160 + 1, 3)     # 10 ms frames, no padding
        assert picture.std() > 10
        brightest.setdefault(int(batch["class_id"][row]), []).append(picture.astype(int).sum(-1).mean(1).argmax())
    # class k is a tone of 300 (k + 1) Hz: a higher tone lies higher up the picture (a smaller row index)
    assert max(brightest[2]) < min(brightest[1]) <= max(brightest[1]) < min(brightest[0])


# ----------------------------------------------------------------------------------------- the report

TOKENIZER = {"name": "bytelevel_bpe", "vocab_size": 300}


def bind_run(digits, clips, tmp_path):
    """A randomly initialised image + audio + text model with an image-text and an audio-text target (the
    second sharing the first's text projection) over a digits + tone-clips mixture, as `LoadedRun` has it."""
    data = DATASETS.build({"name": "mixture", "sources": {
        "digits": {"targets": ["image_text"], "data": {"name": "image_text", "path": str(digits), "seq_len": 16,
                                                       "num_workers": 0, "tokenizer": TOKENIZER}},
        "words": {"targets": ["audio_text"], "data": {"name": "audio", "path": str(clips), "captions": True,
                                                      "seq_len": 16, "max_seconds": 1.0, "num_workers": 0,
                                                      "tokenizer": TOKENIZER}}}}, "data")
    ctx = data.prepare(None)
    enc = {"name": "transformer", "layers": 1, "dim": 32, "heads": 4, "ffn_dim": 64}
    spec = {"streams": {
        "image": {"embedding": {"name": "patch", "image_size": 32, "patch_size": 8, "dim": 32}, "encoder": enc},
        "audio": {"embedding": {"name": "fbank_patch", "num_mel_bins": 16, "max_frames": 100, "patch_size": 8,
                                "time_stride": 8, "dim": 32, "prefix_tokens": 2, "mean": -6.0, "std": 3.0},
                  "encoder": enc},
        "text": {"embedding": {"name": "token", "vocab_size": 300, "dim": 32, "max_positions": 16},
                 "encoder": {**enc, "mask": "causal"}}},
        "targets": {"image_text": {"name": "contrastive", "streams": ["image", "text"], "pooling": ["mean", "last"],
                                   "embed_dim": 16},
                    "audio_text": {"name": "contrastive", "streams": ["audio", "text"], "pooling": ["mean", "last"],
                                   "embed_dim": 16, "shares": "image_text"}}}
    torch.manual_seed(0)
    return SimpleNamespace(model=build_model({"model": spec}).eval(), data=data, data_ctx=ctx, step=0,
                           cfg=SimpleNamespace(seed=0), device=torch.device("cpu"),
                           artifact=lambda name: tmp_path / name)


def test_the_report_on_a_tiny_mixture_run(digits, tmp_path):
    clips = write_audio_clips(tmp_path / "clips")
    (clips / "classes.json").write_text(json.dumps({"classes": ["zero", "one", "two"], "templates": ["{}"]}))
    run = bind_run(digits, clips, tmp_path)
    assert emergent_applies(run, "audio_text") and not emergent_applies(run, "image_text")
    b = binding(run, "audio_text")
    assert (b.query, b.gallery, b.anchor, b.other, b.classes) == ("audio", "image", "text", "image_text",
                                                                   ["zero", "one", "two"])
    (report,) = [r for r in REPORTS if r.applies(run, "audio_text")]
    out = report.run(run, "audio_text", 50)
    s = out["summary"]
    print("\n".join(out["lines"]))
    digit_ids = torch.cat([b["class_id"] for b in run.data.sources["digits"].data.loader("val", 128, [], 0, False)])
    images = int((digit_ids < 3).sum())
    assert s["emergent_queries"] == 24 and s["emergent_gallery"] == images     # every clip; digits 0-2 only
    assert s["emergent_classes"] == ["zero", "one", "two"]
    assert s["emergent_chance"] == pytest.approx(1 / 3)     # 8 clips of each class: sum_c 1/3 n_c / N
    for way in ("audio_to_image", "image_to_audio"):
        assert 0.0 <= s[f"emergent_{way}_top1"] <= s[f"emergent_{way}_recall@5"] <= 1.0
        assert s["emergent_chance"] < s[f"emergent_{way}_recall@5_chance"] < 1.0
    assert s["emergent_grid_png"].endswith("emergent_audio_to_image.png")
    assert (tmp_path / "emergent_audio_to_image.png").stat().st_size > 5000
    assert any("audio -> image" in line for line in out["lines"])

    # no binding without a mixture, or when the two sources have fewer than two class names in common
    alone = SimpleNamespace(model=run.model, data=run.data.sources["words"].data)
    assert not emergent_applies(alone, "audio_text")
    run.data.sources["words"].data.ctx.states["class"].classes = ["zero", "low tone", "high tone"]
    assert not emergent_applies(run, "audio_text")
