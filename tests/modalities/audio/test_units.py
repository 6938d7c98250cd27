"""HuBERT's units: MFCC and layer features on the front-end's frame grid, one k-means for every split, label sets a
dataset reads (and refuses when made for other data or another rate), and a feature dump that resumes after an
interruption."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from torch import nn

from modalzoo.errors import ModalzooError
from modalzoo.modalities.audio import units as U
from modalzoo.modalities.audio.labels import LabelSet
from modalzoo.modalities.audio.units_cli import add_units_parser, run_units
from modalzoo.model import import_components
from modalzoo.registry import DATASETS, ENCODERS
from modalzoo.tokens import Tokens

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_KMEANS = U.KMeansConfig(percent=0.5, n_init=2, batch_size=1000)


class StandInFrontEnd(nn.Module):
    """HuBERT's conv layout (kernels/strides 10/5, 3/2 x4, 2/2 x2: 400-sample window, 320 hop), 8 channels: the
    stream interface (`embedding(batch) -> Tokens` with `pad_mask`) without the real waveform front-end."""

    def __init__(self, dim: int = 16):
        super().__init__()
        layers, convs, c_in = [(10, 5)] + [(3, 2)] * 4 + [(2, 2)] * 2, [], 1
        for k, s in layers:
            convs += [nn.Conv1d(c_in, 8, k, s, bias=False), nn.GELU()]
            c_in = 8
        self.convs, self.proj = nn.Sequential(*convs), nn.Linear(8, dim)

    def forward(self, batch):
        x = self.convs(batch["input_values"][:, None]).transpose(1, 2)
        frames = (batch["audio_lengths"] - 400) // 320 + 1
        return Tokens(self.proj(x), pad_mask=torch.arange(x.shape[1])[None] < frames[:, None])


class StandInStream(nn.Module):
    def __init__(self):
        super().__init__()
        import_components()
        torch.manual_seed(0)
        self.embedding = StandInFrontEnd()
        self.encoder = ENCODERS.build({"name": "transformer", "layers": 2, "dim": 16, "heads": 2, "ffn_dim": 32},
                                      "encoder")


def clips_of(data: Path, split: str) -> dict[str, np.ndarray]:
    out = {}
    for shard in sorted((data / split).glob("*.tar")):
        for sample in U.shard_samples(str(shard)):
            out[sample["__key__"]] = U.sample_wave(sample, 16000)
    return out


def audio_data(path, units, **kw):
    return DATASETS.build({"name": "audio", "path": str(path), "units": str(units), "num_workers": 0,
                           "max_seconds": None, **kw}, "data")


def test_mfcc_and_conv_frames_share_the_grid():
    stand_in = StandInFrontEnd()
    for L in [400, 401, 559, 560, 719, 720, 721, 1039, 1040, 4321, 16000, 16001, 23999]:
        mfcc = U.mfcc_features(np.random.default_rng(L).standard_normal(L).astype(np.float32) * 0.1, 16000)
        assert mfcc.shape == ((L - 400) // 160 + 1, 39) and mfcc.dtype == np.float32
        conv = (L - 400) // 320 + 1
        assert len(mfcc[::2]) == conv
        with torch.no_grad():
            assert stand_in({"input_values": torch.zeros(1, L), "audio_lengths": torch.tensor([L])}).x.shape[1] == conv
    assert U.frame_hop(stand_in) == 320


def test_mfcc_units_one_kmeans_for_every_split(audio_clips, tmp_path):
    out = U.make_units(audio_clips, tmp_path / "units", U.MfccFeatures(16000), 8, TINY_KMEANS, echo=lambda s: None)
    labels = LabelSet(out)
    meta = labels.meta
    assert (meta["sample_rate"], meta["label_rate"], meta["feature"], meta["layer"], meta["clusters"]) == \
        (16000, 100.0, "mfcc", None, 8)
    assert meta["source_run"] is None and meta["data"]["identity"] == U.data_identity(audio_clips)
    assert meta["kmeans"]["fit_split"] == "train" and meta["kmeans"]["fit_clips"] == 12
    assert meta["kmeans"]["n_init"] == 2 and meta["kmeans"]["tol"] == 0.0 and meta["kmeans"]["inertia_per_frame"] > 0
    centroids = load_file(str(out / "kmeans.safetensors"))["centroids"]
    assert centroids.shape == (8, 39)
    assign = U.Assigner(centroids)
    for split in ("train", "validation"):                # every split from the ONE saved model
        clips = clips_of(audio_clips, split)
        assert set(labels.index(split)) == set(clips) and len(clips) == 24
        for key, wave in clips.items():
            mfcc = U.mfcc_features(wave, 16000)
            expected = ((mfcc[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1)
            assert np.array_equal(labels.units(key), expected)
            assert np.array_equal(assign(mfcc), expected)
    assert len(np.unique(labels.units("validation-0003"))) >= 1

    data = audio_data(audio_clips, out)
    data.prepare(None)
    batch = next(iter(data.loader("val", 4, [], seed=0, train=False)))
    frames = (batch["audio_lengths"] - 400) // 160 + 1
    assert torch.equal(batch["unit_lengths"], frames)
    assert int((batch["units"] >= 0).sum()) == int(frames.sum())


def test_label_sets_of_other_data_or_rates_are_refused(audio_clips, tmp_path):
    out = U.make_units(audio_clips, tmp_path / "units", U.MfccFeatures(16000), 4, TINY_KMEANS, echo=lambda s: None)
    from conftest import write_audio_clips
    other = write_audio_clips(tmp_path / "other", per_split=6, seed=1)
    with pytest.raises(ModalzooError, match="was made for"):
        audio_data(other, out).prepare(None)
    with pytest.raises(ModalzooError, match="made from 16000 Hz audio"):
        audio_data(audio_clips, out, sample_rate=8000, resample=True).prepare(None)
    wrong = tmp_path / "wrong-rate"                      # MFCC labels (100/s) declared at 50/s
    import shutil
    shutil.copytree(out, wrong)
    meta = json.loads((wrong / "units.json").read_text())
    (wrong / "units.json").write_text(json.dumps({**meta, "label_rate": 50.0}))
    data = audio_data(audio_clips, wrong)
    data.prepare(None)
    with pytest.raises(ModalzooError, match="labels at 50/s"):
        next(iter(data.loader("val", 4, [], seed=0, train=False)))


class Interrupting:
    """An extractor that counts its clips and raises KeyboardInterrupt at clip ``stop`` (like Ctrl-C)."""

    def __init__(self, inner, stop: int | None = None):
        self.inner, self.stop, self.calls = inner, stop, 0
        self.sample_rate, self.label_rate, self.feature, self.layer = inner.sample_rate, inner.label_rate, \
            inner.feature, inner.layer

    def spec(self):
        return self.inner.spec()

    def __call__(self, wave):
        if self.stop is not None and self.calls == self.stop:
            raise KeyboardInterrupt
        self.calls += 1
        return self.inner(wave)


def test_an_interrupted_dump_resumes_where_it_stopped(audio_clips, tmp_path):
    first = Interrupting(U.MfccFeatures(16000), stop=13)            # shard 1 (12 clips) done, shard 2 begun
    with pytest.raises(KeyboardInterrupt):
        U.make_units(audio_clips, tmp_path / "units", first, 4, TINY_KMEANS, echo=lambda s: None)
    cache = next((tmp_path / "units.features").iterdir())
    assert sorted(p.name for p in (cache / "train").glob("*.done")) == ["shard-000000.done"]
    assert not (tmp_path / "units").exists()
    again = Interrupting(U.MfccFeatures(16000))
    resumed = U.make_units(audio_clips, tmp_path / "units", again, 4, TINY_KMEANS, echo=lambda s: None)
    assert again.calls == 48 - 12                                   # only the unfinished shards ran
    assert not list(cache.rglob("*.partial"))
    whole = U.make_units(audio_clips, tmp_path / "whole", U.MfccFeatures(16000), 4, TINY_KMEANS,
                         echo=lambda s: None)
    a, b = LabelSet(resumed), LabelSet(whole)
    for split in ("train", "validation"):
        assert a.index(split) == b.index(split)
        assert np.array_equal(np.load(resumed / f"{split}.units.npy"), np.load(whole / f"{split}.units.npy"))


def test_layer_features_at_the_front_end_rate(audio_clips, tmp_path):
    stream = StandInStream().eval()
    features = U.LayerFeatures(stream, 1, 16000)
    assert features.label_rate == 50.0
    wave = np.random.default_rng(0).standard_normal(20_000).astype(np.float32) * 0.1
    whole = features(wave)
    assert whole.shape == ((20_000 - 400) // 320 + 1, 16)
    with torch.no_grad():
        tokens = stream.embedding({"input_values": torch.from_numpy(wave)[None],
                                   "audio_lengths": torch.tensor([20_000])})
        assert np.allclose(whole, stream.encoder(tokens, output_layer=1).x[0].numpy(), atol=1e-6)
    chunked = U.LayerFeatures(stream, 1, 16000, max_chunk=6400, overlap=640)(wave)
    assert chunked.shape == whole.shape                   # chunks on the frame grid: no frame lost or doubled
    conv_only = StandInStream().eval()
    del conv_only.encoder                                             # the front-end alone: chunks change nothing
    conv_only.encoder = lambda tokens, output_layer=None: tokens
    whole_conv = U.LayerFeatures(conv_only, 1, 16000)(wave)
    assert np.allclose(U.LayerFeatures(conv_only, 1, 16000, max_chunk=6400, overlap=640)(wave), whole_conv, atol=1e-6)
    with pytest.raises(ModalzooError, match="layers 1..2"):
        U.LayerFeatures(stream, 3, 16000)

    out = U.make_units(audio_clips, tmp_path / "it2", features, 6, TINY_KMEANS, source_run="runs/standin",
                       echo=lambda s: None)
    meta = LabelSet(out).meta
    assert (meta["label_rate"], meta["feature"], meta["layer"], meta["source_run"]) == (50.0, "hubert", 1,
                                                                                      "runs/standin")
    data = audio_data(audio_clips, out)
    data.prepare(None)
    batch = next(iter(data.loader("train", 4, [], seed=0, train=False)))
    assert torch.equal(batch["unit_lengths"], (batch["audio_lengths"] - 400) // 320 + 1)


def cli(argv: list[str]):
    parser = argparse.ArgumentParser(prog="modalzoo")
    add_units_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_units_commands(audio_clips, tmp_path, monkeypatch, capsys):
    tiny = ["--clusters", "5", "--percent", "0.5", "--n-init", "1", "--batch-size", "500"]
    assert run_units(cli(["units", "mfcc", str(audio_clips), "--out", str(tmp_path / "u1"), *tiny])) == 0
    assert LabelSet(tmp_path / "u1").clusters == 5 and "label set" in capsys.readouterr().out
    with pytest.raises(ModalzooError, match="--percent"):
        run_units(cli(["units", "mfcc", str(audio_clips), "--out", str(tmp_path / "x"), "--clusters", "5",
                       "--percent", "2"]))
    with pytest.raises(ModalzooError, match="not a dataset folder"):
        run_units(cli(["units", "mfcc", str(tmp_path / "nothing"), "--out", str(tmp_path / "x"), "--clusters", "5"]))

    from omegaconf import OmegaConf
    cfg = OmegaConf.create({"data": {"sample_rate": 16000, "normalize": True}})
    monkeypatch.setattr(U, "run_stream", lambda run, stream, step: (StandInStream(), "audio", cfg,
                                                                    Path(run) / "checkpoints/step-1", 1))
    args = cli(["units", "features", str(audio_clips), "--from", str(tmp_path / "run"), "--layer", "2",
                "--out", str(tmp_path / "u2"), *tiny])
    assert run_units(args) == 0
    meta = LabelSet(tmp_path / "u2").meta
    assert (meta["layer"], meta["label_rate"], meta["source_step"], meta["source_stream"]) == (2, 50.0, 1, "audio")
    assert json.loads(next((tmp_path / "u2.features").glob("hubert-*/spec.json")).read_text())["normalize"] is True


def test_units_through_the_modalzoo_command(audio_clips, tmp_path, capsys):
    import modalzoo.cli
    code = modalzoo.cli.main(["units", "mfcc", str(audio_clips), "--out", str(tmp_path / "u"), "--clusters", "4",
                              "--percent", "0.5", "--n-init", "1"])
    assert code == 0 and LabelSet(tmp_path / "u").clusters == 4
    code = modalzoo.cli.main(["units", "features", str(audio_clips), "--from", str(tmp_path / "no-run"), "--layer",
                              "1", "--clusters", "4", "--out", str(tmp_path / "u2")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "not a run directory" in err
