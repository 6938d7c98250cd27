"""The HuBERT / wav2vec 2.0 waveform front-end as a stream embedding (`waveform_conv`).

    raw waveform [B, T] -> 7 strided Conv1d (+ GroupNorm on the first, or LayerNorm on each) + GELU
      -> conv features [B, F, C] (20 ms frames at 16 kHz; their mean square is HuBERT's feature penalty)
      -> LayerNorm -> Linear to the encoder width -> dropout -> padded frames zeroed
      -> masked frames (``batch["mask_frames"]``, from the `hubert` target's batch transform) := mask_emb
      -> + convolutional relative positions (grouped Conv1d, weight norm, even kernel trimmed by one, GELU)
      -> LayerNorm (post-norm stacks: HuBERT Base; pre-norm stacks leave it to the encoder's final norm)
      -> dropout

The order, the norms and their epsilons are fairseq's, torchaudio's (`hubert_pretrain_model`) and
transformers' (`HubertModel`), so the same weights give the same hidden states (tests/modalities/audio).
Zero-padded rows go through the convolutions as they are (as in all three: a group-norm first layer
normalises over the padding too); ``audio_lengths`` then gives each row's real frames, which the encoder's
key-padding mask and the feature penalty's references see.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...registry import EMBEDDINGS
from ...tokens import Tokens

# HuBERT / wav2vec 2.0: (512, 10, 5) + (512, 3, 2) x 4 + (512, 2, 2) x 2 = 400-sample receptive field, 320 hop
CONV_DIM = [512] * 7
CONV_KERNEL = [10, 3, 3, 3, 3, 2, 2]
CONV_STRIDE = [5, 2, 2, 2, 2, 2, 2]


@dataclass
class WaveformConvConfig:
    dim: int = 768                   # the encoder width the conv features are projected to (Base 768)
    conv_dim: list[int] = field(default_factory=lambda: list(CONV_DIM))       # tiny CPU models: 32-64
    conv_kernel: list[int] = field(default_factory=lambda: list(CONV_KERNEL))
    conv_stride: list[int] = field(default_factory=lambda: list(CONV_STRIDE))
    conv_bias: bool = False          # Base false, Large true
    extractor_mode: Literal["group", "layer"] = "group"   # GroupNorm on the first conv (Base) / LayerNorm on each
    feature_grad_mult: float = 0.1   # scales the front-end's gradients (0: frozen, computed without grad)
    dropout_input: float = 0.0       # after the projection (fairseq dropout_input; Base 0.1)
    pos_conv_kernel: int = 128
    pos_conv_groups: int = 16
    norm: Literal["layernorm", "none"] = "layernorm"   # LN after the positions: post-norm stacks (Base)
    norm_eps: float = 1e-5           # the feature LayerNorm and that LN (transformers' layer_norm_eps)
    dropout: float = 0.0             # after the positions and LN (fairseq/HF: the encoder's dropout)
    key: str = "input_values"        # batch[key]: [B, T] float waveform; batch["audio_lengths"]: [B] samples

    def __post_init__(self):
        if not len(self.conv_dim) == len(self.conv_kernel) == len(self.conv_stride) >= 1:
            raise ValueError(f"conv_dim, conv_kernel and conv_stride must be lists of one length (a conv layer "
                             f"each), got {len(self.conv_dim)}, {len(self.conv_kernel)}, {len(self.conv_stride)}")
        if min(self.conv_dim + self.conv_kernel + self.conv_stride) < 1:
            raise ValueError("conv_dim, conv_kernel and conv_stride must be positive")
        if not 0 <= self.feature_grad_mult <= 1:
            raise ValueError(f"feature_grad_mult must be in [0, 1], got {self.feature_grad_mult}")
        if self.dim % self.pos_conv_groups:
            raise ValueError(f"dim ({self.dim}) must be divisible by pos_conv_groups ({self.pos_conv_groups})")

    @property
    def hop(self) -> int:
        """Samples per frame (320: 20 ms at 16 kHz)."""
        return math.prod(self.conv_stride)

    @property
    def receptive_field(self) -> int:
        """Samples one frame sees (400: 25 ms at 16 kHz)."""
        field_, jump = 1, 1
        for k, s in zip(self.conv_kernel, self.conv_stride):
            field_, jump = field_ + (k - 1) * jump, jump * s
        return field_


def frame_lengths(samples: Tensor, kernels: list[int], strides: list[int]) -> Tensor:
    """Frames the conv stack makes of ``samples`` (a tensor of lengths): floor((L - k) / s) + 1 per layer, at
    least 0. Equals (L - 400) // 320 + 1 for the published stack (L >= 400)."""
    n = samples
    for k, s in zip(kernels, strides):
        n = torch.div(n - k, s, rounding_mode="floor").add(1).clamp(min=0)
    return n


