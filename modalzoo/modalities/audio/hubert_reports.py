"""`modalzoo eval` on a HuBERT run (a target over one audio stream): what its features know about words, and how
well its units match phones.

    word_probe_top1              a logistic regression on frozen encoder features (block L), mean-pooled over each
                                 single-word clip (``KEY.cls`` >= 0), trained on the train split and tested on the
                                 validation split (held-out voices in spoken-words)
    word_probe_top1_random_init  the same probe on a randomly initialised model of the same shape
    word_probe_top1_mfcc         the same probe on mean-pooled 39-dim MFCC (what the input gives without a model)
    units_pnmi                   PNMI (and phone / cluster purity) of the label set the run trained on
                                 (``data.units``), on the validation split's phone alignments
    feature_units_pnmi           the same for k-means of the run's own layer features (the next iteration's
                                 units: fitted on the train split, scored on the validation split)

Clips per class are capped (``train_per_class``, ``test_per_class``) and chosen by a hash of their key, so the
choice is stable and spread over the voices without reading every clip's audio."""

from __future__ import annotations

import heapq
import math
import tempfile
import time
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ...datasets.shards import list_shards
from ...errors import ModalzooError
from ...evaluation.probe import probe_accuracy
from ...evaluation.run import LoadedRun, Report
from .pnmi import quality_of
from .units import (
    Assigner,
    KMeansConfig,
    LayerFeatures,
    dump_features,
    fit_kmeans,
    fit_sample,
    mfcc_features,
    sample_json,
    sample_wave,
    shard_samples,
)


@dataclass
class HubertReportConfig:
    probe_layer: int | None = None     # block L of the encoder (None: half the depth, rounded up, as below)
    train_per_class: int = 100
    test_per_class: int = 100
    max_iter: int = 5000
    feature_layer: int | None = None   # k-means of the run's features: block L (None: half the depth, rounded up,
    #                                    as HuBERT base's iteration 2 takes block 6 of 12; so both reports describe
    #                                    the features the next iteration would cluster)
    feature_clusters: int | None = None   # None: the run's label set's k, else 100
    fit_share: float = 0.1             # of the train split's clips the feature k-means is fitted on ...
    min_fit_clips: int = 200           # ... but at least this many
    n_init: int = 20                   # fairseq's k-means settings otherwise (units.KMeansConfig)
    max_pnmi_clips: int = 2000         # validation clips scored for unit quality
    seed: int = 0


# ------------------------------------------------------------------------------------------------ applies
def hubert_stream(run: LoadedRun, target_name: str) -> str | None:
    """The one stream a target reads when that is an audio stream of an audio dataset (HuBERT's masked unit
    prediction; a contrastive CLAP target reads two and gets its own reports), else None."""
    if run.data_ctx.get("sample_rate") is None:
        return None
    cfg = getattr(run.model.targets[target_name], "cfg", None)
    streams = getattr(cfg, "streams", None)
    if not streams:
        stream = getattr(cfg, "stream", None)
        streams = [stream] if isinstance(stream, str) else []
    streams = list(streams)
    if len(streams) != 1 or streams[0] not in run.model.streams:
        return None
    embedding = run.model.streams[streams[0]].embedding
    return streams[0] if any(isinstance(m, torch.nn.Conv1d) for m in embedding.modules()) else None


def first_target(run: LoadedRun, target_name: str) -> bool:
    """Once per run (the summary keys are the run's): the first target with an audio stream."""
    return next(name for name in run.model.targets if hubert_stream(run, name) is not None) == target_name


# ------------------------------------------------------------------------------------------------ clips
def _class_id(sample: dict) -> int:
    raw = sample.get("cls")
    try:
        return int(raw.decode() if isinstance(raw, bytes) else raw) if raw is not None else -1
    except ValueError:
        return -1


def word_clips(data_path: str | Path, split: str, per_class: int, sample_rate: int, seed: int = 0
               ) -> tuple[list[np.ndarray], list[int]]:
    """Up to ``per_class`` clips of every class of ``split`` (class id >= 0), the ones with the smallest hash of
    (seed, key); only the chosen clips' audio is decoded. Unreadable clips are left out."""
    heaps: dict[int, list] = {}
    for shard in list_shards(data_path, split):
        for sample in shard_samples(shard):
            label = _class_id(sample)
            if label < 0:
                continue
            key = str(sample.get("__key__"))
            rank = -zlib.crc32(f"{seed}:{key}".encode())             # a max-heap of the smallest hashes
            heap = heaps.setdefault(label, [])
            item = (rank, key, {k: v for k, v in sample.items() if k in ("flac", "wav", "ogg")})
            if len(heap) < per_class:
                heapq.heappush(heap, item)
            elif rank > heap[0][0]:
                heapq.heapreplace(heap, item)
    waves, labels = [], []
    for label in sorted(heaps):
        for _, key, audio in sorted(heaps[label], key=lambda item: item[1]):
            try:
                waves.append(sample_wave({"__key__": key, **audio}, sample_rate))
            except ValueError:
                continue
            labels.append(label)
    return waves, labels


