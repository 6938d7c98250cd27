"""The vision modality's field: `ImageField` (``KEY.jpg|jpeg|png``); class ids are the core `ClassField`
(`datasets/classes.py`).

Images are decoded with PIL (any mode -> RGB), the shorter side resized to ``image_size`` (torchvision's
antialiased bicubic, as `transformers`' image processors do) and center-cropped, and collated as uint8; the
finishing step then augments (train only), scales to [0, 1] and normalises, drawing all randomness from the
stream's per-batch generator so a batch is a pure function of its position in the stream (exact resume).
PIL and torchvision are imported where they are used: importing this package registers its components.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from PIL import Image

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png")
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
DEFAULT_TEMPLATES = ["a photo of a {}."]     # zero-shot prompts when classes.json names none
CROP_SCALE = (0.8, 1.0)           # augment=light: RandomResizedCrop scale range ...
ROTATION_DEGREES = 10.0           # ... and a small rotation; no flips (digits are not mirror-symmetric)


# ----------------------------------------------------------------------------------------- decoding

def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB. Transparent pixels are composited onto white; 16-bit grey is scaled to 8 bits."""
    from PIL import Image

    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        grey = np.asarray(img, dtype=np.float32) / 257.0
        img = Image.fromarray(grey.clip(0, 255).astype(np.uint8), "L")
    elif img.mode == "F":
        img = Image.fromarray((np.asarray(img, dtype=np.float32).clip(0, 1) * 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode in ("L", "RGB") and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        white.paste(rgba, mask=rgba.getchannel("A"))
        return white
    return img if img.mode == "RGB" else img.convert("RGB")


def resize_center_crop(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [3, H, W] -> uint8 [3, size, size]: resize the shorter side to ``size`` (bicubic, antialiased),
    then take the central square.

    This is exactly what `transformers`' default (torchvision) `CLIPImageProcessor` / `ViTImageProcessor` do
    with ``size={"shortest_edge": size}`` and a center crop (see `modalities/vision/hub/image_processor.py`):
    the longer side becomes ``int(size * long / short)`` (floored), the resize is torchvision's on the uint8
    tensor, and the crop starts at ``int((side - size) / 2)``. PIL's own bicubic differs from torchvision's by
    a few levels, so the zoo uses torchvision's."""
    from torchvision.transforms.v2 import functional as TF

    height, width = pixels.shape[-2:]
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(size * long / short)
    new_h, new_w = (new_long, size) if width <= height else (size, new_long)
    if (new_h, new_w) != (height, width):
        pixels = TF.resize(pixels, [new_h, new_w], interpolation=TF.InterpolationMode.BICUBIC, antialias=True)
    top, left = int((new_h - size) / 2.0), int((new_w - size) / 2.0)
    return pixels[:, top:top + size, left:left + size].contiguous()


def decode_image(raw: bytes, size: int, draft: bool = False) -> torch.Tensor:
    """Encoded image bytes -> uint8 [3, size, size]. Raises on corrupt or truncated data.

    ``draft``: decode JPEGs at a reduced scale (see ImageTextDataConfig.jpeg_draft)."""
    from PIL import Image

    with Image.open(io.BytesIO(raw)) as img:
        if draft:
            img.draft(None, (size, size))
        img.load()
        rgb = np.array(to_rgb(img), dtype=np.uint8)
    return resize_center_crop(torch.from_numpy(rgb).permute(2, 0, 1).contiguous(), size)


def image_bytes(sample: dict) -> bytes | None:
    for ext in IMAGE_EXTENSIONS:
        if sample.get(ext) is not None:
            return sample[ext]
    return None


# ----------------------------------------------------------------------------------------- finishing

class ImageFinish:
    """The finishing step: augment (per image, seeded from the batch's generator), scale to [0, 1] and
    normalise. Picklable; never touches the caller's global RNG state."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], augment: str, image_size: int):
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.augment, self.image_size = augment, image_size

    def augmenter(self):
        from torchvision.transforms import v2
        return v2.Compose([v2.RandomResizedCrop(self.image_size, scale=CROP_SCALE, antialias=True),
                           v2.RandomRotation(ROTATION_DEGREES, interpolation=v2.InterpolationMode.BILINEAR)])

    def __call__(self, batch: dict, generator: torch.Generator) -> dict:
        pixels = batch["pixel_values"].float().div_(255)
        if self.augment == "light":
            seed = int(torch.randint(2**62, (1,), generator=generator))
            augment = self.augmenter()
            with torch.random.fork_rng(devices=[]):      # the CPU RNG only; restored on exit
                torch.default_generator.manual_seed(seed)
                pixels = torch.stack([augment(image) for image in pixels]).clamp_(0, 1)
        batch["pixel_values"] = (pixels - self.mean) / self.std
        return batch


# ----------------------------------------------------------------------------------------- fields

@dataclass
class ImageState:
    image_size: int
    mean: list[float]
    std: list[float]


class ImageField:
    """An image per sample: ``pixel_values`` float32 [B, 3, S, S], normalised with ``mean``/``std``."""

    kind, keys, unit, rows = "image", IMAGE_EXTENSIONS, "images", "images"

    def __init__(self, image_size: int, mean: Sequence[float], std: Sequence[float], augment: str = "none",
                 jpeg_draft: bool = False):
        self.state = ImageState(image_size, list(mean), list(std))
        self.augment, self.jpeg_draft = augment, jpeg_draft

    def prepare(self, data, run_dir: Path | None) -> ImageState:
        return self.state

    def restore(self, data, run_dir: Path) -> ImageState:
        return self.state

    def decode(self, sample: dict, state: ImageState) -> torch.Tensor:
        raw = image_bytes(sample)
        if raw is None:
            raise ValueError(f"sample {sample.get('__key__')} has no .jpg/.jpeg/.png image")
        return decode_image(raw, state.image_size, self.jpeg_draft)

    def collate(self, images: list[torch.Tensor], state: ImageState) -> dict[str, torch.Tensor]:
        return {"pixel_values": torch.stack(images)}

    def finisher(self, state: ImageState, train: bool) -> ImageFinish:
        return ImageFinish(state.mean, state.std, self.augment if train else "none", state.image_size)

    def count(self, batch: dict) -> int:
        return int(batch["pixel_values"].shape[0])

    def preview(self, batch: dict, row: int, state: ImageState) -> np.ndarray:
        """Row ``row`` of a batch as a uint8 [H, W, 3] picture (reports' image grids): a finished batch's
        normalisation undone with ``state``'s mean/std; a collated (uint8) batch is shown as it is."""
        pixels = batch["pixel_values"][row].detach().cpu()
        if pixels.dtype != torch.uint8:
            mean = torch.tensor(state.mean, dtype=torch.float32).view(3, 1, 1)
            std = torch.tensor(state.std, dtype=torch.float32).view(3, 1, 1)
            pixels = (pixels.float() * std + mean).clamp(0, 1).mul(255).round().to(torch.uint8)
        return np.ascontiguousarray(pixels.permute(1, 2, 0).numpy())

    def files(self, state: ImageState, out: Path, style: str | None) -> list[Path]:
        from .hub.image_processor import write_image_processor
        return [write_image_processor(out, state.image_size, state.mean, state.std, style or "vit")]
