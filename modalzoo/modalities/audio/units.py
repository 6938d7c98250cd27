"""HuBERT's targets, one k-means iteration at a time: frame features of every clip of a dataset, k-means on a
sample of the training split, and the cluster id of every frame of every split, written as one label set.

    iteration 1  `mfcc_features`: Kaldi MFCC (13 ceps, 25 ms window, 10 ms shift, no energy) + deltas and
                 delta-deltas -> 39 dims at 100 frames/s, as fairseq's ``dump_mfcc_feature.py`` makes them
                 (the float waveform in [-1, 1], unscaled)
    iteration 2  `LayerFeatures`: a trained run's audio stream, its embedding then its encoder stopped after
                 block L (``output_layer``, fairseq's ``extract_features(output_layer=L)``), frames at the
                 front-end's rate (50/s for HuBERT's 320-sample hop)

Features are dumped shard by shard into a cache folder: each shard's frames go to a raw file as they come (memory
holds one clip), become ``SHARD.npy`` + ``SHARD.keys.json`` by rename, and a ``SHARD.done`` marker written last
says the shard is finished. A rerun skips finished shards, so an interrupted dump continues where it stopped
(fairseq deletes and restarts the shard; torchaudio keeps it in memory). The cache folder is named by what made
the features (feature, layer, checkpoint, data identity), so different settings never share one.

k-means is scikit-learn's MiniBatchKMeans with fairseq's ``learn_kmeans.py`` settings (k-means++, max_iter 100,
batch 10000, tol 0, max_no_improvement 100, n_init 20, reassignment_ratio 0) on ``percent`` of the training
split's clips; the ONE fitted model labels every split (argmin squared distance) and is saved with the labels
(``kmeans.safetensors``), since cluster ids are arbitrary and a model fitted per split would not agree.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ...datasets.shards import ShardStream, SkipCounter, list_shards
from ...errors import ModalzooError
from .io import audio_bytes, read_audio, resample
from .labels import LabelSetWriter, data_identity

MFCC_RATE = 100.0            # Kaldi's 10 ms frame shift: MFCC frames per second at any sample rate
WINDOW_S = 0.025             # a frame's window (Kaldi's 25 ms; HuBERT's conv front-end: 400 samples at 16 kHz)
CACHE_VERSION = 1


def echo_err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------ features
def mfcc_features(wave: np.ndarray | torch.Tensor, sample_rate: int) -> np.ndarray:
    """[frames, 39] float32: 13 Kaldi MFCC + deltas + delta-deltas; frames = (T - win) // hop + 1 (snip_edges),
    win/hop = 25/10 ms. Frame j is centred on sample hop*j + win/2, so at 16 kHz MFCC frame 2i and conv frame i
    share their centre (``mfcc[::2]`` has the conv front-end's frame count)."""
    import torchaudio.compliance.kaldi as kaldi
    import torchaudio.functional as AF

    x = torch.as_tensor(np.asarray(wave, dtype=np.float32)).view(1, -1)
    with torch.no_grad():
        ceps = kaldi.mfcc(x, sample_frequency=sample_rate, use_energy=False).T     # [13, frames]
        deltas = AF.compute_deltas(ceps)
        both = torch.cat([ceps, deltas, AF.compute_deltas(deltas)]).T.contiguous()
    return both.numpy()


class MfccFeatures:
    """Iteration 1's feature extractor (see `mfcc_features`)."""

    feature, layer, dim = "mfcc", None, 39

    def __init__(self, sample_rate: int):
        self.sample_rate = sample_rate
        self.label_rate = MFCC_RATE

    def spec(self) -> dict:
        return {"feature": "mfcc", "sample_rate": self.sample_rate}

    def __call__(self, wave: np.ndarray) -> np.ndarray:
        return mfcc_features(wave, self.sample_rate)


def frame_hop(embedding: torch.nn.Module) -> int:
    """Samples per output frame of a waveform front-end: its ``hop`` if it names one, else the product of its
    Conv1d strides (the positional convolution has stride 1)."""
    hop = getattr(embedding, "hop", None) or getattr(getattr(embedding, "cfg", None), "hop", None)
    if hop:
        return int(hop)
    strides = [m.stride[0] for m in embedding.modules() if isinstance(m, torch.nn.Conv1d)]
    if not strides:
        raise ModalzooError(f"{type(embedding).__name__} has no strided Conv1d: not a waveform front-end, so its "
                            "frames have no sample rate to label at")
    return int(math.prod(strides))


def normalize_clip(wave: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance over the clip (what data.normalize does in training, per clip)."""
    return (wave - wave.mean()) / (wave.var(unbiased=False) + 1e-7).sqrt()


class LayerFeatures:
    """Iteration 2's features: block ``layer`` (1-based; None: the whole encoder, final norm included) of a
    stream's encoder over its embedding of one clip at a time (batch 1: no padding, so a group-norm front-end sees
    exactly the clip, as fairseq's dump does).

    Clips longer than ``max_chunk`` samples run in chunks that start on the frame grid and reach ``overlap``
    samples past their last kept frame, so every frame sees its whole window and the frame count equals the
    unchunked one (attention then spans a chunk, as in fairseq's ``max_chunk``)."""

    feature = "hubert"

    def __init__(self, stream, layer: int | None, sample_rate: int, normalize: bool = False,
                 max_chunk: int = 1_600_000, overlap: int = 3200, device: str | torch.device = "cpu",
                 source: dict | None = None):
        layers = getattr(getattr(stream.encoder, "cfg", None), "layers", None)
        if layer is not None and layers is not None and not 1 <= layer <= layers:
            raise ModalzooError(f"--layer {layer}: the encoder has layers 1..{layers}")
        self.stream, self.layer, self.sample_rate, self.normalize = stream, layer, sample_rate, normalize
        self.device = torch.device(device)
        self.hop = frame_hop(stream.embedding)
        self.max_chunk = max(self.hop, max_chunk - max_chunk % self.hop)
        self.overlap, self.source = overlap, source or {}
        self.label_rate = sample_rate / self.hop
        self.dim = None

    def spec(self) -> dict:
        return {"feature": "hubert", "layer": self.layer, "sample_rate": self.sample_rate,
                "normalize": self.normalize, "max_chunk": self.max_chunk, "overlap": self.overlap, **self.source}

    @torch.no_grad()
    def frames(self, wave: torch.Tensor) -> torch.Tensor:
        """[frames, dim] of one chunk [T]."""
        batch = {"input_values": wave.view(1, -1).to(self.device),
                 "audio_lengths": torch.tensor([wave.numel()], device=self.device)}
        tokens = self.stream.embedding(batch)
        x = self.stream.encoder(tokens, output_layer=self.layer).x[0]
        if tokens.pad_mask is not None:
            x = x[tokens.pad_mask[0]]
        return x.float().cpu()

    def __call__(self, wave: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(np.asarray(wave, dtype=np.float32))
        if self.normalize:
            x = normalize_clip(x)
        was_training = self.stream.training
        self.stream.eval()
        masking = getattr(self.stream.embedding, "apply_mask", None)
        if masking is not None:
            self.stream.embedding.apply_mask = False
        try:
            parts, start, T = [], 0, x.numel()
            while start + self.max_chunk + self.overlap < T:
                parts.append(self.frames(x[start:start + self.max_chunk + self.overlap])[:self.max_chunk // self.hop])
                start += self.max_chunk
            parts.append(self.frames(x[start:]))
        finally:
            self.stream.train(was_training)
            if masking is not None:
                self.stream.embedding.apply_mask = masking
        out = torch.cat(parts).numpy()
        self.dim = out.shape[1]
        return out


def run_stream(run_dir: str | Path, stream: str | None = None, step: int | None = None):
    """(stream module, its name, the run's config, checkpoint path, step) of a finished run: the stream named, else
    the run's only stream, else the one called "audio"."""
    from ...training.runs import load_run_model

    cfg, model, checkpoint, step = load_run_model(Path(run_dir), step=step)
    names = list(model.streams)
    name = stream or (names[0] if len(names) == 1 else "audio" if "audio" in names else None)
    if name not in model.streams:
        raise ModalzooError(f"run {run_dir} has streams {names}: name the audio one with --stream NAME")
    return model.streams[name], name, cfg, checkpoint, step


# ------------------------------------------------------------------------------------------------ shards
def dataset_splits(root: str | Path) -> list[str]:
    """Every split folder of a dataset that holds shards."""
    root = Path(root)
    return sorted(p.name for p in root.iterdir() if p.is_dir() and any(p.glob("*.tar"))) if root.is_dir() else []


def shard_samples(shard: str) -> Iterator[dict]:
    """A shard's raw samples in order (keys as the dataset sees them: ``__key__``); unreadable ones skipped."""
    stream = ShardStream([shard], lambda samples, skips: samples, shuffle=False, repeat=False)
    yield from stream.raw_batches(0, 1, SkipCounter())


def sample_wave(sample: dict, sample_rate: int) -> np.ndarray:
    """A sample's clip at ``sample_rate`` (resampled if stored at another rate). ValueError: no or bad audio."""
    found = audio_bytes(sample)
    if found is None:
        raise ValueError(f"sample {sample.get('__key__')} has no .flac/.wav/.ogg audio")
    wave, rate = read_audio(found[1])
    return wave if rate == sample_rate else resample(wave, rate, sample_rate)


def sample_json(sample: dict) -> dict:
    raw = sample.get("json")
    if raw is None:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def dataset_rate(root: str | Path) -> int:
    info = Path(root) / "info.json"
    rate = json.loads(info.read_text()).get("sample_rate") if info.exists() else None
    if not rate:
        raise ModalzooError(f"{info} does not record the dataset's sample_rate (every audio builder and "
                            "`data pack-audio` write it): add \"sample_rate\": RATE to it")
    return int(rate)


# ------------------------------------------------------------------------------------------------ cache
class ShardFeatureWriter:
    """One shard's frames: appended to a raw file clip by clip, then ``SHARD.npy`` + ``SHARD.keys.json`` by rename
    and ``SHARD.done`` last (its presence = the shard is complete)."""

    def __init__(self, folder: Path, stem: str):
        self.folder, self.stem = folder, stem
        self.raw_path = folder / f"{stem}.f32.partial"
        self.raw = open(self.raw_path, "wb")
        self.keys: list[str] = []
        self.lengths: list[int] = []
        self.dim: int | None = None
        self.skipped = 0

    def add(self, key: str, frames: np.ndarray) -> None:
        frames = np.ascontiguousarray(frames, dtype=np.float32)
        if self.dim is None:
            self.dim = frames.shape[1]
        self.raw.write(frames.tobytes())
        self.keys.append(key)
        self.lengths.append(len(frames))

    def finish(self, seconds: float) -> None:
        self.raw.close()
        rows = sum(self.lengths)
        npy_tmp = self.folder / f"{self.stem}.npy.partial"
        out = np.lib.format.open_memmap(npy_tmp, mode="w+", dtype=np.float32, shape=(rows, self.dim or 0))
        if rows:
            raw = np.memmap(self.raw_path, dtype=np.float32, mode="r", shape=(rows, self.dim))
            for start in range(0, rows, 1 << 16):          # bounded memory: 64k frames at a time
                out[start:start + (1 << 16)] = raw[start:start + (1 << 16)]
            del raw
        out.flush()
        del out
        os.replace(npy_tmp, self.folder / f"{self.stem}.npy")
        self.raw_path.unlink()
        keys = {"keys": self.keys, "lengths": self.lengths, "dim": self.dim, "skipped": self.skipped,
                "seconds": round(seconds, 3)}
        _write_atomic(self.folder / f"{self.stem}.keys.json", json.dumps(keys))
        _write_atomic(self.folder / f"{self.stem}.done", "")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(text)
    os.replace(tmp, path)


@dataclass
class CachedShard:
    split: str
    stem: str
    keys: list[str]
    lengths: list[int]
    skipped: int
    path: Path

    def features(self) -> np.ndarray:
        return np.load(self.path, mmap_mode="r")

    def clips(self) -> Iterator[tuple[str, np.ndarray]]:
        """(key, frames [n, dim]) of every clip, from the memory-mapped array."""
        array, offset = self.features(), 0
        for key, n in zip(self.keys, self.lengths):
            yield key, array[offset:offset + n]
            offset += n


def cache_folder(base: Path, spec: dict) -> Path:
    """The cache subfolder of one feature spec: a rerun with the same settings resumes there."""
    digest = hashlib.sha1(json.dumps({**spec, "version": CACHE_VERSION}, sort_keys=True).encode()).hexdigest()
    return Path(base) / f"{spec['feature']}-{digest[:12]}"


def dump_features(data: str | Path, extractor, cache: str | Path, splits: list[str] | None = None,
                  select: Callable[[str, str], bool] | None = None, echo: Callable[[str], None] = echo_err
                  ) -> dict[str, list[CachedShard]]:
    """Features of every clip of ``splits`` (default: all) into ``cache`` (see the module docstring), shard by
    shard, skipping shards already done; returns the finished shards per split. ``select(split, key)`` keeps a
    subset (a fit sample). Clips that are not audio or shorter than one window are skipped and counted."""
    data, cache = Path(data), Path(cache)
    rate = dataset_rate(data)
    if rate != extractor.sample_rate:
        raise ModalzooError(f"{data} holds {rate} Hz audio, the features are made at {extractor.sample_rate} Hz")
    splits = splits or dataset_splits(data)
    if not splits:
        raise ModalzooError(f"no split folders with shards (*.tar) under {data}")
    cache.mkdir(parents=True, exist_ok=True)
    _write_atomic(cache / "spec.json", json.dumps(extractor.spec(), indent=2))
    min_samples = int(round(WINDOW_S * rate))
    done: dict[str, list[CachedShard]] = {}
    for split in splits:
        folder = cache / split
        folder.mkdir(exist_ok=True)
        for shard in list_shards(data, split):
            stem = Path(shard).stem
            if not (folder / f"{stem}.done").exists():
                began = time.perf_counter()
                writer = ShardFeatureWriter(folder, stem)
                for sample in shard_samples(shard):
                    key = str(sample.get("__key__"))
                    if select is not None and not select(split, key):
                        continue
                    try:
                        wave = sample_wave(sample, rate)
                        if len(wave) < min_samples:
                            raise ValueError("shorter than one frame")
                    except ValueError:
                        writer.skipped += 1
                        continue
                    frames = extractor(wave)
                    if len(frames):
                        writer.add(key, frames)
                    else:
                        writer.skipped += 1
                writer.finish(time.perf_counter() - began)
                echo(f"features {split}/{stem}: {len(writer.keys)} clips, {sum(writer.lengths)} frames "
                     f"({writer.skipped} skipped) in {time.perf_counter() - began:.1f} s")
            done.setdefault(split, []).append(read_cached(folder, stem, split))
    return done


def read_cached(folder: Path, stem: str, split: str) -> CachedShard:
    keys = json.loads((folder / f"{stem}.keys.json").read_text())
    return CachedShard(split, stem, keys["keys"], keys["lengths"], keys["skipped"], folder / f"{stem}.npy")


# ------------------------------------------------------------------------------------------------ k-means
@dataclass
class KMeansConfig:
    """fairseq ``learn_kmeans.py``'s MiniBatchKMeans settings (the defaults); smaller ones for tiny runs."""
    percent: float = 0.1              # of the fit split's clips (fairseq --percent; 1 = all)
    seed: int = 0
    init: str = "k-means++"
    max_iter: int = 100
    batch_size: int = 10000
    tol: float = 0.0
    max_no_improvement: int = 100
    n_init: int = 20
    reassignment_ratio: float = 0.0


def fit_sample(shards: list[CachedShard], percent: float, seed: int) -> tuple[np.ndarray, int]:
    """The frames of ``percent`` of the clips (at least one), chosen with ``seed``; (frames [N, dim], clips)."""
    index = [(i, j) for i, shard in enumerate(shards) for j in range(len(shard.keys))]
    if not index:
        raise ModalzooError("no clips to fit k-means on (every clip of the fit split was skipped)")
    count = len(index) if percent >= 1 else max(1, int(round(len(index) * percent)))
    chosen = sorted(np.random.default_rng(seed).choice(len(index), size=count, replace=False).tolist())
    by_shard: dict[int, list[int]] = {}
    for c in chosen:
        i, j = index[c]
        by_shard.setdefault(i, []).append(j)
    parts = []
    for i, rows in by_shard.items():
        array, offsets = shards[i].features(), np.concatenate([[0], np.cumsum(shards[i].lengths)])
        parts += [np.asarray(array[offsets[j]:offsets[j + 1]]) for j in rows]
    return np.concatenate(parts), count


def fit_kmeans(x: np.ndarray, clusters: int, cfg: KMeansConfig | None = None,
               echo: Callable[[str], None] = echo_err) -> tuple[np.ndarray, float]:
    """(centroids [clusters, dim] float32, inertia per frame) of MiniBatchKMeans on ``x`` [N, dim]."""
    from sklearn.cluster import MiniBatchKMeans

    cfg = cfg or KMeansConfig()
    if len(x) < clusters:
        raise ModalzooError(f"k-means with {clusters} clusters needs at least as many frames, the fit sample has "
                            f"{len(x)}: use a larger --percent or fewer --clusters")
    began = time.perf_counter()
    km = MiniBatchKMeans(n_clusters=clusters, init=cfg.init, max_iter=cfg.max_iter, batch_size=cfg.batch_size,
                         tol=cfg.tol, max_no_improvement=cfg.max_no_improvement, n_init=cfg.n_init,
                         reassignment_ratio=cfg.reassignment_ratio, init_size=None, compute_labels=False,
                         random_state=cfg.seed, verbose=0)
    x = np.asarray(x, dtype=np.float32)
    km.fit(x)
    inertia = float(-km.score(x) / len(x))
    echo(f"k-means: {clusters} clusters on {len(x)} frames x {x.shape[1]} dims in {time.perf_counter() - began:.1f} s,"
         f" inertia {inertia:.4f} per frame")
    return km.cluster_centers_.astype(np.float32), inertia


class Assigner:
    """Nearest centroid of each frame (argmin squared distance), in torch."""

    def __init__(self, centroids: np.ndarray):
        self.c = torch.as_tensor(np.asarray(centroids, dtype=np.float32))
        self.c_sq = (self.c ** 2).sum(1)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        x = torch.tensor(np.asarray(frames, dtype=np.float32))        # a copy: cached arrays are read-only
        dist = (x ** 2).sum(1, keepdim=True) - 2 * x @ self.c.T + self.c_sq
        return dist.argmin(1).numpy()


# ------------------------------------------------------------------------------------------------ label sets
def make_units(data: str | Path, out: str | Path, extractor, clusters: int, kmeans: KMeansConfig | None = None,
               cache: str | Path | None = None, fit_split: str = "train", source_run: str | None = None,
               extra_meta: dict | None = None, echo: Callable[[str], None] = echo_err) -> Path:
    """One k-means iteration: dump features of every split (resumable), fit k-means on ``kmeans.percent`` of
    ``fit_split``, label every split with that one model, write the label set ``out`` (atomic)."""
    data, out = Path(data), Path(out)
    kmeans = kmeans or KMeansConfig()
    if clusters < 2:
        raise ModalzooError(f"--clusters must be at least 2, got {clusters}")
    if clusters > np.iinfo(np.int16).max:
        raise ModalzooError(f"--clusters {clusters}: label sets store int16 ids (at most 32767 clusters)")
    identity = data_identity(data)
    splits = dataset_splits(data)
    if fit_split not in splits:
        raise ModalzooError(f"{data} has no '{fit_split}' split to fit k-means on (it has {splits})")
    spec = {**extractor.spec(), "data": identity}
    folder = cache_folder(Path(cache) if cache else out.with_name(out.name + ".features"), spec)
    shards = dump_features(data, extractor, folder, splits, echo=echo)
    x, fitted_clips = fit_sample(shards[fit_split], kmeans.percent, kmeans.seed)
    centroids, inertia = fit_kmeans(x, clusters, kmeans, echo)
    meta = {"sample_rate": extractor.sample_rate, "label_rate": extractor.label_rate, "feature": extractor.feature,
            "layer": extractor.layer, "clusters": clusters, "source_run": source_run,
            "data": {"path": str(data), "identity": identity},
            "kmeans": {**asdict(kmeans), "fit_split": fit_split, "fit_clips": fitted_clips, "fit_frames": len(x),
                       "inertia_per_frame": inertia, "dim": int(x.shape[1])},
            "skipped": {s: sum(c.skipped for c in shards[s]) for s in splits},
            "feature_cache": str(folder), **(extra_meta or {})}
    assign = Assigner(centroids)
    writer = LabelSetWriter(out, meta, centroids={"centroids": centroids})
    for split in splits:
        for shard in shards[split]:
            for key, frames in shard.clips():
                writer.add(split, key, assign(frames))
    path = writer.close()
    counts = ", ".join(f"{s} {sum(len(c.keys) for c in shards[s])}" for s in splits)
    echo(f"label set {path}: {clusters} clusters at {extractor.label_rate:g} labels/s ({counts} clips)")
    return path
