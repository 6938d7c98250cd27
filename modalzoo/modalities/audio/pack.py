"""`modalzoo data pack-audio`: the user's own audio -> webdataset shards for the `audio` dataset.

Sources (mixed freely, `datasets/listings.py`): a class-folder tree ``ROOT/CLASS/.../*.wav|flac|ogg`` (class ids in
sorted folder order, captions "the sound of {class}."), or a ``.csv`` / ``.jsonl`` listing with ``path`` and
``caption`` and/or ``class``. Every file is decoded (soundfile), down-mixed to mono, resampled to ``sample_rate``
(torchaudio's resampler) and stored as 16-bit FLAC, one at a time (constant memory). A file that is not audio,
is truncated or holds less than one frame is skipped and counted by reason (info.json), never fatal. A clip goes
to the validation split by a hash of its decoded samples, so re-packing keeps the split and duplicates never
straddle it.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ...datasets.listings import ClassNames, check_sources, class_folders, folder_items, listed_items, readable
from ...datasets.shards import ShardWriter
from ...errors import ModalzooError
from ...registry import PACKERS
from .io import encode_audio, read_audio, resample

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
CAPTION_TEMPLATE = "the sound of {}."
PROMPT_TEMPLATES = ["the sound of {}.", "a recording of {}.", "this is the sound of {}."]


def pack_audio(sources: Iterable[str | Path], out: str | Path, sample_rate: int = 16000, val_fraction: float = 0.0,
               val_split: str = "validation", clips_per_shard: int = 1000, min_samples: int = 400) -> dict:
    """Pack audio folders and listings into ``out/train`` and ``out/<val_split>``; returns info.json's content."""
    from tqdm import tqdm

    sources, out = [Path(s) for s in sources], Path(out)
    check_sources(sources, val_fraction, val_split, "audio")
    classes = ClassNames(sorted({readable(f.name) for s in sources if s.is_dir() for f in class_folders(s)}))
    counts, seconds = {"train": 0, val_split: 0}, {"train": 0.0, val_split: 0.0}
    skipped: Counter = Counter()
    first_skips: list[str] = []
    resampled = downmixed = 0
    writers: dict[str, ShardWriter] = {}
    try:
        for src in sources:
            items = (folder_items(src, classes, AUDIO_SUFFIXES, CAPTION_TEMPLATE, "audio") if src.is_dir()
                     else listed_items(src, classes))
            for item in tqdm(items, desc=src.name, unit=" clips", disable=None):
                try:
                    raw = item.path.read_bytes()
                    wave, rate = read_audio(raw)
                except FileNotFoundError:
                    reason = "missing file"
                except (ValueError, OSError) as err:
                    reason = "not readable audio" if isinstance(err, ValueError) else "unreadable file"
                    if len(first_skips) < 5:
                        first_skips.append(f"{item.where}: {err}")
                else:
                    reason = None
                if reason is None:
                    downmixed += _channels(raw) > 1
                    if rate != sample_rate:
                        wave, resampled = resample(wave, rate, sample_rate), resampled + 1
                    if len(wave) < min_samples:
                        reason = "shorter than one frame"
                if reason is not None:
                    skipped[reason] += 1
                    continue
                digest = hashlib.sha1(wave.tobytes()).hexdigest()
                split = val_split if int(digest, 16) % 10_000 < val_fraction * 10_000 else "train"
                if split not in writers:
                    writers[split] = ShardWriter(out, split, max_count=clips_per_shard)
                sample = {"__key__": f"{split}-{counts[split]:09d}", "flac": encode_audio(wave, sample_rate),
                          "json": json.dumps({"source": str(item.path), "seconds": len(wave) / sample_rate,
                                              "source_rate": rate})}
                if item.caption:
                    sample["txt"] = item.caption
                if item.class_id is not None:
                    sample["cls"] = str(item.class_id)
                writers[split].write(sample)
                counts[split] += 1
                seconds[split] += len(wave) / sample_rate
    finally:
        for w in writers.values():
            w.close()
    if not sum(counts.values()):
        raise ModalzooError(f"no readable audio in {', '.join(map(str, sources))} (skipped: {dict(skipped)}"
                            f"{'; first: ' + first_skips[0] if first_skips else ''})")
    if classes.names:
        (out / "classes.json").write_text(json.dumps({"classes": classes.names, "templates": PROMPT_TEMPLATES},
                                                     indent=2))
    info = {"name": "pack-audio", "sample_rate": sample_rate, "clips": counts,
            "seconds": {k: round(v, 2) for k, v in seconds.items()}, "skipped": dict(skipped),
            "skipped_examples": first_skips, "resampled": resampled, "downmixed_to_mono": downmixed,
            "sources": [str(s) for s in sources], "classes": len(classes.names)}
    (out / "info.json").write_text(json.dumps(info, indent=2))
    return info


def _channels(raw: bytes) -> int:
    import io

    import soundfile as sf
    return sf.info(io.BytesIO(raw)).channels


@dataclass
class PackAudioConfig:
    """The `data pack-audio` flags (metadata "help": their help)."""
    sample_rate: int = field(default=16000, metadata={"help": "resample every clip to this rate (the recipe's "
                                                              "data.sample_rate)"})
    val_fraction: float = field(default=0.0, metadata={"help": "clips routed to the validation split"})
    val_split: str = field(default="validation", metadata={"help": "the validation split's folder name"})


@PACKERS.register("pack-audio")
class PackAudio:
    """Pack audio into webdataset shards (for the audio dataset), streaming: decoded, down-mixed to mono,
    resampled to --sample-rate, stored as 16-bit FLAC; unreadable or too-short files skipped and counted. SRC is
    an audio folder (ROOT/CLASS/*.wav|flac|ogg: class ids in sorted folder order, captions 'the sound of CLASS.')
    or a .csv/.jsonl listing with path,caption[,class] or path,class columns (paths relative to the listing)."""

    Config = PackAudioConfig
    inputs = "SRC"
    example = "modalzoo data pack-audio recordings/ labels.csv --out data/my-audio --val-fraction 0.05"

    def __init__(self, cfg: PackAudioConfig):
        self.cfg = cfg

    def pack(self, sources: list[Path], out: Path) -> str:
        split = self.cfg.val_split
        info = pack_audio(sources, out, self.cfg.sample_rate, self.cfg.val_fraction, split)
        skipped = sum(info["skipped"].values())
        return (f"packed {info['clips']['train']} train / {info['clips'][split]} {split} clips into {out} at "
                f"{info['sample_rate']} Hz ({skipped} skipped: {info['skipped'] or 'none'}; {info['resampled']} "
                f"resampled, {info['downmixed_to_mono']} down-mixed to mono)")
