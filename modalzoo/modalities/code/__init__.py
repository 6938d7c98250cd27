"""Code: GraphCodeBERT-style pretraining with data flow (the `code_dataflow` embedding, the `code` dataset, the
`data_flow` and `identifier_tagging` targets)."""

from . import corpus, dataset, embedding, objectives, pack  # noqa: F401  (registering modules)
