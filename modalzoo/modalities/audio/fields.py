"""The audio field: a clip per sample (``KEY.flac|wav|ogg``) and, with a label set, its frame-level units.

Decoding reads the clip (soundfile; mono down-mix), checks its sample rate (or resamples, when the recipe says
so), refuses clips shorter than ``min_samples`` (one frame of the front-end: skipped and counted) and looks up
its units (`labels.py`; count checked against the duration). Batching is by a budget of audio seconds over
length buckets (``batch_seconds``): a buffer of clips is sorted by length and cut into batches whose padded size
stays under the budget, so short clips travel many to a batch and padding stays small; without a budget it is
``batch_size`` clips. The finishing step crops clips longer than ``max_samples`` to a random window on the
``crop_hop`` grid (train; validation takes the start) and crops their units with them, from the stream's per-batch
generator (exact resume); ``crop_to_shortest`` (fairseq's ``pad_audio: false``, training only) crops a whole batch
to its shortest clip instead, which wastes no padding but discards audio.

Batch: ``input_values`` float32 [B, T] (zero-padded), ``audio_lengths`` long [B], with units ``units`` long
[B, U] (-100 padded) and ``unit_lengths`` long [B]; a cropped batch also has ``clip_lengths`` long [B], the
clips' lengths before the crop.
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from ...errors import ModalzooError
from .io import audio_bytes, read_audio, resample
from .labels import LabelSet, check_label_set, check_length


def dataset_sample_rate(path: str | Path) -> int | None:
    """The sample rate a dataset's info.json records (every audio builder and packer writes one), or None."""
    import json

    info = Path(path) / "info.json"
    return json.loads(info.read_text()).get("sample_rate") if info.exists() else None

PAD_UNIT = -100


@dataclass
class AudioState:
    sample_rate: int
    labels: LabelSet | None          # the units, when the recipe names a label set
    label_rate: float | None


def _key(sample: dict) -> str:
    return str(sample.get("__key__"))


