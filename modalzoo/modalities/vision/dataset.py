"""The `image_text` dataset: webdataset shards of ``KEY.jpg|jpeg|png`` images with an optional
``KEY.txt`` caption and an optional ``KEY.cls`` integer class id (CLIP, MAE, zero-shot evaluation).

Loader workers decode with PIL (any mode -> RGB), resize the shorter side to ``image_size`` (torchvision's
antialiased bicubic, as `transformers`' image processors do) and center-crop, and collate uint8 images;
the finishing stage then augments (train only), normalises and runs the task transforms, drawing all
randomness from the stream's per-batch generator so a batch is a pure function of its position in the
stream (exact resume). A corrupt or truncated image, caption or class id is skipped and counted (the
trainer reports it as ``skipped_samples``).

Batches: ``pixel_values`` float32 [B, 3, S, S] normalised with ``mean``/``std``; ``class_id`` long [B]
(-1 where a sample has no ``.cls``); with ``captions``: ``input_ids`` long [B, seq_len] (bos, caption
tokens, eos, right-padded with the pad id) and ``attention_mask`` bool [B, seq_len].
"""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image

from ...datasets.shards import ShardStream, SkipCounter, list_shards, loader
from ...errors import ModalzooError
from ...pretrain_tasks.base import DataContext
from ...registry import DATASETS
from ..text.dataset import Transforms
from ..text.tokenizers import TextTokenizer, load_or_train

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png")
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
DEFAULT_TEMPLATES = ["a photo of a {}."]
CROP_SCALE = (0.8, 1.0)           # augment=light: RandomResizedCrop scale range ...
ROTATION_DEGREES = 10.0           # ... and a small rotation; no flips (digits are not mirror-symmetric)
MAX_EMPTY_EPOCHS = 20             # a training reader that makes no batch in this many epochs in a row: error


@dataclass
class ImageTextDataConfig:
    path: str = "data/digits"
    train_split: str = "train"
    val_split: str = "test"
    image_size: int = 32
    mean: list[float] = field(default_factory=lambda: list(CLIP_MEAN))
    std: list[float] = field(default_factory=lambda: list(CLIP_STD))
    augment: Literal["none", "light"] = "none"   # light: random resized crop (0.8-1) + rotation (+-10 deg)
    # Let libjpeg decode large JPEGs at a reduced scale (>= 2x image_size): several times faster on photos,
    # but then pixels differ slightly from what an export's transformers image processor computes.
    jpeg_draft: bool = False
    num_workers: int = 1
    shuffle_buffer: int = 1000
    captions: bool = True            # tokenize KEY.txt into input_ids / attention_mask
    seq_len: int = 32                # caption length in tokens, bos and eos included
    tokenizer: dict = field(default_factory=lambda: {"name": "bytelevel_bpe", "vocab_size": 1000})
    tokenizer_train_docs: int = 100_000  # captions read to train the tokenizer when none is given

    def __post_init__(self):
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"mean and std need 3 values (RGB), got {self.mean} and {self.std}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std}")
        if self.image_size < 1:
            raise ValueError(f"image_size must be positive, got {self.image_size}")
        if self.captions and self.seq_len < 2:
            raise ValueError(f"seq_len must leave room for bos and eos, got {self.seq_len}")


# ----------------------------------------------------------------------------------------- decoding

def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB. Transparent pixels are composited onto white; 16-bit grey is scaled to 8 bits."""
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
    with ``size={"shortest_edge": size}`` and a center crop (see `modalzoo.hub.preprocessing`): the longer
    side becomes ``int(size * long / short)`` (floored), the resize is torchvision's on the uint8 tensor, and
    the crop starts at ``int((side - size) / 2)``. PIL's own bicubic differs from torchvision's by a few
    levels, so the zoo uses torchvision's."""
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


def caption_of(sample: dict) -> str | None:
    raw = sample.get("txt")
    if raw is None:
        return None
    return (raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)).strip()


def class_of(sample: dict) -> int:
    raw = sample.get("cls")
    if raw is None:
        return -1
    value = int(raw.decode("ascii") if isinstance(raw, bytes) else raw)
    if value < 0:
        raise ValueError(f"negative class id {value}")
    return value


