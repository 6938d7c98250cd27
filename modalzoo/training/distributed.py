"""Process groups and parallel strategies, on PyTorch's own engine (torchrun, DDP, FSDP2).

`modalzoo train` is single-process; under `torchrun` the environment (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR...) is read and a process group is started: NCCL on GPUs, gloo on CPUs, with a collective
timeout so a dead rank makes the others fail with a message instead of hanging.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.nn.parallel import DistributedDataParallel

from ..errors import ModalzooError

STRATEGIES = ("auto", "single", "ddp", "fsdp")


@dataclass
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init(device_name: str, timeout_s: float) -> DistEnv:
    """Start the process group when launched by torchrun; pick this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device_name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ModalzooError(f"trainer.device={device_name} but no CUDA device is visible")
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s),
                                device_id=device if device.type == "cuda" else None)
    return DistEnv(rank, world, local_rank, device)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def choose_strategy(requested: str, world_size: int, n_params: int, fsdp_threshold: int) -> str:
    """`auto`: single when alone, DDP below ``fsdp_threshold`` parameters, FSDP at or above it."""
    if requested not in STRATEGIES:
        raise ModalzooError(f"trainer.strategy={requested!r}; expected one of {STRATEGIES}")
    if requested == "auto":
        if world_size == 1:
            return "single"
        return "fsdp" if n_params >= fsdp_threshold else "ddp"
    if requested != "single" and world_size == 1:
        return "single"                                 # ddp/fsdp recipes still run on one process
    if requested == "single" and world_size > 1:
        raise ModalzooError("trainer.strategy=single under torchrun with several processes; use ddp or fsdp")
    return requested


def wrap(model: nn.Module, strategy: str, env: DistEnv, precision: str, partial: bool = False) -> nn.Module:
    """Return the module to call for forward/backward (DDP wraps; FSDP2 shards in place). ``partial``: some
    steps leave some parameters unused (a mixture's batch feeds some targets only; every rank alike): DDP then
    looks for them each step and leaves their gradients None, as a single process does."""
    if strategy == "ddp":
        ids = [env.device.index] if env.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=partial)
    if strategy == "fsdp":
        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16 if precision == "bf16" else None,
                                      reduce_dtype=torch.float32)
        for unit in model.fsdp_units():                  # every Transformer block, then the root
            fully_shard(unit, mp_policy=policy)
        fully_shard(model, mp_policy=policy)
    return model


def gradient_sync(module: nn.Module, strategy: str, sync: bool):
    """Skip the gradient all-reduce on accumulation micro-steps that are not the last."""
    if strategy == "ddp" and not sync:
        return module.no_sync()
    if strategy == "fsdp":
        module.set_requires_gradient_sync(sync)
    return contextlib.nullcontext()


def all_true(flag: bool, env: DistEnv) -> bool:
    """True only if every rank says so (used to agree on stopping)."""
    if not env.distributed:
        return flag
    t = torch.tensor([0 if flag else 1], device=env.device)
    dist.all_reduce(t)
    return int(t.item()) == 0


def any_true(flag: bool, env: DistEnv) -> bool:
    return not all_true(not flag, env)


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()
