"""Graphs: the `graph` dataset (graph samples, packed rows with block-diagonal masks), the Graphormer-style
`graph` embedding (degree embeddings, per-head shortest-path and edge biases, virtual graph token), attribute
masking, masked edge prediction and graph property heads, `molecules` sample data and `pack-graphs`; `reports`
and `hub/` load on demand."""

from . import dataset, embedding, objectives, pack, samples  # noqa: F401  (registering modules)
