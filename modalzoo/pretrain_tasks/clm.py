"""Causal / sequence-to-sequence language modelling: next-token prediction (GPT) on an encoder's
output, or target-token prediction (T5/BART) on a decoder's output. The output matrix is tied to the
embedding that produced the tokens being predicted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..registry import TARGETS
from .base import IGNORE, StreamOutput, Target, TargetConfig, TaskOutput
from .linear_cross_entropy import linear_cross_entropy


@dataclass
class CLMConfig(TargetConfig):
    stream: str = "text"
    source: Literal["encoder", "decoder"] = "encoder"   # decoder-only (GPT) or encoder-decoder (T5)
    tie_weights: bool = True
    # Multiply the hidden states by dim ** -0.5 before the output matrix. None: exactly when a decoder's
    # head is tied (T5 v1.0 ties and scales, v1.1 unties and does not, as transformers' T5 decides).
    scale_output: bool | None = None

    @property
    def scaled(self) -> bool:
        return self.scale_output if self.scale_output is not None else self.source == "decoder" and self.tie_weights


@TARGETS.register("clm")
class CausalLM(Target):
    """Next-token loss (GPT) or decoder target-token loss (T5); packed documents never predict across."""

    Config = CLMConfig
    pipeline_tag = "text-generation"      # the Hub task of a modalzoo-format export (hub/card.py)

    def __init__(self, cfg: CLMConfig, streams: nn.ModuleDict):
        super().__init__(cfg, streams)
        stream = streams[cfg.stream]
        embedding = stream.embedding if cfg.source == "encoder" else stream.target_embedding
        if embedding is None:
            raise ValueError(f"clm with source=decoder needs a target_embedding in stream '{cfg.stream}'")
        vocab, dim = embedding.output_weight.shape
        self.head = None if cfg.tie_weights else nn.Linear(dim, vocab, bias=False)
        self.output_scale = dim ** -0.5 if cfg.scaled else None
        # The table a tied, scaled head reads, for `init_weights` (a plain attribute: the stream owns it).
        self.__dict__["_scaled_table"] = embedding if cfg.tie_weights and cfg.scaled else None

    def init_weights(self) -> None:
        """T5's init of a tied, scaled head's table: N(0, 1) (Mesh TensorFlow, transformers), which the
        d ** -0.5 output scale assumes: unit-scale logits at the start. The model's generic N(0, 0.02) would
        start them ~50x smaller (t5_tiny: val loss 6.47 after 300 steps, 1.06x the unigram baseline's)."""
        table = self.__dict__.get("_scaled_table")
        if table is not None:
            nn.init.normal_(table.output_weight, std=1.0)

    def _weight(self, out: StreamOutput) -> Tensor:
        if self.head is not None:
            return self.head.weight
        embedding = out.stream.embedding if self.cfg.source == "encoder" else out.stream.target_embedding
        return embedding.output_weight

    def lm_logits(self, hidden: Tensor, out: StreamOutput) -> Tensor:
        """Vocabulary logits of hidden states [..., D] (the loss's and generation's one head)."""
        if self.output_scale is not None:
            hidden = hidden * self.output_scale
        return F.linear(hidden, self._weight(out))

    def _labels(self, batch: dict[str, Tensor]) -> Tensor:
        if self.cfg.source == "decoder":
            return batch["decoder_labels"]
        if "lm_labels" in batch:                        # a batch transform chose the predicted positions (UL2)
            return batch["lm_labels"]
        ids = batch["input_ids"]
        labels = torch.full_like(ids, IGNORE)
        labels[:, :-1] = ids[:, 1:]
        valid = torch.ones_like(ids, dtype=torch.bool)
        if "attention_mask" in batch:
            valid[:, :-1] = batch["attention_mask"][:, 1:].bool()
        if "segment_ids" in batch:                      # the last token of a document predicts nothing
            seg = batch["segment_ids"]
            valid[:, :-1] &= seg[:, 1:] == seg[:, :-1]
        valid[:, -1] = False
        return labels.masked_fill(~valid, IGNORE)

    def forward(self, outputs: dict[str, StreamOutput], batch: dict[str, Tensor]) -> TaskOutput:
        out = outputs[self.cfg.stream]
        hidden = (out.hidden if self.cfg.source == "encoder" else out.decoded).x
        labels = self._labels(batch).flatten()
        # index_select: its backward is one index_add_, cheaper than a boolean index's
        rows = (labels != IGNORE).nonzero().squeeze(1)
        predicting = hidden.flatten(0, -2).index_select(0, rows)
        if self.output_scale is not None:
            predicting = predicting * self.output_scale
        # the head and its loss in chunks, never the [tokens, vocab] logits (linear_cross_entropy.py)
        loss, accuracy = linear_cross_entropy(predicting, self._weight(out), labels.index_select(0, rows))
        return TaskOutput(loss=loss, metrics={"accuracy": accuracy, "perplexity": loss.detach().exp()},
                          count=rows.numel())
