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

import csv
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ...datasets.shards import ShardWriter
from ...errors import ModalzooError
from ...registry import PACKERS

IMAGE_SUFFIXES = {".jpg": "jpg", ".jpeg": "jpeg", ".png": "png"}
CAPTION_TEMPLATE = "a photo of a {}."
PROMPT_TEMPLATES = ["a photo of a {}.", "a blurry photo of a {}.", "a close-up photo of a {}.",
                    "a good photo of a {}.", "a photo of the {}."]


@dataclass
class Item:
    path: Path
    caption: str | None
    class_id: int | None
    where: str                       # for error messages: "listing.csv:12"


class ClassNames:
    """Class name -> id: folder classes first (sorted), then names met in listings, in order of appearance."""

    def __init__(self, names: Iterable[str] = ()):
        self.ids: dict[str, int] = {}
        for name in names:
            self.id(name)

    def id(self, name: str) -> int:
        if name not in self.ids:
            self.ids[name] = len(self.ids)
        return self.ids[name]

    @property
    def names(self) -> list[str]:
        return list(self.ids)


def readable(name: str) -> str:
    return name.replace("_", " ").strip()


def class_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def walk_images(folder: Path) -> Iterator[Path]:
    """The .jpg/.jpeg/.png files under ``folder`` in sorted order, one directory listing at a time,
    skipping hidden files and folders."""
    for here, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                yield Path(here) / name


def folder_items(root: Path, classes: ClassNames) -> Iterator[Item]:
    folders = class_folders(root)
    if not folders:
        raise ModalzooError(f"{root}: an image folder needs one sub-folder per class (ROOT/CLASS/image.jpg)")
    found = 0
    for folder in folders:
        name = readable(folder.name)
        for path in walk_images(folder):
            found += 1
            yield Item(path, CAPTION_TEMPLATE.format(name), classes.id(name), str(path))
    if not found:
        raise ModalzooError(f"{root}: no .jpg/.jpeg/.png images in its class folders "
                            f"({', '.join(f.name for f in folders[:5])}{', ...' if len(folders) > 5 else ''})")


def _class_value(value, classes: ClassNames, where: str) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ModalzooError(f"{where}: 'class' must be an integer id or a name, got {value!r}")
    if isinstance(value, int):
        class_id = value
    elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
        class_id = int(value.strip())
    elif isinstance(value, str):
        return classes.id(value.strip())
    else:
        raise ModalzooError(f"{where}: 'class' must be an integer id or a name, got {value!r}")
    if class_id < 0:
        raise ModalzooError(f"{where}: class id {class_id} is negative")
    return class_id


def _listing_item(record: dict, base: Path, classes: ClassNames, where: str) -> Item:
    path, caption = record.get("path"), record.get("caption")
    if not isinstance(path, str) or not path.strip():
        raise ModalzooError(f"{where}: no image 'path'")
    if caption is not None and not isinstance(caption, str):
        raise ModalzooError(f"{where}: 'caption' must be a string, got {caption!r}")
    return Item(base / path.strip(), caption.strip() if caption else None,
                _class_value(record.get("class"), classes, where), where)


def csv_items(listing: Path, classes: ClassNames) -> Iterator[Item]:
    with listing.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        missing = [c for c in ("path", "caption") if c not in columns]
        if missing:
            raise ModalzooError(f"{listing}: missing column(s) {', '.join(repr(c) for c in missing)} "
                                f"(the header has {columns}; expected path,caption[,class])")
        for row in reader:
            yield _listing_item(row, listing.parent, classes, f"{listing}:{reader.line_num}")


def jsonl_items(listing: Path, classes: ClassNames) -> Iterator[Item]:
    with listing.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{listing}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ModalzooError(f"{where}: not valid JSON ({err.msg})") from None
            if not isinstance(record, dict) or "path" not in record:
                keys = list(record)[:8] if isinstance(record, dict) else type(record).__name__
                raise ModalzooError(f"{where}: no 'path' field (got {keys}; expected path, caption[, class])")
            yield _listing_item(record, listing.parent, classes, where)


def pack_images(sources: Iterable[str | Path], out: str | Path, val_fraction: float = 0.0,
                val_split: str = "test", images_per_shard: int = 1000) -> dict[str, int]:
    """Pack image folders and .csv/.jsonl listings into ``out/train`` and ``out/<val_split>`` shards.

    Images stay one tar member each (``KEY.jpg`` beside ``KEY.txt``/``KEY.cls``): their bytes are stored as
    they are, already compressed, so a member's 512-byte header is little beside a photo, and the shards
    keep webdataset's own layout that other image tools read."""
    from tqdm import tqdm

    sources, out = [Path(s) for s in sources], Path(out)
    if not 0 <= val_fraction < 1:
        raise ModalzooError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    if val_split == "train" or not val_split or "/" in val_split:
        raise ModalzooError(f"--val-split must be a plain folder name other than 'train', got {val_split!r}")
    if not sources:
        raise ModalzooError("give at least one image folder or .csv/.jsonl listing")
    for src in sources:
        if not src.exists():
            raise ModalzooError(f"no such file or folder: {src}")
        if src.is_file() and src.suffix.lower() not in (".csv", ".jsonl"):
            raise ModalzooError(f"{src}: expected an image folder, a .csv or a .jsonl listing")
    folder_classes = sorted({readable(f.name) for src in sources if src.is_dir() for f in class_folders(src)})
    classes = ClassNames(folder_classes)
    counts = {"train": 0, val_split: 0}
    writers: dict[str, ShardWriter] = {}
    try:
        for src in sources:
            if src.is_dir():
                items = folder_items(src, classes)
            elif src.suffix.lower() == ".csv":
                items = csv_items(src, classes)
            else:
                items = jsonl_items(src, classes)
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
