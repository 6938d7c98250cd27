"""Vision: the `patch` and `pixels` embeddings, MAE, the `image_text` dataset; `reports` and `hub/` load
on demand."""

from . import dataset, embedding, mae, pack, pixels, samples  # noqa: F401  (registering modules)
