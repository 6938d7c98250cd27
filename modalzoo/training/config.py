"""The typed schema of a recipe's top level and its ``trainer`` section (stored in Hydra's ConfigStore)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass
class TrainerConfig:
    max_steps: int = 100
    batch_size: int = 32             # per process (micro-batch)
    grad_accum: int = 1              # micro-batches per optimizer step
    global_batch_size: int = 0       # if set: grad_accum = global / (batch_size x world size), any world size
    lr: float = 1e-3                 # peak learning rate
    warmup_steps: int = 0
    grad_clip: float = 1.0           # max global grad norm; 0 disables clipping
    precision: Literal["fp32", "bf16"] = "fp32"
    compile: bool = False            # torch.compile the model
    device: str = "auto"             # auto | cpu | cuda | cuda:N
    log_every: int = 10
    eval_every: int = 100            # also evaluates before the first step and after the last
    eval_batches: int = 20
    checkpoint_every: int = 100      # and always at the end
    keep_last: int = 2
    resume: str = "none"             # none | auto (newest complete checkpoint in run_dir) | a checkpoint path
    strategy: Literal["auto", "single", "ddp", "fsdp"] = "auto"  # auto: single alone, DDP < threshold
    fsdp_threshold: int = 500_000_000  # parameters at which `auto` picks FSDP over DDP
    collective_timeout_s: float = 600.0  # a dead rank makes the others fail after this, not hang
    max_nonfinite_steps: int = 5     # non-finite loss/grad steps in a row before the run stops
    deterministic: bool = True       # deterministic algorithms (CPU runs repeat bit for bit)
    progress: bool = True
    optimizer: dict = field(default_factory=lambda: {"name": "adamw"})
    scheduler: dict = field(default_factory=lambda: {"name": "cosine"})


@dataclass
class RecipeConfig:
    recipe: str = ""                 # the recipe's name (set by load_recipe)
    run_dir: str | None = None       # default: runs/<recipe>/<timestamp>
    seed: int = 0
    init_from: str | None = None     # hf:DIR_or_REPO (a transformers checkpoint) or modalzoo:DIR_or_REPO
    init_from_ignore: list[str] = field(default_factory=list)   # checkpoint name prefixes to drop on purpose
    model: Any = None                # streams and targets: validated against the registries
    data: Any = None                 # a registered dataset's options
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