def decode_captions(samples: Iterable[dict], skips: SkipCounter) -> Iterator[str]:
    """The non-empty captions of a stream (for training the tokenizer); images are not decoded."""
    for sample in samples:
        try:
            text = caption_of(sample)
        except UnicodeDecodeError:
            skips.skipped += 1
            continue
        if text:
            yield text


# ----------------------------------------------------------------------------------------- tokenizing

def encode_texts(tokenizer: TextTokenizer, texts: Sequence[str], seq_len: int) -> dict[str, torch.Tensor]:
    """Captions or zero-shot prompts -> ``input_ids`` [N, seq_len] and ``attention_mask`` [N, seq_len].

    Each row is bos + the text's tokens + eos, the tokens truncated so eos always fits, right-padded
    with the pad id. Captions in batches are encoded by this same function.
    """
    if seq_len < 2:
        raise ValueError(f"seq_len must leave room for bos and eos, got {seq_len}")
    ids = torch.full((len(texts), seq_len), tokenizer.pad_id, dtype=torch.long)
    mask = torch.zeros(len(texts), seq_len, dtype=torch.bool)
    for row, text in enumerate(texts):
        body = tokenizer.encode(text)[0][:seq_len - 2] if text else []
        tokens = [tokenizer.bos_id, *body, tokenizer.eos_id]
        ids[row, :len(tokens)] = torch.tensor(tokens)
        mask[row, :len(tokens)] = True
    return {"input_ids": ids, "attention_mask": mask}


# ----------------------------------------------------------------------------------------- batching

@dataclass
class Example:
    pixels: torch.Tensor             # uint8 [3, S, S]
    caption: str | None
    class_id: int


def _chunks(items: Iterable, size: int, drop_last: bool) -> Iterator[list]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        if len(chunk) < size and drop_last:
            return
        yield chunk


class ImageBatcher:
    """Runs in each loader worker: decode, resize, tokenize, collate (uint8 pixels; see ImageFinish)."""

    def __init__(self, image_size: int, batch_size: int, drop_last: bool, tokenizer: TextTokenizer | None,
                 seq_len: int, jpeg_draft: bool = False):
        self.image_size, self.batch_size, self.drop_last = image_size, batch_size, drop_last
        self.jpeg_draft = jpeg_draft
        self.tokenizer, self.seq_len = tokenizer, seq_len
        self.empty_epochs = 0

    def examples(self, samples: Iterable[dict], skips: SkipCounter) -> Iterator[Example]:
        for sample in samples:
            try:
                raw = image_bytes(sample)
                if raw is None:
                    raise ValueError(f"sample {sample.get('__key__')} has no .jpg/.jpeg/.png image")
                example = Example(decode_image(raw, self.image_size, self.jpeg_draft),
                                  caption_of(sample) if self.tokenizer is not None else None, class_of(sample))
            except Exception:                  # PIL raises OSError, SyntaxError, ValueError, zlib errors, ...
                skips.skipped += 1
                continue
            yield example

    def collate(self, examples: list[Example]) -> dict[str, torch.Tensor]:
        batch = {"pixel_values": torch.stack([e.pixels for e in examples]),
                 "class_id": torch.tensor([e.class_id for e in examples], dtype=torch.long)}
        if self.tokenizer is not None:
            batch.update(encode_texts(self.tokenizer, [e.caption or "" for e in examples], self.seq_len))
        return batch

    def __call__(self, samples: Iterable[dict], skips: SkipCounter) -> Iterator[dict]:
        """One epoch of this reader's shards. A repeating (training) stream whose reader never makes a full
        batch would spin forever and hang the DataLoader, so many empty epochs in a row are an error."""
        made = False
        for chunk in _chunks(self.examples(samples, skips), self.batch_size, self.drop_last):
            made, self.empty_epochs = True, 0
            yield self.collate(chunk)
        if made or not self.drop_last:
            return
        self.empty_epochs += 1
        if self.empty_epochs >= MAX_EMPTY_EPOCHS:
            raise ModalzooError(
                f"a data reader (rank x loader worker) made no full batch of {self.batch_size} images in "
                f"{self.empty_epochs} epochs of its shards ({skips.skipped} samples skipped as unreadable); "
                "use a smaller batch_size, fewer data.num_workers or more shards, or check the data")


