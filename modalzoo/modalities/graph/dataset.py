"""The `graph` dataset: webdataset shards of ``KEY.json`` graph samples (`graphs.py`) with the dataset's
``graph_schema.json`` beside them, batched packed (several graphs per row, block-diagonal) or padded.

A sample that is not a valid graph (bad JSON, an edge naming a missing node, negative ids) or has more nodes
than ``max_nodes`` (``oversize: skip``; ``truncate`` keeps its first ``max_nodes`` nodes and the edges among
them) is skipped and counted. A graph without edges or with several components is a graph: its node pairs in
different components get the "unreachable" distance bucket.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ...datasets.dataset import ShardDataConfig, ShardDataset
from ...registry import DATASETS
from .fields import GraphField


@dataclass
class GraphDataConfig(ShardDataConfig):
    path: str = "data/molecules"
    train_split: str = "train"
    val_split: str = "validation"
    max_nodes: int = 63              # the node budget per graph (63 + its virtual token = one 64-token row)
    oversize: Literal["skip", "truncate"] = "skip"
    virtual_token: bool = True       # Graphormer's virtual graph token, one per graph
    hops: int = 5                    # shortest-path edges kept for the "path" edge bias
    packing: Literal["packed", "padded"] = "packed"
    pack_len: int = 64               # tokens per packed row (>= max_nodes + virtual token)
    num_workers: int = 1

    def __post_init__(self):
        if self.max_nodes < 1:
            raise ValueError(f"max_nodes must be positive, got {self.max_nodes}")
        if not 1 <= self.hops <= 32:
            raise ValueError(f"hops must be in 1..32, got {self.hops}")


@DATASETS.register("graph")
class GraphData(ShardDataset):
    """Graphs with categorical/continuous node features, typed edges and graph labels (`data build molecules`,
    `data pack-graphs`)."""

    Config = GraphDataConfig
    build_hint = "modalzoo data build molecules"

    def make_fields(self) -> dict:
        cfg = self.cfg
        return {"graph": GraphField(cfg.max_nodes, cfg.oversize, cfg.virtual_token, cfg.hops, cfg.packing,
                                    cfg.pack_len)}
