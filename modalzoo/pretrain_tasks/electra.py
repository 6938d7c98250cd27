"""ELECTRA's replaced-token detection (Clark et al. 2020): a small MLM generator fills the masked positions with
tokens sampled from its own logits, and a discriminator, run on that corrupted sequence, tells for every real
token whether it was replaced. loss = MLM loss + λ · discriminator loss (λ = 50, the paper's).

Choices, as in google-research/electra (pretrain_helpers.mask, run_pretraining.py):

- Masking is MLM's (`MLMMasking`) with ELECTRA's split: 15% of the non-special real tokens are selected, 85% of
  those become [MASK] and 15% stay as they are (no random tokens). The generator predicts every selected
  position, and the discriminator reads the generator's sample at every one of them.
- The generator's head is MLM's (dense encoder width -> embedding width, GELU, LayerNorm, decoder tied to the
  word table), on the selected positions only. In the recipes its token embedding ``shares`` the
  discriminator's word/position/type tables and norm (ELECTRA's tie); each stream has its own ``project``.
- Samples are Gumbel-max draws from the generator's logits (temperature 1), without gradient, from torch's
  global RNG, which checkpoints save per rank: a resumed run samples the same. A sample equal to the original
  token counts as original.
- The discriminator's head is ElectraDiscriminatorPredictions' (dense, activation, dense to one logit); its
  loss is the mean binary cross-entropy over the real tokens, special tokens included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..datasets.fields import DataContext
from ..encoders.blocks import ACTIVATIONS
from ..encoders.masks import RealPositions
from ..errors import ConfigError, closest
from ..registry import TARGETS
from .base import StreamOutput, Target, TargetConfig, TaskOutput
from .mlm import MaskedLM, MLMConfig, MLMMasking


@dataclass
class ElectraConfig(TargetConfig):
    generator: str = "generator"             # the MLM stream that proposes the replacements
    discriminator: str = "discriminator"     # the stream that spots them (run by this target)
    discriminator_weight: float = 50.0       # λ; the generator's MLM loss has weight 1
    mask_prob: float = 0.15
    replace_with_mask: float = 0.85          # of the selected tokens: [MASK]; the rest stay (ELECTRA's masking)
    replace_with_random: float = 0.0
    whole_word: bool = False
    head_activation: Literal["gelu", "gelu_tanh", "quick_gelu", "relu"] = "gelu"   # the generator's MLM head
    head_norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    head_norm_eps: float = 1e-12
    discriminator_activation: Literal["gelu", "gelu_tanh", "quick_gelu", "relu"] = "gelu"   # ELECTRA: hidden_act

    def __post_init__(self):
        self.mlm()                           # checks the masking options

    def mlm(self) -> MLMConfig:
        """The generator's MLM head and masking."""
        return MLMConfig(stream=self.generator, mask_prob=self.mask_prob, replace_with_mask=self.replace_with_mask,
                         replace_with_random=self.replace_with_random, whole_word=self.whole_word,
                         head_activation=self.head_activation, head_norm=self.head_norm,
                         head_norm_eps=self.head_norm_eps, tie_weights=True)


class DiscriminatorHead(nn.Module):
    """Per-token replaced-or-original logit: dense -> activation -> dense(1) (ElectraDiscriminatorPredictions)."""

    def __init__(self, dim: int, activation: str):
        super().__init__()
        self.dense = nn.Linear(dim, dim)
        self.act = ACTIVATIONS[activation]()
        self.prediction = nn.Linear(dim, 1)

    def forward(self, hidden: Tensor) -> Tensor:
        return self.prediction(self.act(self.dense(hidden))).squeeze(-1)


def sample(logits: Tensor) -> Tensor:
    """One token per row of ``logits`` [N, V], drawn from softmax(logits) by Gumbel-max: argmax(logits + G) with
    G = -log(-log(U)), U ~ U[0, 1) from torch's global RNG (U = 0 gives G = -inf: never picked). In place on
    one [N, V] buffer: a large-vocabulary sample is a few passes over memory, not a chain of temporaries."""
    minus_gumbel = torch.rand_like(logits, dtype=torch.float32).log_().neg_().log_()
    return minus_gumbel.neg_().add_(logits).argmax(-1)


