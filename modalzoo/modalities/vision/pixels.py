"""The `pixels` embedding: images handed to the encoder as they are, for encoders that embed them
themselves (a `timm` encoder)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from ...registry import EMBEDDINGS
from ...tokens import Tokens


@dataclass
class PixelsConfig:
    key: str = "pixel_values"


@EMBEDDINGS.register("pixels")
class Pixels(nn.Module):
    """Images passed through as they are, for encoders that embed them themselves (timm towers)."""

    Config = PixelsConfig

    def __init__(self, cfg: PixelsConfig, **_context):
        super().__init__()
        self.cfg = cfg

    def forward(self, batch: dict[str, Tensor]) -> Tokens:
        return Tokens(x=batch[self.cfg.key])          # [B, C, H, W]: not tokens yet
