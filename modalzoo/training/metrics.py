"""Validation metrics: `MetricMeter` (count-weighted averages) and `evaluate` (a model over some batches),
shared by the trainer and `modalzoo eval`, plus the two batch helpers both use."""

from __future__ import annotations

import contextlib
import itertools
from collections import defaultdict

import torch
import torch.distributed as dist

from . import distributed as pdist


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class MetricMeter:
    """Averages metrics over steps, each weighted by its target's number of predictions."""

    def __init__(self):
        self.sums: dict[str, float] = defaultdict(float)
        self.weights: dict[str, float] = defaultdict(float)

    def add(self, metrics: dict[str, torch.Tensor], counts: dict[str, int], loss: float) -> None:
        self.sums["loss"] += loss
        self.weights["loss"] += 1
        for key, value in metrics.items():
            w = float(counts.get(key.split("/")[0], 1))
            self.sums[key] += float(value) * w
            self.weights[key] += w

    def result(self) -> dict[str, float]:
        return {k: self.sums[k] / self.weights[k] for k in self.sums if self.weights[k] > 0}

    def reduce(self, env: pdist.DistEnv) -> dict[str, float]:
        """The average over all ranks (keys are the same on every rank)."""
        if not env.distributed:
            return self.result()
        keys = sorted(self.sums)
        t = torch.tensor([[self.sums[k], self.weights[k]] for k in keys], dtype=torch.float64, device=env.device)
        dist.all_reduce(t)
        return {k: float(s / w) for k, (s, w) in zip(keys, t.tolist()) if w > 0}


@torch.no_grad()
def evaluate(model, loader, device: torch.device, precision: str, max_batches: int, forward=None) -> dict:
    """Average metrics over ``max_batches`` of ``loader``; ``forward`` is the (wrapped) module to call."""
    forward = model if forward is None else forward
    was_training = model.training
    model.eval()
    meter = MetricMeter()
    for batch in itertools.islice(loader, max_batches):
        batch.pop("_skipped", None)
        batch = to_device(batch, device)
        with autocast(device, precision):
            out = forward(batch)
        meter.add(out.metrics, {k: int(v) for k, v in out.counts.items()}, float(out.loss))
    model.train(was_training)
    return meter.result()
