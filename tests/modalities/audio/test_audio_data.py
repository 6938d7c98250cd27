"""Audio in shards: soundfile I/O, the audio dataset's checks (rate, corrupt, truncated, too short: skipped and
counted; a dataset of another rate refused), token-budget batching, crops that keep units aligned, label sets
refused when they belong to other data, and `pack-audio`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import run_cli, write_audio_clips
from modalzoo.datasets.shards import ShardWriter
from modalzoo.errors import ModalzooError
from modalzoo.modalities.audio.io import encode_audio, read_audio
from modalzoo.modalities.audio.labels import LabelSet, LabelSetWriter, data_identity
from modalzoo.modalities.audio.pack import pack_audio
from modalzoo.registry import DATASETS

RATE = 16000


def audio_data(path, **options):
    return DATASETS.build({"name": "audio", "path": str(path), "num_workers": 0, **options})


def all_batches(data, split="val", batch_size=64, train=False):
    data.prepare(None)
    return list(data.loader(split, batch_size, [], seed=0, train=train))


@pytest.mark.parametrize("fmt", ["flac", "wav", "ogg"])
def test_round_trip_and_mono_down_mix(fmt, tmp_path):
    t = np.arange(RATE) / RATE
    wave = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    back, rate = read_audio(encode_audio(wave, RATE, fmt))
    assert rate == RATE and back.shape == wave.shape
    assert np.abs(back - wave).max() < (2e-2 if fmt == "ogg" else 1 / 2**15 + 1e-6)   # Vorbis is lossy
    stereo = np.stack([wave, -0.5 * wave], axis=1)
    sf.write(tmp_path / "s.wav", stereo, RATE, subtype="PCM_16")
    mono, _ = read_audio(tmp_path / "s.wav")
    np.testing.assert_allclose(mono, 0.25 * wave, atol=1e-4)


def test_not_audio_truncated_and_empty_raise():
    wave = np.random.default_rng(0).uniform(-0.5, 0.5, RATE * 2).astype(np.float32)
    flac = encode_audio(wave, RATE)
    for raw in (b"RIFF not really audio", flac[: len(flac) // 2], encode_audio(np.zeros(0, np.float32), RATE)):
        with pytest.raises(ValueError):
            read_audio(raw)


def test_bad_clips_are_skipped_and_counted(tmp_path):
    rng = np.random.default_rng(0)
    good = [encode_audio(rng.uniform(-0.3, 0.3, RATE // 2).astype(np.float32), RATE) for _ in range(3)]
    bad = [b"not audio at all", good[0][: len(good[0]) // 2],                      # not audio, truncated FLAC
           encode_audio(rng.uniform(-0.3, 0.3, RATE // 2).astype(np.float32), 8000),   # another rate
           encode_audio(rng.uniform(-0.3, 0.3, 200).astype(np.float32), RATE)]     # shorter than one frame
    with ShardWriter(tmp_path, "validation") as w:
        for i, raw in enumerate(good + bad):
            w.write({"__key__": f"c{i}", "flac": raw, "cls": "0"})
    (tmp_path / "info.json").write_text(json.dumps({"sample_rate": RATE}))
    batches = all_batches(audio_data(tmp_path))
    assert sum(len(b["audio_lengths"]) for b in batches) == 3
    assert sum(int(b["_skipped"]) for b in batches) == 4
    resampling = all_batches(audio_data(tmp_path, resample=True))     # the 8 kHz clip converted instead
    assert sum(len(b["audio_lengths"]) for b in resampling) == 4
    assert sorted(torch.cat([b["audio_lengths"] for b in resampling]).tolist()) == [RATE // 2] * 3 + [RATE]


def test_a_dataset_of_another_rate_is_refused(tmp_path):
    write_audio_clips(tmp_path, per_split=3, rate=8000)
    with pytest.raises(ModalzooError, match="holds 8000 Hz audio .* expects 16000 Hz: set data.sample_rate=8000"):
        audio_data(tmp_path).prepare(None)
    assert all_batches(audio_data(tmp_path, sample_rate=8000))


def test_token_budget_batches_cover_every_clip_once_under_the_budget(audio_clips):
    fixed = all_batches(audio_data(audio_clips, max_seconds=None), batch_size=4)
    budget = all_batches(audio_data(audio_clips, max_seconds=None, batch_seconds=3.0, bucket_buffer=24),
                         batch_size=64)
    lengths = sorted(torch.cat([b["audio_lengths"] for b in fixed]).tolist())
    assert sorted(torch.cat([b["audio_lengths"] for b in budget]).tolist()) == lengths
    for b in budget:
        padded = b["input_values"].shape[0] * b["input_values"].shape[1]
        assert padded <= 3.0 * RATE or len(b["audio_lengths"]) == 1

    def real_fraction(batches):
        return sum(int(b["audio_lengths"].sum()) for b in batches) / sum(b["input_values"].numel() for b in batches)
    assert real_fraction(budget) > real_fraction(fixed) and real_fraction(budget) > 0.9


def ramp_clips(out, lengths):
    """Clips whose sample i holds i / 2**15 (exact in 16 bits): a crop's first sample tells its offset."""
    with ShardWriter(out, "train") as w:
        for i, n in enumerate(lengths):
            wave = (np.arange(n) % 2**15) / 2**15
            w.write({"__key__": f"r{i}", "wav": encode_audio(wave.astype(np.float32), RATE, "wav")})
    (out / "info.json").write_text(json.dumps({"sample_rate": RATE}))


