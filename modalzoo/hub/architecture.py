"""The transformers architectures a zoo model exports to and imports from: one `Architecture` each.

An architecture is declared next to its weight mapping, in its modality (``modalities/text/hub/bert.py``:
bert, roberta; ``modalities/vision/hub/{vit,vit_mae,clip}.py``), and describes itself: which recipes it
matches, its transformers classes and load arguments, Hub metadata, the preprocessing files it needs, a
usage snippet, the config it writes, both weight directions and an output comparison. `export.py`,
`pretrained.py` and `card.py` read only these descriptions; the registry finds the declaring modules
through `components.MODALITIES` (each modality's ``hub`` package) the first time it is asked.

    arch = detect(model_spec)                       # the architecture whose matches(model) holds
    arch.hf_config(model_spec, stream, preprocessing)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from torch import Tensor, nn

from ..errors import ModalzooError, closest
from .mapping import model_section


@dataclass(frozen=True)
class Architecture:
    name: str
    model_type: str                           # config.json's model_type: picks the architecture on import
    model_class: str                          # transformers class written and loaded back
    auto_class: str                           # the Auto class that loads it
    config_class: str
    # (model section) -> is this the architecture's kind of model (its shape of streams and targets)?
    # Options it cannot express are refused later, by hf_config, naming them.
    matches: Callable[[dict], bool]
    needs: str                                # what `matches` asks for, in words (for "nothing matches")
    # (model spec, stream or None, preprocessing) -> config kwargs; raises naming what blocks the export
    hf_config: Callable[[dict, str | None, object], dict]
    # (zoo model, model spec, stream, config kwargs) -> HF state dict
    to_hf: Callable[[nn.Module, dict, str | None, dict], dict[str, Tensor]]
    # (HF state dict, model spec, stream) -> zoo state dict (strict: unmapped HF tensors raise)
    to_zoo: Callable[[Mapping[str, Tensor], dict, str | None], dict[str, Tensor]]
    # (zoo model, HF model, model spec, stream, preprocessing) -> {output: max |difference|}
    compare: Callable[..., dict[str, float]]
    pipeline_tag: str
    tags: tuple[str, ...] = ()
    preprocessing: Mapping[str, str] = field(default_factory=dict)   # {"text": style, "image": style}
    usage: str = ""                           # card snippet; {model_id}, {labels}, {template} are filled in
    load_args: Mapping[str, object] = field(default_factory=dict)    # extra kwargs of model_class(...)
    card_note: str = ""                       # a line the card adds under the usage snippet
    zoo_usage: str = ""                       # the snippet of a modalzoo-format export of this kind of model
    whole_model: bool = True                  # False: maps one stream; the rest of the zoo model is not exported
    # (model spec, stream, folder) -> files written beside the weights whose numbers come from the model, not
    # the data (AST's feature extractor: mel bins, frames); written before the reload, so `compare` checks them
    model_files: Callable[[dict, str | None, Path], list[Path]] | None = None
    # (the run's whole eval.json) -> markdown lines the card adds under its Results (a report's nested table)
    card_results: Callable[[dict], list[str]] | None = None
    # (fresh transformers model, config kwargs) -> None: what building from a config cannot say (T5 v1.1's
    # untied head: transformers 5 ties T5's head whatever tie_word_embeddings says)
    after_build: Callable[[nn.Module, dict], None] | None = None


_REGISTRY: dict[str, Architecture] = {}


def register(*archs: Architecture) -> None:
    """Called by the mapping modules when they are imported."""
    for arch in archs:
        if arch.name in _REGISTRY and _REGISTRY[arch.name] is not arch:
            raise ValueError(f"architecture '{arch.name}' is already registered")
        _REGISTRY[arch.name] = arch


def architectures() -> dict[str, Architecture]:
    """Every registered architecture, by name (imports each modality's ``hub`` package once)."""
    from .. import components
    components.modality_modules("hub")
    return dict(_REGISTRY)


def get(name: str) -> Architecture:
    archs = architectures()
    if name not in archs:
        hint = closest(name, archs)
        raise ModalzooError(f"unknown architecture '{name}'" + (f"; did you mean '{hint}'?" if hint else "")
                            + f" (have {', '.join(archs)})")
    return archs[name]


def by_model_type(model_type: str | None, model_class: str | None = None, model_spec=None) -> Architecture | None:
    """The architecture of a checkpoint's config.json: its ``model_type``, and where several share one
    (ELECTRA's discriminator and generator), the class it names in ``architectures``; where several share both
    (`RobertaForMaskedLM`: text's RoBERTa and code's GraphCodeBERT), the one ``model_spec`` (the recipe's model)
    has the shape of."""
    found = [a for a in architectures().values() if a.model_type == model_type]
    named = [a for a in found if a.model_class == model_class]
    if model_spec is not None and len(named) > 1:
        shaped = find(model_spec)
        if shaped in named:
            return shaped
    return named[0] if named else (found[0] if found else None)


def find(model_spec) -> Architecture | None:
    """The architecture whose `matches` holds for the model, or None."""
    model = model_section(model_spec)
    found = [a for a in architectures().values() if a.matches(model)]
    if len(found) > 1:              # declarations overlap: a bug in the mapping modules, not the recipe
        raise ModalzooError(f"architectures {[a.name for a in found]} all match this model")
    return found[0] if found else None


def detect(model_spec) -> Architecture:
    """The transformers architecture the model's shape calls for (refining checks happen in `hf_config`)."""
    arch = find(model_spec)
    if arch is not None:
        return arch
    model = model_section(model_spec)
    targets = sorted(str(t.get("name")) for t in (model.get("targets") or {}).values())
    streams = {n: (s.get("embedding") or {}).get("name") for n, s in (model.get("streams") or {}).items()}
    options = "; ".join(f"{a.name} needs {a.needs}" for a in architectures().values())
    raise ModalzooError(f"no transformers architecture matches a model with targets {targets} over streams "
                        f"{streams} ({options}); use --format modalzoo, which always works")


def only_target(model: dict, kind: str) -> tuple[str, dict]:
    """The one target of a registered kind (its name and spec)."""
    found = [(n, t) for n, t in (model.get("targets") or {}).items() if t.get("name") == kind]
    if len(found) != 1:
        raise ModalzooError(f"expected one '{kind}' target, found {len(found)}")
    return found[0]


def target_kinds(model: dict) -> list[str]:
    return [str(t.get("name")) for t in (model.get("targets") or {}).values()]


def hf_model(arch: Architecture, kwargs: dict) -> nn.Module:
    """A fresh transformers model of ``arch`` from config kwargs (SDPA attention, as the zoo uses)."""
    import transformers
    config = getattr(transformers, arch.config_class)(**kwargs)
    model = getattr(transformers, arch.model_class)(config, **arch.load_args)
    if arch.after_build is not None:
        arch.after_build(model, kwargs)
    return model
