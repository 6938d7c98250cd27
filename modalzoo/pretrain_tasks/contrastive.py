"""CLIP's contrastive image-text target: pooled features from two streams, linear projections, a
learnable temperature clamped as in CLIP, and cross-rank gathering with gradients (or a local loss)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError, closest
from ..registry import TARGETS
from ..tokens import Tokens
from .base import StreamOutput, Target, TargetConfig, TaskOutput

Pooling = Literal["cls", "last", "mean"]


@dataclass
class ContrastiveConfig(TargetConfig):
    streams: list[str] = field(default_factory=lambda: ["image", "text"])
    pooling: list[str] = field(default_factory=lambda: ["cls", "last"])  # per stream: cls | last | mean
    embed_dim: int = 64
    init_temperature: float = 0.07
    max_logit_scale: float = 100.0   # CLIP clamps exp(logit_scale) at 100
    gather: Literal["with_grad", "none"] = "with_grad"
    local_loss: bool = False         # open_clip: local features against all gathered features
    # Another contrastive target whose projections this one uses for the streams both read (ImageBind's anchor:
    # image-text and audio-text targets sharing the text tower embed text into one space). embed_dim must match.
    shares: str = ""

    def __post_init__(self):
        if len(self.streams) != 2 or len(self.pooling) != 2:
            raise ValueError("contrastive needs exactly two streams and one pooling per stream")
        bad = [p for p in self.pooling if p not in ("cls", "last", "mean")]
        if bad:
            raise ValueError(f"pooling must be cls, last or mean; got {bad}")


def pool(tokens: Tokens, how: str) -> Tensor:
    x = tokens.x
    if how == "cls":
        return x[:, 0]
    if tokens.pad_mask is None:
        return x[:, -1] if how == "last" else x.mean(1)
    if how == "last":                                  # CLIP text: the end-of-text token
        last = tokens.pad_mask.long().sum(1) - 1
        return x[torch.arange(x.shape[0], device=x.device), last]
    m = tokens.pad_mask[..., None].to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp(min=1)


def gather_features(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """All ranks' features, differentiable (each rank's gradient flows back to its own features)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return a, b
    return torch.cat(dist_fn.all_gather(a), 0), torch.cat(dist_fn.all_gather(b), 0)


@TARGETS.register("contrastive")
class Contrastive(Target):
    """Symmetric InfoNCE between two streams (CLIP, CLAP)."""

    Config = ContrastiveConfig
    no_decay = ("logit_scale",)

    def __init__(self, cfg: ContrastiveConfig, streams: nn.ModuleDict):
        super().__init__(cfg, streams)
        for name in cfg.streams:
            if name not in streams:
                raise ValueError(f"contrastive reads stream '{name}', but the model has {list(streams)}")
        self.projections = nn.ModuleDict({
            name: nn.Linear(streams[name].encoder.dim, cfg.embed_dim, bias=False) for name in cfg.streams})
        # One element, not a 0-dim scalar: FSDP2's fully_shard refuses scalar parameters. Exports to CLIPModel
        # (a scalar there) reshape it; an older checkpoint's scalar loads (`_load_from_state_dict`).
        self.logit_scale = nn.Parameter(torch.full((1,), math.log(1 / cfg.init_temperature)))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "logit_scale"
        if key in state_dict and state_dict[key].dim() == 0:
            state_dict[key] = state_dict[key].reshape(1)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def init_weights(self) -> None:
        with torch.no_grad():
            self.logit_scale.fill_(math.log(1 / self.cfg.init_temperature))

    def bind_targets(self, targets: nn.ModuleDict, where: str) -> None:
        """With ``shares``: drop this target's projections of the streams the other target reads and use the
        other's (a plain attribute: the weights stay in one place, under their owner)."""
        self.shared_projections: dict[str, nn.Module] = {}
        other_name = self.cfg.shares
        if not other_name:
            return
        if other_name not in targets or targets[other_name] is self:
            candidates = [n for n, t in targets.items() if isinstance(t, Contrastive) and t is not self]
            hint = closest(other_name, candidates)
            raise ConfigError(f"'{where}.shares' = '{other_name}' names no other contrastive target"
                              + (f"; did you mean '{hint}'?" if hint else "")
                              + (f" (candidates: {', '.join(candidates)})" if candidates else ""))
        other = targets[other_name]
        if not isinstance(other, Contrastive):
            raise ConfigError(f"'{where}.shares' = '{other_name}' is not a contrastive target")
        if other.cfg.shares:
            raise ConfigError(f"'{where}.shares' = '{other_name}', which itself shares '{other.cfg.shares}'; "
                              f"share the owner's projections: shares: {other.cfg.shares}")
        common = [n for n in self.cfg.streams if n in other.cfg.streams]
        if not common:
            raise ConfigError(f"'{where}.shares' = '{other_name}', but the two targets read no stream in common "
                              f"({self.cfg.streams} vs {other.cfg.streams})")
        if other.cfg.embed_dim != self.cfg.embed_dim:
            raise ConfigError(f"'{where}.embed_dim' = {self.cfg.embed_dim} but '{other_name}' projects to "
                              f"{other.cfg.embed_dim}; a shared projection needs one embed_dim")
        for name in common:
            del self.projections[name]
            self.shared_projections[name] = other.projections[name]

    def projection(self, name: str) -> nn.Module:
        shared = self.__dict__.get("shared_projections") or {}
        return shared[name] if name in shared else self.projections[name]

    def features(self, name: str, tokens: Tokens, how: str) -> Tensor:
        return F.normalize(self.projection(name)(pool(tokens, how)), dim=-1)

    def stream_head(self, name: str, output: StreamOutput) -> Tensor | None:
        if name not in self.cfg.streams:
            return None
        return self.features(name, output.hidden, self.cfg.pooling[list(self.cfg.streams).index(name)])

    def forward(self, outputs: dict[str, StreamOutput], batch: dict[str, Tensor]) -> TaskOutput:
        a_name, b_name = self.cfg.streams
        a, b = (outputs[n].heads.get(self) for n in (a_name, b_name))
        if a is None or b is None:       # called directly, not through PretrainModel
            a, b = (self.stream_head(n, outputs[n]) for n in (a_name, b_name))
        scale = self.logit_scale.clamp(max=math.log(self.cfg.max_logit_scale)).exp()
        offset = 0
        if self.cfg.gather == "with_grad":
            all_a, all_b = gather_features(a, b)
            if self.cfg.local_loss:
                offset = dist.get_rank() * a.shape[0] if dist.is_initialized() else 0
                logits_a, logits_b = scale * a @ all_b.T, scale * b @ all_a.T
            else:
                logits_a = scale * all_a @ all_b.T
                logits_b = logits_a.T
        else:
            logits_a = scale * a @ b.T
            logits_b = logits_a.T
        labels = torch.arange(logits_a.shape[0], device=a.device) + offset
        loss = (F.cross_entropy(logits_a.float(), labels) + F.cross_entropy(logits_b.float(), labels)) / 2
        accuracy = (logits_a.argmax(-1) == labels).float().mean()
        return TaskOutput(loss=loss, metrics={"accuracy": accuracy, "logit_scale": scale.detach().squeeze()},
                          count=a.shape[0])