class AudioField:
    """Clips (and units) per sample; see the module docstring for the batch it makes."""

    kind, keys, unit, rows = "audio", ("flac", "wav", "ogg"), "audio_frames", "clips"

    def __init__(self, sample_rate: int, resample: bool = False, min_samples: int = 400,
                 max_samples: int | None = None, crop_hop: int = 320, normalize: bool = False,
                 units: str | None = None, batch_seconds: float | None = None, bucket_buffer: int = 256,
                 crop_to_shortest: bool = False):
        self.sample_rate, self.resample = sample_rate, resample
        self.min_samples, self.max_samples, self.crop_hop = min_samples, max_samples, crop_hop
        self.normalize, self.units_path = normalize, units
        self.batch_seconds, self.bucket_buffer = batch_seconds, bucket_buffer
        self.crop_to_shortest = crop_to_shortest

    # -------------------------------------------------------------------- state
    def prepare(self, data, run_dir: Path | None) -> AudioState:
        cfg = data.cfg
        rate = dataset_sample_rate(cfg.path)
        if rate is not None and rate != self.sample_rate and not self.resample:
            raise ModalzooError(f"{cfg.path} holds {rate} Hz audio (its info.json), the recipe expects "
                                f"{self.sample_rate} Hz: set data.sample_rate={rate} or data.resample=true")
        labels = None
        if self.units_path:
            labels = LabelSet(self.units_path)
            check_label_set(labels, cfg.path, self.sample_rate)
            if self.crop_hop % round(self.sample_rate / labels.label_rate):
                raise ModalzooError(f"data.crop_hop={self.crop_hop} samples is not a whole number of label hops "
                                    f"({self.sample_rate / labels.label_rate:g} samples at "
                                    f"{labels.label_rate:g} labels/s): crops would cut labels")
        return AudioState(self.sample_rate, labels, labels.label_rate if labels else None)

    def restore(self, data, run_dir: Path) -> AudioState:
        return AudioState(self.sample_rate, None, None)     # an export needs the rate only

    # -------------------------------------------------------------------- one sample
    def decode(self, sample: dict, state: AudioState) -> dict:
        found = audio_bytes(sample)
        if found is None:
            raise ValueError(f"sample {_key(sample)} has no .flac/.wav/.ogg audio")
        wave, rate = read_audio(found[1])
        if rate != state.sample_rate:
            if not self.resample:
                raise ValueError(f"{rate} Hz audio in a {state.sample_rate} Hz dataset (data.resample=true "
                                 "converts it)")
            wave = resample(wave, rate, state.sample_rate)
        if len(wave) < self.min_samples:
            raise ValueError(f"clip of {len(wave)} samples is shorter than one frame ({self.min_samples})")
        value = {"wave": wave, "units": None}
        if state.labels is not None:
            units = state.labels.units(_key(sample))
            check_length(units, len(wave), state.sample_rate, state.label_rate, _key(sample))
            value["units"] = units
        return value

    # -------------------------------------------------------------------- batching
    def cost(self, value: dict) -> int:
        n = len(value["wave"])
        return min(n, self.max_samples) if self.max_samples else n

    def group(self, rows: Iterable[dict], name: str, batch_size: int, drop_last: bool) -> Iterator[list[dict]]:
        """Rows into batches: ``batch_size`` rows, or (``batch_seconds``) length buckets under a padded-seconds
        budget. The order inside a buffer is a function of its clips (resume replays it exactly)."""
        if not self.batch_seconds:
            batch: list[dict] = []
            for row in rows:
                batch.append(row)
                if len(batch) == batch_size:
                    yield batch
                    batch = []
            if batch and not drop_last:
                yield batch
            return
        budget = self.batch_seconds * self.sample_rate
        buffer: list[dict] = []

        def flush() -> Iterator[list[dict]]:
            buffer.sort(key=lambda r: self.cost(r[name]))
            batches, current, longest = [], [], 0
            for row in buffer:
                n = self.cost(row[name])
                if current and (max(longest, n) * (len(current) + 1) > budget or len(current) == batch_size):
                    batches.append(current)
                    current, longest = [], 0
                current.append(row)
                longest = max(longest, n)
            if current:
                batches.append(current)
            seed = zlib.crc32(b"".join(r[name]["wave"][:8].tobytes() for r in buffer[:4]))
            random.Random(seed).shuffle(batches)          # buckets mixed, not shortest-first
            buffer.clear()
            yield from batches

        for row in rows:
            buffer.append(row)
            if len(buffer) >= self.bucket_buffer:
                yield from flush()
        if buffer:
            yield from flush()

    def collate(self, values: list[dict], state: AudioState) -> dict[str, torch.Tensor]:
        lengths = [len(v["wave"]) for v in values]
        waves = torch.zeros(len(values), max(lengths))
        for i, v in enumerate(values):
            waves[i, :lengths[i]] = torch.from_numpy(v["wave"])
        batch = {"input_values": waves, "audio_lengths": torch.tensor(lengths, dtype=torch.long)}
        if state.labels is not None:
            counts = [len(v["units"]) for v in values]
            units = torch.full((len(values), max(counts)), PAD_UNIT, dtype=torch.long)
            for i, v in enumerate(values):
                units[i, :counts[i]] = torch.from_numpy(v["units"])
            batch.update(units=units, unit_lengths=torch.tensor(counts, dtype=torch.long))
        return batch

    def finisher(self, state: AudioState, train: bool):
        return AudioFinish(self.max_samples, self.crop_hop, self.normalize, train,
                           state.sample_rate / state.label_rate if state.label_rate else None,
                           self.crop_to_shortest and train)

    def count(self, batch: dict) -> int:
        return int(batch["audio_lengths"].sum()) // (self.sample_rate // 50)     # 20 ms frames of real audio

    def preview(self, batch: dict, row: int, state: AudioState, n_mels: int = 64):
        """Row ``row``'s clip (its real samples, not the padding) as a uint8 [n_mels, frames, 3] picture for
        reports' grids: the log-mel spectrogram (25 ms windows, 10 ms hop; low frequencies at the bottom) over
        an 80 dB range below its peak, in matplotlib's magma colours."""
        import matplotlib
        import numpy as np
        import torchaudio

        n = int(batch["audio_lengths"][row]) if "audio_lengths" in batch else batch["input_values"].shape[1]
        wave = batch["input_values"][row, :n].detach().float().cpu()
        rate = state.sample_rate
        mel = torchaudio.transforms.MelSpectrogram(rate, n_fft=round(0.025 * rate), hop_length=round(0.01 * rate),
                                                   n_mels=n_mels)
        db = 10 * mel(wave).clamp(min=1e-10).log10()
        db = db.clamp(min=float(db.max()) - 80.0)
        scaled = ((db - db.min()) / (db.max() - db.min()).clamp(min=1e-6)).flip(0).numpy()
        rgba = matplotlib.colormaps["magma"](scaled)
        return np.ascontiguousarray((rgba[..., :3] * 255).round().astype(np.uint8))

    def files(self, state: AudioState, out: Path, style: str | None) -> list[Path]:
        """The feature extractor's preprocessor_config.json: "wav2vec2" (raw waveform, HubertModel; the default)
        or "ast" (Kaldi fbank, ASTModel: its numbers come from the model, so that architecture writes it)."""
        if style in (None, "wav2vec2"):
            from .hub.wav2vec2_features import write_wav2vec2_features
            return [write_wav2vec2_features(out, state.sample_rate, self.normalize)]
        return []


