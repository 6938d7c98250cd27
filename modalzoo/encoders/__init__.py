"""Encoders and decoders, all built from the one Transformer block in `blocks.py`."""
