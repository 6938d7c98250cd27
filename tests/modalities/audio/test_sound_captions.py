"""`data build sound-captions` at a tiny size: held-out templates, attribute values, pairs and voices stay out
of train/validation; class ids only on single-event clips; determinism; the `audio` dataset reads it."""

from __future__ import annotations

import importlib.util
import json

import pytest

from modalzoo.modalities.audio import samples
from modalzoo.registry import REGISTRIES
from shapes_data import read_split

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(importlib.util.find_spec("espeakng_loader") is None, reason="needs modalzoo[speech]")]
TINY = {"clips": 120, "clips_per_shard": 50}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "sound-captions"
    return out, samples.SoundCaptions(samples.SoundCaptionsConfig(**TINY)).build(out)


def test_held_out_templates_combinations_and_voices_appear_only_in_test(built):
    out, info = built
    held = info["held_out"]
    pairs = {tuple(sorted(p)) for p in held["pairs"]}
    classes = json.loads((out / "classes.json").read_text())
    assert classes["templates"] == held["templates"] == samples.TEST_TEMPLATES
    assert classes["classes"] == info["classes"] and samples.SPEECH_CLASS in classes["classes"]
    seen = {s: {"kinds": set(), "pairs": set(), "attrs": set()} for s in samples.SPLITS}
    for split in samples.SPLITS:
        clips = read_split(out, split)
        assert len(clips) == info["clips"][split]
        for member in clips.values():
            meta = json.loads(member["json"])
            caption = member["txt"].decode()
            assert caption == meta["caption"] == meta["template"].format(caption_body(meta, caption))
            allowed = samples.TEST_TEMPLATES if split == "test" else samples.TRAIN_TEMPLATES
            assert meta["template"] in allowed
            seen[split]["kinds"].add(meta["kind"])
            for part in meta["parts"]:
                if "attribute" in part:
                    seen[split]["attrs"].add((part["class"], part["attribute"]))
                if "speaker" in part:
                    assert part["speaker"]["variant"] in info["voices"][split]
            if meta["kind"] == "mixture":
                assert "cls" not in member and len(meta["parts"]) == 2
                pair = tuple(sorted(p["class"] for p in meta["parts"]))
                assert (pair in pairs) == (split == "test")
                seen[split]["pairs"].add(pair)
            else:
                assert int(member["cls"]) == classes["classes"].index(meta["parts"][0]["class"])
    assert seen["test"]["kinds"] == seen["train"]["kinds"] == {"speech", "event", "mixture"}
    held_attrs = set(held["attributes"].items())
    assert not held_attrs & (seen["train"]["attrs"] | seen["validation"]["attrs"])
    assert held_attrs & seen["test"]["attrs"]
    assert not set(held["voices"]["test"]) & set(info["voices"]["train"])


def caption_body(meta: dict, caption: str) -> str:
    """The text the template wrapped (the caption minus the template's own words)."""
    before, after = meta["template"].split("{}")
    assert caption.startswith(before) and caption.endswith(after)
    return caption[len(before):len(caption) - len(after)]


def test_the_build_is_deterministic_for_a_seed(built, tmp_path):
    out, _ = built
    small = {**TINY, "clips": 30}
    a = samples.SoundCaptions(samples.SoundCaptionsConfig(**small)).build(tmp_path / "a")
    b = samples.SoundCaptions(samples.SoundCaptionsConfig(**small)).build(tmp_path / "b")
    assert a["held_out"] == b["held_out"]
    for split in samples.SPLITS:
        assert read_split(tmp_path / "a", split) == read_split(tmp_path / "b", split)
    other = samples.SoundCaptions(samples.SoundCaptionsConfig(**small, seed=1)).build(tmp_path / "c")
    assert other["held_out"]["pairs"] != a["held_out"]["pairs"]


def test_the_audio_dataset_reads_captions_and_event_classes(built):
    out, _ = built
    data = REGISTRIES["dataset"].build({"name": "audio", "path": str(out), "num_workers": 0, "captions": True,
                                        "seq_len": 24, "val_split": "test",
                                        "tokenizer": {"name": "bytelevel_bpe", "vocab_size": 300}})
    ctx = data.prepare(None)
    assert ctx.get("classes")[-1] == samples.SPEECH_CLASS
    batch = next(iter(data.loader("val", 8, [], seed=0, train=False)))
    assert batch["input_ids"].shape == (8, 24) and (batch["attention_mask"].sum(1) > 3).all()
    assert ((batch["class_id"] >= -1) & (batch["class_id"] < len(ctx.get("classes")))).all()
