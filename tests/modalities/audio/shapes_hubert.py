"""HuBERT's tiny shape for the registry-wide test (tests/test_registry.py): the `waveform_conv` front-end
(16 channels) under a one-layer post-norm encoder with the `hubert` target. ``SHAPES`` / ``COVERS`` are merged
into tests/modalities/audio/harness.py. The batch is what the `audio` dataset gives with a label set
(input_values, audio_lengths, units at 100 Hz, unit_lengths), passed through the target's batch transform
(mask_frames, frame_units), as the trainer does."""

from __future__ import annotations

import torch

from tiny_models import D, H

HUBERT_SPEC = {
    "streams": {"audio": {
        "embedding": {"name": "waveform_conv", "dim": D, "conv_dim": [16] * 7, "pos_conv_kernel": 16,
                      "pos_conv_groups": 4},
        "encoder": {"name": "transformer", "layers": 1, "dim": D, "heads": H, "ffn_dim": 64, "prenorm": False,
                    "final_norm": False}}},
    "targets": {"hubert": {"name": "hubert", "stream": "audio", "num_classes": 12, "final_dim": 8}}}


def hubert_batch(lengths=(8000, 6400, 4000), label_rate=100, classes=12, seed=0) -> dict:
    from modalzoo.modalities.audio.hubert import HubertConfig, HubertMasking
    from modalzoo.modalities.audio.waveform import CONV_KERNEL, CONV_STRIDE, RealFrames
    g = torch.Generator().manual_seed(seed)
    waves = torch.zeros(len(lengths), max(lengths))
    counts = [n * label_rate // 16000 for n in lengths]
    units = torch.full((len(lengths), max(counts)), -100)
    for i, (n, c) in enumerate(zip(lengths, counts)):
        waves[i, :n] = torch.randn(n, generator=g) * 0.1
        units[i, :c] = torch.randint(classes, (c,), generator=g)
    batch = {"input_values": waves, "audio_lengths": torch.tensor(lengths), "units": units,
             "unit_lengths": torch.tensor(counts)}
    masking = HubertMasking(HubertConfig(num_classes=classes), RealFrames(CONV_KERNEL, CONV_STRIDE),
                            label_rate * 320 / 16000)
    return masking(batch, g)


SHAPES = {"hubert": (HUBERT_SPEC, hubert_batch)}
COVERS = {("embedding", "waveform_conv"): "hubert", ("target", "hubert"): "hubert"}
