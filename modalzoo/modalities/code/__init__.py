"""Code: the `code_dataflow` embedding (GraphCodeBERT)."""

from . import embedding  # noqa: F401  (registering modules)