@TARGETS.register("electra")
class Electra(Target):
    """Replaced-token detection over two text streams: an MLM generator and a discriminator it feeds."""

    Config = ElectraConfig

    def __init__(self, cfg: ElectraConfig, streams: nn.ModuleDict):
        super().__init__(cfg, streams)
        for role in ("generator", "discriminator"):
            name = getattr(cfg, role)
            if name not in streams:
                hint = closest(name, streams)
                raise ConfigError(f"electra's {role} is stream '{name}', but the model has no such stream"
                                  + (f"; did you mean '{hint}'?" if hint else "")
                                  + f" The model's streams: {', '.join(streams)}")
        if cfg.generator == cfg.discriminator:
            raise ConfigError(f"electra's generator and discriminator are both stream '{cfg.generator}'; "
                              "they are two streams")
        refuse_larger_generator(cfg, streams)
        self.features_stream = cfg.discriminator          # what a probe of the run's features reads
        self.generator_head = MaskedLM(cfg.mlm(), streams)
        self.discriminator_head = DiscriminatorHead(streams[cfg.discriminator].encoder.dim,
                                                    cfg.discriminator_activation)
        embedding = streams[cfg.discriminator].embedding
        self.real = embedding.maskable() if hasattr(embedding, "maskable") else RealPositions()

    def driven_streams(self) -> tuple[str, ...]:
        return (self.cfg.discriminator,)

    def reads(self) -> tuple[str, ...]:
        return (self.cfg.generator, self.cfg.discriminator)

    def batch_transform(self, data: DataContext) -> MLMMasking:
        return self.generator_head.batch_transform(data)

    def forward(self, outputs: dict[str, StreamOutput], batch: dict[str, Tensor]) -> TaskOutput:
        cfg = self.cfg
        generated, logits, selected = self.generator_head.predict(outputs[cfg.generator], batch["labels"])
        original = torch.where(selected, batch["labels"], batch["input_ids"])
        corrupted = original
        if logits is not None:
            with torch.no_grad():                        # no gradient through sampling, as in ELECTRA
                corrupted = original.masked_scatter(selected, sample(logits.detach()))
        disc = self.run_stream(cfg.discriminator, {**batch, "input_ids": corrupted})
        scores = self.discriminator_head(disc.hidden.x).float()              # [B, L]
        real = self.real(batch)
        replaced = corrupted != original
        n_real = real.sum()
        per_token = F.binary_cross_entropy_with_logits(scores, replaced.float(), reduction="none")
        disc_loss = (per_token * real).sum() / n_real.clamp(min=1)
        with torch.no_grad():
            said = (scores > 0) & real                    # "replaced", on real tokens
            is_replaced = replaced & real
            hits = (said & is_replaced).sum()
            metrics = {f"generator_{k}": v for k, v in generated.metrics.items()}
            metrics.update(
                generator_loss=generated.loss.detach(), discriminator_loss=disc_loss.detach(),
                discriminator_accuracy=((said == is_replaced) & real).sum() / n_real.clamp(min=1),
                replaced=is_replaced.sum() / n_real.clamp(min=1),
                discriminator_precision=hits / said.sum().clamp(min=1),     # 0 while it calls nothing replaced
                discriminator_recall=hits / is_replaced.sum().clamp(min=1))
        loss = generated.loss + cfg.discriminator_weight * disc_loss
        # one count weights every metric of this target: the discriminator's predictions (real tokens)
        return TaskOutput(loss=loss, metrics=metrics, count=n_real)


def refuse_larger_generator(cfg: ElectraConfig, streams: nn.ModuleDict) -> None:
    """ELECTRA's generator is smaller than its discriminator (the paper: 1/4 to 1/2 of its width); a larger
    one makes replacements the discriminator cannot learn to spot, and costs more than it gives."""
    def size(name: str) -> tuple[int, int]:
        encoder = streams[name].encoder
        return encoder.dim, getattr(getattr(encoder, "cfg", None), "layers", 0)
    (g_dim, g_layers), (d_dim, d_layers) = size(cfg.generator), size(cfg.discriminator)
    larger = ([f"encoder.dim {g_dim} > {d_dim}"] if g_dim > d_dim else []) + \
             ([f"encoder.layers {g_layers} > {d_layers}"] if g_layers > d_layers else [])
    if larger:
        raise ConfigError(f"electra's generator 'model.streams.{cfg.generator}' is larger than its discriminator "
                          f"'model.streams.{cfg.discriminator}' ({', '.join(larger)}); ELECTRA's generator must "
                          f"not exceed it (the paper uses 1/4 of the discriminator's width for ELECTRA-Small)")
