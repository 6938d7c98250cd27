"""Import and export between zoo models and Hugging Face `transformers` checkpoints."""
