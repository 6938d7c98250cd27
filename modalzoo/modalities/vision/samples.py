"""`modalzoo data build digits`: scikit-learn's bundled handwritten digits (1,797 real 8x8 scans) as RGB
PNGs with captions, class ids and zero-shot prompt templates, split train/test stratified by class (offline:
nothing is downloaded)."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from ...datasets.shards import ShardWriter
from ...registry import SAMPLE_DATA

DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
DIGIT_CAPTIONS = [                   # {w}: the digit in words, {n}: as a numeral
    "a photo of the number {w}.", "handwritten {n}", "the digit {w}", "a scanned image of a {w}",
    "a handwritten {w}.", "the number {n}.", "a low resolution image of the digit {n}.",
    "a blurry picture of a handwritten {w}.", "an image of the numeral {n}", "a drawing of the digit {w}.",
]
DIGIT_TEMPLATES = ["a photo of the number {}.", "the digit {}.", "a handwritten {}.", "a scanned image of a {}.",
                   "a blurry picture of a handwritten {}."]


@dataclass
class DigitsConfig:
    size: int = 32                   # the 8x8 originals are upsampled (bicubic) to size x size
    test_fraction: float = 0.2       # stratified by class
    images_per_shard: int = 100
    seed: int = 0


@SAMPLE_DATA.register("digits")
class Digits:
    """scikit-learn's 1,797 handwritten 8x8 digits as RGB PNGs with captions and class ids (train/test)."""

    Config = DigitsConfig

    def __init__(self, cfg: DigitsConfig):
        if cfg.size < 8:
            raise ValueError(f"size must be at least 8 (the originals are 8x8), got {cfg.size}")
        if not 0 < cfg.test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {cfg.test_fraction}")
        self.cfg = cfg

    def build(self, out: Path) -> dict:
        import io

        import numpy as np
        from PIL import Image
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        cfg, out = self.cfg, Path(out)
        digits = load_digits()                       # bundled with scikit-learn: nothing is downloaded
        images, labels = digits.images, digits.target
        train_idx, test_idx = train_test_split(np.arange(len(labels)), test_size=cfg.test_fraction,
                                               stratify=labels, random_state=cfg.seed)
        rng = random.Random(cfg.seed)
        counts = {}
        for split, indices in (("train", sorted(train_idx)), ("test", sorted(test_idx))):
            indices = list(indices)
            rng.shuffle(indices)                     # classes mixed within every shard
            with ShardWriter(out, split, max_count=cfg.images_per_shard) as writer:
                for i in indices:
                    grey = Image.fromarray((images[i] * (255 / 16)).round().astype(np.uint8), "L")
                    rgb = grey.resize((cfg.size, cfg.size), Image.Resampling.BICUBIC).convert("RGB")
                    png = io.BytesIO()
                    rgb.save(png, format="PNG")
                    label = int(labels[i])
                    caption = rng.choice(DIGIT_CAPTIONS).format(w=DIGIT_WORDS[label], n=label)
                    writer.write({"__key__": f"digit-{i:04d}", "png": png.getvalue(), "txt": caption,
                                  "cls": str(label)})
            counts[split] = len(indices)
        (out / "classes.json").write_text(json.dumps({"classes": DIGIT_WORDS, "templates": DIGIT_TEMPLATES},
                                                     indent=2))
        info = {"name": "digits", "images": counts, "classes": len(DIGIT_WORDS), "size": cfg.size,
                "source": "scikit-learn load_digits (UCI optical recognition of handwritten digits, 8x8, "
                          "values 0-16; white ink on black)", "config": vars(cfg)}
        (out / "info.json").write_text(json.dumps(info, indent=2))
        return info
