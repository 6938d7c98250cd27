"""The one trainer: knows nothing about modalities, only a model, a dataset and a schedule.

Single process by default; under torchrun it trains with DDP or FSDP2 (`training/distributed.py`).
The data position (micro-batches consumed) is part of every checkpoint, so a resumed run continues the
same sample stream and, on CPU, reaches bitwise the same weights as an uninterrupted run.
"""

from __future__ import annotations

import json
import math
import random
import signal
import sys
import time
from datetime import datetime
from pathlib import Path

import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from ..errors import ModalzooError
from ..model import build_model
from ..registry import DATASETS, OPTIMIZERS, SCHEDULERS
from . import checkpoint as ckpt
from . import distributed as pdist
from .logging import MetricsLog, plot_loss_curve
from .metrics import MetricMeter, autocast, evaluate, to_device


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def default_run_dir(cfg: DictConfig) -> Path:
    return Path("runs") / (cfg.recipe or "run") / datetime.now().strftime("%Y%m%d-%H%M%S")


class Trainer:
    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        t = cfg.trainer
        self.env = pdist.init(t.device, t.collective_timeout_s)
        self.device = self.env.device
        self.run_dir = Path(cfg.run_dir) if cfg.run_dir else default_run_dir(cfg)
        if self.env.distributed and not cfg.run_dir:
            raise ModalzooError("under torchrun, set run_dir=... so every rank writes the same run")
        if self.env.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            OmegaConf.save(cfg, self.run_dir / "config.yaml", resolve=True)
        pdist.barrier(self.env)
        seed_everything(cfg.seed, t.deterministic)

        self.data = DATASETS.build(cfg.data, "data")
        self.data_ctx = self.data.prepare(self.run_dir if self.env.is_main else None)
        pdist.barrier(self.env)
        if not self.env.is_main:       # every rank uses the tokenizer rank 0 trained and saved
            self.data_ctx = self.data.prepare(self.run_dir)
        self.model = build_model(cfg).to(self.device)
        self._check_vocab()
        if cfg.get("init_from"):          # before any checkpoint: a resume then restores the trained weights
            from ..hub.pretrained import init_from
            init_from(self.model, cfg, self.data_ctx.tokenizer, data=self.data_ctx,
                      echo=lambda line: print(line, file=sys.stderr) if self.env.is_main else None)
        if hasattr(self.data, "check_targets"):      # a mixture: its sources name the targets they feed
            self.data.check_targets(self.model.targets)
        self.transforms = self.data.batch_transforms(self.model)
        n_params = sum(p.numel() for p in self.model.parameters())
        self.strategy = pdist.choose_strategy(t.strategy, self.env.world_size, n_params, t.fsdp_threshold)
        self.grad_accum = self._grad_accum()
        # A mixture's batch feeds some targets only, so some streams sit out a step (on every rank alike).
        self.forward = pdist.wrap(self.model, self.strategy, self.env, t.precision,
                                  partial=hasattr(self.data, "feeds"))
        self.optimizer = OPTIMIZERS.build(t.optimizer, "trainer.optimizer").build(self.model, t.lr)
        self.scheduler = SCHEDULERS.build(t.scheduler, "trainer.scheduler").build(
            self.optimizer, t.warmup_steps, t.max_steps)
        self.step = 0
        self.batches_seen = 0            # micro-batches this rank consumed: the data position
        self.nonfinite_total = 0
        self.data_position = None        # a mixture's per-source positions, from the checkpoint resumed
        self.resumed_batches = 0         # batches_seen of that checkpoint
        # Same seed on every rank for identical initial weights (above); a per-rank stream from here
        # on, so ranks do not draw identical dropout masks. A resume restores the saved stream.
        torch.manual_seed(cfg.seed + 1_000_003 * self.env.rank)
        self._resume()
        if t.compile:
            self.forward = torch.compile(self.forward)
        self.n_params = n_params
        self._stop_requested = False

    def _grad_accum(self) -> int:
        t = self.cfg.trainer
        if not t.global_batch_size:
            return t.grad_accum
        per_step = t.batch_size * self.env.world_size
        if t.global_batch_size % per_step:
            raise ModalzooError(f"trainer.global_batch_size={t.global_batch_size} is not a multiple of "
                                f"batch_size x world size = {t.batch_size} x {self.env.world_size}")
        return t.global_batch_size // per_step

    def _check_vocab(self) -> None:
        tok = self.data_ctx.tokenizer
        if tok is None:
            return
        for name, stream in self.model.streams.items():
            weight = getattr(stream.embedding, "output_weight", None)
            if weight is not None and tok.vocab_size > weight.shape[0]:
                raise ModalzooError(f"the tokenizer has {tok.vocab_size} tokens but model.streams.{name}.embedding"
                                    f".vocab_size is {weight.shape[0]}; raise vocab_size or shrink the tokenizer")

    # -- checkpoints ---------------------------------------------------------------------------------

    def _trainer_state(self) -> dict:
        return {"scheduler": self.scheduler.state_dict(), "step": self.step, "batches_seen": self.batches_seen,
                "world_size": self.env.world_size, "num_workers": self.cfg.data.get("num_workers", 0),
                "nonfinite_total": self.nonfinite_total, "data_position": self._data_position()}

    def _data_position(self) -> dict | None:
        """A dataset's own position beyond ``batches_seen`` (a mixture: batches given by each source)."""
        position = getattr(self.data, "position", None)
        if position is None:
            return None
        resumed = (self.resumed_batches, self.data_position) if self.data_position is not None else None
        return position(self.batches_seen, self.cfg.seed, resumed)

    def save(self) -> Path:
        meta = {"recipe": self.cfg.recipe, "strategy": self.strategy, "world_size": self.env.world_size}
        if self.strategy == "single":
            state = {**self._trainer_state(), "optimizer": self.optimizer.state_dict(), "rng": ckpt.rng_state()}
            return ckpt.save_checkpoint(self.run_dir, self.step, self.model, state, self.cfg.trainer.keep_last,
                                        meta=meta)
        return ckpt.save_sharded(self.run_dir, self.step, self.model, self.optimizer, self._trainer_state(),
                                 self.cfg.trainer.keep_last, self.env.rank, meta=meta)

    def _resume(self) -> None:
        how = self.cfg.trainer.resume
        if how == "none":
            return
        path = ckpt.latest_checkpoint(self.run_dir) if how == "auto" else Path(how)
        if path is None:
            return
        if not (path / "meta.json").exists():
            raise ModalzooError(f"trainer.resume: {path} is not a complete checkpoint")
        if ckpt.is_sharded(path) != (self.strategy != "single"):
            raise ModalzooError(f"{path} was written by a {'sharded' if ckpt.is_sharded(path) else 'single'} "
                                f"run; resume it with the same kind of strategy (or consolidate it first)")
        if self.strategy == "single":
            ckpt.load_weights(self.model, path)
            state = ckpt.load_trainer_state(path)
            self.optimizer.load_state_dict(state["optimizer"])
            ckpt.set_rng_state(state["rng"])
        else:
            state = ckpt.load_sharded(path, self.model, self.optimizer, self.env.rank)
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.batches_seen = int(state["step"]), int(state["batches_seen"])
        self.nonfinite_total = int(state.get("nonfinite_total", 0))
        saved = state.get("data_position")
        if saved is not None:
            derived = self._data_position()          # what the current weights would have drawn from the start
            self.data_position, self.resumed_batches = {k: int(v) for k, v in saved.items()}, self.batches_seen
            if self.data_position != derived and self.env.is_main:
                print(f"note: the data mixture changed (now or at an earlier resume): each source resumes where "
                      f"{path} left it ({self.data_position}); new draws follow the current weights", file=sys.stderr)
        layout = (state.get("world_size"), state.get("num_workers"))
        if layout != (self.env.world_size, self.cfg.data.get("num_workers", 0)) and self.env.is_main:
            print(f"warning: resuming with a different world size / num_workers than {path} was written with "
                  f"{layout}: the data stream continues approximately, not exactly", file=sys.stderr)
        if self.env.is_main:
            print(f"resumed from {path} at step {self.step}", file=sys.stderr)

    # -- loop ----------------------------------------------------------------------------------------

    def validate(self) -> dict:
        t = self.cfg.trainer
        loader = self.data.loader("val", t.batch_size, self.transforms, seed=self.cfg.seed + 1, train=False)
        return evaluate(self.model, loader, self.device, t.precision, t.eval_batches, forward=self.forward)

    def _on_sigterm(self, signum, frame) -> None:
        self._stop_requested = True

    def _describe(self) -> str:
        t, env = self.cfg.trainer, self.env
        return (f"run {self.run_dir} | {self.n_params / 1e6:.2f}M parameters | strategy {self.strategy} | "
                f"world size {env.world_size} | device {self.device} | per-rank batch {t.batch_size} x accum "
                f"{self.grad_accum} = global batch {t.batch_size * self.grad_accum * env.world_size} | "
                f"{t.max_steps} steps")

    def fit(self) -> Path:
        t, env = self.cfg.trainer, self.env
        log = MetricsLog(self.run_dir) if env.is_main else None
        if env.is_main:
            print(self._describe(), file=sys.stderr)
        previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        try:
            if self.step == 0:
                result = self.validate()
                if log:
                    log.write(0, "val", result)
            self._loop(log)
        finally:
            signal.signal(signal.SIGTERM, previous)
            if log:
                log.close()
        if env.is_main:
            plot_loss_curve(self.run_dir, title=self.cfg.recipe)
            if self.step >= t.max_steps:
                (self.run_dir / "DONE").write_text(json.dumps({"step": self.step}))
        return self.run_dir

    def _loop(self, log: MetricsLog | None) -> None:
        t, env = self.cfg.trainer, self.env
        resume_at = {"position": self.data_position} if self.data_position is not None else {}
        loader = self.data.loader("train", t.batch_size, self.transforms, seed=self.cfg.seed, train=True,
                                  start=self.batches_seen, **resume_at)
        batches = iter(loader)
        meter, tokens, skipped, t0 = MetricMeter(), 0, 0, time.perf_counter()
        nonfinite_in_a_row = 0
        bar = tqdm(total=t.max_steps, initial=self.step, desc="train", unit="step", dynamic_ncols=True,
                   disable=not (t.progress and env.is_main) or None)
        self.model.train()
        while self.step < t.max_steps:
            step_loss = 0.0
            for micro in range(self.grad_accum):
                batch = next(batches)
                self.batches_seen += 1
                skipped += int(batch.pop("_skipped", 0))
                batch = to_device(batch, self.device)
                tokens += self.data.tokens_in(batch)
                with pdist.gradient_sync(self.forward, self.strategy, micro == self.grad_accum - 1):
                    with autocast(self.device, t.precision):
                        out = self.forward(batch)
                    (out.loss / self.grad_accum).backward()
                loss = float(out.loss.detach())
                step_loss += loss / self.grad_accum
                meter.add(out.metrics, {k: int(v) for k, v in out.counts.items()}, loss)
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip or float("inf"))
            grad_norm = float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm)
            finite = pdist.all_true(math.isfinite(grad_norm) and math.isfinite(step_loss), env)
            if finite:
                self.optimizer.step()
                nonfinite_in_a_row = 0
            else:
                self.nonfinite_total += 1
                nonfinite_in_a_row += 1
                if env.is_main:
                    tqdm.write(f"step {self.step + 1}: non-finite loss or gradient, step skipped", file=sys.stderr)
                if nonfinite_in_a_row >= t.max_nonfinite_steps:
                    self.optimizer.zero_grad(set_to_none=True)
                    last = ckpt.latest_checkpoint(self.run_dir)
                    raise ModalzooError(
                        f"{nonfinite_in_a_row} non-finite steps in a row, the last at step {self.step + 1}; "
                        f"stopping. The last good checkpoint is intact: {last}")
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            bar.update(1)
            if self.step % t.log_every == 0 or self.step == t.max_steps:
                values = meter.reduce(env)
                elapsed = time.perf_counter() - t0
                totals = torch.tensor([tokens, skipped], dtype=torch.float64, device=self.device)
                if env.distributed:
                    dist.all_reduce(totals)
                unit = getattr(self.data, "throughput_unit", "tokens")
                values.update({"lr": self.scheduler.get_last_lr()[0], "grad_norm": grad_norm,
                               f"{unit}_per_s": float(totals[0]) / elapsed, "skipped_samples": int(totals[1]),
                               "nonfinite_steps": self.nonfinite_total})
                if log:
                    log.write(self.step, "train", values)
                rate = values[f"{unit}_per_s"]
                bar.set_postfix({"loss": f"{values['loss']:.3f}", f"{unit}/s": f"{rate:.0f}"})
                if bar.disable and env.is_main:
                    print(f"step {self.step}/{t.max_steps} loss {values['loss']:.4f} {unit}/s {rate:.0f}",
                          file=sys.stderr)
                meter, tokens, skipped, t0 = MetricMeter(), 0, 0, time.perf_counter()
            if self.step % t.eval_every == 0 or self.step == t.max_steps:
                result = self.validate()
                if log:
                    log.write(self.step, "val", result)
                    tqdm.write(f"step {self.step} validation: " + ", ".join(f"{k} {v:.4f}" for k, v in result.items()),
                               file=sys.stderr)
            stop = pdist.any_true(self._stop_requested, env)
            periodic = self.step % t.checkpoint_every == 0 or self.step == t.max_steps
            if (periodic and nonfinite_in_a_row == 0) or stop:     # no checkpoints inside a bad streak
                path = self.save()
                if stop:
                    if env.is_main:
                        tqdm.write(f"SIGTERM: checkpoint written at step {self.step} ({path}); "
                                   "resume with trainer.resume=auto", file=sys.stderr)
                    break
        bar.close()


def train(cfg: DictConfig) -> Path:
    """Train a validated recipe; returns the run directory. Under torchrun, one call per rank."""
    try:
        return Trainer(cfg).fit()
    finally:
        pdist.shutdown()
