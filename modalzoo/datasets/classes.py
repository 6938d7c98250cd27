"""Class ids: `ClassField` (``KEY.cls``, an integer per sample) with the class names and zero-shot prompt
templates of ``classes.json`` beside the shards. Any modality's dataset uses it (images, audio); the default
templates are the modality's (a photo of / the sound of)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ModalzooError


def class_of(sample: dict) -> int:
    raw = sample.get("cls")
    if raw is None:
        return -1
    value = int(raw.decode("ascii") if isinstance(raw, bytes) else raw)
    if value < 0:
        raise ValueError(f"negative class id {value}")
    return value


def read_classes(folder: str | Path) -> dict:
    """``classes.json`` in ``folder``: {"classes": [...], "templates": [...]}, or {} if absent."""
    path = Path(folder) / "classes.json"
    if not path.exists():
        return {}
    try:
        info = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModalzooError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(info, dict) or not isinstance(info.get("classes"), list):
        raise ModalzooError(f"{path}: expected {{\"classes\": [names...], \"templates\": [...]}}")
    return info


@dataclass
class ClassState:
    classes: list[str] | None        # from classes.json; None when the data has none
    templates: list[str]             # zero-shot prompt templates, "{}" for the class name


class ClassField:
    """An optional integer class id per sample: ``class_id`` long [B], -1 where a sample has no ``.cls``."""

    kind, keys, unit, rows = "class", ("cls",), "samples", "samples"

    def __init__(self, default_templates: list[str]):
        self.default_templates = list(default_templates)

    def prepare(self, data, run_dir: Path | None) -> ClassState:
        info = read_classes(data.cfg.path)
        return ClassState(info.get("classes"), info.get("templates") or list(self.default_templates))

    def restore(self, data, run_dir: Path) -> ClassState:
        return self.prepare(data, run_dir)       # classes.json beside the shards, when they are here

    def decode(self, sample: dict, state: ClassState) -> int:
        return class_of(sample)

    def collate(self, ids: list[int], state: ClassState) -> dict[str, torch.Tensor]:
        return {"class_id": torch.tensor(ids, dtype=torch.long)}

    def count(self, batch: dict) -> int:
        return int(batch["class_id"].shape[0])

    def files(self, state: ClassState, out: Path, style: str | None) -> list[Path]:
        return []