def ramp_units(out, data_path, lengths, label_rate=50):
    hop = RATE // label_rate
    writer = LabelSetWriter(out, {"sample_rate": RATE, "label_rate": label_rate, "feature": "test", "clusters": 5000,
                                  "data": {"path": str(data_path), "identity": data_identity(data_path)}})
    for i, n in enumerate(lengths):
        writer.add("train", f"r{i}", np.arange(n // hop))            # unit j = label index j
    return writer.close()


@pytest.mark.parametrize("label_rate", [50, 100])
def test_crops_keep_audio_and_units_aligned(tmp_path, label_rate):
    lengths = [RATE * 2 + 77, RATE * 2, RATE // 2, RATE * 3 - 1000]     # crop starts stay under 2**15
    ramp_clips(tmp_path / "d", lengths)
    units = ramp_units(tmp_path / "u", tmp_path / "d", lengths, label_rate)
    data = audio_data(tmp_path / "d", units=str(units), max_seconds=1.0, shuffle_buffer=1)
    hop = RATE // label_rate
    seen_offsets = set()
    data.prepare(None)
    stream = iter(data.loader("train", 4, [], seed=0, train=True))
    for _ in range(6):
        batch = next(stream)
        for row in range(4):
            n = int(batch["audio_lengths"][row])
            start = round(float(batch["input_values"][row, 0]) * 2**15)
            assert start % 320 == 0 and n <= RATE
            seen_offsets.add(start)
            count = int(batch["unit_lengths"][row])
            assert batch["units"][row, :count].tolist() == list(range(start // hop, start // hop + count))
            assert abs(count * hop - n) < hop + 1                            # the crop's labels, no more
            assert (batch["units"][row, count:] == -100).all()
    assert len(seen_offsets) > 3                                             # random windows, not always 0


def test_label_sets_of_other_data_are_refused(tmp_path):
    lengths = [RATE, RATE]
    ramp_clips(tmp_path / "d", lengths)
    ramp_clips(tmp_path / "other", [RATE, RATE, RATE])
    made_for_other = ramp_units(tmp_path / "u_other", tmp_path / "other", [RATE] * 3)
    with pytest.raises(ModalzooError, match="was made for .*other.* the shards differ"):
        audio_data(tmp_path / "d", units=str(made_for_other)).prepare(None)
    writer = LabelSetWriter(tmp_path / "u8k", {"sample_rate": 8000, "label_rate": 50, "clusters": 10})
    writer.add("train", "r0", np.zeros(50))
    with pytest.raises(ModalzooError, match="made from 8000 Hz audio, the dataset reads 16000 Hz"):
        audio_data(tmp_path / "d", units=str(writer.close())).prepare(None)
    short = LabelSetWriter(tmp_path / "short", {"sample_rate": RATE, "label_rate": 50, "clusters": 10})
    short.add("train", "r0", np.zeros(20))                                    # 0.4 s of labels for 1 s of audio
    short.add("train", "r1", np.zeros(50))
    data = audio_data(tmp_path / "d", units=str(short.close()))
    with pytest.raises(ModalzooError, match="'r0': 20 labels at 50/s cover 0.40 s but the audio is 1.00 s"):
        all_batches(data, "train")
    missing = LabelSetWriter(tmp_path / "missing", {"sample_rate": RATE, "label_rate": 50, "clusters": 10})
    missing.add("train", "r0", np.zeros(50))
    with pytest.raises(ModalzooError, match="no labels for sample 'r1'"):
        all_batches(audio_data(tmp_path / "d", units=str(missing.close())), "train")
    assert not list(tmp_path.glob("*.partial"))                               # every set renamed into place
    assert LabelSet(tmp_path / "missing").units("r0").tolist() == [0] * 50


def test_pack_audio_folders_and_listings(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("dog_bark", "rain"):
        (tmp_path / "tree" / cls).mkdir(parents=True)
        sf.write(tmp_path / "tree" / cls / "a.wav", rng.uniform(-.3, .3, (44100, 2)), 44100)   # stereo 44.1 kHz
        sf.write(tmp_path / "tree" / cls / "b.flac", rng.uniform(-.3, .3, 8000), 8000)
    (tmp_path / "tree" / "rain" / "broken.wav").write_bytes(b"RIFF....WAVEfmt nonsense")
    sf.write(tmp_path / "tree" / "rain" / "tick.wav", rng.uniform(-.3, .3, 100), RATE)      # < one frame
    (tmp_path / "list.csv").write_text("path,class\ntree/rain/b.flac,rain\nmissing.wav,rain\n")
    info = pack_audio([tmp_path / "tree", tmp_path / "list.csv"], tmp_path / "out", sample_rate=RATE)
    assert info["clips"] == {"train": 5, "validation": 0}
    assert info["skipped"] == {"not readable audio": 1, "shorter than one frame": 1, "missing file": 1}
    assert info["resampled"] == 5 and info["downmixed_to_mono"] == 2
    classes = json.loads((tmp_path / "out" / "classes.json").read_text())
    assert classes["classes"] == ["dog bark", "rain"]
    batches = all_batches(audio_data(tmp_path / "out", val_split="train", captions=False, max_seconds=None))
    lengths = sorted(torch.cat([b["audio_lengths"] for b in batches]).tolist())
    assert lengths == [RATE] * 5 and sorted(torch.cat([b["class_id"] for b in batches]).tolist()) == [0, 0, 1, 1, 1]


def test_pack_audio_command(tmp_path):
    (tmp_path / "src" / "beep").mkdir(parents=True)
    sf.write(tmp_path / "src" / "beep" / "x.wav", np.zeros(RATE, np.float32), RATE)
    result = run_cli("data", "pack-audio", str(tmp_path / "src"), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "packed 1 train / 0 validation clips" in result.stdout and "16000 Hz" in result.stdout
    result = run_cli("data", "pack-audio", str(tmp_path / "nothing"), "--out", str(tmp_path / "o2"))
    assert result.returncode == 2 and "no such file or folder" in result.stderr


def test_crop_to_shortest_crops_training_batches_to_their_shortest_clip(audio_clips):
    data = audio_data(audio_clips, crop_to_shortest=True, max_seconds=None)
    data.prepare(None)
    for batch, _ in zip(data.loader("train", 4, [], seed=0, train=True), range(3)):
        assert len(set(batch["audio_lengths"].tolist())) == 1 and int(batch["audio_lengths"][0]) % 320 == 0
    val = all_batches(data, batch_size=4)                       # validation keeps every clip whole
    assert len(set(torch.cat([b["audio_lengths"] for b in val]).tolist())) > 4
