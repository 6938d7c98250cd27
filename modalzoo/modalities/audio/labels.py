"""Label sets: frame-level unit ids for every utterance of an audio dataset (HuBERT's targets), one folder each.

    UNITS/units.json          what made them: sample_rate, label_rate (labels per second), feature ("mfcc",
                              "hubert"), layer, clusters, source_run, data (the dataset's path and identity),
                              and per split the utterances and labels written
    UNITS/kmeans.safetensors  the one k-means model for all splits ("centroids" [k, dim], plus the feature
                              normalisation it was fitted with), so later data gets the same cluster ids
    UNITS/{split}.units.npy   every utterance's labels concatenated (int16)
    UNITS/{split}.index.json  sample key -> [offset, length] into that array (keys unique across splits)

Written into a temporary folder and renamed into place when complete (a label set is never half-written).
A dataset that reads one checks its sample rate and identity first (`check_label_set`), and every
utterance's label count against its duration (fairseq's tolerance: 0.1 s); a mismatch is refused with one
message, never silently cropped.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from ...errors import ModalzooError

FORMAT = 1
LENGTH_TOLERANCE_S = 0.1


def data_identity(path: str | Path) -> str:
    """A short fingerprint of a dataset's shards (split/name and size of every tar): labels made for one
    dataset are refused on another."""
    root = Path(path)
    digest = hashlib.sha1()
    for shard in sorted(root.glob("*/*.tar")):
        digest.update(f"{shard.parent.name}/{shard.name}:{shard.stat().st_size};".encode())
    return digest.hexdigest()[:16]


class LabelSet:
    """A finished label set, read lazily: the index per split, the labels memory-mapped."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        meta_path = self.path / "units.json"
        if not meta_path.exists():
            raise ModalzooError(f"{self.path} is not a label set (no units.json); make one with "
                                "`modalzoo units mfcc DATA --clusters K --out UNITS`")
        self.meta = json.loads(meta_path.read_text())
        if self.meta.get("format") != FORMAT:
            raise ModalzooError(f"{meta_path}: label-set format {self.meta.get('format')}, this modalzoo reads "
                                f"{FORMAT}")
        self._index: dict[str, dict] = {}
        self._units: dict[str, np.ndarray] = {}

    @property
    def label_rate(self) -> float:
        return float(self.meta["label_rate"])

    @property
    def sample_rate(self) -> int:
        return int(self.meta["sample_rate"])

    @property
    def clusters(self) -> int:
        return int(self.meta["clusters"])

    def splits(self) -> list[str]:
        return sorted(self.meta.get("splits", {}))

    def index(self, split: str) -> dict[str, list[int]]:
        if split not in self._index:
            path = self.path / f"{split}.index.json"
            if not path.exists():
                raise ModalzooError(f"label set {self.path} has no labels for split '{split}' (it has "
                                    f"{self.splits()})")
            self._index[split] = json.loads(path.read_text())
            self._units[split] = np.load(self.path / f"{split}.units.npy", mmap_mode="r")
        return self._index[split]

    def units(self, key: str) -> np.ndarray:
        """The labels of utterance ``key`` (int64 [n]), whichever split holds it (keys are unique across a
        dataset's splits); a key the set does not hold is refused (labels made for another dataset)."""
        for split in self.splits():
            index = self.index(split)
            if key in index:
                offset, length = index[key]
                return np.asarray(self._units[split][offset:offset + length], dtype=np.int64)
        raise ModalzooError(f"label set {self.path} has no labels for sample '{key}' (splits {self.splits()}): "
                            "were they made for another dataset? Make them for this one with `modalzoo units ...`")


def check_label_set(labels: LabelSet, data_path: str | Path, sample_rate: int) -> None:
    """Refuse a label set made at another sample rate or for another dataset, with the command that fixes it."""
    if labels.sample_rate != sample_rate:
        raise ModalzooError(f"label set {labels.path} was made from {labels.sample_rate} Hz audio, the dataset "
                            f"reads {sample_rate} Hz: make the labels from this data")
    made_for = labels.meta.get("data", {}).get("identity")
    here = data_identity(data_path)
    if made_for is not None and made_for != here:
        raise ModalzooError(f"label set {labels.path} was made for {labels.meta['data'].get('path')} (identity "
                            f"{made_for}), not for {data_path} ({here}): the shards differ, so the labels would "
                            "not match their utterances; make the labels from this data")


def check_length(units: np.ndarray, samples: int, sample_rate: int, label_rate: float, key: str) -> None:
    """An utterance's label count must match its duration within `LENGTH_TOLERANCE_S`."""
    seconds, labelled = samples / sample_rate, len(units) / label_rate
    if abs(seconds - labelled) > LENGTH_TOLERANCE_S:
        raise ModalzooError(f"sample '{key}': {len(units)} labels at {label_rate:g}/s cover {labelled:.2f} s but "
                            f"the audio is {seconds:.2f} s (tolerance {LENGTH_TOLERANCE_S} s): labels from "
                            "another dataset, another sample rate or another label rate")


class LabelSetWriter:
    """Writes a label set into ``out`` atomically: labels per split in any order, then ``close()``."""

    def __init__(self, out: str | Path, meta: dict, centroids: dict[str, np.ndarray] | None = None):
        self.out = Path(out)
        self.tmp = self.out.with_name(self.out.name + ".partial")
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir(parents=True)
        self.meta = {"format": FORMAT, **meta, "splits": {}}
        self.parts: dict[str, list[np.ndarray]] = {}
        self.index: dict[str, dict[str, list[int]]] = {}
        self.offsets: dict[str, int] = {}
        if centroids is not None:
            from safetensors.numpy import save_file
            save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in centroids.items()},
                      str(self.tmp / "kmeans.safetensors"))

    def add(self, split: str, key: str, units: np.ndarray) -> None:
        units = np.asarray(units)
        if any(key in index for index in self.index.values()):
            raise ValueError(f"sample key '{key}' written twice (keys must be unique across splits)")
        if units.size and (units.min() < 0 or units.max() >= int(self.meta["clusters"])):
            raise ValueError(f"unit ids of '{key}' outside [0, {self.meta['clusters']})")
        offset = self.offsets.get(split, 0)
        self.index.setdefault(split, {})[key] = [offset, len(units)]
        self.parts.setdefault(split, []).append(units.astype(np.int16))
        self.offsets[split] = offset + len(units)

    def close(self) -> Path:
        for split, parts in self.parts.items():
            np.save(self.tmp / f"{split}.units.npy", np.concatenate(parts) if parts else np.zeros(0, np.int16))
            (self.tmp / f"{split}.index.json").write_text(json.dumps(self.index[split]))
            self.meta["splits"][split] = {"utterances": len(self.index[split]), "labels": self.offsets[split]}
        (self.tmp / "units.json").write_text(json.dumps(self.meta, indent=2))
        if self.out.exists():
            shutil.rmtree(self.out)
        self.tmp.rename(self.out)
        return self.out
