"""The target interface shared by every pretraining task."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import Tensor, nn

from ..datasets.fields import DataContext
from ..errors import ModalzooError
from ..tokens import Tokens

IGNORE = -100                        # label of a position no target predicts (torch's cross_entropy default)


def stream_embedding(streams: nn.ModuleDict, name: str, kind: str, what: str) -> nn.Module:
    """The embedding of stream ``name``, which target ``what`` needs to be a registered ``kind`` (its inputs
    and settings are what the target reads); a clear error otherwise."""
    if name not in streams:
        raise ModalzooError(f"{what}: no stream '{name}' (streams: {list(streams)})")
    embedding = streams[name].embedding
    if getattr(embedding, "registered_name", None) != kind:
        raise ModalzooError(f"{what} reads a `{kind}` embedding; stream '{name}' has "
                            f"'{getattr(embedding, 'registered_name', type(embedding).__name__)}'")
    return embedding


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

    def reads(self) -> tuple[str, ...] | None:
        """The streams this target reads (None: it may read any). A `mixture` batch that feeds only some targets
        runs only the streams they read. From the config's ``streams`` / ``stream``, plus `driven_streams`."""
        names = list(getattr(self.cfg, "streams", None) or [])
        if isinstance(getattr(self.cfg, "stream", None), str):
            names.append(self.cfg.stream)
        return tuple(dict.fromkeys([*names, *self.driven_streams()])) if names else None

    def driven_streams(self) -> tuple[str, ...]:
        """Streams this target runs itself, on inputs it builds (ELECTRA: the discriminator reads the
        generator's samples). The model does not run them on the raw batch, so they are not in ``outputs``;
        ``forward`` calls ``self.run_stream(name, inputs)``. They stay ordinary streams of the model: FSDP
        units, weight-decay groups and checkpoints see them. Sampling on the way must draw from torch's
        global RNG (checkpoints save it per rank) or from a seed the batch transform put in the batch, so
        that a resumed run samples the same."""
        return ()

    def run_stream(self, name: str, batch: dict[str, Tensor]) -> StreamOutput:
        """Run stream ``name`` (one of `driven_streams`) on ``batch``, with every target's `stream_head`."""
        if name not in self.driven_streams():
            raise ModalzooError(f"{type(self).__name__} runs stream '{name}' without driving it; list it in "
                                f"driven_streams() (it drives {list(self.driven_streams())})")
        run = self.__dict__.get("_run_stream")       # the owning PretrainModel's, bound when it was built
        if run is None:
            raise ModalzooError(f"{type(self).__name__} can run streams only as a target of a PretrainModel")
        return run(name, batch)

    def forward(self, outputs: dict[str, StreamOutput], batch: dict[str, Tensor]) -> TaskOutput:
        raise NotImplementedError
