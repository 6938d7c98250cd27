"""`modalzoo data pack-images`: the user's own images -> webdataset shards for the `image_text` dataset.

Two kinds of source, mixed freely:

* an image-folder tree ``ROOT/CLASS/.../*.jpg|jpeg|png``: class ids in sorted class-folder order
  (over every tree given), captions "a photo of a {class}." (underscores read as spaces);
* a ``.csv`` (header row) or ``.jsonl`` listing with ``path`` and ``caption`` and an optional ``class``
  (an integer id or a class name; names get ids after the folder classes, in order of appearance, and
  are what classes.json lists, so use names or ids, not both); paths are relative to the listing file.

Images are streamed one at a time and stored byte for byte (no re-encoding); memory stays constant
whatever the number of images. An image goes to the validation split by a hash of its bytes, so the split
is stable when the sources are re-packed and duplicate images never straddle it. ``classes.json``
({"classes": [...], "templates": [...]}) is written when class names are known.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ...datasets.listings import ClassNames, check_sources, class_folders, folder_items, listed_items, readable
from ...datasets.shards import ShardWriter
from ...errors import ModalzooError
from ...registry import PACKERS

IMAGE_SUFFIXES = {".jpg": "jpg", ".jpeg": "jpeg", ".png": "png"}
CAPTION_TEMPLATE = "a photo of a {}."
PROMPT_TEMPLATES = ["a photo of a {}.", "a blurry photo of a {}.", "a close-up photo of a {}.",
                    "a good photo of a {}.", "a photo of the {}."]


def pack_images(sources: Iterable[str | Path], out: str | Path, val_fraction: float = 0.0,
                val_split: str = "test", images_per_shard: int = 1000) -> dict[str, int]:
    """Pack image folders and .csv/.jsonl listings into ``out/train`` and ``out/<val_split>`` shards.

    Images stay one tar member each (``KEY.jpg`` beside ``KEY.txt``/``KEY.cls``): their bytes are stored as
    they are, already compressed, so a member's 512-byte header is little beside a photo, and the shards
    keep webdataset's own layout that other image tools read."""
    from tqdm import tqdm

    sources, out = [Path(s) for s in sources], Path(out)
    check_sources(sources, val_fraction, val_split, "image")
    folder_classes = sorted({readable(f.name) for src in sources if src.is_dir() for f in class_folders(src)})
    classes = ClassNames(folder_classes)
    counts = {"train": 0, val_split: 0}
    writers: dict[str, ShardWriter] = {}
    try:
        for src in sources:
            items = (folder_items(src, classes, IMAGE_SUFFIXES, CAPTION_TEMPLATE, "image") if src.is_dir()
                     else listed_items(src, classes))
            for item in tqdm(items, desc=src.name, unit=" images", disable=None):
                ext = IMAGE_SUFFIXES.get(item.path.suffix.lower())
                if ext is None:
                    raise ModalzooError(f"{item.where}: {item.path.name} is not a .jpg/.jpeg/.png image")
                try:
                    data = item.path.read_bytes()
                except FileNotFoundError:
                    raise ModalzooError(f"{item.where}: no such image: {item.path}") from None
                except OSError as err:
                    raise ModalzooError(f"{item.where}: cannot read {item.path}: {err.strerror or err}") from None
                digest = hashlib.sha1(data).hexdigest()
                split = val_split if int(digest, 16) % 10_000 < val_fraction * 10_000 else "train"
                if split not in writers:
                    writers[split] = ShardWriter(out, split, max_count=images_per_shard)
                sample = {"__key__": f"{counts[split]:09d}", ext: data}
                if item.caption:
                    sample["txt"] = item.caption
                if item.class_id is not None:
                    sample["cls"] = str(item.class_id)
                writers[split].write(sample)
                counts[split] += 1
    finally:
        for w in writers.values():
            w.close()
    if not sum(counts.values()):
        raise ModalzooError(f"no images in {', '.join(map(str, sources))}")
    if classes.names:
        (out / "classes.json").write_text(json.dumps({"classes": classes.names, "templates": PROMPT_TEMPLATES},
                                                     indent=2))
    (out / "info.json").write_text(json.dumps({"name": "pack-images", "images": counts,
                                               "sources": [str(s) for s in sources],
                                               "classes": len(classes.names)}, indent=2))
    return counts


@dataclass
class PackImagesConfig:
    """The `data pack-images` flags (metadata "help": their help)."""
    val_fraction: float = field(default=0.0, metadata={"help": "images routed to the validation split"})
    val_split: str = field(default="test", metadata={"help": "the validation split's folder name (default: test, "
                                                             "the image_text dataset's default val_split)"})


@PACKERS.register("pack-images")
class PackImages:
    """Pack images into webdataset image-text shards (for the image_text dataset), streaming, storing each
    image's bytes as they are. SRC is an image folder (ROOT/CLASS/*.jpg|png: class ids in sorted folder
    order, captions 'a photo of a CLASS.') or a .csv/.jsonl listing with path,caption[,class] columns (paths
    relative to the listing)."""

    Config = PackImagesConfig
    inputs = "SRC"
    example = "modalzoo data pack-images photos/ captions.csv --out data/my-images --val-fraction 0.05"

    def __init__(self, cfg: PackImagesConfig):
        self.cfg = cfg

    def pack(self, sources: list[Path], out: Path) -> str:
        split = self.cfg.val_split
        counts = pack_images(sources, out, val_fraction=self.cfg.val_fraction, val_split=split)
        return f"packed {counts['train']} train / {counts[split]} {split} images into {out}"
