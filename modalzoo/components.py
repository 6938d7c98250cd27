"""Imports every built-in component module so its `@REGISTRY.register` runs. Add new modules here."""

from .datasets import samples as _samples  # noqa: F401
from .encoders import timm_tower as _timm_tower  # noqa: F401
from .encoders import transformer as _transformer  # noqa: F401
from .modalities.code import embedding as _code  # noqa: F401
from .modalities.text import dataset as _text_data  # noqa: F401
from .modalities.text import embedding as _text  # noqa: F401
from .modalities.text import reports as _mlm_report  # noqa: F401
from .modalities.text import tokenizers as _tokenizers  # noqa: F401
from .modalities.vision import dataset as _image_data  # noqa: F401
from .modalities.vision import embedding as _vision  # noqa: F401
from .modalities.vision import mae as _mae  # noqa: F401
from .modalities.vision import reports as _vision_report  # noqa: F401
from .pretrain_tasks import clm as _clm  # noqa: F401
from .pretrain_tasks import contrastive as _contrastive  # noqa: F401
from .pretrain_tasks import mlm as _mlm  # noqa: F401
from .training import optim as _optim  # noqa: F401
