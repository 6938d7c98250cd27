"""modalzoo: pretrain foundation models in any modality from one set of parts.

    import modalzoo
    modalzoo.list_components()                     # every registered component, by kind
    cfg = modalzoo.load_recipe("bert_mlm_tiny", ["trainer.max_steps=50"])
    model = modalzoo.build_model(cfg)              # nn.Module; model(batch) -> .loss, .metrics
    run_dir = modalzoo.train(cfg)
"""

from __future__ import annotations

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")   # loader workers fork; keep tokenizers quiet

from . import public as _public  # noqa: E402
from .embed import embed  # noqa: E402
from .errors import ConfigError, ModalzooError  # noqa: E402
from .model import PretrainModel, build_model  # noqa: E402
from .recipes import list_recipes, load_recipe  # noqa: E402
from .registry import REGISTRIES, Registry, registry_for  # noqa: E402

_public.install(__name__)             # modalzoo.<modality> -> that modality's api module (public.py)

__version__ = "0.1.0"
__all__ = ["ConfigError", "ModalzooError", "PretrainModel", "Registry", "build_model", "embed", "from_pretrained",
           "list_components", "list_recipes", "load_recipe", "registry_for", "train"]


def list_components(kind: str | None = None) -> dict[str, list[str]] | list[str]:
    """Registered component names: all kinds as a dict, or one kind's names as a list."""
    from .model import import_components
    import_components()
    if kind is not None:
        return registry_for(kind).names()
    return {k: r.names() for k, r in REGISTRIES.items()}


def from_pretrained(source):
    """A modalzoo-format export (a folder, or ``hf-hub:REPO``) as a `PretrainModel` in eval mode."""
    from .hub.pretrained import from_pretrained as _from_pretrained
    return _from_pretrained(source)


def train(cfg):
    """Train a recipe (from `load_recipe`); returns the run directory as a Path."""
    from .training.trainer import train as _train
    return _train(cfg)
