"""The `graph` embedding: Graphormer's node input and structural attention bias (Ying et al. 2021).

Node input: the sum of one learned vector per categorical feature (value + 1; 0 = none), a linear map of the
continuous features, and the centrality (degree) embedding; a masked node (``node_mask``, attribute masking)
shows one learned mask vector instead of all its features; the virtual graph token has its own vector.

Attention bias, one [R, H, L, L] tensor computed once and added in every layer (as Graphormer does):
  * spatial: a per-head scalar per shortest-path-distance bucket: 0 .. max_distance, farther, the virtual
    token's own distance (every pair with it), unreachable (another component), padding;
  * edges (``edge_bias``): "path" averages per-hop, per-head edge-type scalars along one shortest path
    (up to ``max_hops`` hops; Graphormer embeds edge features, then multiplies the k-th by a per-hop H x H
    matrix: over categorical types that is one per-hop table of type -> head scalars, which this is), "direct"
    only the edge between adjacent nodes, "none" no edge term.
Packed graphs are kept apart by ``segment_ids`` (block-diagonal mask), padding by the pad mask.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from ...errors import ModalzooError
from ...registry import EMBEDDINGS
from ...tokens import Tokens
from .featurize import ATOM_FEATURES, ATOM_VOCAB, BONDS
from .structure import PAD, UNREACHABLE, VIRTUAL


@dataclass
class GraphEmbeddingConfig:
    dim: int = 128
    heads: int = 8                   # the encoder's heads: one bias per head
    node_vocab: list[int] = field(default_factory=lambda: list(ATOM_VOCAB))   # categorical feature sizes
    node_features: list[str] = field(default_factory=lambda: list(ATOM_FEATURES))   # their names (metrics)
    numeric_features: int = 0        # continuous node features (node_num)
    edge_types: int = len(BONDS)
    max_degree: int = 8              # degrees above share the last bucket
    max_distance: int = 20           # distances above share the "farther" bucket
    max_hops: int = 5                # edges of a shortest path the "path" edge bias averages
    edge_bias: Literal["path", "direct", "none"] = "path"
    dropout: float = 0.0
    mask_token: bool = True          # the learned vector of masked nodes (attribute masking)

    def __post_init__(self):
        if len(self.node_features) != len(self.node_vocab):
            raise ValueError(f"node_features names {len(self.node_features)} features but node_vocab sizes "
                             f"{len(self.node_vocab)}")
        if self.max_distance >= VIRTUAL - 1:
            raise ValueError(f"max_distance must be below {VIRTUAL - 1}, got {self.max_distance}")


@EMBEDDINGS.register("graph")
class GraphEmbedding(nn.Module):
    """Graph nodes -> tokens, with Graphormer's degree embeddings and per-head structural attention bias."""

    Config = GraphEmbeddingConfig

    def __init__(self, cfg: GraphEmbeddingConfig, **_context):
        super().__init__()
        self.cfg = cfg
        self.features = nn.ModuleList(nn.Embedding(size + 1, cfg.dim, padding_idx=0) for size in cfg.node_vocab)
        self.numeric = nn.Linear(cfg.numeric_features, cfg.dim) if cfg.numeric_features else None
        self.degree = nn.Embedding(cfg.max_degree + 2, cfg.dim, padding_idx=0)
        self.mask_token = nn.Parameter(torch.zeros(cfg.dim)) if cfg.mask_token else None
        self.virtual_token = nn.Parameter(torch.zeros(cfg.dim))
        self.spatial = nn.Embedding(cfg.max_distance + 5, cfg.heads)
        # edge type + 1 (0 = no edge), + 1 more for a masked bond type (attribute masking's bond option)
        self.edge_types = cfg.edge_types + 2
        hops = cfg.max_hops if cfg.edge_bias == "path" else 1
        self.edges = nn.Embedding(hops * self.edge_types, cfg.heads) if cfg.edge_bias != "none" else None
        self.drop = nn.Dropout(cfg.dropout)
        self._checked = False

    def init_weights(self) -> None:
        """After the model's N(0, 0.02) tables: the "none" rows stay zero, the two learned tokens get N(0, 0.02)."""
        with torch.no_grad():
            for table in [*self.features, self.degree]:
                table.weight[0].zero_()
        if self.mask_token is not None:
            nn.init.normal_(self.mask_token, std=0.02)
        nn.init.normal_(self.virtual_token, std=0.02)

    def spd_buckets(self, spd: Tensor) -> Tensor:
        """uint8 codes (`structure.py`) -> bucket ids of the spatial table."""
        d = spd.long()
        far = self.cfg.max_distance + 1
        special = {VIRTUAL: far + 1, UNREACHABLE: far + 2, PAD: far + 3}
        out = d.clamp(max=far)
        for code, bucket in special.items():
            out = torch.where(d == code, bucket, out)
        return out

    def _check(self, node_cat: Tensor) -> None:
        """Once, on CPU: a value past a feature's vocabulary is a data/recipe mismatch, said plainly."""
        if node_cat.device.type != "cpu":
            return
        top = node_cat.amax(dim=(0, 1)).tolist() if node_cat.numel() else []
        if len(top) != len(self.cfg.node_vocab):
            raise ModalzooError(f"the batch has {len(top)} categorical node features, the graph embedding "
                                f"expects {len(self.cfg.node_vocab)} (node_vocab)")
        for name, size, value in zip(self.cfg.node_features, self.cfg.node_vocab, top):
            if value > size:
                raise ModalzooError(f"node feature '{name}' has value {value - 1} but node_vocab gives it {size} "
                                    f"values: set the graph embedding's node_vocab from the data's graph_schema.json")
        self._checked = True

    def attention_bias(self, batch: dict[str, Tensor]) -> Tensor:
        spd = batch["spd"]
        bias = self.spatial(self.spd_buckets(spd))                             # [R, L, L, H]
        if self.edges is not None:
            path = batch["path_edges"].long()
            if self.cfg.edge_bias == "direct":
                direct = torch.where(spd == 1, path[..., 0], 0)
                bias = bias + self.edges(direct)
            else:
                hops = min(self.cfg.max_hops, path.shape[-1])
                total = 0
                for k in range(hops):
                    total = total + self.edges(path[..., k] + k * self.edge_types) * (path[..., k, None] > 0)
                length = (path[..., :hops] > 0).sum(-1, keepdim=True).clamp(min=1)
                bias = bias + total / length
        return bias.permute(0, 3, 1, 2).contiguous()                            # [R, H, L, L]

    def forward(self, batch: dict[str, Tensor]) -> Tokens:
        node_cat = batch["node_cat"]
        if not self._checked:
            self._check(node_cat)
        x = sum(table(node_cat[..., i]) for i, table in enumerate(self.features))
        if self.numeric is not None:
            x = x + self.numeric(batch["node_num"])
        if "node_mask" in batch:                                               # attribute masking
            if self.mask_token is None:
                raise ModalzooError("the batch masks nodes but the graph embedding has mask_token: false")
            x = torch.where(batch["node_mask"][..., None], self.mask_token.to(x.dtype), x)
        real = node_cat[..., 0] > 0
        degree = torch.where(real, batch["degree"].clamp(max=self.cfg.max_degree) + 1, 0)
        x = x + self.degree(degree)
        x = torch.where(batch["is_virtual"][..., None], self.virtual_token.to(x.dtype), x)
        segments = batch["segment_ids"]
        return Tokens(x=self.drop(x), pad_mask=segments > 0, segment_ids=segments,
                      attn_bias=self.attention_bias(batch).to(x.dtype))
