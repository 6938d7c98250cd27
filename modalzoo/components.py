"""The built-in components: importing this module runs every `@REGISTRY.register`.

The core modules are imported by name below. The modality packages are named only in `MODALITIES`:
each package's ``__init__`` imports its own registering modules, and this is the one core module that
names a modality (a test parses every other core module's imports). Adding a modality is one folder
under ``modalities/`` plus one name here. Parts that are needed only for one command (evaluation
reports, Hub mappings) are found per modality by `modality_modules`, lazily, when that command runs.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from .datasets import mixture as _mixture  # noqa: F401
from .encoders import timm_encoder as _timm_encoder  # noqa: F401
from .encoders import transformer as _transformer  # noqa: F401
from .pretrain_tasks import clm as _clm  # noqa: F401
from .pretrain_tasks import contrastive as _contrastive  # noqa: F401
from .pretrain_tasks import electra as _electra  # noqa: F401
from .pretrain_tasks import mlm as _mlm  # noqa: F401
from .pretrain_tasks import span_corruption as _span_corruption  # noqa: F401
from .pretrain_tasks import ul2 as _ul2  # noqa: F401
from .training import optim as _optim  # noqa: F401

MODALITIES = ("text", "vision", "audio", "code", "graph", "tabular")


def modality_modules(submodule: str) -> list[ModuleType]:
    """``modalzoo.modalities.<m>.<submodule>`` for every modality ``m`` that has one, imported (e.g.
    ``"reports"``, ``"hub"``)."""
    found = []
    for modality in MODALITIES:
        name = f"{__package__}.modalities.{modality}.{submodule}"
        if importlib.util.find_spec(name) is not None:
            found.append(importlib.import_module(name))
    return found


for _modality in MODALITIES:
    importlib.import_module(f"{__package__}.modalities.{_modality}")
