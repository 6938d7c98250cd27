"""Graph pretraining and fine-tuning targets over a `graph` stream.

* `attribute_masking` (Hu et al. 2020): in every graph, ``mask_rate`` of the nodes (at least one) show the
  embedding's mask vector instead of all their features, and a head predicts each categorical feature listed
  in ``predict`` (default: all) from the encoder output at those nodes; optionally (``bond_mask_rate``) the
  types of that share of the edges are hidden (a "masked" edge type in the structure) and predicted from the
  two end nodes.
* `masked_edges`: ``mask_rate`` of every graph's edges (at least one where it has any) are removed from the
  graph before its structural encodings are computed (degree, distances and paths then never reveal them);
  a head scores node pairs: the removed edges (positives) and as many node pairs of the same graph that are
  not edges (negatives), binary cross-entropy, plus the removed edges' types (cross-entropy).
* `graph_property`: regression (MSE on standardised labels, missing labels ignored) or binary classification
  on pooled graph features: the fine-tuning head (`modalzoo eval`'s property transfer uses it).

Batch transforms run in loader workers with the per-batch generator, so a resumed run masks alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...datasets.fields import DataContext
from ...errors import ModalzooError
from ...pretrain_tasks.base import IGNORE, StreamOutput, Target, TargetConfig, TaskOutput, stream_embedding
from ...registry import TARGETS
from .batches import blocks, graph_edges, pool_graphs, rebuild


def _rng(generator: torch.Generator | None) -> np.random.Generator:
    seed = int(torch.randint(0, 2**62, (1,), generator=generator)) if generator is not None else None
    return np.random.default_rng(seed)




def _head(dim: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.LayerNorm(dim), nn.Linear(dim, out))


# ---------------------------------------------------------------------------------------------------------
@dataclass
class AttributeMaskingConfig(TargetConfig):
    stream: str = "graph"
    mask_rate: float = 0.15
    predict: list[int] | None = None       # indexes of the categorical features to predict (None: all)
    bond_mask_rate: float = 0.0            # > 0: also hide and predict this share of the edge types

    def __post_init__(self):
        for name in ("mask_rate", "bond_mask_rate"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")


class AttributeMasking:
    """The batch transform of `attribute_masking` (picklable)."""

    def __init__(self, rate: float, bond_rate: float, masked_type: int, hops: int):
        self.rate, self.bond_rate, self.masked_type, self.hops = rate, bond_rate, masked_type, hops

    def __call__(self, batch: dict[str, Tensor], generator: torch.Generator | None = None) -> dict[str, Tensor]:
        rng = _rng(generator)
        node_cat = batch["node_cat"]
        mask = torch.zeros(node_cat.shape[:2], dtype=torch.bool)
        bond_pairs, bond_types, changed = [], [], []
        if self.bond_rate > 0:                  # the true types, for any target that predicts edge types
            batch.setdefault("edge_type_true", batch["edge_type"].clone())
        for g, (row, start, n) in enumerate(blocks(batch)):
            k = max(1, int(round(self.rate * n)))
            mask[row, start + rng.choice(n, size=k, replace=False)] = True
            if self.bond_rate > 0:
                idx = graph_edges(batch, row, start, n)
                if len(idx):
                    chosen = idx[rng.choice(len(idx), size=max(1, int(round(self.bond_rate * len(idx)))),
                                            replace=False)]
                    for e in chosen:
                        i, j = batch["edge_index"][row, e].tolist()
                        bond_pairs.append((row, i, j))
                        bond_types.append(int(batch["edge_type"][row, e]))
                    batch["edge_type"][row, chosen] = self.masked_type
                    changed.append(g)
        batch["node_mask"] = mask
        batch["attr_labels"] = torch.where(mask[..., None], node_cat - 1, IGNORE)
        if self.bond_rate > 0:
            rebuild(batch, changed, self.hops)
            batch["bond_pairs"] = torch.tensor(bond_pairs, dtype=torch.long).reshape(-1, 3)
            batch["bond_labels"] = torch.tensor(bond_types, dtype=torch.long)
        return batch


def _pair_features(hidden: Tensor, pairs: Tensor) -> Tensor:
    a, b = hidden[pairs[:, 0], pairs[:, 1]], hidden[pairs[:, 0], pairs[:, 2]]
    return torch.cat([a * b, (a - b).abs(), a + b], dim=-1)               # symmetric in the two ends


@TARGETS.register("attribute_masking")
class AttributeMaskingTarget(Target):
    Config = AttributeMaskingConfig

    def __init__(self, cfg: AttributeMaskingConfig, streams: nn.ModuleDict):
        super().__init__(cfg, streams)
        self.embedding_cfg = stream_embedding(streams, cfg.stream, "graph", "attribute_masking").cfg
        vocab, dim = self.embedding_cfg.node_vocab, streams[cfg.stream].encoder.dim
        self.predict = list(range(len(vocab))) if cfg.predict is None else list(cfg.predict)
        bad = [i for i in self.predict if not 0 <= i < len(vocab)]
        if bad:
            raise ModalzooError(f"attribute_masking.predict: feature {bad[0]} does not exist (the embedding has "
                                f"{len(vocab)}: {self.embedding_cfg.node_features})")
        self.transform = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.LayerNorm(dim))
        self.heads = nn.ModuleList(nn.Linear(dim, vocab[i]) for i in self.predict)
        self.bond_head = _head(3 * dim, self.embedding_cfg.edge_types) if cfg.bond_mask_rate > 0 else None

    def batch_transform(self, data: DataContext) -> AttributeMasking:
        return AttributeMasking(self.cfg.mask_rate, self.cfg.bond_mask_rate, self.embedding_cfg.edge_types,
                                data.get("hops", self.embedding_cfg.max_hops))

    def forward(self, outputs: dict[str, StreamOutput], batch: dict[str, Tensor]) -> TaskOutput:
        hidden = outputs[self.cfg.stream].hidden.x
        mask = batch["node_mask"]
        h = self.transform(hidden[mask])
        labels = batch["attr_labels"][mask]
        losses, metrics = [], {}
        for head, i in zip(self.heads, self.predict):
            logits = head(h)
            losses.append(F.cross_entropy(logits.float(), labels[:, i]))
            metrics[f"{self.embedding_cfg.node_features[i]}_acc"] = (logits.argmax(-1) == labels[:, i]).float().mean()
        loss = torch.stack(losses).mean()
        if self.bond_head is not None and batch["bond_pairs"].numel():
            logits = self.bond_head(_pair_features(hidden, batch["bond_pairs"]))
            bond_loss = F.cross_entropy(logits.float(), batch["bond_labels"])
            metrics["bond_type_acc"] = (logits.argmax(-1) == batch["bond_labels"]).float().mean()
            metrics["bond_loss"] = bond_loss.detach()
            loss = loss + bond_loss
        metrics["attr_loss"] = torch.stack(losses).mean().detach()
        return TaskOutput(loss, metrics, count=int(mask.sum()))


# ---------------------------------------------------------------------------------------------------------
@dataclass
class MaskedEdgesConfig(TargetConfig):
    stream: str = "graph"
    mask_rate: float = 0.15
    predict_type: bool = True              # also classify the removed edges' types

    def __post_init__(self):
        if not 0 < self.mask_rate < 1:
            raise ValueError(f"mask_rate must be in (0, 1), got {self.mask_rate}")


class EdgeMasking:
    """The batch transform of `masked_edges` (picklable)."""

    def __init__(self, rate: float, hops: int):
        self.rate, self.hops = rate, hops

    def __call__(self, batch: dict[str, Tensor], generator: torch.Generator | None = None) -> dict[str, Tensor]:
        rng = _rng(generator)
        pairs, labels, types, changed = [], [], [], []
        edge_index, true_type = batch["edge_index"], batch.get("edge_type_true", batch["edge_type"])
        for g, (row, start, n) in enumerate(blocks(batch)):
            idx = graph_edges(batch, row, start, n)
            if len(idx) == 0 or n < 2:
                continue
            chosen = idx[rng.choice(len(idx), size=max(1, int(round(self.rate * len(idx)))), replace=False)]
            present = {tuple(sorted(p)) for p in edge_index[row, idx].tolist()}
            for e in chosen:
                i, j = edge_index[row, e].tolist()
                pairs.append((row, i, j))
                labels.append(1.0)
                types.append(int(true_type[row, e]))
            wanted, tries = len(chosen), 0
            while wanted and tries < 20 * len(chosen):   # a complete graph has no non-edge: fewer negatives
                tries += 1
                i, j = sorted(int(v) for v in start + rng.choice(n, size=2, replace=False))
                if (i, j) not in present:
                    present.add((i, j))
                    pairs.append((row, i, j))
                    labels.append(0.0)
                    types.append(IGNORE)
                    wanted -= 1
            edge_index[row, chosen] = -1
            changed.append(g)
        rebuild(batch, changed, self.hops)
        batch["edge_pairs"] = torch.tensor(pairs, dtype=torch.long).reshape(-1, 3)
        batch["edge_pair_labels"] = torch.tensor(labels, dtype=torch.float)
        batch["edge_pair_types"] = torch.tensor(types, dtype=torch.long)
        return batch


@TARGETS.register("masked_edges")
class MaskedEdgesTarget(Target):
    Config = MaskedEdgesConfig

    def __init__(self, cfg: MaskedEdgesConfig, streams: nn.ModuleDict):
        super().__init__(cfg, streams)
        self.embedding_cfg = stream_embedding(streams, cfg.stream, "graph", "masked_edges").cfg
        dim = streams[cfg.stream].encoder.dim
        self.head = _head(3 * dim, 1 + (self.embedding_cfg.edge_types if cfg.predict_type else 0))

    def batch_transform(self, data: DataContext) -> EdgeMasking:
        return EdgeMasking(self.cfg.mask_rate, data.get("hops", self.embedding_cfg.max_hops))

    def forward(self, outputs: dict[str, StreamOutput], batch: dict[str, Tensor]) -> TaskOutput:
        hidden = outputs[self.cfg.stream].hidden.x
        pairs, labels = batch["edge_pairs"], batch["edge_pair_labels"]
        if pairs.numel() == 0:                       # no graph of the batch had an edge
            zero = hidden.sum() * 0
            return TaskOutput(zero, {"edge_acc": zero.detach()}, count=0)
        out = self.head(_pair_features(hidden, pairs)).float()
        loss = F.binary_cross_entropy_with_logits(out[:, 0], labels)
        metrics = {"edge_acc": ((out[:, 0] > 0).float() == labels).float().mean(), "edge_loss": loss.detach()}
        if self.cfg.predict_type:
            types = batch["edge_pair_types"]
            positive = types != IGNORE
            type_loss = F.cross_entropy(out[positive, 1:], types[positive])
            metrics["edge_type_acc"] = (out[positive, 1:].argmax(-1) == types[positive]).float().mean()
            loss = loss + type_loss
        return TaskOutput(loss, metrics, count=len(labels))


# ---------------------------------------------------------------------------------------------------------
@dataclass
class GraphPropertyConfig(TargetConfig):
    stream: str = "graph"
    labels: list[int] = field(default_factory=lambda: [0])   # columns of graph_labels (schema order)
    task: Literal["regression", "binary"] = "regression"
    pooling: Literal["mean", "virtual"] = "mean"
    label_mean: list[float] | None = None   # regression: labels are standardised with these (train split's)
    label_std: list[float] | None = None
    dropout: float = 0.0


@TARGETS.register("graph_property")
class GraphPropertyTarget(Target):
    """A head on pooled graph features: MSE on standardised labels, or binary cross-entropy; NaN = missing."""

    Config = GraphPropertyConfig

    def __init__(self, cfg: GraphPropertyConfig, streams: nn.ModuleDict):
        super().__init__(cfg, streams)
        stream_embedding(streams, cfg.stream, "graph", "graph_property")
        dim, k = streams[cfg.stream].encoder.dim, len(cfg.labels)
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(dim, k))
        mean = torch.tensor(cfg.label_mean if cfg.label_mean is not None else [0.0] * k)
        std = torch.tensor(cfg.label_std if cfg.label_std is not None else [1.0] * k)
        if mean.numel() != k or std.numel() != k:
            raise ModalzooError(f"graph_property: label_mean/label_std need {k} values (one per label)")
        self.register_buffer("label_mean", mean, persistent=True)
        self.register_buffer("label_std", std, persistent=True)

    def predict(self, hidden: Tensor, batch: dict[str, Tensor]) -> Tensor:
        """[G, k] predictions in label units (probabilities for a binary task)."""
        out = self.head(pool_graphs(hidden, batch, self.cfg.pooling)).float()
        if self.cfg.task == "binary":
            return out.sigmoid()
        return out * self.label_std + self.label_mean

    def forward(self, outputs: dict[str, StreamOutput], batch: dict[str, Tensor]) -> TaskOutput:
        out = self.head(pool_graphs(outputs[self.cfg.stream].hidden.x, batch, self.cfg.pooling)).float()
        y = batch["graph_labels"][:, self.cfg.labels].float()
        known = ~torch.isnan(y)
        if not known.any():
            zero = out.sum() * 0
            return TaskOutput(zero, {}, count=0)
        if self.cfg.task == "binary":
            loss = F.binary_cross_entropy_with_logits(out[known], y[known])
            acc = ((out[known] > 0).float() == y[known]).float().mean()
            return TaskOutput(loss, {"acc": acc}, count=int(known.sum()))
        z = (y - self.label_mean) / self.label_std
        loss = F.mse_loss(out[known], z[known])
        rmse = ((out[known] - z[known]) * self.label_std.expand_as(z)[known]).pow(2).mean().sqrt()
        return TaskOutput(loss, {"rmse": rmse.detach()}, count=int(known.sum()))
