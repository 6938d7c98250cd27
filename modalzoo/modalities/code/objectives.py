"""GraphCodeBERT's structure-aware objectives (paper §4.3) and CodeT5's identifier tagging, over the `code` layout.

`data_flow`: edge prediction and node alignment.
    Edge prediction: per row a ``node_fraction`` of the data-flow nodes is drawn; their node-node edges are hidden
    from the attention mask and predicted for every candidate pair that has a drawn node, from the final node
    states: p = sigmoid(h_i . h_j / sqrt(d)). The paper's score is the unscaled dot product; at d = 768 that
    saturates from the first step, so it is scaled. The score is symmetric, so a pair is positive when an edge
    joins it in either direction.
    Node alignment: another draw of nodes; their links to code tokens are hidden from the mask (both ways) and
    each (drawn node, code token) pair is predicted: positive when the token is one of the node's subwords. The
    node's input vector is kept (`embedding.py` reads ``node_span``): which occurrence it is, not which name, is
    what the model must find.
    Positives and negatives are balanced per batch (all positives, as many negatives drawn uniformly). The paper
    alternates the two with MLM at each iteration: ``combine: alternate`` draws one of them per batch from the
    batch's generator (so a resumed run draws the same), ``sum`` runs both on every batch (separate node draws).
`identifier_tagging` (CodeT5): a binary head on every code subword, "is this part of an identifier".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...datasets.fields import DataContext
from ...pretrain_tasks.base import StreamOutput, Target, TargetConfig, TaskOutput, stream_embedding
from ...registry import TARGETS
from .layout import CODE, NODE


@dataclass
class DataFlowConfig(TargetConfig):
    stream: str = "code"
    edge_prediction: bool = True
    node_alignment: bool = True
    combine: Literal["alternate", "sum"] = "alternate"
    node_fraction: float = 0.2       # of each row's nodes, drawn per objective (paper: 20 %)
    edge_weight: float = 1.0
    align_weight: float = 1.0

    def __post_init__(self):
        if not 0 < self.node_fraction <= 1:
            raise ValueError(f"node_fraction must be in (0, 1], got {self.node_fraction}")
        if not (self.edge_prediction or self.node_alignment):
            raise ValueError("data_flow needs edge_prediction or node_alignment (or both)")


def _draw_nodes(role: Tensor, fraction: float, g: torch.Generator | None) -> Tensor:
    """[B, L] bool: ~``fraction`` of each row's nodes, at least one when the row has any."""
    nodes = role == NODE
    score = torch.rand(role.shape, generator=g).masked_fill(~nodes, 2.0)
    count = (nodes.sum(1).float() * fraction).ceil().long().clamp(min=1)
    rank = score.argsort(1).argsort(1)
    return nodes & (rank < count[:, None])


def _balanced(pos: Tensor, neg: Tensor, g: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """Index rows of all positives and as many negatives drawn without replacement; labels."""
    take = neg[torch.randperm(len(neg), generator=g)[:len(pos)]]
    pairs = torch.cat([pos, take])
    labels = torch.cat([torch.ones(len(pos)), torch.zeros(len(take))])
    return pairs, labels


class DataFlowMasking:
    """Hides the drawn nodes' edges / links in ``attn_mask`` and records the candidate pairs (loader workers)."""

    def __init__(self, cfg: DataFlowConfig):
        self.cfg = cfg

    def __call__(self, batch: dict[str, Tensor], generator: torch.Generator | None = None) -> dict[str, Tensor]:
        cfg, g = self.cfg, generator
        tasks = [t for t, on in (("edges", cfg.edge_prediction), ("align", cfg.node_alignment)) if on]
        if cfg.combine == "alternate" and len(tasks) == 2:
            tasks = [tasks[int(torch.rand(1, generator=g).item() < 0.5)]]
        role, mask = batch["token_role"], batch["attn_mask"].clone()
        out = dict(batch)
        if "edges" in tasks:
            out.update(self._edges(role, batch["dfg_edges"], mask, g))
        if "align" in tasks:
            out.update(self._align(role, batch["node_span"], mask, g))
        out["attn_mask"] = mask
        return out

    def _edges(self, role, dfg, mask, g) -> dict[str, Tensor]:
        nodes = role == NODE
        drawn = _draw_nodes(role, self.cfg.node_fraction, g)
        pair = nodes[:, :, None] & nodes[:, None, :]
        hidden = pair & (drawn[:, :, None] | drawn[:, None, :])
        hidden &= ~torch.eye(role.shape[1], dtype=torch.bool)[None]
        mask &= ~hidden
        kind = torch.maximum(dfg, dfg.transpose(1, 2)).long()             # either direction
        upper = torch.triu(torch.ones_like(hidden[0]), 1)[None]
        candidates = hidden & upper
        pos = (candidates & (kind > 0)).nonzero()
        neg = (candidates & (kind == 0)).nonzero()
        pairs, labels = _balanced(pos, neg, g)
        return {"edge_pairs": pairs, "edge_labels": labels, "edge_kind": kind[pairs[:, 0], pairs[:, 1], pairs[:, 2]]}

    def _align(self, role, span, mask, g) -> dict[str, Tensor]:
        drawn = _draw_nodes(role, self.cfg.node_fraction, g)
        code = role == CODE
        at = torch.arange(role.shape[1])
        linked = (at[None, None, :] >= span[..., :1]) & (at[None, None, :] < span[..., 1:])   # [B, node, token]
        candidates = drawn[:, :, None] & code[:, None, :]
        mask &= ~candidates
        mask &= ~candidates.transpose(1, 2)
        pos = (candidates & linked).nonzero()
        neg = (candidates & ~linked).nonzero()
        pairs, labels = _balanced(pos, neg, g)
        return {"align_pairs": pairs, "align_labels": labels}


def _pair_loss(x: Tensor, pairs: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """BCE of the scaled dot products of the pairs' hidden states; the logits and the loss."""
    b, i, j = pairs.unbind(1)
    logits = (x[b, i].float() * x[b, j].float()).sum(-1) / math.sqrt(x.shape[-1])
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype)), logits, labels


