"""The Hugging Face image processor file for an exported run, ``preprocessor_config.json``, such that
`transformers` (5.x, offline) reproduces the zoo's eval image path exactly.

    write_image_processor(out_dir, image_size=224, mean=CLIP_MEAN, std=CLIP_STD, style="clip")  # or vit

``preprocessor_config.json`` describes the zoo's eval path (`modalities/vision/fields.py`: any mode to
RGB with transparency composited onto white, shorter side resized to ``image_size`` with bicubic
antialiasing, centre crop, /255, normalise with mean/std): ``image_processor_type`` ``CLIPImageProcessor``
(style clip, with ``processor_class`` ``CLIPProcessor``) or ``ViTImageProcessor`` (style vit, for ViT and
MAE), both with every option written out: ``size={"shortest_edge": S}``, ``resample=3`` (bicubic),
``do_center_crop`` with ``crop_size`` S x S, ``rescale_factor=1/255``, ``image_mean``/``image_std``,
``do_convert_rgb``. ``AutoImageProcessor``/``AutoProcessor`` load the torchvision backend of these
classes by default (``backend="pil"`` picks the PIL one), so the zoo resizes exactly as that backend does
(`modalities/vision/fields.py::resize_center_crop`: torchvision's bicubic on the uint8 tensor, the longer
side ``int(S * long / short)``, crop offsets ``int((side - S) / 2)``); HF's RGB conversion is PIL's, as the
zoo's. ``processor(images=pil_images, return_tensors="pt")["pixel_values"]`` equals the zoo's normalised
pixels to float32 rounding (<= 1e-6: HF fuses the /255 into mean and std).

Known differences: the PIL backend (``backend="pil"``) resizes with PIL's bicubic, a few uint8 levels off
(up to 3 on the tests' photo-like images, up to ~10 when upscaling noise); a processor run with
``device="cuda"`` resizes in float32 and rounds instead of using the CPU's uint8 kernel (not measured);
16-bit and float greyscale images ("I;16", "I", "F") are scaled to 8 bits by the zoo but clipped by PIL's
convert("RGB") in HF; with the dataset option ``jpeg_draft: true`` (off by default) the zoo decodes JPEGs
at least twice ``image_size`` on both sides at a reduced DCT scale (``Image.draft``), so to match those
call ``img.draft(None, (S, S))`` on the opened image before the processor. Images are compared as PIL
images; numpy arrays or tensors lose the PIL mode.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from ....errors import ModalzooError

# style -> HF image processor class (torchvision backend; the PIL one is the same name + "Pil") and processor.
IMAGE_STYLES: dict[str, dict] = {
    "clip": {"class": "CLIPImageProcessor", "processor": "CLIPProcessor"},
    "vit": {"class": "ViTImageProcessor", "processor": None},
}

BICUBIC = 3                       # PIL.Image.Resampling.BICUBIC, as HF stores ``resample``


def image_processor_config(image_size: int, mean: Sequence[float], std: Sequence[float], style: str) -> dict:
    """The ``preprocessor_config.json`` contents for the zoo's eval image path at ``image_size``."""
    if style not in IMAGE_STYLES:
        raise ModalzooError(f"unknown image processor style {style!r}; choose from {sorted(IMAGE_STYLES)}")
    if len(mean) != 3 or len(std) != 3:
        raise ModalzooError(f"mean and std need 3 values (RGB), got {list(mean)} and {list(std)}")
    info = IMAGE_STYLES[style]
    config = {
        "image_processor_type": info["class"],
        "do_convert_rgb": True,
        "do_resize": True,
        "size": {"shortest_edge": int(image_size)},
        "default_to_square": False,
        "resample": BICUBIC,
        "do_center_crop": True,
        "crop_size": {"height": int(image_size), "width": int(image_size)},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [float(m) for m in mean],
        "image_std": [float(s) for s in std],
        "do_pad": False,
    }
    if info["processor"]:
        config["processor_class"] = info["processor"]
    return config


def write_image_processor(out_dir: str | Path, image_size: int, mean: Sequence[float], std: Sequence[float],
                          style: str) -> Path:
    """Write ``preprocessor_config.json`` (style clip or vit) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "preprocessor_config.json"
    config = image_processor_config(image_size, mean, std, style)
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
