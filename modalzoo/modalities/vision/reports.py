"""Vision reports: zero-shot classification (contrastive image-text models), a linear probe on frozen
features beside the same probe on a randomly initialised encoder, and MAE reconstruction grids.

Each applies to a target by what its streams read (an image stream: a `patch` or `pixels` embedding;
a text stream: a `token` embedding) and what the data offers (class names), so a contrastive model over
two text streams, or text and code, gets none of them."""

from __future__ import annotations

import itertools

import matplotlib
import torch

from ...evaluation.probe import probe_accuracy
from ...evaluation.run import LoadedRun, Report
from ...evaluation.zero_shot import confusion_matrix_png, evaluate_contrastive  # noqa: F401 (re-exported)
from ...model import build_model
from ...pretrain_tasks.contrastive import pool
from .mae import patchify

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MAX_BATCHES = 1000


IMAGE_EMBEDDINGS = ("patch", "pixels")        # this modality's embeddings that read images


def target_streams(target) -> list[str]:
    """The streams a target reads (contrastive: two; mlm/mae: one; a target with neither option: none).
    Never raises: every report's `applies` calls it for every target of every run."""
    cfg = getattr(target, "cfg", None)
    streams = getattr(cfg, "streams", None)
    if streams:
        return list(streams)
    stream = getattr(cfg, "stream", None)
    return [stream] if isinstance(stream, str) else []


def image_streams(run: LoadedRun, target_name: str) -> list[str]:
    return [name for name in target_streams(run.model.targets[target_name])
            if run.model.streams[name].embedding.registered_name in IMAGE_EMBEDDINGS]


def class_names(run: LoadedRun) -> list[str]:
    return list(run.data_ctx.get("classes") or [])


def _pooling(stream) -> str:
    return "cls" if getattr(getattr(stream.embedding, "cfg", None), "cls_token", False) else "mean"


@torch.no_grad()
def features(model, stream_name: str, loader, device, max_batches: int = MAX_BATCHES):
    """Pooled encoder features and class ids of every batch (masking turned off for MAE)."""
    stream = model.streams[stream_name]
    masking = getattr(stream.embedding, "apply_mask", False)
    stream.embedding.apply_mask = False
    model.eval()
    feats, labels = [], []
    try:
        for batch in itertools.islice(loader, max_batches):
            pixels = batch["pixel_values"].to(device)
            hidden = stream.encoder(stream.embedding({stream.embedding.cfg.key: pixels}))
            feats.append(pool(hidden, _pooling(stream)).float().cpu())
            labels.append(batch["class_id"])
    finally:
        stream.embedding.apply_mask = masking
    feats, labels = torch.cat(feats), torch.cat(labels)
    labelled = labels >= 0                     # class id -1: a sample without a class (pack-images listings)
    return feats[labelled], labels[labelled]


def linear_probe(run: LoadedRun, stream_name: str, max_batches: int = MAX_BATCHES) -> dict:
    """Probe the trained encoder and a randomly initialised one of the same shape on the same data."""
    def probe(model) -> float:        # one unshuffled, unaugmented pass over each split
        tx, ty = features(model, stream_name, run.data.loader("train", 128, [], run.cfg.seed, train=False),
                          run.device, max_batches)
        vx, vy = features(model, stream_name, run.data.loader("val", 128, [], run.cfg.seed, train=False),
                          run.device, max_batches)
        return probe_accuracy(tx, ty, vx, vy)

    trained = probe(run.model)
    torch.manual_seed(run.cfg.seed + 12345)
    random_model = build_model(run.cfg).to(run.device)
    return {"linear_probe_top1": trained, "linear_probe_top1_random_init": probe(random_model)}


def image_text_streams(run: LoadedRun, target_name: str) -> tuple[str, str] | None:
    """(image stream, text stream) of a contrastive target over one of each, else None."""
    target = run.model.targets[target_name]
    if target.registered_name != "contrastive":
        return None
    images = image_streams(run, target_name)
    texts = [n for n in target.cfg.streams if run.model.streams[n].embedding.registered_name == "token"]
    return (images[0], texts[0]) if len(images) == 1 and len(texts) == 1 else None


def zero_shot_applies(run: LoadedRun, target_name: str) -> bool:
    return (image_text_streams(run, target_name) is not None and bool(class_names(run))
            and run.data_ctx.tokenizer is not None)


