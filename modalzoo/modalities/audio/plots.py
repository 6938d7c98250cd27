"""Log-mel spectrograms of clips with their phone and word boundaries (a look at synthesized speech and
whether its alignments line up)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def alignment_png(clips: list[dict], out: str | Path, n_mels: int = 64) -> Path:
    """One panel per clip (``{"wave", "rate", "phones", "words", "title"}``, as `spoken-words` stores them):
    the log-mel spectrogram, a thin line at every phone boundary with its label, a thick one at word starts."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch
    import torchaudio

    fig, axes = plt.subplots(len(clips), 1, figsize=(10, 2.6 * len(clips)), squeeze=False)
    for ax, clip in zip(axes[:, 0], clips):
        rate = clip["rate"]
        mel = torchaudio.transforms.MelSpectrogram(rate, n_fft=400, hop_length=160, n_mels=n_mels)
        spec = mel(torch.as_tensor(np.asarray(clip["wave"], np.float32))).clamp(min=1e-10).log10().numpy()
        seconds = len(clip["wave"]) / rate
        ax.imshow(spec, origin="lower", aspect="auto", extent=(0, seconds, 0, n_mels), cmap="magma")
        for phone, start, end in clip.get("phones", []):
            ax.axvline(start, color="cyan", lw=0.6)
            ax.text((start + end) / 2, n_mels - 6, phone, color="white", ha="center", fontsize=7)
        for word in clip.get("words", []):
            if word["start"] is not None:
                ax.axvline(word["start"], color="lime", lw=2)
                ax.text(word["start"], 2, word["word"], color="lime", fontsize=9)
        ax.set_title(clip.get("title", ""), fontsize=9)
        ax.set_ylabel("mel bin")
    axes[-1, 0].set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return Path(out)
