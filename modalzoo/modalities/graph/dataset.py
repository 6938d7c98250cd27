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
from ...errors import ModalzooError
from ...registry import DATASETS
from .embedding import GraphEmbedding
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

    def batch_transforms(self, model) -> list:
        """Also checks every graph embedding of ``model`` against the data's schema, so a pack with other node
        features than the recipe says stops at start with the overrides to add, not mid-run in an index error."""
        schema = self.ctx.states["graph"].schema if self.ctx is not None else None
        for name, stream in getattr(model, "streams", {}).items():
            emb = stream.embedding
            if schema is None or not isinstance(emb, GraphEmbedding):
                continue
            want = {"node_vocab": schema.vocab, "node_features": [f["name"] for f in schema.node_features],
                    "numeric_features": len(schema.numeric_features), "edge_types": len(schema.edge_types)}
            have = {"node_vocab": list(emb.cfg.node_vocab), "node_features": list(emb.cfg.node_features),
                    "numeric_features": emb.cfg.numeric_features, "edge_types": emb.cfg.edge_types}
            wrong = [k for k in want if k != "node_features" and have[k] != want[k]]
            if wrong:
                import json
                fix = " ".join(f"'model.streams.{name}.embedding.{k}={json.dumps(want[k]).replace(' ', '')}'"
                               for k in want)
                raise ModalzooError(f"{self.cfg.path}/graph_schema.json does not match the graph embedding of stream "
                                    f"'{name}' ({', '.join(f'{k}: {have[k]} vs data {want[k]}' for k in wrong)}); "
                                    f"add these overrides: {fix}")
        return super().batch_transforms(model)
