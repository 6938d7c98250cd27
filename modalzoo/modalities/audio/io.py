"""Audio in and out without `torchaudio.load` (it needs torchcodec and FFmpeg since torchaudio 2.9): soundfile,
whose wheel bundles libsndfile, reads and writes WAV, FLAC and OGG; resampling is torchaudio's
(`torchaudio.functional.resample`, windowed sinc); everything is down-mixed to mono float32.

Shards store 16-bit PCM FLAC (lossless, about half of WAV) at the dataset's one sample rate."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

AUDIO_EXTENSIONS = ("flac", "wav", "ogg")


def read_audio(source: bytes | str | Path) -> tuple[np.ndarray, int]:
    """Encoded audio (bytes or a path) -> (float32 mono [T] in [-1, 1], sample rate). Channels are averaged.
    Raises ValueError for data soundfile cannot read (not audio, truncated) or that holds no samples."""
    import soundfile as sf

    try:
        data, rate = sf.read(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else str(source),
                             dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:   # LibsndfileError: not audio / truncated
        raise ValueError(f"not readable audio ({err})") from None
    if data.shape[0] == 0:
        raise ValueError("audio holds no samples")
    mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1)
    return np.ascontiguousarray(mono, dtype=np.float32), int(rate)


def resample(wave: np.ndarray | torch.Tensor, orig: int, new: int) -> np.ndarray:
    """``wave`` [T] from ``orig`` Hz to ``new`` Hz (torchaudio's windowed-sinc resampler)."""
    tensor = torch.as_tensor(np.asarray(wave, dtype=np.float32))
    if orig == new:
        return tensor.numpy()
    import torchaudio.functional as AF
    return AF.resample(tensor, orig, new).numpy()


def encode_audio(wave: np.ndarray, rate: int, fmt: str = "flac") -> bytes:
    """float [T] in [-1, 1] -> 16-bit PCM FLAC/WAV bytes (clipped), or Vorbis for ``fmt="ogg"``."""
    import soundfile as sf

    buf = io.BytesIO()
    subtype = "VORBIS" if fmt == "ogg" else "PCM_16"
    sf.write(buf, np.clip(np.asarray(wave, dtype=np.float32), -1.0, 1.0), rate, format=fmt.upper(), subtype=subtype)
    return buf.getvalue()


def audio_bytes(sample: dict) -> tuple[str, bytes] | None:
    """The sample's audio member (``KEY.flac|wav|ogg``) as (extension, bytes), or None."""
    for ext in AUDIO_EXTENSIONS:
        if sample.get(ext) is not None:
            return ext, sample[ext]
    return None
