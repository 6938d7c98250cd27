"""The one trainer: knows nothing about modalities, only a model, a dataset and a schedule."""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import random
import sys
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from ..errors import ModalzooError
from ..model import PretrainModel, build_model
from ..registry import DATASETS, OPTIMIZERS, SCHEDULERS
from . import checkpoint as ckpt
from .logging import MetricsLog, plot_loss_curve


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModalzooError(f"trainer.device={name} but no CUDA device is visible")
    return device


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def default_run_dir(cfg: DictConfig) -> Path:
    return Path("runs") / (cfg.recipe or "run") / datetime.now().strftime("%Y%m%d-%H%M%S")


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


@torch.no_grad()
def evaluate(model: PretrainModel, loader, device: torch.device, precision: str, max_batches: int) -> dict:
    was_training = model.training
    model.eval()
    meter = MetricMeter()
    for batch in itertools.islice(loader, max_batches):
        batch = to_device(batch, device)
        with autocast(device, precision):
            out = model(batch)
        meter.add(out.metrics, {k: int(v) for k, v in out.counts.items()}, float(out.loss))
    model.train(was_training)
    return meter.result()


class Trainer:
    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        t = cfg.trainer
        self.run_dir = Path(cfg.run_dir) if cfg.run_dir else default_run_dir(cfg)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.device = resolve_device(t.device)
        seed_everything(cfg.seed, t.deterministic)
        OmegaConf.save(cfg, self.run_dir / "config.yaml", resolve=True)

        self.data = DATASETS.build(cfg.data, "data")
        self.data_ctx = self.data.prepare(self.run_dir)
        self.model = build_model(cfg).to(self.device)
        self._check_vocab()
        self.transforms = self.model.batch_transforms(self.data_ctx)
        self.optimizer = OPTIMIZERS.build(t.optimizer, "trainer.optimizer").build(self.model, t.lr)
        self.scheduler = SCHEDULERS.build(t.scheduler, "trainer.scheduler").build(
            self.optimizer, t.warmup_steps, t.max_steps)
        self.step = 0
        self._resume()
        self.forward = torch.compile(self.model) if t.compile else self.model

    def _check_vocab(self) -> None:
        tok = self.data_ctx.tokenizer
        if tok is None:
            return
        for name, stream in self.model.streams.items():
            weight = getattr(stream.embedding, "output_weight", None)
            if weight is not None and tok.vocab_size > weight.shape[0]:
                raise ModalzooError(f"the tokenizer has {tok.vocab_size} tokens but model.streams.{name}.embedding"
                                    f".vocab_size is {weight.shape[0]}; raise vocab_size or shrink the tokenizer")

    def _resume(self) -> None:
        how = self.cfg.trainer.resume
        if how == "none":
            return
        path = ckpt.latest_checkpoint(self.run_dir) if how == "auto" else Path(how)
        if path is None:
            return
        if not (path / "meta.json").exists():
            raise ModalzooError(f"trainer.resume: {path} is not a complete checkpoint")
        ckpt.load_weights(self.model, path)
        state = ckpt.load_trainer_state(path)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        ckpt.set_rng_state(state["rng"])
        self.step = int(state["step"])
        print(f"resumed from {path} at step {self.step}", file=sys.stderr)

    def save(self) -> Path:
        state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "step": self.step, "rng": ckpt.rng_state()}
        return ckpt.save_checkpoint(self.run_dir, self.step, self.model, state, self.cfg.trainer.keep_last,
                                    meta={"recipe": self.cfg.recipe})

    def validate(self) -> dict:
        t = self.cfg.trainer
        loader = self.data.loader("val", t.batch_size, self.transforms, seed=self.cfg.seed + 1, train=False)
        return evaluate(self.model, loader, self.device, t.precision, t.eval_batches)

    def fit(self) -> Path:
        t = self.cfg.trainer
        log = MetricsLog(self.run_dir)
        n_params = sum(p.numel() for p in self.model.parameters())
        print(f"run {self.run_dir} | {n_params / 1e6:.2f}M parameters | device {self.device} | "
              f"batch {t.batch_size} x accum {t.grad_accum} | {t.max_steps} steps", file=sys.stderr)
        if self.step == 0:
            log.write(0, "val", self.validate())
        batches = iter(self.data.loader("train", t.batch_size, self.transforms, seed=self.cfg.seed + self.step,
                                        train=True))
        meter, tokens, skipped, t0 = MetricMeter(), 0, 0, time.perf_counter()
        bar = tqdm(total=t.max_steps, initial=self.step, desc="train", unit="step", dynamic_ncols=True,
                   disable=not t.progress or None)
        self.model.train()
        while self.step < t.max_steps:
            step_loss = 0.0
            for _ in range(t.grad_accum):
                batch = to_device(next(batches), self.device)
                skipped += int(batch.pop("_skipped", 0))
                tokens += self.data.tokens_in(batch)
                with autocast(self.device, t.precision):
                    out = self.forward(batch)
                (out.loss / t.grad_accum).backward()
                loss = float(out.loss.detach())
                step_loss += loss / t.grad_accum
                meter.add(out.metrics, {k: int(v) for k, v in out.counts.items()}, loss)
            if not math.isfinite(step_loss):
                raise ModalzooError(f"non-finite loss at step {self.step + 1}; last good checkpoint: "
                                    f"{ckpt.latest_checkpoint(self.run_dir)}")
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip or float("inf"))
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            bar.update(1)
            if self.step % t.log_every == 0 or self.step == t.max_steps:
                elapsed = time.perf_counter() - t0
                values = {**meter.result(), "lr": self.scheduler.get_last_lr()[0], "grad_norm": float(grad_norm),
                          "tokens_per_s": tokens / elapsed, "skipped_samples": skipped}
                log.write(self.step, "train", values)
                bar.set_postfix(loss=f"{values['loss']:.3f}", tok_s=f"{values['tokens_per_s']:.0f}")
                if bar.disable:
                    print(f"step {self.step}/{t.max_steps} loss {values['loss']:.4f} "
                          f"tok/s {values['tokens_per_s']:.0f}", file=sys.stderr)
                meter, tokens, t0 = MetricMeter(), 0, time.perf_counter()
            if self.step % t.eval_every == 0 or self.step == t.max_steps:
                result = self.validate()
                log.write(self.step, "val", result)
                bar.write(f"step {self.step} validation: " + ", ".join(f"{k} {v:.4f}" for k, v in result.items()))
            if self.step % t.checkpoint_every == 0 or self.step == t.max_steps:
                self.save()
        bar.close()
        log.close()
        plot_loss_curve(self.run_dir, title=self.cfg.recipe)
        (self.run_dir / "DONE").write_text(json.dumps({"step": self.step}))
        return self.run_dir


def train(cfg: DictConfig) -> Path:
    """Train a validated recipe; returns the run directory."""
    return Trainer(cfg).fit()
