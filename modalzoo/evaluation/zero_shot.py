"""Zero-shot classification and cross-modal retrieval for a contrastive target over a text stream and one
other stream (images, audio): the part no modality owns. A modality's report decides which streams qualify
and what its items are called; everything here reads only the target, the streams and the run's data.

- Class prompts are the dataset's templates (``classes.json``) filled with each class name, encoded by the
  dataset's own caption field (the encoding its captions had in training); a class is the normalised mean of
  its prompts' embeddings.
- Retrieval ranks every held-out caption for every clip/image (and back); a hit is any item whose caption is
  the query's own caption text, so identical captions of different items count alike (synthetic data repeats
  captions).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ModalzooError

MAX_BATCHES = 1000
CONFUSION_PNG = "zero_shot_confusion.png"


def prompt_encoder(data_ctx) -> Callable[[list[str]], dict[str, Tensor]]:
    """The dataset's caption field as a function texts -> batch (``input_ids``, ``attention_mask``)."""
    for name, field_ in data_ctx.fields.items():
        if getattr(field_, "kind", None) == "text" and data_ctx.states.get(name) is not None:
            state = data_ctx.states[name]
            return lambda texts: field_.collate(list(texts), state)
    raise ModalzooError("zero-shot needs the run's captions (a text field: data.captions=true) to encode prompts")


def _on(batch: dict, device) -> dict:
    return {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}


def embed(model, target_name: str, stream_name: str, batch: dict, device) -> Tensor:
    """The target's normalised projection of one stream's pooled output for a batch (masking, e.g. MAE's,
    turned off: evaluation sees whole inputs)."""
    target, stream = model.targets[target_name], model.streams[stream_name]
    pooling = dict(zip(target.cfg.streams, target.cfg.pooling))[stream_name]
    masking = getattr(stream.embedding, "apply_mask", None)
    if masking is not None:
        stream.embedding.apply_mask = False
    try:
        return target.features(stream_name, stream.encoder(stream.embedding(_on(batch, device))), pooling)
    finally:
        if masking is not None:
            stream.embedding.apply_mask = masking


@torch.no_grad()
def class_embeddings(run, target_name: str, text_stream: str, names: list[str], templates: list[str]) -> Tensor:
    """[C, E]: each class's prompts embedded, averaged, normalised."""
    encode = prompt_encoder(run.data_ctx)
    prefix = getattr(run.model.streams[text_stream].embedding.cfg, "prefix", "")
    out = []
    for name in names:
        prompts = encode([t.format(name) for t in templates])
        f = embed(run.model, target_name, text_stream, {prefix + k: v for k, v in prompts.items()}, run.device)
        out.append(F.normalize(f.mean(0), dim=-1))
    return torch.stack(out)


@torch.no_grad()
def encode_split(run, target_name: str, stream: str, text_stream: str | None, max_batches: int = MAX_BATCHES,
                 split: str = "val") -> dict[str, Tensor]:
    """Embeddings of every item of ``split`` (``features``), their ``class_id`` and, with ``text_stream``, their
    captions' embeddings (``text_features``) and token ids (``caption_ids``); one unshuffled pass."""
    run.model.eval()
    prefix = "" if text_stream is None else getattr(run.model.streams[text_stream].embedding.cfg, "prefix", "")
    parts: dict[str, list[Tensor]] = {"features": [], "class_id": [], "text_features": [], "caption_ids": []}
    loader = run.data.loader(split, 128, [], seed=run.cfg.seed, train=False)
    for batch in itertools.islice(loader, max_batches):
        parts["features"].append(embed(run.model, target_name, stream, batch, run.device).float().cpu())
        parts["class_id"].append(batch.get("class_id", torch.full((len(parts["features"][-1]),), -1)))
        if text_stream is not None:
            text = {prefix + k: batch[k] for k in ("input_ids", "attention_mask") if k in batch}
            parts["text_features"].append(embed(run.model, target_name, text_stream, text, run.device).float().cpu())
            parts["caption_ids"].append(batch["input_ids"])
    if not parts["features"]:
        raise ModalzooError(f"the {split} split has no items to evaluate")
    return {k: torch.cat(v) for k, v in parts.items() if v}


