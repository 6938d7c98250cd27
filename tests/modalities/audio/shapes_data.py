"""Checks for the audio sample builders (`spoken-words`, `sound-captions`) that the registry-wide test runs
(tests/test_registry.py via harness.py's SAMPLE_DATA), plus `read_split` for the builders' own tests."""

from __future__ import annotations

import json
import tarfile


def read_split(root, split) -> dict[str, dict]:
    """key -> {ext: bytes} for every member of a split's shards."""
    out: dict[str, dict] = {}
    for shard in sorted((root / split).glob("*.tar")):
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                key, ext = m.name.split(".", 1)
                out.setdefault(key, {})[ext] = tar.extractfile(m).read()
    return out


def exercise_spoken_words(kind, name, fixtures):
    from modalzoo.registry import REGISTRIES
    out = fixtures["tmp_path"] / name
    info = REGISTRIES[kind].build({"name": name, "utterances": 12, "clips_per_shard": 5}).build(out)
    assert info["clips"] == {"train": 10, "validation": 1, "test": 1} and info["sample_rate"] == 16000
    assert len(list((out / "train").glob("*.tar"))) == 2 and (out / "classes.json").exists()
    clip = next(iter(read_split(out, "test").values()))
    assert {"flac", "json", "txt"} <= set(clip) and json.loads(clip["json"])["phones"][0][0] == "sil"


def exercise_sound_captions(kind, name, fixtures):
    from modalzoo.registry import REGISTRIES
    out = fixtures["tmp_path"] / name
    info = REGISTRIES[kind].build({"name": name, "clips": 20}).build(out)
    assert info["clips"] == {"train": 14, "validation": 2, "test": 4}
    classes = json.loads((out / "classes.json").read_text())
    assert classes["templates"] == info["held_out"]["templates"] and len(classes["classes"]) == 15
    captions = [c["txt"].decode() for c in read_split(out, "test").values()]
    assert all(any(c.startswith(t.split("{}")[0]) for t in classes["templates"]) for c in captions)


SAMPLE_DATA = {"spoken-words": exercise_spoken_words, "sound-captions": exercise_sound_captions}
