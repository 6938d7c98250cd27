"""Imports every built-in component module so its `@REGISTRY.register` runs. Add new modules here."""

from .datasets import samples  # noqa: F401
from .encoders import transformer  # noqa: F401
from .evaluation import mlm as _mlm_report  # noqa: F401
from .modalities import code, text, tokenizers, vision  # noqa: F401
from .pretrain_tasks import clm, contrastive, mae, mlm  # noqa: F401
from .training import optim  # noqa: F401