def pooled(fn, waves: list[np.ndarray]) -> np.ndarray:
    """[N, D] float64: each clip's frame features averaged over its frames."""
    return np.stack([np.asarray(fn(w), dtype=np.float64).mean(0) for w in waves])


def default_layer(stream, layer: int | None) -> int:
    """``layer``, else half the encoder's depth rounded up."""
    return layer or math.ceil((getattr(getattr(stream.encoder, "cfg", None), "layers", None) or 2) / 2)


def random_init_stream(run: LoadedRun, stream_name: str, seed: int):
    """The run's stream rebuilt from its config with a fixed seed and no checkpoint."""
    from ..text.probe import random_init_model
    return random_init_model(run, seed).streams[stream_name]


# ------------------------------------------------------------------------------------------------ word probe
def word_probe(run: LoadedRun, stream_name: str, cfg: HubertReportConfig) -> dict:
    began = time.perf_counter()
    rate, data = int(run.data_ctx.get("sample_rate")), run.data.cfg
    train_x, train_y = word_clips(data.path, data.train_split, cfg.train_per_class, rate, cfg.seed)
    test_x, test_y = word_clips(data.path, data.val_split, cfg.test_per_class, rate, cfg.seed + 1)
    if len(set(train_y)) < 2 or not test_y:
        return {}
    normalize = bool(getattr(data, "normalize", False))

    def probe(fn) -> float:
        return probe_accuracy(pooled(fn, train_x), train_y, pooled(fn, test_x), test_y, cfg.seed, cfg.max_iter)

    stream = run.model.streams[stream_name]
    layer = default_layer(stream, cfg.probe_layer)
    summary = {
        "word_probe_top1": probe(LayerFeatures(stream, layer, rate, normalize, device=run.device)),
        "word_probe_top1_random_init": probe(LayerFeatures(random_init_stream(run, stream_name, cfg.seed), layer,
                                                           rate, normalize, device=run.device)),
        "word_probe_top1_mfcc": probe(lambda w: mfcc_features(w, rate)),
        "word_probe_majority": max(Counter(test_y).values()) / len(test_y)}
    return {"summary": summary, "layer": layer, "classes": len(set(train_y)), "train_clips": len(train_y),
            "test_clips": len(test_y), "seconds": time.perf_counter() - began}


# ------------------------------------------------------------------------------------------------ unit quality
def split_phones(data_path: str | Path, split: str, limit: int) -> dict[str, list]:
    """key -> phone alignment of the first ``limit`` clips of ``split`` that have one (``KEY.json`` "phones")."""
    found: dict[str, list] = {}
    for shard in list_shards(data_path, split):
        for sample in shard_samples(shard):
            phones = sample_json(sample).get("phones")
            if phones:
                found[str(sample["__key__"])] = phones
                if len(found) >= limit:
                    return found
    return found


def label_set_quality(labels, phones: dict[str, list]) -> dict:
    pairs = []
    for key, alignment in phones.items():
        try:
            pairs.append((labels.units(key), alignment))
        except ModalzooError:            # a clip the label set skipped (unreadable): not scored
            continue
    return quality_of(pairs, labels.label_rate) if pairs else {}


