"""The fbank-patch front-end (AST): Kaldi log-mel filterbanks of each clip, normalised with a dataset mean and
std, padded or cut to a fixed number of frames, then square patches on the frequency x time grid (optionally
overlapping), one or two prefix tokens and learned positions of that fixed grid.

The features are what transformers' `ASTFeatureExtractor` computes (with torchaudio present): per clip
``torchaudio.compliance.kaldi.fbank`` with a Hanning window, 25 ms frames every 10 ms, no dither, on the float
waveform as it is (no x 2^15 scaling), frames past the clip zero, then ``(x - mean) / (2 * std)`` over all
``max_frames`` (padding included). The tokens are what `ASTModel`'s embeddings make: ``Conv2d(1, D, p,
stride=(frequency_stride, time_stride))`` over [B, 1, F, T], flattened frequency-outer / time-inner, then
[cls, distillation] in front and the position table added to every token. So a stream of this embedding and a
pre-norm Transformer exports to ASTModel exactly (`hub/ast.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ...registry import EMBEDDINGS
from ...tokens import Tokens

FRAME_MS, SHIFT_MS = 25.0, 10.0      # Kaldi's (and AST's) analysis window and hop


@dataclass
class FbankPatchConfig:
    sample_rate: int = 16000
    num_mel_bins: int = 128          # AST: 128
    max_frames: int = 1024           # AST's max_length: frames (10 ms) each clip is padded or cut to
    patch_size: int = 16
    frequency_stride: int = 0        # 0: patch_size (no overlap); AST-base: 10 (6 bins of overlap)
    time_stride: int = 0
    dim: int = 64
    prefix_tokens: int = 2           # 1: a class token; 2: class + distillation token (AST; its pooler averages)
    normalize: bool = True           # (x - mean) / (2 * std), ASTFeatureExtractor's do_normalize
    mean: float = -4.2677393         # the dataset's fbank mean and std (AudioSet's by default, as AST)
    std: float = 4.5689974
    dropout: float = 0.0
    key: str = "input_values"        # batch[key]: [B, T] float waveform, zero-padded
    lengths_key: str = "audio_lengths"   # batch[lengths_key]: [B] real samples per clip (absent: all of T)

    def __post_init__(self):
        self.frequency_stride = self.frequency_stride or self.patch_size
        self.time_stride = self.time_stride or self.patch_size
        if self.patch_size < 1 or self.frequency_stride < 1 or self.time_stride < 1:
            raise ValueError("patch_size and the strides must be positive")
        if self.num_mel_bins < self.patch_size or self.max_frames < self.patch_size:
            raise ValueError(f"patch_size {self.patch_size} is larger than num_mel_bins ({self.num_mel_bins}) or "
                             f"max_frames ({self.max_frames})")
        if self.prefix_tokens not in (1, 2):
            raise ValueError(f"prefix_tokens must be 1 (cls) or 2 (cls + distillation), got {self.prefix_tokens}")
        if self.std <= 0:
            raise ValueError(f"std must be positive, got {self.std}")

    @property
    def grid(self) -> tuple[int, int]:
        """(frequency, time) patches: AST's ``get_shape``."""
        return ((self.num_mel_bins - self.patch_size) // self.frequency_stride + 1,
                (self.max_frames - self.patch_size) // self.time_stride + 1)

    @property
    def frame_samples(self) -> tuple[int, int]:
        """(window, hop) in samples at ``sample_rate``."""
        return int(self.sample_rate * FRAME_MS / 1000), int(self.sample_rate * SHIFT_MS / 1000)


def fbank_features(waves: Tensor, lengths: Tensor | None, cfg: FbankPatchConfig) -> Tensor:
    """[B, T] waveforms (``lengths`` real samples each) -> [B, max_frames, num_mel_bins] float32 features,
    normalised when ``cfg.normalize``; as `ASTFeatureExtractor` computes them clip by clip."""
    from torchaudio.compliance import kaldi

    window, hop = cfg.frame_samples
    needed = window + (cfg.max_frames - 1) * hop    # samples that make max_frames frames: the rest is cut anyway
    out = torch.zeros(waves.shape[0], cfg.max_frames, cfg.num_mel_bins, device=waves.device)
    counts = lengths.tolist() if lengths is not None else [waves.shape[1]] * waves.shape[0]
    with torch.no_grad(), torch.autocast(waves.device.type, enabled=False):
        for i, n in enumerate(counts):
            clip = waves[i, :min(int(n), needed)].float()
            if len(clip) < window:                      # no whole frame: all padding
                continue
            feats = kaldi.fbank(clip[None], sample_frequency=cfg.sample_rate, window_type="hanning",
                                num_mel_bins=cfg.num_mel_bins, frame_length=FRAME_MS, frame_shift=SHIFT_MS,
                                dither=0.0)
            out[i, :len(feats)] = feats[:cfg.max_frames]
        if cfg.normalize:
            out = (out - cfg.mean) / (2 * cfg.std)
    return out


@EMBEDDINGS.register("fbank_patch")
class FbankPatchEmbedding(nn.Module):
    """Waveforms -> AST patch tokens: [prefix tokens, f x t patches] with learned positions."""

    Config = FbankPatchConfig
    no_decay = ("cls", "distillation", "position")

    def __init__(self, cfg: FbankPatchConfig, **_context):
        super().__init__()
        self.cfg = cfg
        self.proj = nn.Conv2d(1, cfg.dim, cfg.patch_size, (cfg.frequency_stride, cfg.time_stride))
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.distillation = nn.Parameter(torch.zeros(1, 1, cfg.dim)) if cfg.prefix_tokens == 2 else None
        f, t = cfg.grid
        self.position = nn.Parameter(torch.zeros(1, cfg.prefix_tokens + f * t, cfg.dim))
        self.drop = nn.Dropout(cfg.dropout)

    def init_weights(self) -> None:
        nn.init.xavier_uniform_(self.proj.weight.view(self.proj.weight.shape[0], -1))
        for p in (self.cls, self.distillation, self.position):
            if p is not None:
                nn.init.normal_(p, std=0.02)

    def features(self, batch: dict[str, Tensor]) -> Tensor:
        """The normalised fbank features [B, max_frames, num_mel_bins]: ASTModel's ``input_values``."""
        return fbank_features(batch[self.cfg.key], batch.get(self.cfg.lengths_key), self.cfg)

    def embed(self, features: Tensor) -> Tokens:
        """Tokens of given [B, max_frames, num_mel_bins] features (what ASTModel's embeddings do)."""
        x = self.proj(features.to(self.proj.weight.dtype).transpose(1, 2)[:, None])   # [B, D, f, t]
        x = x.flatten(2).transpose(1, 2)                                              # frequency-outer
        prefix = [self.cls] + ([self.distillation] if self.distillation is not None else [])
        x = torch.cat([p.expand(x.shape[0], -1, -1) for p in prefix] + [x], dim=1) + self.position
        return Tokens(x=self.drop(x))

    def forward(self, batch: dict[str, Tensor]) -> Tokens:
        return self.embed(self.features(batch))
