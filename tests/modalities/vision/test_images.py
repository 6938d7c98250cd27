"""Image-text shards: the digits builder, the image_text dataset, corrupt data, pack-images."""

from __future__ import annotations

import csv
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from modalzoo.cli import main
from modalzoo.datasets.shards import list_shards
from modalzoo.errors import ModalzooError
from modalzoo.modalities.text.fields import encode_texts
from modalzoo.modalities.vision.dataset import ImageTextData, ImageTextDataConfig
from modalzoo.modalities.vision.fields import CLIP_MEAN, CLIP_STD, ImageFinish
from modalzoo.modalities.vision.pack import pack_images
from modalzoo.modalities.vision.samples import DIGIT_WORDS

SMALL_TOKENIZER = {"name": "bytelevel_bpe", "vocab_size": 300}


def members(root: Path, split: str) -> dict[str, dict[str, bytes]]:
    """Every sample of a split, read straight from the tar files: key -> {extension: bytes}."""
    out: dict[str, dict[str, bytes]] = {}
    for shard in list_shards(root, split):
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                key, ext = m.name.split(".", 1)
                out.setdefault(key, {})[ext] = tar.extractfile(m).read()
    return out


def png_bytes(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def write_shard(path: Path, samples: list[tuple[str, dict[str, bytes]]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for key, files in samples:
            for ext, data in files.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def raw_pixels(path: Path, batch_size: int, **cfg) -> dict:
    """One validation batch with identity normalisation (pixel values in [0, 1])."""
    data = ImageTextData(ImageTextDataConfig(path=str(path), train_split="val", val_split="val", num_workers=0,
                                             mean=[0, 0, 0], std=[1, 1, 1], **cfg))
    data.prepare(None)
    return next(iter(data.loader("val", batch_size, [], seed=0, train=False)))


def test_digits_shards_classes_and_split(digits):
    info = json.loads((digits / "info.json").read_text())
    assert info["images"] == {"train": 1437, "test": 360}
    classes = json.loads((digits / "classes.json").read_text())
    assert classes["classes"] == DIGIT_WORDS and all("{}" in t for t in classes["templates"])
    train, test = members(digits, "train"), members(digits, "test")
    assert len(train) == 1437 and len(test) == 360
    assert not set(train) & set(test)                                   # disjoint source images
    test_counts = np.bincount([int(s["cls"]) for s in test.values()], minlength=10)
    assert test_counts.min() >= 34 and test_counts.max() <= 38          # stratified: ~20% of each class
    assert len(list_shards(digits, "train")) >= 4                       # enough shards for several readers
    sample = next(iter(train.values()))
    assert set(sample) == {"png", "txt", "cls"}
    img = Image.open(io.BytesIO(sample["png"]))
    assert img.size == (32, 32) and img.mode == "RGB"
    captions = [s["txt"].decode() for s in train.values()]
    assert len(set(captions)) > 30                                      # several templates, words and numerals
    for s in list(train.values())[:200]:
        label, caption = int(s["cls"]), s["txt"].decode()
        assert DIGIT_WORDS[label] in caption or str(label) in caption


def test_digits_batches(digits):
    data = ImageTextData(ImageTextDataConfig(path=str(digits), num_workers=0, tokenizer=SMALL_TOKENIZER))
    ctx = data.prepare(None)
    assert ctx.get("classes") == DIGIT_WORDS and ctx.get("templates")
    assert ctx.get("image_size") == 32 and ctx.get("mean") == CLIP_MEAN and ctx.get("std") == CLIP_STD
    tok = ctx.tokenizer
    batch = next(iter(data.loader("train", 16, [], seed=0, train=True)))
    assert set(batch) == {"pixel_values", "input_ids", "attention_mask", "class_id", "_skipped"}
    pixels = batch["pixel_values"]
    assert pixels.shape == (16, 3, 32, 32) and pixels.dtype == torch.float32
    raw = pixels * torch.tensor(CLIP_STD).view(1, 3, 1, 1) + torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    assert raw.min() > -1e-4 and raw.max() < 1 + 1e-4 and raw.max() > 0.9   # normalised from [0, 1]
    assert torch.allclose(raw[:, 0], raw[:, 1], atol=1e-5)                  # grey digits, three equal channels
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.shape == (16, 32) and ids.dtype == torch.long and mask.dtype == torch.bool
    assert (ids[:, 0] == tok.bos_id).all() and (ids[~mask] == tok.pad_id).all()
    lengths = mask.sum(1)
    assert (ids[torch.arange(16), lengths - 1] == tok.eos_id).all()
    assert batch["class_id"].dtype == torch.long and batch["class_id"].shape == (16,)
    for row in range(16):
        label = int(batch["class_id"][row])
        caption = tok.decode(ids[row, 1:lengths[row] - 1].tolist())
        assert DIGIT_WORDS[label] in caption or str(label) in caption
    assert int(batch["_skipped"]) == 0 and data.tokens_in(batch) == 16 and data.throughput_unit == "images"
    val = list(data.loader("val", 100, [], seed=0, train=False))
    assert [len(b["class_id"]) for b in val] == [100, 100, 100, 60]        # every test image, once, in order


def test_tokenizer_saved_to_run_dir_and_reloaded(digits, tmp_path):
    cfg = ImageTextDataConfig(path=str(digits), num_workers=0, tokenizer=SMALL_TOKENIZER)
    first = ImageTextData(cfg).prepare(tmp_path).tokenizer
    assert (tmp_path / "tokenizer.json").exists()
    again = ImageTextData(cfg).prepare(tmp_path).tokenizer
    assert again.encode("the digit seven")[0] == first.encode("the digit seven")[0]


def test_encode_texts_matches_captions(digits):
    data = ImageTextData(ImageTextDataConfig(path=str(digits), num_workers=0, seq_len=8, tokenizer=SMALL_TOKENIZER))
    tok = data.prepare(None).tokenizer
    out = encode_texts(tok, ["a photo of the number seven.", "", "seven " * 20], seq_len=8)
    ids, mask = out["input_ids"], out["attention_mask"]
    assert ids.shape == (3, 8) and mask.shape == (3, 8)
    body = tok.encode("a photo of the number seven.")[0][:6]
    assert ids[0, :len(body) + 2].tolist() == [tok.bos_id, *body, tok.eos_id]
    assert ids[1, :2].tolist() == [tok.bos_id, tok.eos_id] and mask[1].sum() == 2
    assert mask[2].all() and ids[2, -1] == tok.eos_id                       # truncated, eos kept
    batch = next(iter(data.loader("val", 8, [], seed=0, train=False)))
    assert batch["input_ids"].shape == (8, 8) and (batch["input_ids"][batch["attention_mask"].sum(1) == 8, -1]
                                                   == tok.eos_id).all()


def test_corrupt_and_truncated_images_are_skipped_and_counted(tmp_path):
    good = png_bytes(Image.new("RGB", (8, 8), (255, 0, 0)))
    write_shard(tmp_path / "val" / "shard-000000.tar", [
        ("a", {"png": good, "txt": b"red", "cls": b"1"}),
        ("b", {"png": good[:len(good) // 2], "txt": b"truncated", "cls": b"2"}),
        ("c", {"png": b"definitely not a png", "txt": b"garbage"}),
        ("d", {"txt": b"caption without an image"}),
        ("e", {"png": good, "cls": b"not a number"}),
        ("f", {"jpg": png_bytes(Image.new("RGB", (8, 8), (0, 0, 255)), "JPEG")}),
    ])
    batch = raw_pixels(tmp_path, 8, image_size=8, tokenizer=SMALL_TOKENIZER)
    assert batch["pixel_values"].shape == (2, 3, 8, 8)
    assert batch["class_id"].tolist() == [1, -1]                    # "f" has no .cls
    assert int(batch["_skipped"]) == 4
    assert batch["attention_mask"][1].sum() == 2                    # no caption: bos + eos only


def test_truncated_shard_is_skipped_and_counted(tmp_path):
    samples = [(f"k{i}", {"png": png_bytes(Image.new("L", (16, 16), i * 20)), "cls": str(i).encode()})
               for i in range(6)]
    write_shard(tmp_path / "full.tar", samples)
    with tarfile.open(tmp_path / "full.tar") as tar:
        cut = tar.getmember("k4.png").offset_data + 10              # inside the fifth image
    (tmp_path / "val").mkdir()
    (tmp_path / "val" / "shard-000000.tar").write_bytes((tmp_path / "full.tar").read_bytes()[:cut])
    batch = raw_pixels(tmp_path, 16, image_size=16, captions=False)
    assert batch["class_id"].tolist() == [0, 1, 2, 3] and int(batch["_skipped"]) >= 1
    assert "input_ids" not in batch


def test_image_modes_come_out_rgb(tmp_path):
    grey = Image.new("L", (10, 10), 128)
    rgba = Image.new("RGBA", (10, 10), (0, 0, 0, 0))                 # fully transparent: white
    palette = Image.new("RGB", (10, 10), (0, 255, 0)).convert("P", palette=Image.Palette.ADAPTIVE)
    cmyk = Image.new("CMYK", (10, 10), (0, 0, 0, 0))                  # no ink: white
    grey16 = Image.fromarray(np.full((10, 10), 65535, dtype=np.uint16))
    write_shard(tmp_path / "val" / "shard-000000.tar", [
        ("grey", {"png": png_bytes(grey)}), ("rgba", {"png": png_bytes(rgba)}),
        ("palette", {"png": png_bytes(palette)}), ("cmyk", {"jpeg": png_bytes(cmyk, "JPEG")}),
        ("grey16", {"png": png_bytes(grey16)}), ("wide", {"png": png_bytes(Image.new("RGB", (40, 10), "blue"))}),
    ])
    batch = raw_pixels(tmp_path, 8, image_size=10, captions=False)
    px = batch["pixel_values"]
    assert px.shape == (6, 3, 10, 10) and int(batch["_skipped"]) == 0
    mean = px.mean((2, 3))
    assert torch.allclose(mean[0], torch.full((3,), 128 / 255), atol=1e-3)
    assert torch.allclose(mean[1], torch.ones(3), atol=1e-3)
    assert torch.allclose(mean[2], torch.tensor([0.0, 1.0, 0.0]), atol=1e-3)
    assert torch.allclose(mean[3], torch.ones(3), atol=0.02)
    assert torch.allclose(mean[4], torch.ones(3), atol=1e-3)
    assert torch.allclose(mean[5], torch.tensor([0.0, 0.0, 1.0]), atol=1e-3)   # resized + center-cropped


def test_unreadable_shard_is_a_clear_error(tmp_path):
    bad = tmp_path / "val" / "shard-000000.tar"
    bad.parent.mkdir()
    bad.write_bytes(b"<html>404 not found</html>" * 40)
    data = ImageTextData(ImageTextDataConfig(path=str(tmp_path), val_split="val", captions=False, num_workers=0))
    data.prepare(None)
    with pytest.raises(ModalzooError, match=r"shard-000000\.tar is not a readable tar file \(invalid header\)"):
        data.loader("val", 4, [], seed=0, train=False)
    with pytest.raises(ModalzooError, match="modalzoo data build digits"):
        ImageTextData(ImageTextDataConfig(path=str(tmp_path / "none"))).shards("train")


def test_augmentation_is_a_pure_function_of_the_generator():
    torch.manual_seed(0)
    batch = {"pixel_values": torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)}
    finish = ImageFinish(CLIP_MEAN, CLIP_STD, "light", 16)
    state = torch.get_rng_state()
    a = finish(dict(batch), torch.Generator().manual_seed(7))["pixel_values"]
    b = finish(dict(batch), torch.Generator().manual_seed(7))["pixel_values"]
    c = finish(dict(batch), torch.Generator().manual_seed(8))["pixel_values"]
    plain = ImageFinish(CLIP_MEAN, CLIP_STD, "none", 16)(dict(batch), torch.Generator())["pixel_values"]
    assert torch.equal(torch.get_rng_state(), state)                 # the caller's RNG is left alone
    assert a.shape == (4, 3, 16, 16) and torch.equal(a, b)
    assert not torch.equal(a, c) and not torch.equal(a, plain)
    expected = (batch["pixel_values"].float() / 255 - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) \
        / torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    assert torch.allclose(plain, expected)


def test_resumed_stream_reproduces_augmented_batches(digits):
    data = ImageTextData(ImageTextDataConfig(path=str(digits), num_workers=0, augment="light",
                                             shuffle_buffer=100, tokenizer=SMALL_TOKENIZER))
    data.prepare(None)
    seen = []
    for i, batch in enumerate(data.loader("train", 32, [], seed=3, train=True)):
        seen.append(batch)
        if i == 4:
            break
    resumed = next(iter(data.loader("train", 32, [], seed=3, train=True, start=3)))
    for key in ("pixel_values", "input_ids", "class_id"):
        assert torch.equal(resumed[key], seen[3][key])


def test_two_workers_read_every_test_image_once(digits):
    data = ImageTextData(ImageTextDataConfig(path=str(digits), num_workers=2, captions=False))
    data.prepare(None)
    batches = list(data.loader("val", 64, [], seed=0, train=False))
    labels = torch.cat([b["class_id"] for b in batches])
    assert len(labels) == 360
    test = members(digits, "test")
    assert sorted(labels.tolist()) == sorted(int(s["cls"]) for s in test.values())


def test_too_few_images_for_a_batch_is_an_error(tmp_path):
    write_shard(tmp_path / "train" / "shard-000000.tar",
                [(f"k{i}", {"png": png_bytes(Image.new("RGB", (4, 4)))}) for i in range(3)])
    data = ImageTextData(ImageTextDataConfig(path=str(tmp_path), captions=False, num_workers=0, image_size=4))
    data.prepare(None)
    with pytest.raises(ModalzooError, match="no full batch of 8 images"):
        next(iter(data.loader("train", 8, [], seed=0, train=True)))


def make_tree(root: Path) -> dict[str, bytes]:
    files = {}
    for cls, color in (("dog", "brown"), ("cat", "black"), ("sea_lion", "grey")):
        for i, fmt in enumerate(("PNG", "JPEG")):
            path = root / cls / ("sub" if i else "") / f"img{i}.{'png' if fmt == 'PNG' else 'jpg'}"
            path.parent.mkdir(parents=True, exist_ok=True)
            data = png_bytes(Image.new("RGB", (12, 9), color), fmt)
            path.write_bytes(data)
            files[str(path)] = data
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "README").write_text("ignored")
    return files


def test_pack_images_from_a_folder_tree(tmp_path):
    files = make_tree(tmp_path / "tree")
    counts = pack_images([tmp_path / "tree"], tmp_path / "out", images_per_shard=4)
    assert counts == {"train": 6, "test": 0}
    classes = json.loads((tmp_path / "out" / "classes.json").read_text())
    assert classes["classes"] == ["cat", "dog", "sea lion"] and classes["templates"]
    stored = members(tmp_path / "out", "train")
    assert len(list_shards(tmp_path / "out", "train")) == 2
    assert sorted(s.get("png", s.get("jpg")) for s in stored.values()) == sorted(files.values())  # byte for byte
    by_caption = {s["txt"].decode(): int(s["cls"]) for s in stored.values()}
    assert by_caption == {"a photo of a cat.": 0, "a photo of a dog.": 1, "a photo of a sea lion.": 2}
    data = ImageTextData(ImageTextDataConfig(path=str(tmp_path / "out"), val_split="train", num_workers=0,
                                             image_size=8, tokenizer=SMALL_TOKENIZER))
    ctx = data.prepare(None)
    assert ctx.get("classes") == ["cat", "dog", "sea lion"]
    batch = next(iter(data.loader("val", 6, [], seed=0, train=False)))
    assert batch["pixel_values"].shape == (6, 3, 8, 8) and sorted(batch["class_id"].tolist()) == [0, 0, 1, 1, 2, 2]


def test_pack_images_from_a_csv_and_jsonl(tmp_path):
    (tmp_path / "imgs").mkdir()
    for i in range(20):
        (tmp_path / "imgs" / f"{i}.png").write_bytes(png_bytes(Image.new("RGB", (6, 6), (i * 10, 0, 0))))
    with (tmp_path / "list.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "caption", "class"])
        for i in range(10):
            writer.writerow([f"imgs/{i}.png", f"red level {i}", "bird" if i % 2 else "3"])
    (tmp_path / "more.jsonl").write_text("\n".join(
        json.dumps({"path": f"imgs/{i}.png", "caption": f"jsonl {i}"}) for i in range(10, 20)) + "\n")
    counts = pack_images([tmp_path / "list.csv", tmp_path / "more.jsonl"], tmp_path / "out", val_fraction=0.3)
    assert counts["train"] + counts["test"] == 20 and counts["test"] > 0
    stored = members(tmp_path / "out", "train") | {f"t{k}": v for k, v in members(tmp_path / "out", "test").items()}
    by_caption = {s["txt"].decode(): s for s in stored.values()}
    assert by_caption["red level 1"]["cls"] == b"0" and by_caption["red level 2"]["cls"] == b"3"
    assert "cls" not in by_caption["jsonl 12"]
    assert by_caption["jsonl 12"]["png"] == (tmp_path / "imgs" / "12.png").read_bytes()
    assert json.loads((tmp_path / "out" / "classes.json").read_text())["classes"] == ["bird"]
    again = pack_images([tmp_path / "list.csv", tmp_path / "more.jsonl"], tmp_path / "again", val_fraction=0.3)
    assert again == counts                                                # the split is stable


def test_pack_images_errors(tmp_path):
    (tmp_path / "a.png").write_bytes(png_bytes(Image.new("RGB", (4, 4))))
    (tmp_path / "nocap.csv").write_text("path,label\na.png,1\n")
    with pytest.raises(ModalzooError, match=r"nocap.csv: missing column\(s\) 'caption'"):
        pack_images([tmp_path / "nocap.csv"], tmp_path / "o")
    (tmp_path / "gone.csv").write_text("path,caption\na.png,ok\nmissing.png,lost\n")
    with pytest.raises(ModalzooError, match=r"gone.csv:3: no such image: .*missing.png"):
        pack_images([tmp_path / "gone.csv"], tmp_path / "o")
    (tmp_path / "bad.jsonl").write_text('{"caption": "no path"}\n')
    with pytest.raises(ModalzooError, match=r"bad.jsonl:1: no 'path' field"):
        pack_images([tmp_path / "bad.jsonl"], tmp_path / "o")
    with pytest.raises(ModalzooError, match="no such file or folder"):
        pack_images([tmp_path / "nowhere"], tmp_path / "o")
    (tmp_path / "flat").mkdir()
    with pytest.raises(ModalzooError, match="one sub-folder per class"):
        pack_images([tmp_path / "flat"], tmp_path / "o")


def test_pack_images_cli(tmp_path, capsys):
    make_tree(tmp_path / "tree")
    assert main(["data", "pack-images", str(tmp_path / "tree"), "--out", str(tmp_path / "out")]) == 0
    assert "packed 6 train / 0 test images" in capsys.readouterr().out
    assert main(["data", "pack-images", str(tmp_path / "nope"), "--out", str(tmp_path / "out")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_context_restores_sizes_classes_and_writes_processor_files(digits, tmp_path):
    cfg = ImageTextDataConfig(path=str(digits), image_size=24, num_workers=0, tokenizer=SMALL_TOKENIZER)
    ImageTextData(cfg).prepare(tmp_path)
    ctx = ImageTextData(cfg).context(tmp_path)
    assert ctx.get("image_size") == 24 and ctx.get("mean") == CLIP_MEAN and ctx.get("classes") == DIGIT_WORDS
    assert ctx.tokenizer is not None and ctx.get("seq_len") == 32
    names = {p.name for p in ctx.write_files(tmp_path / "all")}
    assert names == {"preprocessor_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"}
    [only] = ctx.write_files(tmp_path / "clip", {"image": "clip"})
    config = json.loads(only.read_text())
    assert config["image_processor_type"] == "CLIPImageProcessor" and config["crop_size"]["height"] == 24
    plain = ImageTextData(ImageTextDataConfig(path=str(tmp_path / "gone"), captions=False)).context(tmp_path)
    assert plain.tokenizer is None and plain.get("seq_len") is None and plain.get("classes") is None
