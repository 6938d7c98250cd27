"""HuBERT's masked unit prediction (Hsu et al. 2021) as the `hubert` target.

Batch transform (loader workers, randomness from the per-batch generator, so a resumed run masks alike):
  * frame labels: the label set's units [B, U] at ``label_rate`` are taken at frame i from unit
    floor(i * label_rate * hop / sample_rate) (fairseq's forward_targets: every 2nd 100 Hz MFCC label in
    iteration 1, one 50 Hz label per frame in iteration 2); frames past a row's labels or audio get none.
  * span masking as fairseq's compute_mask_indices / torchaudio's _compute_mask_indices (static spans,
    overlap allowed): per row int(mask_prob * frames / mask_length + U[0, 1)) span starts (at least
    ``min_masks``) drawn without replacement, spans cut at the row's end, then every row is cut back at
    random to the batch's smallest masked count (equal counts per row). Only labelled real frames are
    candidates. ``mask_frames`` [B, F] reaches the `waveform_conv` embedding, which puts its mask
    embedding there.

Loss: ``final_proj`` (encoder width -> ``final_dim``) and cosine similarity with the trainable label
embeddings over ``logit_temp`` (0.1) give logits over the clusters; cross-entropy summed over the masked
frames (and, with ``unmasked_weight`` > 0, the unmasked ones), divided by the frames predicted, plus
``feature_pen_weight`` x the front-end's mean squared feature (fairseq's hubert criterion). The head runs on
the predicted frames only, and the logits are one [N, D] x [D, C] product instead of torchaudio's cosine
over a [C + 1, N, D] expansion.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...datasets.fields import DataContext
from ...errors import ModalzooError
from ...pretrain_tasks.base import IGNORE, StreamOutput, Target, TargetConfig, TaskOutput
from ...registry import TARGETS


@dataclass
class HubertConfig(TargetConfig):
    stream: str = "audio"
    num_classes: int = 100           # clusters of the label set (iteration 1: 100 MFCC units; 2: 500)
    final_dim: int = 256
    logit_temp: float = 0.1
    mask_prob: float = 0.8           # fairseq's HuBERT Base yaml (its dataclass default is 0.65)
    mask_length: int = 10
    min_masks: int = 2
    masked_weight: float = 1.0       # fairseq pred_masked_weight
    unmasked_weight: float = 0.0     # pred_nomask_weight
    feature_pen_weight: float = 10.0  # loss_weights: [10] on features_pen

    def __post_init__(self):
        if not 0 < self.mask_prob <= 1:
            raise ValueError(f"mask_prob must be in (0, 1], got {self.mask_prob}")
        if self.mask_length < 1 or self.min_masks < 0 or self.num_classes < 2:
            raise ValueError("mask_length must be >= 1, min_masks >= 0 and num_classes >= 2")
        if self.masked_weight <= 0 and self.unmasked_weight <= 0:
            raise ValueError("masked_weight or unmasked_weight must be positive: nothing would be predicted")


def frame_units(units: Tensor, unit_lengths: Tensor, real: Tensor, ratio: float) -> Tensor:
    """[B, F] the unit of every frame (IGNORE where a row has no label or no audio): frame i reads unit
    floor(i * ratio), ``ratio`` = labels per frame (2 for 100 Hz labels on 50 Hz frames)."""
    B, frames = real.shape
    index = (torch.arange(frames, dtype=torch.float64) * ratio).long()                # fairseq: floor
    have = (index[None] < unit_lengths[:, None]) & real
    if units.shape[1] == 0:
        return torch.full((B, frames), IGNORE, dtype=torch.long)
    picked = units.gather(1, index.clamp(max=units.shape[1] - 1)[None].expand(B, -1))
    return torch.where(have, picked, torch.full_like(picked, IGNORE))


def span_mask(sizes: list[int], frames: int, mask_prob: float, mask_length: int, min_masks: int,
              generator: torch.Generator | None = None) -> Tensor:
    """fairseq's / torchaudio's static span mask over the first ``sizes[b]`` frames of each row, with equal
    masked counts per row (see the module docstring). Rows of size 0 get no mask and do not lower the
    others' count."""
    g = generator
    chosen = []
    for size in sizes:
        if size <= 0:
            chosen.append(None)
            continue
        spans = max(min_masks, int(mask_prob * size / mask_length + float(torch.rand((), generator=g))))
        shortest = mask_length
        if size - shortest <= spans:              # too short for that many spans: starts anywhere
            shortest = size - spans - 1
        starts = torch.randperm(size - shortest, generator=g)[:spans]
        idx = (starts[:, None] + torch.arange(mask_length)).flatten()
        chosen.append(torch.unique(idx[idx < size]))
    counts = [len(c) for c in chosen if c is not None]
    mask = torch.zeros(len(sizes), frames, dtype=torch.bool)
    if not counts:
        return mask
    least = min(counts)
    for row, idx in enumerate(chosen):
        if idx is None:
            continue
        if len(idx) > least:
            idx = idx[torch.randperm(len(idx), generator=g)[:least]]
        mask[row, idx] = True
    return mask