class ImageFinish:
    """The finishing stage: augment (per image, seeded from the batch's generator), scale to [0, 1],
    normalise, then run the task transforms. Picklable; never touches the caller's global RNG state."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], augment: str, image_size: int,
                 transforms: Transforms | None = None):
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.augment, self.image_size = augment, image_size
        self.transforms = transforms

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
        if self.transforms is not None:
            batch = self.transforms(batch, generator)
        return batch


# ----------------------------------------------------------------------------------------- dataset

@DATASETS.register("image_text")
class ImageTextData:
    """Images with optional captions and class ids from webdataset shards (`data build digits`, `data pack-images`)."""

    Config = ImageTextDataConfig
    build_hint = "modalzoo data build digits"
    throughput_unit = "images"

    def __init__(self, cfg: ImageTextDataConfig):
        self.cfg = cfg
        self.tokenizer: TextTokenizer | None = None

    def shards(self, split: str) -> list[str]:
        return list_shards(self.cfg.path, split, self.build_hint)

    def texts(self, split: str, limit: int | None = None) -> Iterator[str]:
        """The captions of ``split`` in shard order."""
        stream = ShardStream(self.shards(split), decode_captions, shuffle=False, repeat=False)
        return itertools.islice(stream.raw_batches(0, 1, SkipCounter()), limit)

    def classes(self) -> dict:
        """``classes.json`` beside the shards: {"classes": [...], "templates": [...]}, or {} if absent."""
        path = Path(self.cfg.path) / "classes.json"
        if not path.exists():
            return {}
        try:
            info = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ModalzooError(f"{path}: not valid JSON ({err})") from None
        if not isinstance(info, dict) or not isinstance(info.get("classes"), list):
            raise ModalzooError(f"{path}: expected {{\"classes\": [names...], \"templates\": [...]}}")
        return info

    def prepare(self, run_dir: Path | None) -> DataContext:
        """Load or train the caption tokenizer (cached beside the shards, saved as run_dir/tokenizer.json)
        and describe the data for the tasks: class names, prompt templates, image size, mean, std."""
        info = self.classes()
        extra = {"classes": info.get("classes"), "templates": info.get("templates") or list(DEFAULT_TEMPLATES),
                 "image_size": self.cfg.image_size, "mean": list(self.cfg.mean), "std": list(self.cfg.std),
                 "seq_len": self.cfg.seq_len if self.cfg.captions else None}
        if self.cfg.captions:
            self.tokenizer = self._tokenizer(run_dir)
        return DataContext(tokenizer=self.tokenizer, extra=extra)

    def _tokenizer(self, run_dir: Path | None) -> TextTokenizer:
        return load_or_train(
            dict(self.cfg.tokenizer), run_dir, Path(self.cfg.path) / "tokenizers",
            ["captions", self.cfg.tokenizer_train_docs, self.cfg.train_split],
            lambda: self.texts(self.cfg.train_split, self.cfg.tokenizer_train_docs),
            f"no captions (.txt) in {self.cfg.path}/{self.cfg.train_split} to train the tokenizer on; "
            "set data.captions=false for images only")

    def loader(self, split: str, batch_size: int, transforms: list, seed: int, train: bool, start: int = 0):
        """Batches of ``split``; ``train`` shuffles, augments and repeats. ``start`` resumes after that many
        batches."""
        if self.cfg.captions and self.tokenizer is None:
            raise RuntimeError("call prepare() before loader()")
        shards = self.shards(self.cfg.train_split if split == "train" else self.cfg.val_split)
        batcher = ImageBatcher(self.cfg.image_size, batch_size, drop_last=train,
                               tokenizer=self.tokenizer if self.cfg.captions else None, seq_len=self.cfg.seq_len,
                               jpeg_draft=self.cfg.jpeg_draft)
        finish = ImageFinish(self.cfg.mean, self.cfg.std, self.cfg.augment if train else "none",
                             self.cfg.image_size, Transforms(transforms))
        stream = ShardStream(shards, batcher, finish, seed=seed, shuffle=train,
                             shuffle_buffer=self.cfg.shuffle_buffer, repeat=train, start=start, split_ranks=train)
        return loader(stream, self.cfg.num_workers, seed)

    def tokens_in(self, batch: dict) -> int:
        """Images in the batch (the throughput unit)."""
        return int(batch["pixel_values"].shape[0])
