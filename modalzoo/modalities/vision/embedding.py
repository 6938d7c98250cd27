"""Vision embedding: convolutional patches, fixed 2D sin-cos or learned positions, optional class
token, and MAE's per-sample random masking (the encoder then sees only the visible patches)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...encoders.blocks import make_norm
from ...encoders.positions import sincos_2d_table
from ...registry import EMBEDDINGS
from ...tokens import Tokens


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


def masking_indices(batch: int, patches: int, ratio: float, noise: Tensor | None = None,
                    device: torch.device | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """MAE's per-sample random masking, as indices: keep the (1 - ratio) patches with the lowest noise.

    Returns ``ids_keep`` [B, keep] (the visible patches, in noise order: the encoder's token order),
    ``ids_hidden`` [B, N - keep] (the others), ``mask`` [B, N] (1 = hidden) and ``ids_restore`` [B, N]
    (each patch's rank in the shuffle) to undo it.
    """
    keep = int(patches * (1 - ratio))
    if noise is None:
        noise = torch.rand(batch, patches, device=device)
    ids_shuffle = noise.argsort(dim=1)
    ids_restore = ids_shuffle.argsort(dim=1)
    mask = (ids_restore >= keep).to(torch.get_default_dtype())   # rank >= keep: hidden
    return ids_shuffle[:, :keep], ids_shuffle[:, keep:], mask, ids_restore


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
        offset = int(self.cls is not None)
        position = None if self.position is None else self.position[:, offset:]     # [1, N, D]
        extras = {}
        if self.apply_mask:
            B, _, H, W = pixels.shape
            patches = (H // self.cfg.patch_size) * (W // self.cfg.patch_size)
            if position is not None and patches != position.shape[1]:
                raise ValueError(f"{H}x{W} images have {patches} patches, but the position table has "
                                 f"{position.shape[1]} (image_size {self.cfg.image_size})")
            ids_keep, ids_hidden, mask, ids_restore = masking_indices(
                B, patches, self.cfg.mask_ratio, batch.get("mae_noise"), pixels.device)
            # ids_hidden lets the `mae` target predict and score only the hidden patches.
            extras = {"mae_mask": mask, "ids_restore": ids_restore, "ids_hidden": ids_hidden}
            x = self._embed_patches_at(pixels, ids_keep)                         # [B, keep, D]
            if position is not None:      # each kept patch's position (index_select: a cheap backward)
                x = x + position[0].index_select(0, ids_keep.flatten()).view_as(x)
        else:
            x = self.proj(pixels).flatten(2).transpose(1, 2)                     # [B, N, D]
            if position is not None:
                x = x + position
        if self.cls is not None:
            cls = self.cls if self.position is None else self.cls + self.position[:, :1]
            x = torch.cat([cls.expand(x.shape[0], -1, -1), x], dim=1)
        return Tokens(x=self.drop(self.norm(x)), extras=extras)

    def _embed_patches_at(self, pixels: Tensor, ids: Tensor) -> Tensor:
        """Project only the patches ``ids`` [B, K] (row-major patch numbers) of ``pixels`` to [B, K, D].

        The patch conv (kernel = stride = patch) is a Linear over each patch's (C, p, p) pixels, so
        gathering the visible patches first and projecting them with the conv's own weights gives the
        same tokens while MAE's masking would throw away the other 75 % of the conv's work (forward and
        backward). The gather reads straight from a [B, h, w, C, p, p] view of the image: one copy.
        """
        p = self.cfg.patch_size
        B, C, H, W = pixels.shape
        w = W // p
        grid = pixels.reshape(B, C, H // p, p, w, p).permute(0, 2, 4, 1, 3, 5)   # [B, h, w, C, p, p]
        rows = torch.arange(B, device=pixels.device)[:, None]
        kept = grid[rows, ids // w, ids % w].reshape(B, ids.shape[1], C * p * p)    # [B, K, C*p*p]
        return F.linear(kept, self.proj.weight.flatten(1), self.proj.bias)