class HubertMasking:
    """The batch transform: ``frame_units`` [B, F] and ``mask_frames`` [B, F]. Picklable."""

    def __init__(self, cfg: HubertConfig, real_frames, labels_per_frame: float):
        self.cfg, self.real_frames, self.ratio = cfg, real_frames, labels_per_frame

    def __call__(self, batch: dict[str, Tensor], generator: torch.Generator | None = None) -> dict[str, Tensor]:
        if "units" not in batch:
            raise ModalzooError("the hubert target needs frame-level units in the batch: set data.units=UNITS "
                                "(a label set: `modalzoo units mfcc DATA --clusters K --out UNITS`)")
        real = self.real_frames(batch).cpu()
        units = frame_units(batch["units"].cpu(), batch["unit_lengths"].cpu(), real, self.ratio)
        labelled = (units != IGNORE).sum(1).tolist()       # a prefix of each row: real frames with a label
        c = self.cfg
        mask = span_mask(labelled, real.shape[1], c.mask_prob, c.mask_length, c.min_masks, generator)
        return {**batch, "frame_units": units, "mask_frames": mask}


def cosine_logits(proj: Tensor, label_embeddings: Tensor, temperature: float) -> Tensor:
    """[N, D] x [C, D] -> [N, C] cosine similarities / temperature (fp32)."""
    x = F.normalize(proj.float(), dim=-1, eps=1e-8)
    e = F.normalize(label_embeddings.float(), dim=-1, eps=1e-8)
    return (x @ e.T) / temperature


@TARGETS.register("hubert")
class HubertTarget(Target):
    """Masked prediction of frame-level cluster units (HuBERT), cosine logits against label embeddings."""

    Config = HubertConfig

    def __init__(self, cfg: HubertConfig, streams: nn.ModuleDict):
        super().__init__(cfg, streams)
        if cfg.stream not in streams:
            raise ModalzooError(f"hubert reads stream '{cfg.stream}', but the model has {list(streams)}")
        stream = streams[cfg.stream]
        embedding = stream.embedding
        if not hasattr(embedding, "maskable") or not hasattr(embedding, "cfg") or \
                not hasattr(embedding.cfg, "conv_stride"):
            raise ModalzooError(f"hubert needs stream '{cfg.stream}' to have a waveform front-end "
                                f"(embedding: waveform_conv), not {type(embedding).__name__}")
        self.real_frames = embedding.maskable()
        self.hop = embedding.cfg.hop
        self.final_proj = nn.Linear(stream.encoder.dim, cfg.final_dim)
        self.label_embeddings = nn.Parameter(torch.zeros(cfg.num_classes, cfg.final_dim))

    def init_weights(self) -> None:
        nn.init.uniform_(self.label_embeddings)        # fairseq / torchaudio: U[0, 1)

    def batch_transform(self, data: DataContext) -> HubertMasking:
        label_rate, sample_rate = data.get("label_rate"), data.get("sample_rate")
        if not label_rate or not sample_rate:
            raise ModalzooError("the hubert target needs frame-level units: set data.units=UNITS (a label set made "
                                "by `modalzoo units mfcc DATA --clusters K --out UNITS`)")
        labels = data.get("labels")
        clusters = getattr(labels, "clusters", None)
        if clusters is not None and clusters != self.cfg.num_classes:
            raise ModalzooError(f"the label set {getattr(labels, 'path', '')} has {clusters} clusters but "
                                f"model.targets.<hubert>.num_classes is {self.cfg.num_classes}: set "
                                f"num_classes={clusters}")
        return HubertMasking(self.cfg, self.real_frames, float(label_rate) * self.hop / float(sample_rate))

    def logits(self, hidden: Tensor) -> Tensor:
        """[N, encoder dim] -> [N, num_classes] (the scores fairseq's cross-entropy reads)."""
        return cosine_logits(self.final_proj(hidden), self.label_embeddings, self.cfg.logit_temp)

    def forward(self, outputs: dict[str, StreamOutput], batch: dict[str, Tensor]) -> TaskOutput:
        if "frame_units" not in batch or "mask_frames" not in batch:
            raise ModalzooError("the hubert target's batch has no frame_units/mask_frames: its batch transform "
                                "(HubertTarget.batch_transform) did not run on it")
        out = outputs[self.cfg.stream].hidden
        units, masked = batch["frame_units"], batch["mask_frames"]
        c = self.cfg
        labelled = units != IGNORE
        masked = masked & labelled
        penalty = out.extras["features_pen"]
        metrics: dict[str, Tensor] = {"features_pen": penalty.detach()}
        total, predicted = out.x.new_zeros((), dtype=torch.float32), 0
        # Unmasked frames cost a head pass over about half the frames: predicted when weighted, else scored
        # in validation only (no gradient), so training steps pay for the masked frames alone.
        parts = [("m", masked, c.masked_weight, True),
                 ("u", labelled & ~masked, c.unmasked_weight, c.unmasked_weight > 0 or not self.training)]
        for name, where, weight, wanted in parts:
            if not wanted:
                continue
            targets = units[where]
            with torch.set_grad_enabled(torch.is_grad_enabled() and weight > 0):
                logits = self.logits(out.x[where])
                summed = F.cross_entropy(logits, targets, reduction="sum")
            if weight > 0:                                 # (an empty selection adds 0, in the graph)
                total = total + weight * summed
                predicted += targets.numel()
            n = max(targets.numel(), 1)
            metrics[f"loss_{name}"] = summed.detach() / n
            metrics[f"accuracy_{name}"] = (logits.detach().argmax(-1) == targets).float().sum() / n
        loss = total / max(predicted, 1) + c.feature_pen_weight * penalty.float()
        metrics["accuracy"] = metrics["accuracy_m"]
        return TaskOutput(loss=loss, metrics=metrics, count=int(masked.sum()))