class RealFrames:
    """``fn(batch) -> Bool[B, F]``: the frames of real audio (``audio_lengths``), those a target may mask or
    predict. Picklable (loader workers): it holds the conv stack's kernels and strides only."""

    def __init__(self, kernels: list[int], strides: list[int], key: str = "input_values"):
        self.kernels, self.strides, self.key = list(kernels), list(strides), key

    def frames(self, samples: Tensor) -> Tensor:
        return frame_lengths(samples, self.kernels, self.strides)

    def __call__(self, batch: dict[str, Tensor]) -> Tensor:
        waves = batch[self.key]
        total = int(self.frames(torch.tensor(waves.shape[1])))
        lengths = batch.get("audio_lengths")
        if lengths is None:
            return torch.ones(waves.shape[0], total, dtype=torch.bool, device=waves.device)
        return torch.arange(total, device=waves.device) < self.frames(lengths.to(waves.device))[:, None]


class _ScaleGrad(torch.autograd.Function):
    """Identity forward, gradient times ``scale`` (fairseq's GradMultiply: feature_grad_mult)."""

    @staticmethod
    def forward(ctx, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad * ctx.scale, None


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of [B, C, T] conv output (the layer-mode front-end)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class ConvBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, bias: bool, norm: nn.Module | None):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, stride, bias=bias)
        self.norm = norm

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        return F.gelu(x)


def _conv_norm(mode: str, i: int, channels: int) -> nn.Module | None:
    if mode == "layer":
        return ChannelLayerNorm(channels)
    if i == 0:   # GroupNorm with a group per channel: each channel normalised over time
        norm = nn.GroupNorm(channels, channels, affine=True)
        norm.no_decay = ("weight",)          # a norm's scale, as LayerNorm's is (model.no_weight_decay)
        return norm
    return None


