"""The docstring package probe: which top-level package (``torch``, ``email``, ``sympy``) does a held-out
docstring come from? A downstream text task anyone can run offline on the text-sample corpus.

The ~20 most common packages of the train split are the classes; probe-train documents come from the train
split and probe-test documents from the validation split, whose source files no training document shares
(`samples.py` splits by file). Both are capped per class (balanced, and seconds on a CPU). Features are the
frozen encoder's hidden states mean-pooled over each document's real tokens (bos + text + eos); for an
encoder-decoder stream, the encoder's. A standardized logistic regression reads them; its top-1 accuracy
is reported beside the same probe on a randomly initialised model of the same shape (what the architecture
and the tokenizer give without training: bag-of-random-embeddings) and the majority-class rate."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ...datasets.shards import ShardStream, SkipCounter
from ...evaluation.probe import probe_accuracy
from ...evaluation.run import LoadedRun
from ...model import build_model
from ...pretrain_tasks.contrastive import pool
from .fields import encode_texts, text_of


@dataclass
class ProbeConfig:
    classes: int = 20                # the most common packages of the train split ...
    min_test_docs: int = 5           # ... among those with this many held-out documents (others only distract)
    # At most this many documents per class: probe-train from the train split, probe-test from the validation
    # split. The validation split is small (5 % of the files: ~450 documents of the top 20 packages of the
    # shipped corpus), so nearly all of it is tested. 50 train documents per class keep the probe to seconds;
    # 100 raised the trained and the random-init bert_mlm_tiny probes alike, by about 3 points.
    train_per_class: int = 50
    test_per_class: int = 100
    batch_size: int = 64
    max_iter: int = 5000             # lbfgs iterations; standardized features converge in a few hundred
    seed: int = 0


def package_docs(data, split: str) -> Iterator[tuple[str, str]]:
    """(text, package) of each document of ``split`` that records its package, in shard order. Shards
    without packages (built before they were recorded, or by pack-text) yield nothing."""
    def decode(samples, skips):
        for sample in samples:
            package = sample.get("package")
            if isinstance(package, bytes):             # a member per field (docs_per_member=1)
                package = package.decode("utf-8")
            text = text_of(sample)
            if package and text and text.strip():
                yield text, package

    stream = ShardStream(data.shards(split), decode, shuffle=False, repeat=False)
    return stream.raw_batches(0, 1, SkipCounter())


def has_packages(data) -> bool:
    """Whether the first document of the validation split records its package (one member read)."""
    try:
        return next(iter(package_docs(data, data.cfg.val_split)), None) is not None
    except Exception:                 # no shards, not a text dataset: the probe does not apply
        return False


@dataclass
class ProbeSet:
    classes: list[str]
    train_texts: list[str]
    train_y: list[int]
    test_texts: list[str]
    test_y: list[int]

    def counts(self) -> dict[str, dict[str, int]]:
        train, test = Counter(self.train_y), Counter(self.test_y)
        return {c: {"train": train[i], "test": test[i]} for i, c in enumerate(self.classes)}

    def majority_rate(self) -> float:
        """The test accuracy of always answering the test set's most common class (the best constant)."""
        return max(Counter(self.test_y).values()) / len(self.test_y) if self.test_y else 0.0


def probe_set(train_docs, test_docs, cfg: ProbeConfig) -> ProbeSet:
    """Classes = the ``cfg.classes`` most common packages of ``train_docs`` (ties by name) that have at least
    ``cfg.min_test_docs`` documents in ``test_docs``; each class's documents sampled with ``cfg.seed`` down to
    the per-class caps."""
    by_split = []
    for docs in (train_docs, test_docs):
        grouped: dict[str, list[str]] = {}
        for text, package in docs:
            grouped.setdefault(package, []).append(text)
        by_split.append(grouped)
    train, test = by_split
    scored = [p for p in train if len(test.get(p, ())) >= cfg.min_test_docs]
    classes = sorted(scored, key=lambda p: (-len(train[p]), p))[:cfg.classes]
    rngs = random.Random(cfg.seed), random.Random(cfg.seed + 1)     # one per split: a cap moves only its own
    out = ProbeSet(classes, [], [], [], [])
    for label, package in enumerate(classes):
        for grouped, cap, texts, ys, rng in ((train, cfg.train_per_class, out.train_texts, out.train_y, rngs[0]),
                                             (test, cfg.test_per_class, out.test_texts, out.test_y, rngs[1])):
            docs = grouped.get(package, [])
            chosen = rng.sample(docs, cap) if len(docs) > cap else docs
            texts += chosen
            ys += [label] * len(chosen)
    return out