def feature_units_quality(run: LoadedRun, stream_name: str, phones: dict[str, list], clusters: int,
                          cfg: HubertReportConfig) -> dict:
    """k-means (``clusters``) of the run's block-L features on a share of the train split, then the validation
    clips' units scored against their phones."""
    data = run.data.cfg
    stream = run.model.streams[stream_name]
    layer = default_layer(stream, cfg.feature_layer)
    rate = int(run.data_ctx.get("sample_rate"))
    extractor = LayerFeatures(stream, layer, rate, bool(getattr(data, "normalize", False)), device=run.device)
    train_keys = [str(s["__key__"]) for shard in list_shards(data.path, data.train_split)
                  for s in shard_samples(shard)]
    count = min(len(train_keys), max(cfg.min_fit_clips, int(round(cfg.fit_share * len(train_keys)))))
    chosen = set(np.random.default_rng(cfg.seed).permutation(train_keys)[:count].tolist())

    def select(split: str, key: str) -> bool:
        return key in chosen if split == data.train_split else key in phones

    with tempfile.TemporaryDirectory(prefix="modalzoo-feature-units-") as cache:
        shards = dump_features(data.path, extractor, cache, [data.train_split, data.val_split], select,
                               echo=lambda line: None)
        x, _ = fit_sample(shards[data.train_split], 1.0, cfg.seed)
        centroids, inertia = fit_kmeans(x, min(clusters, len(x)), KMeansConfig(seed=cfg.seed, n_init=cfg.n_init),
                                        echo=lambda line: None)
        assign = Assigner(centroids)
        pairs = [(assign(frames), phones[key]) for shard in shards[data.val_split] for key, frames in shard.clips()]
    result = quality_of(pairs, extractor.label_rate) if pairs else {}
    return {**result, "layer": layer, "clusters": len(centroids), "fit_frames": len(x), "inertia_per_frame": inertia}


def unit_report(run: LoadedRun, stream_name: str, cfg: HubertReportConfig) -> dict:
    began = time.perf_counter()
    data = run.data.cfg
    phones = split_phones(data.path, data.val_split, cfg.max_pnmi_clips)
    if not phones:
        return {}
    labels = run.data_ctx.get("labels")
    summary, details = {}, {}
    if labels is not None:
        own = label_set_quality(labels, phones)
        if own:
            summary.update(units_pnmi=own["pnmi"], units_phone_purity=own["phone_purity"],
                           units_cluster_purity=own["cluster_purity"])
            details["units"] = {**own, "label_set": str(labels.path), "feature": labels.meta.get("feature"),
                                "clusters": labels.clusters}
    clusters = cfg.feature_clusters or (labels.clusters if labels is not None else 100)
    feats = feature_units_quality(run, stream_name, phones, clusters, cfg)
    if "pnmi" in feats:
        summary.update(feature_units_pnmi=feats["pnmi"], feature_units_phone_purity=feats["phone_purity"],
                       feature_units_cluster_purity=feats["cluster_purity"])
        details["feature_units"] = feats
    return {"summary": summary, **details, "seconds": time.perf_counter() - began}


# ------------------------------------------------------------------------------------------------ reports
def word_probe_applies(run: LoadedRun, target_name: str) -> bool:
    return hubert_stream(run, target_name) is not None and first_target(run, target_name)


def word_probe_report(run: LoadedRun, target_name: str, batches: int, cfg: HubertReportConfig | None = None) -> dict:
    result = word_probe(run, hubert_stream(run, target_name), cfg or HubertReportConfig())
    if not result:
        return {"lines": ["", "spoken word probe skipped: fewer than 2 classes of single-word clips (KEY.cls) in "
                              "the train split, or none in the validation split"]}
    lines = ["", f"spoken word probe ({result['classes']} words, {result['train_clips']} train clips, "
                 f"{result['test_clips']} held-out clips; logistic regression on frozen block-{result['layer']} "
                 f"features, mean-pooled; {result['seconds']:.1f} s):"]
    lines += [f"  {key:<34} {value:.4f}" for key, value in result["summary"].items()]
    return {"word_probe": {k: v for k, v in result.items() if k != "summary"}, "summary": result["summary"],
            "lines": lines}


def unit_quality_report(run: LoadedRun, target_name: str, batches: int,
                        cfg: HubertReportConfig | None = None) -> dict:
    result = unit_report(run, hubert_stream(run, target_name), cfg or HubertReportConfig())
    if not result:
        return {"lines": ["", "unit quality skipped: no phone alignments (KEY.json \"phones\") in the validation "
                              "split"]}
    lines = ["", f"unit quality against the validation split's phones ({result['seconds']:.1f} s):"]
    for name, what in (("units", "the run's training units"), ("feature_units", "k-means of its own features")):
        if name in result:
            r = result[name]
            extra = f"layer {r['layer']}, " if "layer" in r else ""
            lines.append(f"  {what} ({extra}k={r['clusters']}, {r['frames']} frames): PNMI {r['pnmi']:.4f}, phone "
                         f"purity {r['phone_purity']:.4f}, cluster purity {r['cluster_purity']:.4f}")
    return {**result, "lines": lines}


REPORTS = [Report("spoken word probe vs MFCC and random init", word_probe_applies, word_probe_report),
           Report("unit quality (PNMI, purity)", word_probe_applies, unit_quality_report)]
