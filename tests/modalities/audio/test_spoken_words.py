"""`data build spoken-words` at a tiny size: alignments inside the clips, words spanning their phones, the
voice split, class ids only on single words, determinism, and the `audio` dataset reading the shards."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from modalzoo.errors import ModalzooError
from modalzoo.modalities.audio import samples
from modalzoo.modalities.audio.io import read_audio
from modalzoo.registry import REGISTRIES
from shapes_data import read_split

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(importlib.util.find_spec("espeakng_loader") is None, reason="needs modalzoo[speech]")]
TINY = {"utterances": 40, "augment_fraction": 0.5, "clips_per_shard": 15}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "spoken-words"
    info = samples.SpokenWords(samples.SpokenWordsConfig(**TINY)).build(out)
    return out, info


def test_counts_keys_and_the_voice_split(built):
    out, info = built
    assert info["clips"] == {"train": 32, "validation": 4, "test": 4} and info["sample_rate"] == 16000
    assert info["engine"]["engine"] == "espeak-ng" and info["engine"]["licence"] == "GPL-3.0-or-later"
    voices = {s: set(v) for s, v in info["voices"].items()}
    assert not voices["train"] & voices["test"] and not voices["train"] & voices["validation"]
    assert not voices["validation"] & voices["test"] and len(voices["test"]) == 6
    keys = set()
    for split in samples.SPLITS:
        clips = read_split(out, split)
        assert len(clips) == info["clips"][split] and not keys & set(clips)
        keys |= set(clips)
        for member in clips.values():
            meta = json.loads(member["json"])
            assert meta["speaker"]["variant"] in voices[split] and meta["speaker"]["engine"] == "espeak-ng"
    assert json.loads((out / "classes.json").read_text())["classes"] == samples.VOCABULARY


def test_alignments_are_monotone_inside_the_clip_and_words_span_their_phones(built):
    out, _ = built
    augmented = 0
    for split in samples.SPLITS:
        for member in read_split(out, split).values():
            meta = json.loads(member["json"])
            wave, rate = read_audio(member["flac"])
            end = len(wave) / rate
            assert rate == 16000 and meta["seconds"] == pytest.approx(end, abs=1e-4)
            phones = meta["phones"]
            assert phones[0][1] == 0 and phones[-1][2] == pytest.approx(end, abs=1e-4)
            assert all(a[2] == b[1] for a, b in zip(phones, phones[1:])) and all(s < e for _, s, e in phones)
            words = meta["words"]
            assert " ".join(w["word"] for w in words) == meta["text"] and 1 <= len(words) <= 4
            assert all(w["start"] < w["end"] for w in words)
            assert all(a["end"] <= b["start"] + 1e-5 for a, b in zip(words, words[1:]))
            for _, s, e in (p for p in phones if p[0] != "sil"):   # every spoken phone lies inside one word
                assert sum(w["start"] - 1e-5 <= s and e <= w["end"] + 1e-5 for w in words) == 1
            if len(words) == 1:
                assert int(member["cls"]) == samples.VOCABULARY.index(words[0]["word"])
            else:
                assert "cls" not in member
            caption = member["txt"].decode()
            assert f"'{meta['text']}'" in caption and caption.startswith(("a ", "an "))
            augmented += bool(meta["augment"])
    assert 5 < augmented < 35


def test_the_build_is_deterministic(built, tmp_path):
    out, _ = built
    samples.SpokenWords(samples.SpokenWordsConfig(**TINY)).build(tmp_path / "again")
    for split in samples.SPLITS:
        assert read_split(out, split) == read_split(tmp_path / "again", split)


def test_the_audio_dataset_reads_class_ids_and_captions(built):
    out, _ = built
    data = REGISTRIES["dataset"].build({"name": "audio", "path": str(out), "num_workers": 0, "captions": True,
                                        "seq_len": 16, "tokenizer": {"name": "bytelevel_bpe", "vocab_size": 300}})
    ctx = data.prepare(None)
    assert ctx.get("classes") == samples.VOCABULARY
    batch = next(iter(data.loader("val", 4, [], seed=0, train=False)))
    assert batch["input_values"].shape[0] == 4 and batch["input_ids"].shape == (4, 16)
    expected = []
    for member in read_split(out, "validation").values():
        expected.append(int(member["cls"]) if "cls" in member else -1)
    assert sorted(batch["class_id"].tolist()) == sorted(expected)


def test_a_missing_engine_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)
    with pytest.raises(ModalzooError, match=r"pip install modalzoo\[speech\]"):
        samples.SpokenWords(samples.SpokenWordsConfig(utterances=3)).build(tmp_path / "x")
    assert not (tmp_path / "x" / "info.json").exists()


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="below 1"):
        samples.SpokenWords(samples.SpokenWordsConfig(validation_fraction=0.6, test_fraction=0.5))
    with pytest.raises(ValueError, match="rate_min"):
        samples.SpokenWords(samples.SpokenWordsConfig(rate_min=50))