def f1(predicted: Tensor, labels: Tensor) -> Tensor:
    tp = (predicted & labels).sum().float()
    return 2 * tp / (predicted.sum() + labels.sum()).clamp(min=1)


@TARGETS.register("data_flow")
class DataFlow(Target):
    """GraphCodeBERT's edge prediction and node alignment (no parameters: dot products of final states)."""

    Config = DataFlowConfig

    def __init__(self, cfg: DataFlowConfig, streams: nn.ModuleDict):
        super().__init__(cfg, streams)
        stream_embedding(streams, cfg.stream, "code_dataflow", "data_flow")

    def batch_transform(self, data: DataContext) -> DataFlowMasking:
        return DataFlowMasking(self.cfg)

    def forward(self, outputs: dict[str, StreamOutput], batch: dict[str, Tensor]) -> TaskOutput:
        x = outputs[self.cfg.stream].hidden.x
        loss = x.sum() * 0.0
        metrics: dict[str, Tensor] = {}
        count = 0
        for key, weight in (("edge", self.cfg.edge_weight), ("align", self.cfg.align_weight)):
            pairs = batch.get(f"{key}_pairs")
            if pairs is None or len(pairs) == 0:
                continue
            part, logits, labels = _pair_loss(x, pairs, batch[f"{key}_labels"])
            loss = loss + weight * part
            predicted, truth = logits > 0, labels > 0.5
            metrics[f"{key}_loss"] = part.detach()
            metrics[f"{key}_accuracy"] = (predicted == truth).float().mean()
            metrics[f"{key}_f1"] = f1(predicted, truth)
            count += len(pairs)
        return TaskOutput(loss=loss, metrics=metrics, count=max(count, 1))


@dataclass
class IdentifierTaggingConfig(TargetConfig):
    stream: str = "code"


@TARGETS.register("identifier_tagging")
class IdentifierTagging(Target):
    """CodeT5's identifier tagging: is each code subword part of an identifier (labels from the tokenizer)."""

    Config = IdentifierTaggingConfig

    def __init__(self, cfg: IdentifierTaggingConfig, streams: nn.ModuleDict):
        super().__init__(cfg, streams)
        stream_embedding(streams, cfg.stream, "code_dataflow", "identifier_tagging")
        self.head = nn.Linear(getattr(streams[cfg.stream].encoder, "dim", streams[cfg.stream].embedding.out_dim), 1)

    def forward(self, outputs: dict[str, StreamOutput], batch: dict[str, Tensor]) -> TaskOutput:
        code = batch["token_role"] == CODE
        x = outputs[self.cfg.stream].hidden.x[code]
        labels = batch["is_identifier"][code].float()
        if labels.numel() == 0:
            zero = outputs[self.cfg.stream].hidden.x.sum() * 0.0
            return TaskOutput(loss=zero, metrics={"accuracy": zero.detach()}, count=0)
        logits = self.head(x).squeeze(-1).float()
        loss = F.binary_cross_entropy_with_logits(logits, labels)
        accuracy = ((logits > 0).float() == labels).float().mean()
        return TaskOutput(loss=loss, metrics={"accuracy": accuracy}, count=labels.numel())
