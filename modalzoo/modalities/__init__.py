"""Per-modality embeddings and processors (tokenizers, transforms)."""
