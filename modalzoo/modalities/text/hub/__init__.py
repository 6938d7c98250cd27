"""Text's transformers mappings; importing this package registers their `hub.architecture.Architecture`s."""

from . import bert, electra, gpt2, llama, t5  # noqa: F401
