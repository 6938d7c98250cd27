"""Masked autoencoding of images (MAE, He et al. 2021).

The patch embedding hides a random 75% of patches per sample (`modalities/vision.py`), the encoder sees
only the visible ones; the `mae` target embedding projects them to the decoder width, puts mask tokens
back in the hidden places and adds the decoder's positions; the light decoder (the shared Transformer,
without cross-attention) runs over all patches; the `mae` target predicts the hidden patches' pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..encoders.positions import sincos_2d_table
from ..registry import TARGET_EMBEDDINGS, TARGETS
from ..tokens import Tokens
from .base import StreamOutput, Target, TargetConfig, TaskOutput


@dataclass
class MAETargetEmbeddingConfig:
    encoder_dim: int = 64
    dim: int = 32                    # the decoder's width (MAE ViT-B: 512)
    grid: int = 8                    # patches per side
    cls_token: bool = True


@TARGET_EMBEDDINGS.register("mae")
class MAETargetEmbedding(nn.Module):
    """Encoded visible patches -> decoder width, with mask tokens restored to their places."""

    Config = MAETargetEmbeddingConfig
    no_decay = ("mask_token",)

    def __init__(self, cfg: MAETargetEmbeddingConfig, **_context):
        super().__init__()
        self.cfg = cfg
        self.proj = nn.Linear(cfg.encoder_dim, cfg.dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        table = sincos_2d_table(cfg.grid, cfg.grid, cfg.dim)
        if cfg.cls_token:
            table = torch.cat([torch.zeros(1, cfg.dim), table])
        self.register_buffer("position", table[None], persistent=False)

    def init_weights(self) -> None:
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, batch: dict[str, Tensor], memory: Tokens) -> Tokens:
        ids_restore = memory.extras["ids_restore"]
        x = self.proj(memory.x)
        offset = int(self.cfg.cls_token)
        visible = x[:, offset:]
        hidden_count = ids_restore.shape[1] - visible.shape[1]
        full = torch.cat([visible, self.mask_token.expand(x.shape[0], hidden_count, -1)], dim=1)
        full = full.gather(1, ids_restore[..., None].expand(-1, -1, x.shape[-1]))   # unshuffle
        if offset:
            full = torch.cat([x[:, :1], full], dim=1)
        return Tokens(x=full + self.position, extras=memory.extras)


def patchify(images: Tensor, patch: int) -> Tensor:
    """[B, C, H, W] -> [B, N, patch*patch*C], in MAE's (p, q, c) order."""
    B, C, H, W = images.shape
    h, w = H // patch, W // patch
    x = images.reshape(B, C, h, patch, w, patch)
    return torch.einsum("nchpwq->nhwpqc", x).reshape(B, h * w, patch * patch * C)


@dataclass
class MAEConfig(TargetConfig):
    stream: str = "image"
    norm_pix_loss: bool = True       # per-patch normalised pixel targets (MAE's default for ViT-B)


@TARGETS.register("mae")
class MaskedAutoencoder(Target):
    """Mean squared error on the hidden patches' (optionally per-patch normalised) pixels."""

    Config = MAEConfig

    def __init__(self, cfg: MAEConfig, streams: nn.ModuleDict):
        super().__init__(cfg, streams)
        stream = streams[cfg.stream]
        emb = stream.embedding.cfg
        if stream.decoder is None or not getattr(stream.embedding, "apply_mask", False):
            raise ValueError(f"mae needs stream '{cfg.stream}' with a masking patch embedding and a decoder")
        self.patch, self.cls = emb.patch_size, int(emb.cls_token)
        self.key = emb.key
        self.pred = nn.Linear(stream.decoder.dim, emb.patch_size ** 2 * emb.channels)

    def reconstruct(self, decoded: Tokens) -> Tensor:
        return self.pred(decoded.x[:, self.cls:])                       # [B, N, p*p*C]

    def forward(self, outputs: dict[str, StreamOutput], batch: dict[str, Tensor]) -> TaskOutput:
        out = outputs[self.cfg.stream]
        pred = self.reconstruct(out.decoded)
        target = patchify(batch[self.key], self.patch)
        if self.cfg.norm_pix_loss:
            mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
            target = (target - mean) / (var + 1e-6).sqrt()
        mask = out.decoded.extras["mae_mask"]
        per_patch = ((pred.float() - target) ** 2).mean(-1)
        loss = (per_patch * mask).sum() / mask.sum()
        return TaskOutput(loss=loss, metrics={}, count=int(mask.sum()))
