"""Text: the `token` embedding, tokenizers, the `text` dataset; `reports` and `hub/` load on demand."""

from . import dataset, embedding, pack, samples, tokenizers  # noqa: F401  (registering modules)
