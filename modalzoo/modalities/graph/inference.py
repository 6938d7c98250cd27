"""Graph vectors from an export or a run's model: `embed_molecules(source, smiles)` and `embed_graphs(source,
graphs)`. The graphs are batched exactly as in training (the export's own graph settings and schema), run
through the graph stream and mean-pooled over node tokens, in input order."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from ...errors import ModalzooError
from .batches import pool_graphs
from .fields import GraphField, GraphState
from .graphs import Graph, GraphSchema

FIELD_OPTIONS = ("max_nodes", "oversize", "virtual_token", "hops", "packing", "pack_len")


def _graph_stream(model) -> str:
    names = [n for n, s in model.streams.items() if getattr(s.embedding, "registered_name", None) == "graph"]
    if len(names) != 1:
        raise ModalzooError(f"expected one graph stream, the model has {names or 'none'}")
    return names[0]


@torch.no_grad()
def embed_graphs(source: str | Path, graphs: list[Graph], batch_size: int = 256) -> Tensor:
    """[N, D] mean-pooled node features of ``graphs`` from the export folder (or Hub repo) ``source``."""
    from ...hub.pretrained import from_pretrained, resolve

    folder = resolve(str(source))
    model = from_pretrained(folder)
    data = model.recipe.get("data") or {}
    field = GraphField(**{k: data[k] for k in FIELD_OPTIONS if k in data})
    schema = GraphSchema.load(folder)
    state = GraphState(schema, list(schema.labels), field.hops)
    name = _graph_stream(model)
    stream = model.streams[name].eval()
    out = []
    for start in range(0, len(graphs), batch_size):
        values = []
        for i, g in enumerate(graphs[start:start + batch_size], start):
            try:
                values.append(field.decode({"json": g.to_json()}, state))
            except ValueError as err:
                raise ModalzooError(f"graph {i}: {err}") from None
        batch = field.collate(values, state)
        out.append(pool_graphs(stream(batch).hidden.x, batch))
    return torch.cat(out) if out else torch.zeros(0, stream.encoder.dim)


def embed_molecules(source: str | Path, smiles: list[str], batch_size: int = 256) -> Tensor:
    """[N, D] vectors of molecules given as SMILES (featurised as `data build molecules` does; needs RDKit)."""
    from .featurize import mol_to_graph, parse

    graphs = []
    for s in smiles:
        mol = parse(s)
        if mol is None:
            raise ModalzooError(f"RDKit cannot read the SMILES {s!r}")
        graphs.append(mol_to_graph(mol))
    return embed_graphs(source, graphs, batch_size)