@torch.no_grad()
def text_features(model, stream_name: str, tokenizer, texts: list[str], seq_len: int, device,
                  batch_size: int = 64) -> torch.Tensor:
    """[N, D] float64: the stream's encoder output mean-pooled over each text's real tokens. Texts are
    batched by length (less padding; the pooling ignores padding either way) and returned in input order."""
    stream = model.streams[stream_name]
    prefix = getattr(stream.embedding.cfg, "prefix", "")
    was_training = model.training
    model.eval()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    feats: list[torch.Tensor] = [None] * len(texts)
    try:
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            batch = encode_texts(tokenizer, [texts[i] for i in rows], seq_len)
            width = int(batch["attention_mask"].sum(1).max())
            batch = {prefix + k: v[:, :width].to(device) for k, v in batch.items()}
            pooled = pool(stream.encoder(stream.embedding(batch)), "mean").double().cpu()
            for i, f in zip(rows, pooled):
                feats[i] = f
    finally:
        model.train(was_training)
    return torch.stack(feats)


def probe_model(model, stream_name: str, tokenizer, dataset: ProbeSet, seq_len: int, device,
                cfg: ProbeConfig) -> float:
    def features(texts):
        return text_features(model, stream_name, tokenizer, texts, seq_len, device, cfg.batch_size)
    return probe_accuracy(features(dataset.train_texts), dataset.train_y, features(dataset.test_texts),
                          dataset.test_y, cfg.seed, cfg.max_iter)


def random_init_model(run: LoadedRun, seed: int):
    """The run's model rebuilt from its config with a fixed seed and no checkpoint."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(run.cfg).to(run.device)


def features_stream(run: LoadedRun, target_name: str) -> str | None:
    """The `token` stream whose encoder a target's features come from (a target that trains several
    streams names one as ``features_stream``: ELECTRA, its discriminator), else None."""
    target = run.model.targets[target_name]
    name = getattr(target, "features_stream", None) or getattr(getattr(target, "cfg", None), "stream", None)
    if not isinstance(name, str) or name not in run.model.streams:
        return None
    return name if run.model.streams[name].embedding.registered_name == "token" else None


def docstring_probe(run: LoadedRun, stream_name: str, cfg: ProbeConfig | None = None) -> dict:
    """The probe on the run's model, on a random-init one of the same shape, and the majority rate."""
    cfg = cfg or ProbeConfig()
    began = time.perf_counter()
    dataset = probe_set(package_docs(run.data, run.data.cfg.train_split),
                        package_docs(run.data, run.data.cfg.val_split), cfg)
    if len(dataset.classes) < 2 or not dataset.test_y:
        return {}
    tok, seq_len = run.data_ctx.tokenizer, run.data_ctx.get("seq_len") or run.data.cfg.seq_len
    trained = probe_model(run.model, stream_name, tok, dataset, seq_len, run.device, cfg)
    random_init = probe_model(random_init_model(run, cfg.seed), stream_name, tok, dataset, seq_len, run.device, cfg)
    return {"summary": {"docstring_probe_top1": trained, "docstring_probe_top1_random_init": random_init,
                        "docstring_probe_majority": dataset.majority_rate()},
            "classes": dataset.counts(), "stream": stream_name, "seconds": time.perf_counter() - began}


def probe_applies(run: LoadedRun, target_name: str) -> bool:
    """A target with a `token` features stream, data with a tokenizer and package labels; once per run
    (the first such target), since the summary keys are the run's."""
    if run.data_ctx.tokenizer is None or features_stream(run, target_name) is None:
        return False
    first = next(name for name in run.model.targets if features_stream(run, name) is not None)
    return first == target_name and has_packages(run.data)


def probe_report(run: LoadedRun, target_name: str, batches: int) -> dict:
    result = docstring_probe(run, features_stream(run, target_name))
    if not result:
        return {"lines": ["", "docstring package probe skipped: fewer than 2 packages or no held-out document"]}
    counts = result["classes"]
    train = sum(c["train"] for c in counts.values())
    test = sum(c["test"] for c in counts.values())
    lines = ["", f"docstring package probe ({len(counts)} packages, {train} train docs, {test} held-out test docs; "
                 f"logistic regression on mean-pooled '{result['stream']}' encoder features, "
                 f"{result['seconds']:.1f} s):"]
    lines += [f"  {key:<34} {value:.4f}" for key, value in result["summary"].items()]
    return {**result, "lines": lines}