class AudioFinish:
    """Crops clips longer than ``max_samples`` (and their units) on the ``crop_hop`` grid, then optionally
    normalises each clip to zero mean and unit variance over its real samples. Picklable; randomness from the
    batch's generator."""

    def __init__(self, max_samples: int | None, crop_hop: int, normalize: bool, train: bool,
                 samples_per_label: float | None, crop_to_shortest: bool = False):
        self.max_samples, self.crop_hop, self.normalize, self.train = max_samples, crop_hop, normalize, train
        self.samples_per_label, self.crop_to_shortest = samples_per_label, crop_to_shortest

    def __call__(self, batch: dict, generator: torch.Generator) -> dict:
        lengths = batch["audio_lengths"]
        limit = self.max_samples or int(lengths.max())
        if self.crop_to_shortest:
            limit = min(limit, max(int(lengths.min()) // self.crop_hop * self.crop_hop, self.crop_hop))
        if int(lengths.max()) > limit:
            batch = self.crop(batch, generator, limit)
        waves, lengths = batch["input_values"], batch["audio_lengths"]
        if self.normalize:
            real = torch.arange(waves.shape[1]) < lengths[:, None]
            n = lengths[:, None].clamp(min=1)
            mean = (waves * real).sum(1, keepdim=True) / n
            var = (((waves - mean) * real) ** 2).sum(1, keepdim=True) / n
            batch["input_values"] = ((waves - mean) / (var + 1e-7).sqrt()) * real
        return batch

    def crop(self, batch: dict, generator: torch.Generator, limit: int) -> dict:
        waves, lengths = batch["input_values"], batch["audio_lengths"]
        limit = max(limit - limit % self.crop_hop, self.crop_hop)        # a whole number of hops
        new_len = lengths.clamp(max=limit)
        out = torch.zeros(len(lengths), int(new_len.max()))
        units = batch.get("units")
        if units is not None:
            per = self.samples_per_label
            new_units = torch.full((len(lengths), math.ceil(int(new_len.max()) / per)), PAD_UNIT, dtype=torch.long)
            unit_lengths = batch["unit_lengths"].clone()
        for i, (n, m) in enumerate(zip(lengths.tolist(), new_len.tolist())):
            hops = (n - m) // self.crop_hop
            start = int(torch.randint(hops + 1, (1,), generator=generator)) * self.crop_hop if self.train else 0
            out[i, :m] = waves[i, start:start + m]
            if units is not None:
                first = round(start / per)
                count = min(int(batch["unit_lengths"][i]) - first, math.ceil(m / per))
                new_units[i, :count] = units[i, first:first + count]
                unit_lengths[i] = count
        batch.update(input_values=out, audio_lengths=new_len, clip_lengths=lengths)    # what the clips held
        if units is not None:
            batch.update(units=new_units, unit_lengths=unit_lengths)
        return batch