def zero_shot(run: LoadedRun, target_name: str, max_batches: int = MAX_BATCHES) -> dict:
    """Zero-shot top-1 on the held-out images with the data's prompt templates, and the confusion matrix PNG
    (`evaluation/zero_shot.py`, shared with audio)."""
    image_stream, text_stream = image_text_streams(run, target_name)
    return evaluate_contrastive(run, target_name, image_stream, text_stream, item="image", items="images",
                                max_batches=max_batches)


@torch.no_grad()
def reconstruction_grid(run: LoadedRun, target_name: str, count: int = 8) -> str:
    """Rows: original, what the encoder saw (hidden patches grey), reconstruction (visible patches pasted)."""
    target = run.model.targets[target_name]
    stream = run.model.streams[target.cfg.stream]
    batch = next(iter(run.data.loader("val", count, [], seed=run.cfg.seed, train=False)))
    pixels = batch["pixel_values"][:count].to(run.device)
    generator = torch.Generator().manual_seed(run.cfg.seed)
    n = (pixels.shape[-1] // target.patch) ** 2
    noise = torch.rand(pixels.shape[0], n, generator=generator).to(run.device)
    out = stream({stream.embedding.cfg.key: pixels, "mae_noise": noise})
    pred = target.reconstruct(out.decoded)                                # [B, N, p*p*C]
    truth = patchify(pixels, target.patch)
    if target.cfg.norm_pix_loss:                                          # back to pixel space
        mean, var = truth.mean(-1, keepdim=True), truth.var(-1, keepdim=True)
        pred = pred * (var + 1e-6).sqrt() + mean
    mask = out.decoded.extras["mae_mask"][..., None]
    mean = torch.tensor(run.data_ctx.get("mean") or [0.5] * 3).view(1, 3, 1, 1)
    std = torch.tensor(run.data_ctx.get("std") or [0.5] * 3).view(1, 3, 1, 1)
    grey = ((0.5 - mean) / std).flatten().repeat(target.patch ** 2).to(truth.device)   # (p, q, c) order
    shown = truth * (1 - mask) + mask * grey                                # hidden patches shown grey
    pasted = truth * (1 - mask) + pred * mask

    def image(patches):
        return (unpatchify(patches.cpu(), target.patch, pixels.shape[1]) * std + mean).clamp(0, 1)

    rows = [("original", image(truth)), ("masked (encoder input)", image(shown)), ("reconstruction", image(pasted))]
    fig, axes = plt.subplots(3, count, figsize=(1.4 * count, 4.6))
    for r, (label, imgs) in enumerate(rows):
        for c in range(count):
            axes[r][c].imshow(imgs[c].permute(1, 2, 0).numpy())
            axes[r][c].axis("off")
        axes[r][0].set_title(label, fontsize=9, loc="left")
    fig.suptitle(f"MAE reconstructions of held-out images, step {run.step} "
                 f"({target.cfg.stream} mask ratio {stream.embedding.cfg.mask_ratio:.0%})", fontsize=10)
    fig.tight_layout()
    path = run.artifact("mae_reconstructions.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def unpatchify(patches, patch: int, channels: int):
    B, N, _ = patches.shape
    side = int(N ** 0.5)
    x = patches.reshape(B, side, side, patch, patch, channels)
    return torch.einsum("nhwpqc->nchpwq", x).reshape(B, channels, side * patch, side * patch)


def zero_shot_report(run: LoadedRun, target_name: str, batches: int) -> dict:
    summary = zero_shot(run, target_name, batches)
    return {"summary": summary, "lines": _lines(summary)}


def probe_applies(run: LoadedRun, target_name: str) -> bool:
    return bool(image_streams(run, target_name)) and bool(class_names(run))


def probe_report(run: LoadedRun, target_name: str, batches: int) -> dict:
    summary = linear_probe(run, image_streams(run, target_name)[0], batches)
    return {"summary": summary, "lines": _lines(summary)}


def reconstruction_applies(run: LoadedRun, target_name: str) -> bool:
    return run.model.targets[target_name].registered_name == "mae" and bool(image_streams(run, target_name))


def reconstruction_report(run: LoadedRun, target_name: str, batches: int) -> dict:
    summary = {"reconstruction_png": reconstruction_grid(run, target_name)}
    return {"summary": summary, "lines": _lines(summary)}


def _lines(summary: dict) -> list[str]:
    lines = [""]
    for key, value in summary.items():
        lines.append(f"  {key:<32} {value:.4f}" if isinstance(value, float) else f"  {key:<32} {value}")
    return lines


REPORTS = [Report("zero-shot image classification", zero_shot_applies, zero_shot_report),
           Report("linear probe vs random init", probe_applies, probe_report),
           Report("MAE reconstruction grid", reconstruction_applies, reconstruction_report)]
