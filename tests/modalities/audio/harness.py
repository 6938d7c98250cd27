"""Audio's test harness: the checks the registry-wide test (tests/test_registry.py) runs for the `audio` dataset
(and, as they land, the audio front-ends, HuBERT, the sample builders and `pack-audio`). Merged with the other
modalities' by tests/harnesses.py."""

from __future__ import annotations

import torch

from conftest import sibling
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


def exercise_pack_audio(packer, tmp_path):
    import numpy as np
    import soundfile as sf
    for cls in ("bell", "drum"):
        (tmp_path / "tree" / cls).mkdir(parents=True)
        sf.write(tmp_path / "tree" / cls / "a.wav", np.zeros(8000, np.float32), 8000)
    assert packer.pack([tmp_path / "tree"], tmp_path / "out").startswith("packed 2 train / 0 validation clips")
    data = REGISTRIES["dataset"].build({"name": "audio", "path": str(tmp_path / "out"), "num_workers": 0,
                                        "val_split": "train"})
    assert data.prepare(None).get("classes") == ["bell", "drum"]
    batch = next(iter(data.loader("val", 2, [], seed=0, train=False)))
    assert batch["class_id"].tolist() == [0, 1] and batch["audio_lengths"].tolist() == [16000, 16000]


_HUBERT = sibling(__file__, "shapes_hubert", "audio_shapes_hubert")
_CLAP = sibling(__file__, "shapes_clap", "audio_shapes_clap")
SHAPES = {**_HUBERT.SHAPES, **_CLAP.SHAPES}
COVERS = {**_HUBERT.COVERS, **_CLAP.COVERS}
DATASETS = {"audio": exercise_audio_dataset}
SAMPLE_DATA = {**sibling(__file__, "shapes_data", "audio_shapes_data").SAMPLE_DATA}
PACKERS = {"pack-audio": exercise_pack_audio}
