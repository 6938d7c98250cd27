"""Vision embedding: convolutional patches, fixed 2D sin-cos or learned positions, optional class
token, and MAE's per-sample random masking (the encoder then sees only the visible patches)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from ..encoders.blocks import make_norm
from ..encoders.positions import sincos_2d_table
from ..registry import EMBEDDINGS
from ..tokens import Tokens


@dataclass
class PatchEmbeddingConfig:
    image_size: int = 32
    patch_size: int = 4
    channels: int = 3
    dim: int = 64
    positions: Literal["sincos2d", "learned", "none"] = "learned"
    cls_token: bool = True
    mask_ratio: float = 0.0          # MAE: fraction of patches hidden from the encoder, per sample
    norm: Literal["layernorm", "none"] = "none"   # CLIP's ln_pre
    norm_eps: float = 1e-5
    patch_bias: bool = True
    dropout: float = 0.0
    key: str = "pixel_values"        # batch[key]: [B, C, H, W] float images

    def __post_init__(self):
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not divisible by patch_size {self.patch_size}")
        if not 0 <= self.mask_ratio < 1:
            raise ValueError(f"mask_ratio must be in [0, 1), got {self.mask_ratio}")

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


def random_masking(x: Tensor, ratio: float, noise: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Keep a random (1 - ratio) of the patches of each sample, as MAE does.

    Returns the kept patches, ``mask`` [B, N] (1 = hidden) and ``ids_restore`` to undo the shuffle.
    """
    B, N, D = x.shape
    keep = int(N * (1 - ratio))
    if noise is None:
        noise = torch.rand(B, N, device=x.device)
    ids_shuffle = noise.argsort(dim=1)
    ids_restore = ids_shuffle.argsort(dim=1)
    kept = x.gather(1, ids_shuffle[:, :keep, None].expand(-1, -1, D))
    mask = torch.ones(B, N, device=x.device)
    mask[:, :keep] = 0
    return kept, mask.gather(1, ids_restore), ids_restore


@EMBEDDINGS.register("patch")
class PatchEmbedding(nn.Module):
    """Images -> patch tokens (ViT/CLIP/MAE), any size divisible by the patch size."""

    Config = PatchEmbeddingConfig
    no_decay = ("cls", "position")

    def __init__(self, cfg: PatchEmbeddingConfig, **_context):
        super().__init__()
        self.cfg = cfg
        self.proj = nn.Conv2d(cfg.channels, cfg.dim, cfg.patch_size, cfg.patch_size, bias=cfg.patch_bias)
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.dim)) if cfg.cls_token else None
        count = cfg.grid ** 2 + int(cfg.cls_token)
        if cfg.positions == "learned":
            self.position = nn.Parameter(torch.zeros(1, count, cfg.dim))
        elif cfg.positions == "sincos2d":
            table = sincos_2d_table(cfg.grid, cfg.grid, cfg.dim)
            if cfg.cls_token:
                table = torch.cat([torch.zeros(1, cfg.dim), table])
            self.register_buffer("position", table[None], persistent=False)
        else:
            self.position = None
        self.norm = make_norm("layernorm", cfg.dim, cfg.norm_eps) if cfg.norm == "layernorm" else nn.Identity()
        self.drop = nn.Dropout(cfg.dropout)
        self.apply_mask = cfg.mask_ratio > 0   # feature extraction (probes) turns this off

    def init_weights(self) -> None:
        nn.init.xavier_uniform_(self.proj.weight.view(self.proj.weight.shape[0], -1))
        if self.cls is not None:
            nn.init.normal_(self.cls, std=0.02)
        if isinstance(self.position, nn.Parameter):
            nn.init.normal_(self.position, std=0.02)

    def forward(self, batch: dict[str, Tensor]) -> Tokens:
        pixels = batch[self.cfg.key]
        x = self.proj(pixels).flatten(2).transpose(1, 2)              # [B, N, D]
        offset = int(self.cls is not None)
        if self.position is not None:
            x = x + self.position[:, offset:]
        extras = {}
        if self.apply_mask:
            x, mask, ids_restore = random_masking(x, self.cfg.mask_ratio, batch.get("mae_noise"))
            extras = {"mae_mask": mask, "ids_restore": ids_restore}
        if self.cls is not None:
            cls = self.cls if self.position is None else self.cls + self.position[:, :1]
            x = torch.cat([cls.expand(x.shape[0], -1, -1), x], dim=1)
        return Tokens(x=self.drop(self.norm(x)), extras=extras)
