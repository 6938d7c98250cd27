"""The tiny CLAP shape (fbank_patch audio tower + causal text tower, contrastive) for audio's harness.py."""

from __future__ import annotations

import torch

import modalzoo.modalities.audio.fbank  # noqa: F401  (registers fbank_patch until audio/__init__ imports it)
from tiny_models import D, V, enc, text_batch

# 16 mel bins x 40 frames (0.4 s at 16 kHz) in 8x8 patches at time stride 4: a 2 x 9 grid, overlapping in time.
FBANK = {"name": "fbank_patch", "num_mel_bins": 16, "max_frames": 40, "patch_size": 8, "time_stride": 4,
         "dim": D, "prefix_tokens": 2, "mean": -6.0, "std": 3.0}


def audio_batch(B=3, seed=0):
    """Zero-padded clips of different lengths (one longer than max_frames: cut), with their lengths."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([7000, 3000, 2000][:B])
    waves = torch.zeros(B, int(lengths.max()))
    for i, n in enumerate(lengths.tolist()):
        waves[i, :n] = 0.1 * torch.randn(n, generator=g)
    return {"input_values": waves, "audio_lengths": lengths}


SHAPES = {
    "clap": (  # an audio tower and a text tower, one loss across them
        {"streams": {"audio": {"embedding": FBANK, "encoder": enc()},
                     "text": {"embedding": {"name": "token", "vocab_size": V, "dim": D},
                              "encoder": enc(mask="causal")}},
         "targets": {"clap": {"name": "contrastive", "streams": ["audio", "text"], "pooling": ["cls", "last"],
                              "embed_dim": 16}}},
        lambda: {**audio_batch(), **text_batch(with_labels=False)}),
}
COVERS = {("embedding", "fbank_patch"): "clap"}
