"""One package per modality: what reads that modality's raw inputs or writes its files (embeddings,
datasets, converters, evaluation reports, Hub mappings). `modalzoo/components.py` lists them."""
