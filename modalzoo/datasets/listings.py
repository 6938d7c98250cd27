"""Users' files listed for packing, shared by every `pack-*` that takes media files (images, audio): a class-folder
tree ``ROOT/CLASS/.../FILE`` (class ids in sorted folder order over every tree given, captions from a template
with the folder name, underscores read as spaces) or a ``.csv`` (header row) / ``.jsonl`` listing with ``path``
and ``caption`` and an optional ``class`` (an integer id or a name; names get ids after the folder classes, in
order of appearance; paths relative to the listing). Everything streams: one directory listing or one line at
a time."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModalzooError


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


def walk_files(folder: Path, suffixes: Iterable[str]) -> Iterator[Path]:
    """The files under ``folder`` with one of ``suffixes`` (".jpg", ...) in sorted order, one directory
    listing at a time, skipping hidden files and folders."""
    suffixes = set(suffixes)
    for here, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and Path(name).suffix.lower() in suffixes:
                yield Path(here) / name


def folder_items(root: Path, classes: ClassNames, suffixes: Iterable[str], caption_template: str,
                 what: str) -> Iterator[Item]:
    """The ``suffixes`` files of a class-folder tree; ``what`` names them in messages ("image", "audio")."""
    suffixes = list(suffixes)
    folders = class_folders(root)
    if not folders:
        raise ModalzooError(f"{root}: an {what} folder needs one sub-folder per class (ROOT/CLASS/file"
                            f"{suffixes[0]})")
    found = 0
    for folder in folders:
        name = readable(folder.name)
        for path in walk_files(folder, suffixes):
            found += 1
            yield Item(path, caption_template.format(name), classes.id(name), str(path))
    if not found:
        raise ModalzooError(f"{root}: no {'/'.join(suffixes)} files in its class folders "
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
        raise ModalzooError(f"{where}: no 'path'")
    if caption is not None and not isinstance(caption, str):
        raise ModalzooError(f"{where}: 'caption' must be a string, got {caption!r}")
    return Item(base / path.strip(), caption.strip() if caption else None,
                _class_value(record.get("class"), classes, where), where)


def csv_items(listing: Path, classes: ClassNames) -> Iterator[Item]:
    with listing.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        missing = [c for c in ("path", "caption") if c not in columns and not (c == "caption" and "class" in columns)]
        if missing:
            raise ModalzooError(f"{listing}: missing column(s) {', '.join(repr(c) for c in missing)} "
                                f"(the header has {columns}; expected path,caption[,class] or path,class)")
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


def listed_items(src: Path, classes: ClassNames) -> Iterator[Item]:
    """The items of a .csv or .jsonl listing."""
    return csv_items(src, classes) if src.suffix.lower() == ".csv" else jsonl_items(src, classes)


def check_sources(sources: list[Path], val_fraction: float, val_split: str, what: str) -> None:
    """The checks every media packer makes before reading anything (``what``: "image", "audio")."""
    if not 0 <= val_fraction < 1:
        raise ModalzooError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    if val_split == "train" or not val_split or "/" in val_split:
        raise ModalzooError(f"--val-split must be a plain folder name other than 'train', got {val_split!r}")
    if not sources:
        raise ModalzooError(f"give at least one {what} folder or .csv/.jsonl listing")
    for src in sources:
        if not src.exists():
            raise ModalzooError(f"no such file or folder: {src}")
        if src.is_file() and src.suffix.lower() not in (".csv", ".jsonl"):
            raise ModalzooError(f"{src}: expected an {what} folder, a .csv or a .jsonl listing")
