"""Optimizers and learning-rate schedules, registered so recipes can name them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from ..registry import OPTIMIZERS, SCHEDULERS


@dataclass
class AdamWConfig:
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.01
    decay_norms_and_biases: bool = False   # BERT/ViT practice: no decay on norms and biases
    decay_embeddings: bool = False         # ... nor on embedding tables
    fused: bool | None = None              # None: fused kernels on CUDA, foreach elsewhere


@OPTIMIZERS.register("adamw")
class AdamW:
    """torch.optim.AdamW with parameter groups that keep weight decay off norms/biases/embeddings."""

    Config = AdamWConfig

    def __init__(self, cfg: AdamWConfig):
        self.cfg = cfg

    def build(self, model: nn.Module, lr: float) -> torch.optim.Optimizer:
        cfg = self.cfg
        no_decay = model.no_weight_decay(embeddings=not cfg.decay_embeddings) \
            if not cfg.decay_norms_and_biases else set()
        decay, keep = [], []
        for name, param in model.named_parameters():
            if param.requires_grad:
                (keep if name in no_decay else decay).append(param)
        groups = [{"params": decay, "weight_decay": cfg.weight_decay},
                  {"params": keep, "weight_decay": 0.0}]
        on_cuda = any(p.is_cuda for p in decay + keep)
        fused = on_cuda if cfg.fused is None else cfg.fused
        return torch.optim.AdamW(groups, lr=lr, betas=tuple(cfg.betas), eps=cfg.eps, fused=fused or None)


@dataclass
class ScheduleConfig:
    min_lr_ratio: float = 0.0        # the final learning rate as a fraction of the peak


class _Schedule:
    Config = ScheduleConfig

    def __init__(self, cfg: ScheduleConfig):
        self.cfg = cfg

    def decay(self, progress: float) -> float:        # progress in [0, 1] after warmup
        raise NotImplementedError

    def build(self, optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int) -> LambdaLR:
        floor = self.cfg.min_lr_ratio

        def factor(step: int) -> float:
            if step < warmup_steps:
                return (step + 1) / warmup_steps
            span = max(1, total_steps - warmup_steps)
            progress = min(1.0, (step - warmup_steps) / span)
            return floor + (1 - floor) * self.decay(progress)

        return LambdaLR(optimizer, factor)


@SCHEDULERS.register("cosine")
class Cosine(_Schedule):
    """Linear warmup, then cosine decay to min_lr_ratio x peak."""

    def decay(self, progress: float) -> float:
        return 0.5 * (1 + math.cos(math.pi * progress))


@SCHEDULERS.register("linear")
class Linear(_Schedule):
    """Linear warmup, then linear decay to min_lr_ratio x peak."""

    def decay(self, progress: float) -> float:
        return 1 - progress


@SCHEDULERS.register("constant")
class Constant(_Schedule):
    """Linear warmup, then constant."""

    def decay(self, progress: float) -> float:
        return 1.0
