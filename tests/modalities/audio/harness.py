"""Audio's test harness: the checks the registry-wide test (tests/test_registry.py) runs for the `audio` dataset
(and, as they land, the audio front-ends, HuBERT, the sample builders and `pack-audio`). Merged with the other
modalities' by tests/harnesses.py."""

from __future__ import annotations

import torch

from modalzoo.registry import REGISTRIES


def exercise_audio_dataset(kind, name, fixtures):
    data = REGISTRIES[kind].build({"name": name, "path": str(fixtures["audio_clips"]), "num_workers": 0,
                                   "captions": True, "seq_len": 12, "max_seconds": 1.0,
                                   "tokenizer": {"name": "bytelevel_bpe", "vocab_size": 300}})
    ctx = data.prepare(None)
    assert ctx.get("classes") == ["low tone", "middle tone", "high tone"]
    batch = next(iter(data.loader("train", 4, [], seed=0, train=True)))
    assert batch["input_values"].dtype == torch.float32 and batch["input_values"].shape[0] == 4
    assert batch["input_values"].shape[1] == int(batch["audio_lengths"].max()) <= 16000
    assert batch["input_ids"].shape == (4, 12) and batch["class_id"].shape == (4,)
    assert data.tokens_in(batch) == int(batch["audio_lengths"].sum()) // 320 and data.throughput_unit == "audio_frames"


SHAPES: dict = {}
COVERS: dict = {}
DATASETS = {"audio": exercise_audio_dataset}
SAMPLE_DATA: dict = {}
PACKERS: dict = {}
