"""Masked language modelling (BERT/RoBERTa): dynamic 80/10/10 masking, optional whole-word masking,
and a prediction head that runs only on the masked positions, tied to the token embedding."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..datasets.fields import DataContext
from ..encoders.blocks import ACTIVATIONS, make_norm
from ..encoders.masks import RealPositions
from ..registry import TARGETS
from .base import IGNORE, StreamOutput, Target, TargetConfig, TaskOutput


@dataclass
class MLMConfig(TargetConfig):
    stream: str = "text"
    mask_prob: float = 0.15
    replace_with_mask: float = 0.8   # of the selected tokens: [MASK]
    replace_with_random: float = 0.1  # ... a random token; the rest stay unchanged
    whole_word: bool = False         # select whole words (all their sub-tokens) instead of tokens
    head_activation: str = "gelu"
    head_norm: str = "layernorm"
    head_norm_eps: float = 1e-12
    tie_weights: bool = True         # decoder matrix = the stream's token embedding

    def __post_init__(self):
        if not 0 < self.mask_prob < 1:
            raise ValueError(f"mask_prob must be in (0, 1), got {self.mask_prob}")
        if self.replace_with_mask + self.replace_with_random > 1:
            raise ValueError("replace_with_mask + replace_with_random must be <= 1")


class MLMMasking:
    """Picks tokens to predict and corrupts them; runs in loader workers.

    Candidates are the positions the stream's embedding calls maskable (``maskable(batch)``: real tokens,
    for GraphCodeBERT code tokens only) that are not special tokens. The generator is seeded per batch by
    the data stream, so a resumed run masks exactly as before.
    """

    def __init__(self, cfg: MLMConfig, mask_id: int, vocab_size: int, special_ids: list[int],
                 maskable: Callable[[dict[str, Tensor]], Tensor] | None = None):
        self.cfg, self.mask_id, self.vocab_size = cfg, mask_id, vocab_size
        self.maskable = maskable or RealPositions()
        self.special_ids = torch.tensor(special_ids)
        self.random_low = max(special_ids) + 1     # random replacements are never special tokens

    def __call__(self, batch: dict[str, Tensor], generator: torch.Generator | None = None) -> dict[str, Tensor]:
        ids = batch["input_ids"]
        g = generator
        candidates = ~torch.isin(ids, self.special_ids)
        candidates &= self.maskable(batch)
        if self.cfg.whole_word and "word_ids" in batch:
            word_ids = batch["word_ids"]
            draw = torch.rand(ids.shape[0], int(word_ids.max()) + 2, generator=g)
            selected = draw.gather(1, word_ids.clamp(min=0)) < self.cfg.mask_prob
            selected &= (word_ids >= 0) & candidates
        else:
            selected = (torch.rand(ids.shape, generator=g) < self.cfg.mask_prob) & candidates
        labels = torch.where(selected, ids, torch.full_like(ids, IGNORE))
        action = torch.rand(ids.shape, generator=g)
        to_mask = selected & (action < self.cfg.replace_with_mask)
        to_random = selected & ~to_mask & (action < self.cfg.replace_with_mask + self.cfg.replace_with_random)
        corrupted = ids.clone()
        corrupted[to_mask] = self.mask_id
        corrupted[to_random] = torch.randint(self.random_low, self.vocab_size, (int(to_random.sum()),), generator=g)
        return {**batch, "input_ids": corrupted, "labels": labels}


@TARGETS.register("mlm")
class MaskedLM(Target):
    """Masked-token prediction with BERT's head (dense -> act -> norm -> tied decoder + bias)."""

    Config = MLMConfig

    def __init__(self, cfg: MLMConfig, streams: nn.ModuleDict):
        super().__init__(cfg, streams)
        if cfg.stream not in streams:
            raise ValueError(f"mlm reads stream '{cfg.stream}', but the model has {list(streams)}")
        embedding = streams[cfg.stream].embedding
        vocab, dim = embedding.output_weight.shape
        # Asked once here: the answer is a picklable function of the batch, sent to loader workers.
        self.maskable = embedding.maskable() if hasattr(embedding, "maskable") else RealPositions()
        # encoder width -> embedding width: equal in BERT; ELECTRA's generator is narrower than its embedding
        self.dense = nn.Linear(getattr(streams[cfg.stream].encoder, "dim", dim), dim)
        self.act = ACTIVATIONS[cfg.head_activation]()
        self.norm = make_norm(cfg.head_norm, dim, cfg.head_norm_eps)
        self.decoder = None if cfg.tie_weights else nn.Linear(dim, vocab, bias=False)
        self.bias = nn.Parameter(torch.zeros(vocab))

    def batch_transform(self, data: DataContext) -> MLMMasking:
        tok = data.tokenizer
        return MLMMasking(self.cfg, tok.mask_id, tok.vocab_size, tok.special_ids, self.maskable)

    def logits(self, hidden: Tensor, output: StreamOutput) -> Tensor:
        weight = output.stream.embedding.output_weight if self.decoder is None else self.decoder.weight
        return F.linear(self.norm(self.act(self.dense(hidden))), weight, self.bias)

    def forward(self, outputs: dict[str, StreamOutput], batch: dict[str, Tensor]) -> TaskOutput:
        return self.predict(outputs[self.cfg.stream], batch["labels"])[0]

    def predict(self, out: StreamOutput, labels: Tensor) -> tuple[TaskOutput, Tensor | None, Tensor]:
        """Loss and accuracy on the masked positions (``labels != IGNORE``), with their logits [N, V] (None
        when nothing is masked) and that mask [B, L]: ELECTRA samples its replacements from these logits."""
        selected = labels != IGNORE
        hidden = out.hidden.x[selected]                      # [N, D]: only the masked positions
        targets = labels[selected]
        if targets.numel() == 0:
            zero = out.hidden.x.sum() * 0.0
            return TaskOutput(loss=zero, metrics={"accuracy": zero.detach()}, count=0), None, selected
        logits = self.logits(hidden, out)
        loss = F.cross_entropy(logits.float(), targets)
        accuracy = (logits.argmax(-1) == targets).float().mean()
        return TaskOutput(loss=loss, metrics={"accuracy": accuracy}, count=targets.numel()), logits, selected
