"""The exported image processor (and CLIP processor) files: `transformers` (offline, no remote code)
reproduces the zoo's eval image path (normalised pixels) exactly, and the CLIP processor its captions too."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoProcessor, CLIPConfig, ViTConfig

from modalzoo.errors import ModalzooError
from modalzoo.modalities.text.fields import encode_texts
from modalzoo.modalities.text.hub.tokenizer_files import write_tokenizer_files
from modalzoo.modalities.vision.fields import CLIP_MEAN, CLIP_STD, ImageFinish, decode_image
from modalzoo.modalities.vision.hub.image_processor import write_image_processor
from modalzoo.registry import TOKENIZERS
from tiny_models import CORPUS, PROBES, SEQ_LEN

CLIP_TOKENIZER = {"name": "bytelevel_bpe", "vocab_size": 400, "min_frequency": 1, "specials_at_end": True}


@pytest.fixture(scope="module")
def trained():
    return {"clip": TOKENIZERS.build(dict(CLIP_TOKENIZER)).train(CORPUS)}


def test_image_processor_style_must_fit(tmp_path):
    with pytest.raises(ModalzooError, match="unknown image processor style"):
        write_image_processor(tmp_path, 32, CLIP_MEAN, CLIP_STD, "siglip")


def photo(width: int, height: int, seed: int) -> Image.Image:
    """A smooth colour pattern with noise (a photo-like image with edges and texture)."""
    rng = np.random.default_rng(seed)
    x, y = np.linspace(0, 1, width)[None, :, None], np.linspace(0, 1, height)[:, None, None]
    base = 127.5 * (1 + np.sin(7 * x + 4 * y + np.arange(3)[None, None] * 2.1))
    return Image.fromarray(np.clip(base + rng.normal(0, 15, base.shape), 0, 255).astype(np.uint8))


def sample_images() -> list[Image.Image]:
    rgba = photo(45, 70, 3).convert("RGBA")
    rgba.putalpha(Image.fromarray(np.random.default_rng(4).integers(0, 256, (70, 45), dtype=np.uint8)))
    palette = photo(40, 30, 5).convert("P", palette=Image.Palette.ADAPTIVE)
    palette.info["transparency"] = 0
    return [photo(50, 37, 0),                                   # landscape, downscaled
            photo(37, 50, 1),                                   # portrait
            photo(64, 64, 2).convert("L"),                      # greyscale
            rgba,                                               # transparency composited onto white
            palette,                                            # palette with a transparent index
            photo(8, 8, 6),                                     # tiny: upscaled
            photo(1000, 700, 7),                                # large
            photo(32, 32, 8),                                   # already the size: untouched
            photo(33, 100, 9),                                  # longer side rounds: int(32 * 100 / 33)
            Image.fromarray(np.random.default_rng(10).integers(0, 256, (77, 91, 3), dtype=np.uint8))]  # noise


def zoo_pixels(images: list[Image.Image], size: int) -> torch.Tensor:
    """The zoo's eval path: encoded bytes -> decode_image -> /255 and normalise (ImageFinish, no augmentation)."""
    def png(img):
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return buf.getvalue()
    batch = {"pixel_values": torch.stack([decode_image(png(img), size) for img in images])}
    return ImageFinish(CLIP_MEAN, CLIP_STD, "none", size)(batch, torch.Generator())["pixel_values"]


@pytest.mark.parametrize("size", [32, 24])
@pytest.mark.parametrize("style", ["clip", "vit"])
def test_image_processor_matches_zoo(style, size, tmp_path):
    path = write_image_processor(tmp_path, size, CLIP_MEAN, CLIP_STD, style)
    config = json.loads(path.read_text())
    assert config["image_processor_type"] == {"clip": "CLIPImageProcessor", "vit": "ViTImageProcessor"}[style]
    assert config.get("processor_class") == ("CLIPProcessor" if style == "clip" else None)
    (CLIPConfig if style == "clip" else ViTConfig)().save_pretrained(tmp_path)
    images = sample_images()
    zoo = zoo_pixels(images, size)
    assert zoo.shape == (len(images), 3, size, size)
    image_processor = AutoImageProcessor.from_pretrained(tmp_path)
    assert type(image_processor).__name__ == config["image_processor_type"]
    assert image_processor.backend == "torchvision"                 # what AutoImageProcessor picks by default
    hf = image_processor(images=images, return_tensors="pt")["pixel_values"]
    assert hf.shape == zoo.shape and (hf - zoo).abs().max() <= 1e-6
    one = image_processor(images=images[3], return_tensors="pt")["pixel_values"]   # alone, not in a batch
    assert (one[0] - zoo[3]).abs().max() <= 1e-6
    if style == "vit":                                  # AutoProcessor falls back to the image processor
        processor = AutoProcessor.from_pretrained(tmp_path)
        assert type(processor).__name__ == "ViTImageProcessor"
        assert (processor(images=images, return_tensors="pt")["pixel_values"] - zoo).abs().max() <= 1e-6


def test_clip_processor_matches_zoo(trained, tmp_path):
    tok = trained["clip"]
    write_tokenizer_files(tok, tmp_path, model_max_length=SEQ_LEN, style="clip")
    write_image_processor(tmp_path, 32, CLIP_MEAN, CLIP_STD, "clip")
    CLIPConfig().save_pretrained(tmp_path)
    processor = AutoProcessor.from_pretrained(tmp_path)
    assert type(processor).__name__ == "CLIPProcessor"
    assert type(processor.image_processor).__name__ == "CLIPImageProcessor"
    images = sample_images()[:len(PROBES)]
    out = processor(text=PROBES, images=images, padding="max_length", max_length=SEQ_LEN, truncation=True,
                    return_tensors="pt")
    zoo = encode_texts(tok, PROBES, seq_len=SEQ_LEN)
    assert torch.equal(out["input_ids"], zoo["input_ids"])
    assert torch.equal(out["attention_mask"].bool(), zoo["attention_mask"])
    assert (out["pixel_values"] - zoo_pixels(images, 32)).abs().max() <= 1e-6


@pytest.mark.parametrize("width, height", [(50, 37), (300, 200)], ids=["small", "large"])
@pytest.mark.parametrize("draft", [False, True], ids=["exact", "jpeg_draft"])
def test_jpeg_matches_zoo(width, height, draft, tmp_path):
    """JPEG bytes give the processor's pixels. With ``jpeg_draft`` the zoo decodes JPEGs at least twice the
    size at a reduced DCT scale (Image.draft); opening the file the same way before the processor reproduces
    it (documented in modalzoo.modalities.vision.hub.image_processor)."""
    size = 32
    buf = io.BytesIO()
    photo(width, height, 11).save(buf, format="JPEG", quality=90)
    raw = buf.getvalue()
    write_image_processor(tmp_path, size, CLIP_MEAN, CLIP_STD, "clip")
    image_processor = AutoImageProcessor.from_pretrained(tmp_path)
    zoo = ImageFinish(CLIP_MEAN, CLIP_STD, "none", size)({"pixel_values": decode_image(raw, size, draft)[None]},
                                                         torch.Generator())["pixel_values"]
    img = Image.open(io.BytesIO(raw))
    if draft:
        img.draft(None, (size, size))
        assert (img.size != (width, height)) == (min(width, height) >= 2 * size)      # draft acts on the large one
    hf = image_processor(images=img, return_tensors="pt")["pixel_values"]
    assert (hf - zoo).abs().max() <= 1e-6