def zero_shot_scores(features: Tensor, class_id: Tensor, classes: Tensor, names: list[str], out: Path,
                     what: str, step: int) -> dict:
    """Top-1 of the nearest class embedding, chance, and the confusion matrix PNG at ``out``."""
    predictions = (features @ classes.T.to(features)).argmax(-1)
    labelled = (class_id >= 0) & (class_id < len(names))   # -1: no class; an id past classes.json: not scorable
    predictions, truth = predictions[labelled], class_id[labelled]
    if not len(truth):
        raise ModalzooError(f"zero-shot: no held-out {what} has a class id among classes.json's classes")
    top1 = float((predictions == truth).float().mean())
    path = confusion_matrix_png(predictions, truth, names, out,
                                f"zero-shot top-1 {top1:.1%} on {len(truth)} held-out {what} (step {step})")
    return {"zero_shot_top1": top1, "zero_shot_chance": 1 / len(names), "confusion_matrix_png": str(path)}


def caption_groups(ids: Tensor) -> Tensor:
    """[N] group number per row: rows with identical token ids share one."""
    return torch.unique(ids, dim=0, return_inverse=True)[1]


def recall_at(queries: Tensor, keys: Tensor, query_groups: Tensor, key_groups: Tensor, ks=(1, 5),
              chunk: int = 1024) -> dict[int, float]:
    """Fraction of queries with an item of their own group among their ``k`` nearest keys, for each k."""
    hits = {k: 0 for k in ks}
    top = min(max(ks), len(keys))
    for start in range(0, len(queries), chunk):
        q = queries[start:start + chunk]
        ranked = (q @ keys.T).topk(top, dim=-1).indices                       # [n, top]
        match = key_groups[ranked] == query_groups[start:start + chunk, None]
        for k in ks:
            hits[k] += int(match[:, :k].any(-1).sum())
    return {k: hits[k] / len(queries) for k in ks}


def retrieval_scores(features: Tensor, text_features: Tensor, caption_ids: Tensor, what: str, ks=(1, 5)) -> dict:
    """``{what}_to_text_recall@k`` and ``text_to_{what}_recall@k`` over one split's items and captions."""
    groups = caption_groups(caption_ids)
    forward = recall_at(features, text_features, groups, groups, ks)
    backward = recall_at(text_features, features, groups, groups, ks)
    return {**{f"{what}_to_text_recall@{k}": v for k, v in forward.items()},
            **{f"text_to_{what}_recall@{k}": v for k, v in backward.items()},
            "retrieval_items": len(features)}


def evaluate_contrastive(run, target_name: str, stream: str, text_stream: str, item: str, items: str,
                         zero_shot: bool = True, retrieval: bool = False, max_batches: int = MAX_BATCHES) -> dict:
    """One pass over the held-out split; zero-shot (class names and templates from the data) and/or
    retrieval. ``item`` names the non-text side in eval.json keys ("audio": ``audio_to_text_recall@1``),
    ``items`` in the figure's title ("clips", "images")."""
    encoded = encode_split(run, target_name, stream, text_stream if retrieval else None, max_batches)
    summary: dict = {}
    if zero_shot:
        names = list(run.data_ctx.get("classes") or [])
        templates = run.data_ctx.get("templates")
        if not names or not templates:
            raise ModalzooError("zero-shot needs class names and prompt templates (classes.json beside the shards)")
        classes = class_embeddings(run, target_name, text_stream, names, list(templates))
        summary.update(zero_shot_scores(encoded["features"], encoded["class_id"], classes.float().cpu(), names,
                                        run.artifact(CONFUSION_PNG), items, run.step))
    if retrieval:
        summary.update(retrieval_scores(encoded["features"], encoded["text_features"], encoded["caption_ids"],
                                        item))
    return summary


def confusion_matrix_png(pred, truth, names, out, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    n = len(names)
    matrix = np.zeros((n, n), dtype=int)
    for p, t in zip(pred.tolist(), truth.tolist()):
        matrix[t, p] += 1
    side = max(6.5, 0.35 * n + 3)
    fig, ax = plt.subplots(figsize=(side, side - 1))
    im = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), names, rotation=45, ha="right")
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            if matrix[i, j]:
                ax.text(j, i, matrix[i, j], ha="center", va="center", fontsize=8,
                        color="white" if matrix[i, j] > matrix.max() / 2 else "black")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
