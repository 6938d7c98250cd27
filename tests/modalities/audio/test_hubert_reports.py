"""The HuBERT eval reports on a tiny spoken-words stand-in: tone "phones" making three "words", with alignments,
single-word clips classed and two-word clips not, held-out voices (pitch) in validation; the model is the
stand-in stream of test_units (the real waveform front-end comes with its own tests)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from test_units import TINY_KMEANS, StandInStream
from torch import nn

from modalzoo.datasets.shards import ShardWriter
from modalzoo.modalities.audio import hubert_reports as R
from modalzoo.modalities.audio.io import encode_audio
from modalzoo.modalities.audio.units import MfccFeatures, make_units
from modalzoo.registry import DATASETS

pytestmark = pytest.mark.usefixtures("one_thread")

PHONES = {"aa": 400.0, "ee": 800.0, "oo": 1300.0, "mm": 1900.0, "ss": 2800.0}
WORDS = [["aa", "ee"], ["oo", "mm", "aa"], ["ss", "ee"]]
RATE = 16000


def utterance(words: list[int], pitch: float, rng) -> tuple[np.ndarray, list]:
    """Silence, then each word's phones as tones (60-110 ms each), 40 ms pauses; the phone alignment in seconds."""
    parts, phones, t = [np.zeros(int(0.05 * RATE))], [], 0.05
    for w in words:
        for p in WORDS[w]:
            n = int(rng.uniform(0.06, 0.11) * RATE)
            s = np.arange(n) / RATE
            parts.append(0.3 * np.sin(2 * np.pi * PHONES[p] * pitch * s) + 0.1 * np.sin(4 * np.pi * PHONES[p] * s))
            phones.append([p, round(t, 4), round(t + n / RATE, 4)])
            t += n / RATE
        parts.append(np.zeros(int(0.04 * RATE)))
        t += 0.04
    wave = np.concatenate(parts)
    return wave + 0.003 * rng.standard_normal(len(wave)), phones


@pytest.fixture(scope="module")
def spoken_tones(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "spoken-tones"
    rng = np.random.default_rng(0)
    for split, voices in (("train", (0.9, 1.0)), ("validation", (1.1,))):
        with ShardWriter(out, split, max_count=20) as writer:
            for i in range(30 if split == "train" else 15):
                pitch = voices[i % len(voices)]
                words = [i % 3] if i % 5 else [i % 3, (i + 1) % 3]
                wave, phones = utterance(words, pitch, rng)
                sample = {"__key__": f"{split}-{i:04d}", "flac": encode_audio(wave, RATE),
                          "json": json.dumps({"text": " ".join(f"w{w}" for w in words), "phones": phones})}
                if len(words) == 1:
                    sample["cls"] = str(words[0])
                writer.write(sample)
    (out / "info.json").write_text(json.dumps({"name": "spoken-tones", "sample_rate": RATE}))
    (out / "classes.json").write_text(json.dumps({"classes": ["w0", "w1", "w2"], "templates": ["{}"]}))
    return out


class StandInModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.streams = nn.ModuleDict({"audio": StandInStream()})
        self.targets = {"hubert": SimpleNamespace(cfg=SimpleNamespace(stream="audio"))}


def stand_in_run(data_path: Path, units: Path | None, tmp_path: Path):
    cfg = {"name": "audio", "path": str(data_path), "num_workers": 0, **({"units": str(units)} if units else {})}
    data = DATASETS.build(cfg, "data")
    ctx = data.prepare(None)
    return SimpleNamespace(model=StandInModel().eval(), cfg=OmegaConf.create({"data": cfg, "seed": 0}), data=data,
                           data_ctx=ctx, device=torch.device("cpu"), run_dir=tmp_path, step=0)


def test_hubert_reports(spoken_tones, tmp_path, monkeypatch):
    units = make_units(spoken_tones, tmp_path / "units", MfccFeatures(RATE), 10, TINY_KMEANS, echo=lambda s: None)
    run = stand_in_run(spoken_tones, units, tmp_path)
    monkeypatch.setattr(R, "random_init_stream", lambda run, name, seed: StandInStream().eval())
    assert R.hubert_stream(run, "hubert") == "audio" and R.word_probe_applies(run, "hubert")
    clap_like = SimpleNamespace(cfg=SimpleNamespace(streams=["audio", "text"]))
    run.model.targets["clip"] = clap_like
    assert R.hubert_stream(run, "clip") is None and not R.word_probe_applies(run, "clip")

    cfg = R.HubertReportConfig(n_init=2, min_fit_clips=10)
    probe = R.word_probe_report(run, "hubert", 0, cfg)
    assert probe["word_probe"]["classes"] == 3 and probe["word_probe"]["layer"] == 1     # half of 2 blocks
    assert probe["word_probe"]["train_clips"] == 24 and probe["word_probe"]["test_clips"] == 12   # 1 in 5: two words
    summary = probe["summary"]
    assert set(summary) >= {"word_probe_top1", "word_probe_top1_random_init", "word_probe_top1_mfcc"}
    assert all(0 <= v <= 1 for v in summary.values())
    assert summary["word_probe_top1_mfcc"] > summary["word_probe_majority"]      # tone words are easy from MFCC

    quality = R.unit_quality_report(run, "hubert", 0, cfg)
    summary = quality["summary"]
    assert quality["units"]["clusters"] == 10 and quality["units"]["frames"] > 300
    assert summary["units_pnmi"] > 0.5                     # MFCC k-means separates tone phones and silence
    assert 0 < summary["feature_units_pnmi"] <= 1 and quality["feature_units"]["layer"] == 1
    assert quality["feature_units"]["clusters"] == 10
    assert any("PNMI" in line for line in quality["lines"])


def test_reports_skip_without_classes_or_phones(audio_clips, tmp_path):
    run = stand_in_run(audio_clips, None, tmp_path)
    quality = R.unit_quality_report(run, "hubert", 0, R.HubertReportConfig(n_init=1))
    assert "summary" not in quality and "no phone alignments" in quality["lines"][-1]
