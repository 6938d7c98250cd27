"""Vision's test harness: tiny CLIP, MAE and timm-tower shapes, and the checks the registry-wide test
(tests/test_registry.py) runs for the `image_text` dataset, the `digits` builder and `pack-images`. Merged
with the other modalities' by tests/harnesses.py."""

from __future__ import annotations

import torch

from modalzoo.registry import REGISTRIES
from tiny_models import D, V, enc, image_batch, patch, text_batch

SHAPES = {
    "clip": (  # two towers and a loss across them
        {"streams": {"image": {"embedding": patch(norm="layernorm"), "encoder": enc()},
                     "text": {"embedding": {"name": "token", "vocab_size": V, "dim": D},
                              "encoder": enc(mask="causal")}},
         "targets": {"clip": {"name": "contrastive", "streams": ["image", "text"], "pooling": ["cls", "last"],
                              "embed_dim": 16}}},
        lambda: {**image_batch(), **text_batch(with_labels=False)}),
    "mae": (  # decoder over a different token set than the encoder
        {"streams": {"image": {"embedding": patch(positions="sincos2d", mask_ratio=0.75),
                               "encoder": enc(),
                               "target_embedding": {"name": "mae", "encoder_dim": D, "dim": 16, "grid": 4},
                               "decoder": {"name": "transformer", "layers": 1, "dim": 16, "heads": 2,
                                           "cross_attention": False, "mask": "bidirectional"}}},
         "targets": {"mae": {"name": "mae", "stream": "image"}}},
        lambda: image_batch()),
}

SHAPES["clip_timm"] = (  # a timm tower as the image encoder
    {"streams": {"image": {"embedding": {"name": "pixels"},
                           "encoder": {"name": "timm", "model_name": "test_vit", "image_size": 16,
                                       "options": {"patch_size": 4}}},
                 "text": {"embedding": {"name": "token", "vocab_size": V, "dim": D},
                          "encoder": enc(mask="causal")}},
     "targets": {"clip": {"name": "contrastive", "streams": ["image", "text"], "pooling": ["cls", "last"],
                          "embed_dim": 16}}},
    lambda: {**image_batch(), **text_batch(with_labels=False)})

COVERS = {  # which shape exercises each registered model component
    ("embedding", "patch"): "clip", ("embedding", "pixels"): "clip_timm", ("encoder", "timm"): "clip_timm",
    ("target_embedding", "mae"): "mae", ("target", "contrastive"): "clip", ("target", "mae"): "mae",
}


def exercise_image_text_dataset(kind, name, fixtures):
    data = REGISTRIES[kind].build({"name": name, "path": str(fixtures["digits"]), "num_workers": 0,
                                   "seq_len": 16, "augment": "light",
                                   "tokenizer": {"name": "bytelevel_bpe", "vocab_size": 300}})
    ctx = data.prepare(None)
    assert len(ctx.get("classes")) == 10
    batch = next(iter(data.loader("train", 4, [], seed=0, train=True)))
    assert batch["pixel_values"].shape == (4, 3, 32, 32) and batch["pixel_values"].dtype == torch.float32
    assert batch["input_ids"].shape == (4, 16) and batch["class_id"].shape == (4,)
    assert data.tokens_in(batch) == 4 and data.throughput_unit == "images"


def exercise_digits(kind, name, fixtures):
    out = fixtures["tmp_path"] / name
    info = REGISTRIES[kind].build({"name": name, "size": 16, "images_per_shard": 500}).build(out)
    assert info["images"] == {"train": 1437, "test": 360}
    assert len(list((out / "train").glob("*.tar"))) == 3 and (out / "classes.json").exists()


def exercise_pack_images(packer, tmp_path):
    from PIL import Image
    for cls in ("cat", "dog"):
        (tmp_path / "tree" / cls).mkdir(parents=True)
        Image.new("RGB", (6, 6)).save(tmp_path / "tree" / cls / "a.png")
    assert packer.pack([tmp_path / "tree"], tmp_path / "out").startswith("packed 2 train / 0 test images")
    data = REGISTRIES["dataset"].build({"name": "image_text", "path": str(tmp_path / "out"), "captions": False,
                                        "num_workers": 0, "val_split": "train", "image_size": 6})
    assert data.prepare(None).get("classes") == ["cat", "dog"]
    assert next(iter(data.loader("val", 2, [], seed=0, train=False)))["class_id"].tolist() == [0, 1]


DATASETS = {"image_text": exercise_image_text_dataset}
SAMPLE_DATA = {"digits": exercise_digits}
PACKERS = {"pack-images": exercise_pack_images}