@EMBEDDINGS.register("waveform_conv")
class WaveformConvEmbedding(nn.Module):
    """Raw waveforms -> frame tokens: HuBERT's / wav2vec 2.0's conv front-end with mask embedding and
    convolutional positions."""

    Config = WaveformConvConfig
    no_decay = ("mask_emb",)

    def __init__(self, cfg: WaveformConvConfig, **_context):
        super().__init__()
        self.cfg = cfg
        channels = [1] + list(cfg.conv_dim)
        self.convs = nn.ModuleList(
            ConvBlock(channels[i], channels[i + 1], k, s, cfg.conv_bias, _conv_norm(cfg.extractor_mode, i,
                                                                                     channels[i + 1]))
            for i, (k, s) in enumerate(zip(cfg.conv_kernel, cfg.conv_stride)))
        self.feature_norm = nn.LayerNorm(cfg.conv_dim[-1], eps=cfg.norm_eps)
        self.projection = nn.Linear(cfg.conv_dim[-1], cfg.dim)
        self.drop_input = nn.Dropout(cfg.dropout_input)
        self.mask_emb = nn.Parameter(torch.zeros(cfg.dim))
        pos_conv = nn.Conv1d(cfg.dim, cfg.dim, cfg.pos_conv_kernel, padding=cfg.pos_conv_kernel // 2,
                             groups=cfg.pos_conv_groups)
        self.pos_conv = nn.utils.parametrizations.weight_norm(pos_conv, name="weight", dim=2)
        self.pos_trim = 1 if cfg.pos_conv_kernel % 2 == 0 else 0    # "same" length for an even kernel
        self.norm = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps) if cfg.norm == "layernorm" else nn.Identity()
        self.drop = nn.Dropout(cfg.dropout)

    def init_weights(self) -> None:
        """fairseq's: Kaiming-normal convolutions, a uniform [0, 1) mask embedding, positions N(0, sqrt(4 /
        (kernel * dim))) with zero bias (then weight-normed)."""
        with torch.no_grad():
            for block in self.convs:
                nn.init.kaiming_normal_(block.conv.weight)
                if block.conv.bias is not None:
                    nn.init.zeros_(block.conv.bias)
            nn.init.uniform_(self.mask_emb)
            std = math.sqrt(4.0 / (self.cfg.pos_conv_kernel * self.cfg.dim))
            weight = torch.randn_like(self.pos_conv.weight) * std
            self.pos_conv.weight = weight           # weight norm's right inverse sets g and v from it
            nn.init.zeros_(self.pos_conv.bias)

    def maskable(self) -> RealFrames:
        return RealFrames(self.cfg.conv_kernel, self.cfg.conv_stride, self.cfg.key)

    def frame_lengths(self, samples: Tensor) -> Tensor:
        return frame_lengths(samples, self.cfg.conv_kernel, self.cfg.conv_stride)

    def features(self, waves: Tensor) -> Tensor:
        """The conv stack's output [B, F, C], with feature_grad_mult applied to its gradient."""
        mult = self.cfg.feature_grad_mult
        x = waves[:, None]
        with torch.set_grad_enabled(torch.is_grad_enabled() and mult > 0):
            for block in self.convs:
                x = block(x)
        if 0 < mult < 1 and x.requires_grad:
            x = _ScaleGrad.apply(x, mult)
        return x.transpose(1, 2)

    def positions(self, x: Tensor) -> Tensor:
        """The convolutional relative positions of [B, F, D] frames: grouped conv, trimmed, GELU."""
        y = self.pos_conv(x.transpose(1, 2))
        if self.pos_trim:
            y = y[..., :-self.pos_trim]
        return F.gelu(y).transpose(1, 2)

    def forward(self, batch: dict[str, Tensor]) -> Tokens:
        waves = batch[self.cfg.key]
        if waves.dim() != 2:
            raise ValueError(f"batch['{self.cfg.key}'] must be [batch, samples] mono waveforms, got "
                             f"{list(waves.shape)}")
        features = self.features(waves)                                   # [B, F, C]
        penalty = features.float().pow(2).mean()                          # fairseq's features_pen
        x = self.drop_input(self.projection(self.feature_norm(features)))
        B, frames = x.shape[:2]
        pad_mask = None
        lengths = batch.get("audio_lengths")
        if lengths is not None:
            real = self.frame_lengths(lengths.to(x.device))
            if bool((real < frames).any()):
                pad_mask = torch.arange(frames, device=x.device) < real[:, None]        # True = real frame
                x = x.masked_fill(~pad_mask[..., None], 0.0)
        mask = batch.get("mask_frames")
        if mask is not None:
            if mask.shape != (B, frames):
                raise ValueError(f"batch['mask_frames'] is {list(mask.shape)} but the front-end made {B} x {frames} "
                                 "frames (the target's batch transform must use this embedding's conv stack)")
            x = torch.where(mask[..., None], self.mask_emb.to(x.dtype), x)
        x = self.drop(self.norm(x + self.positions(x)))
        return Tokens(x=x, pad_mask=pad_mask, right_padded=True, extras={"features_pen": penalty})
