"""The target interface shared by every pretraining task."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from ..tokens import Tokens


@dataclass
class TargetConfig:
    weight: float = 1.0              # this target's share of the summed loss


@dataclass
class TaskOutput:
    loss: Tensor                     # scalar
    metrics: dict[str, Tensor] = field(default_factory=dict)
    count: int | Tensor = 1          # predictions behind the metrics, for weighted averaging


@dataclass
class StreamOutput:
    stream: nn.Module                # the stream itself, so heads can tie to its embedding
    hidden: Tokens                   # encoder output
    decoded: Tokens | None = None    # decoder output, when the stream has a decoder
    heads: dict = field(default_factory=dict)   # target -> what its `stream_head` made of this stream


@dataclass
class DataContext:
    """What a task's batch transform may need from the data side (built once, sent to loader workers)."""
    tokenizer: Any = None
    extra: dict = field(default_factory=dict)


class Target(nn.Module):
    """Base for registered targets: ``forward(outputs, batch) -> TaskOutput``."""

    def __init__(self, cfg: TargetConfig, streams: nn.ModuleDict):
        super().__init__()
        self.cfg = cfg
        self.weight = cfg.weight

    def batch_transform(self, data: DataContext) -> Callable[..., dict] | None:
        """A picklable ``fn(batch, generator) -> batch`` run in loader workers (masking, labels).

        It must draw its randomness from ``generator`` (seeded per batch by the stream) so that a
        resumed run reproduces the same batches.
        """
        return None

    def stream_head(self, name: str, output: StreamOutput) -> Tensor | None:
        """Optional per-stream work (pooling, a projection) that the model runs right after stream ``name``;
        the result is ``output.heads[self]``. Autograd then runs its backward right before that stream's
        own, so its gradients are not held while the other streams backpropagate (lower peak memory)."""
        return None

    def forward(self, outputs: dict[str, StreamOutput], batch: dict[str, Tensor]) -> TaskOutput:
        raise NotImplementedError
