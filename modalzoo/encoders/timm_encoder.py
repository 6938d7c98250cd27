"""Any timm vision model as a stream's encoder (ViTs, ConvNeXts, ResNets...), built by name.

Pair it with the `pixels` embedding (`modalities/vision/pixels.py`), which hands the images through
unchanged: timm models embed patches themselves. The output is `Tokens` [B, L, D]: a ViT's token sequence
as is, a CNN's final feature map flattened to its spatial positions (pool with `mean`; ViTs with a class
token: `cls`). timm (and the torchvision it pulls in, ~2 s) is imported only when such an encoder is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from ..errors import ModalzooError, closest
from ..registry import ENCODERS
from ..tokens import Tokens


@dataclass
class TimmConfig:
    model_name: str = "vit_tiny_patch16_224"
    image_size: int | None = None     # passed as img_size to models that take it (ViTs)
    pretrained: bool = False          # True downloads weights from the Hub: off by default, never in tests
    options: dict = field(default_factory=dict)   # further keyword arguments for timm.create_model


@ENCODERS.register("timm")
class TimmEncoder(nn.Module):
    """A timm model's `forward_features` as an encoder (classifier head removed)."""

    Config = TimmConfig

    def __init__(self, cfg: TimmConfig, **_context):
        super().__init__()
        import timm
        self.cfg = cfg
        if not timm.is_model(cfg.model_name):
            hint = closest(cfg.model_name, timm.list_models())
            raise ModalzooError(f"unknown timm model '{cfg.model_name}'" + (f"; did you mean '{hint}'?" if hint else "")
                                + " (timm.list_models() lists them)")
        kwargs = dict(cfg.options)
        if cfg.image_size is not None:
            kwargs["img_size"] = cfg.image_size
        self.model = timm.create_model(cfg.model_name, pretrained=cfg.pretrained, num_classes=0, **kwargs)
        self.dim = self.model.num_features

    def init_weights(self) -> None:
        """Keep timm's own initialisation (the zoo's default init is for its own blocks)."""
        if hasattr(self.model, "init_weights"):
            self.model.init_weights()
        elif hasattr(self.model, "reset_parameters"):
            self.model.reset_parameters()

    def fsdp_units(self) -> list[nn.Module]:
        blocks = getattr(self.model, "blocks", None) or getattr(self.model, "stages", None)
        return list(blocks) if blocks is not None else []

    def forward(self, tokens: Tokens, memory: Tokens | None = None) -> Tokens:
        features = self.model.forward_features(tokens.x)
        if features.dim() == 4:                                   # CNN: [B, C, H, W] -> [B, HW, C]
            features = features.flatten(2).transpose(1, 2)
        return Tokens(x=features)
