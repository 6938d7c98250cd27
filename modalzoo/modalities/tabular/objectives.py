"""Table pretraining and fine-tuning targets over a `table_cells` stream.

* `masked_cells`: in every row ``mask_rate`` of the cells that hold a value (at least one when a row has two)
  show the mask vector instead of their value; a masked categorical or binary cell is recovered by scoring
  its column's categories (up to ``candidates``, most frequent in training first) as the embedding would
  show them — so one head serves every table and every vocabulary — with cross-entropy; a masked number
  regresses its scaled value (Huber). Text cells are masked as input noise only.
* `vpcl`: TransTab's vertical-partition contrastive learning. Each row's cells (shuffled) are cut into
  ``partitions`` parts, each borrowing ``overlap`` of its neighbour's share; every part is encoded as a row
  of its own (appended to the batch) and their [CLS] projections are contrasted: parts of the same row are
  positives (self-supervised), or with ``supervised`` parts of rows of the same table and label. Cosine
  similarity at ``temperature`` (TransTab takes raw dot products over 10; ``similarity: dot``).
* `table_label`: the fine-tuning head on [CLS]: binary / multiclass cross-entropy or regression (MSE on the
  schema-scaled label).

Batch transforms run in loader workers with the per-batch generator, so a resumed run masks alike; each
target's transform leaves the other's keys valid, in either order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...datasets.fields import DataContext
from ...errors import ModalzooError
from ...pretrain_tasks.base import IGNORE, StreamOutput, Target, TargetConfig, TaskOutput, stream_embedding
from ...registry import TARGETS
from .cells import CELL_KEYS, NUMBER, TOKENS, TableState


def table_state(data: DataContext) -> TableState:
    found = [s for s in data.states.values() if isinstance(s, TableState)]
    if not found:
        raise ModalzooError("a table target needs the `table` dataset (its cells and schemas)")
    return found[0]




def _head(dim: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.LayerNorm(dim), nn.Linear(dim, out))


def originals(batch: dict[str, Tensor]) -> Tensor:
    """[R] bool: rows of the data (not `vpcl`'s partition views)."""
    view_of = batch.get("view_of")
    return torch.ones(batch["cell_kind"].shape[0], dtype=torch.bool) if view_of is None else view_of < 0


# ---------------------------------------------------------------------------------------------------------
@dataclass
class MaskedCellsConfig(TargetConfig):
    stream: str = "table"
    mask_rate: float = 0.15
    candidates: int = 32             # categories scored per masked categorical cell
    numeric_weight: float = 1.0      # of the numeric (Huber) loss against the categorical one


class CellMasking:
    """Picklable: chooses the masked cells and gathers their targets and candidate categories."""

    def __init__(self, mask_rate: float, candidates: int, state: TableState):
        self.mask_rate, self.k = mask_rate, candidates
        self.cands = [None] * len(state.columns)
        for col in range(len(state.columns)):
            table, name = state.columns[col]
            column = next(c for c in state.schemas[table].columns if c.name == name)
            if column.type in ("categorical", "binary"):
                self.cands[col] = state.candidates(col, candidates)

    def __call__(self, batch: dict, generator: torch.Generator) -> dict:
        kind, rows = batch["cell_kind"], originals(batch)
        valued = ((kind == TOKENS) | (kind == NUMBER)) & rows[:, None]
        score = torch.rand(kind.shape, generator=generator)
        count = (valued.sum(1).float() * self.mask_rate).round().long()
        count = torch.where(valued.sum(1) >= 2, count.clamp(min=1), 0)
        ranked = torch.where(valued, score, 2.0).argsort(1).argsort(1)          # rank of each cell's score
        masked = valued & (ranked < count[:, None])
        batch["cell_masked"] = masked
        pos = masked.nonzero()
        cols, cats = batch["cell_col"][masked], batch["cell_cat"][masked]
        cat_rows, cands, cat_target = [], [], []
        for i, (c, v) in enumerate(zip(cols.tolist(), cats.tolist())):
            if c >= 0 and self.cands[c] is not None and 0 <= v < len(self.cands[c]):
                cat_rows.append(i)
                cands.append(self.cands[c])
                cat_target.append(v)
        K = max((len(c) for c in cands), default=1)
        T = max((c.shape[1] for c in cands), default=1)
        ids = np.zeros((len(cands), K, T), dtype=np.int64)
        for j, c in enumerate(cands):
            ids[j, : c.shape[0], : c.shape[1]] = c
        batch["mcm_pos"] = pos
        batch["mcm_cat_index"] = torch.tensor(cat_rows, dtype=torch.long)
        batch["mcm_cat_ids"] = torch.from_numpy(ids)
        batch["mcm_cat_target"] = torch.tensor(cat_target, dtype=torch.long)
        target = batch["cell_target"][masked]           # scaled numbers (digit tokens too); NaN otherwise
        batch["mcm_num_index"] = (~torch.isnan(target)).nonzero()[:, 0]
        batch["mcm_num_target"] = target[batch["mcm_num_index"]]
        return batch


@TARGETS.register("masked_cells")
class MaskedCellsTarget(Target):
    Config = MaskedCellsConfig

    def __init__(self, cfg: MaskedCellsConfig, streams: nn.ModuleDict):
        super().__init__(cfg, streams)
        if not 0 < cfg.mask_rate < 1:
            raise ModalzooError(f"masked_cells.mask_rate must be in (0, 1), got {cfg.mask_rate}")
        # in a list, so that the stream stays its only owner (one copy in state_dict and FSDP units)
        self.embedding = [stream_embedding(streams, cfg.stream, "table_cells", "masked_cells")]
        dim = streams[cfg.stream].encoder.dim
        self.category = _head(dim, self.embedding[0].cfg.dim)
        self.number = _head(dim, 1)
        # cosine logits with a learned scale: raw dot products of fresh N(0, 0.02) word means start flat
        self.logit_scale = nn.Parameter(torch.tensor(1.0))   # e: near-uniform at first

    def batch_transform(self, data: DataContext) -> CellMasking:
        return CellMasking(self.cfg.mask_rate, self.cfg.candidates, table_state(data))

    def forward(self, outputs: dict[str, StreamOutput], batch: dict[str, Tensor]) -> TaskOutput:
        hidden = outputs[self.cfg.stream].hidden.x
        pos = batch["mcm_pos"]
        h = hidden[pos[:, 0], pos[:, 1] + 1]                                    # +1: [CLS] comes first
        # Both heads always run (on no rows when nothing of their kind is masked), so every parameter gets a
        # gradient each step, as DDP without find_unused_parameters requires.
        idx, nidx = batch["mcm_cat_index"], batch["mcm_num_index"]
        query = F.normalize(self.category(h[idx]).float(), dim=-1)               # [Mc, D]
        keys = F.normalize(self.embedding[0].value_vectors(batch["mcm_cat_ids"]).float(), dim=-1)   # [Mc, K, D]
        pred = self.number(h[nidx]).float()[:, 0]
        loss = 0 * (query.sum() + keys.sum() + pred.sum() + self.logit_scale) + hidden.sum() * 0
        metrics, count = {}, 0
        if len(idx):
            logits = torch.einsum("md,mkd->mk", query, keys) * self.logit_scale.exp().clamp(max=100)
            logits = logits.masked_fill(batch["mcm_cat_ids"][..., 0] == 0, float("-inf"))
            cat_loss = F.cross_entropy(logits, batch["mcm_cat_target"])
            loss = loss + cat_loss
            metrics["category_acc"] = (logits.argmax(-1) == batch["mcm_cat_target"]).float().mean()
            metrics["category_loss"] = cat_loss.detach()
            count += len(idx)
        if len(nidx):
            num_loss = F.huber_loss(pred, batch["mcm_num_target"].float())
            loss = loss + self.cfg.numeric_weight * num_loss
            metrics["number_mae"] = (pred - batch["mcm_num_target"]).abs().mean().detach()
            metrics["number_loss"] = num_loss.detach()
            count += len(nidx)
        return TaskOutput(loss, metrics, count=count)


# ---------------------------------------------------------------------------------------------------------
@dataclass
class VPCLConfig(TargetConfig):
    stream: str = "table"
    partitions: int = 3
    overlap: float = 0.5
    supervised: bool = False         # positives: parts of rows of the same table and label
    temperature: float = 0.1
    similarity: Literal["cosine", "dot"] = "cosine"
    projection: int = 128


class Partitions:
    """Picklable: appends each data row's partition views to the batch (``view_of``: the row a view cuts)."""

    def __init__(self, partitions: int, overlap: float):
        self.p, self.overlap = partitions, overlap

    def __call__(self, batch: dict, generator: torch.Generator) -> dict:
        kind = batch["cell_kind"]
        R, C = kind.shape
        rows = originals(batch).nonzero()[:, 0].tolist()
        order = (torch.rand(R, C, generator=generator) + (kind == 0).float() * 2).argsort(1)
        counts = (kind > 0).sum(1).tolist()
        width = 0
        picks: list[tuple[int, list[int]]] = []
        for r in rows:
            n = counts[r]
            if n < 2:
                continue
            cells = order[r, :n].tolist()
            bounds = np.linspace(0, n, self.p + 1).round().astype(int)
            for k in range(self.p):
                lo, hi = int(bounds[k]), int(bounds[k + 1])
                extra = int(np.ceil((hi - lo) * self.overlap))
                part = cells[lo:hi] + cells[hi:hi + extra] if k < self.p - 1 else cells[lo - extra:lo] + cells[lo:hi]
                part = part or cells[:1]
                picks.append((r, part))
                width = max(width, len(part))
        view_of = batch.get("view_of", torch.full((R,), -1, dtype=torch.long))
        if not picks:
            batch["view_of"] = view_of
            return batch
        width = max(width, 1)
        index = torch.zeros(len(picks), width, dtype=torch.long)
        valid = torch.zeros(len(picks), width, dtype=torch.bool)
        for i, (_, part) in enumerate(picks):
            index[i, : len(part)] = torch.tensor(part)
            valid[i, : len(part)] = True
        src = torch.tensor([r for r, _ in picks])
        new = {}
        for key in CELL_KEYS:
            value = batch[key][src]                                   # [V, C, ...]
            gather = index.view(*index.shape, *([1] * (value.dim() - 2))).expand(*index.shape, *value.shape[2:])
            part = value.gather(1, gather)
            fill = -1 if key in ("cell_col", "cell_cat") else (float("nan") if key == "cell_target" else 0)
            keep = valid.view(*valid.shape, *([1] * (part.dim() - 2)))
            new[key] = torch.where(keep, part, torch.full_like(part, fill))
        width_all = max(C, width)
        for key in CELL_KEYS:                                         # pad originals and views to one width
            a, b = batch[key], new[key]
            pad_a, pad_b = width_all - a.shape[1], width_all - b.shape[1]
            fill = -1 if key in ("cell_col", "cell_cat") else (float("nan") if key == "cell_target" else 0)
            if pad_a:
                a = torch.cat([a, a.new_full((a.shape[0], pad_a, *a.shape[2:]), fill)], 1)
            if pad_b:
                b = torch.cat([b, b.new_full((b.shape[0], pad_b, *b.shape[2:]), fill)], 1)
            if a.dim() == 3 and a.shape[2] != b.shape[2]:
                t = max(a.shape[2], b.shape[2])
                a = F.pad(a, (0, t - a.shape[2]))
                b = F.pad(b, (0, t - b.shape[2]))
            batch[key] = torch.cat([a, b], 0)
        if "cell_masked" in batch:
            m = batch["cell_masked"]
            m = torch.cat([m, m.new_zeros(m.shape[0], width_all - m.shape[1])], 1) if m.shape[1] < width_all else m
            batch["cell_masked"] = torch.cat([m, torch.zeros(len(picks), width_all, dtype=torch.bool)], 0)
        for key in ("label", "label_value", "table_index"):
            batch[key] = torch.cat([batch[key], batch[key][src]], 0)
        batch["view_of"] = torch.cat([view_of, src], 0)
        return batch


@TARGETS.register("vpcl")
class VPCLTarget(Target):
    Config = VPCLConfig

    def __init__(self, cfg: VPCLConfig, streams: nn.ModuleDict):
        super().__init__(cfg, streams)
        if cfg.partitions < 2 or not 0 <= cfg.overlap < 1 or cfg.temperature <= 0:
            raise ModalzooError("vpcl needs partitions >= 2, overlap in [0, 1) and a positive temperature")
        stream_embedding(streams, cfg.stream, "table_cells", "vpcl")
        self.project = nn.Linear(streams[cfg.stream].encoder.dim, cfg.projection, bias=False)

    def batch_transform(self, data: DataContext) -> Partitions:
        table_state(data)
        return Partitions(self.cfg.partitions, self.cfg.overlap)

    def forward(self, outputs: dict[str, StreamOutput], batch: dict[str, Tensor]) -> TaskOutput:
        hidden = outputs[self.cfg.stream].hidden.x
        view_of = batch["view_of"]
        views = (view_of >= 0).nonzero()[:, 0]
        if len(views) < 2:
            return TaskOutput(hidden.sum() * 0, {}, count=0)
        z = self.project(hidden[views, 0]).float()
        if self.cfg.similarity == "cosine":
            z = F.normalize(z, dim=-1)
        sim = z @ z.T / self.cfg.temperature
        owner = view_of[views]
        if self.cfg.supervised:
            label, table = batch["label"][views], batch["table_index"][views]
            same = (label[:, None] == label[None]) & (table[:, None] == table[None]) & (label[:, None] != IGNORE)
            positive = same | (owner[:, None] == owner[None])
        else:
            positive = owner[:, None] == owner[None]
        eye = torch.eye(len(views), dtype=torch.bool, device=z.device)
        positive = positive & ~eye
        sim = sim.masked_fill(eye, float("-inf"))
        log_prob = sim - sim.logsumexp(1, keepdim=True)
        has = positive.any(1)
        loss = -(log_prob.masked_fill(~positive, 0).sum(1)[has] / positive.sum(1)[has]).mean()
        top = sim.argmax(1)
        acc = positive[torch.arange(len(views)), top][has].float().mean()
        return TaskOutput(loss, {"view_acc": acc.detach()}, count=int(has.sum()))


# ---------------------------------------------------------------------------------------------------------
@dataclass
class TableLabelConfig(TargetConfig):
    stream: str = "table"
    task: Literal["binary", "multiclass", "regression"] = "binary"
    classes: int = 2
    dropout: float = 0.1


@TARGETS.register("table_label")
class TableLabelTarget(Target):
    """A head on the [CLS] token: the label of a row (one table's, from its schema)."""

    Config = TableLabelConfig

    def __init__(self, cfg: TableLabelConfig, streams: nn.ModuleDict):
        super().__init__(cfg, streams)
        stream_embedding(streams, cfg.stream, "table_cells", "table_label")
        out = 1 if cfg.task == "regression" else cfg.classes
        if cfg.task != "regression" and cfg.classes < 2:
            raise ModalzooError(f"table_label: {cfg.task} needs classes >= 2, got {cfg.classes}")
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(streams[cfg.stream].encoder.dim, out))

    def logits(self, hidden: Tensor) -> Tensor:
        return self.head(hidden[:, 0]).float()

    def forward(self, outputs: dict[str, StreamOutput], batch: dict[str, Tensor]) -> TaskOutput:
        hidden = outputs[self.cfg.stream].hidden.x
        rows = originals(batch).to(hidden.device)
        out = self.logits(hidden)[rows]
        if self.cfg.task == "regression":
            y = batch["label_value"][rows].float()
            known = ~torch.isnan(y)
            if not known.any():
                return TaskOutput(out.sum() * 0, {}, count=0)
            loss = F.mse_loss(out[known, 0], y[known])
            return TaskOutput(loss, {"mse": loss.detach()}, count=int(known.sum()))
        y = batch["label"][rows]
        known = y != IGNORE
        if not known.any():
            return TaskOutput(out.sum() * 0, {}, count=0)
        if out.shape[1] < int(y[known].max()) + 1:
            raise ModalzooError(f"table_label has {out.shape[1]} classes but a row's label is class {int(y.max())}: "
                                f"set its classes from the table's schema")
        loss = F.cross_entropy(out[known], y[known])
        return TaskOutput(loss, {"acc": (out[known].argmax(-1) == y[known]).float().mean()}, count=int(known.sum()))


