"""Vision's transformers mappings; importing this package registers their `hub.architecture.Architecture`s."""

from . import clip, vit, vit_mae  # noqa: F401
