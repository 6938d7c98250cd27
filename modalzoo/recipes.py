"""Recipes: YAML files under configs/recipes/, composed with Hydra and validated against the registry.

Composition is Hydra's (defaults lists, config groups, ``key=value`` overrides); validation is ours, so
a typo names the key, where it sits and the closest valid key. Recipes can only name registered
components — ``_target_`` import paths are refused — so loading a recipe never imports user code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import ConfigError, closest, unknown_name_message
from .model import STREAM_SLOTS, import_components
from .registry import (
    DATASETS,
    OPTIMIZERS,
    SCHEDULERS,
    TARGETS,
    TOKENIZERS,
    dataclass_from_dict,
    hydra_schema,
    registry_for,
)
from .training.config import RecipeConfig, TrainerConfig

ConfigStore.instance().store(name="modalzoo_recipe", node=hydra_schema(RecipeConfig))
SLOT_KINDS = {"embedding": "embedding", "encoder": "encoder", "target_embedding": "target_embedding",
              "decoder": "decoder"}


def configs_dir() -> Path:
    """The packaged configs (a wheel) or the repository's configs/ (an editable install)."""
    packaged = Path(str(resources.files("modalzoo"))) / "configs"
    return packaged if (packaged / "recipes").is_dir() else Path(__file__).resolve().parent.parent / "configs"


def list_recipes() -> list[str]:
    return sorted(p.stem for p in (configs_dir() / "recipes").glob("*.yaml"))


def load_recipe(name: str | Path, overrides: Sequence[str] = ()) -> DictConfig:
    """Compose a recipe with ``overrides`` and validate it. Returns a DictConfig.

    ``name`` is a shipped recipe (``bert_mlm_tiny``) or the path of your own recipe YAML, which may
    extend shipped ones through its defaults list (``- /recipes/bert_mlm_tiny``) and use the shipped
    groups (``- /trainer: cpu_small``).
    """
    config_dir, config_name, search = str(configs_dir()), None, []
    if str(name).endswith((".yaml", ".yml")):
        path = Path(name)
        if not path.is_file():
            raise ConfigError(f"recipe file {path} does not exist")
        config_dir, config_name, name = str(path.resolve().parent), path.stem, path.stem
        search = [f"hydra.searchpath=[file://{configs_dir()}]"]
    else:
        recipes = list_recipes()
        if name not in recipes:
            raise ConfigError(unknown_name_message("recipe", str(name), recipes)
                              + " (or give the path of a recipe .yaml file)")
        config_name = f"recipes/{name}"
    overrides = list(overrides)
    for item in overrides:
        if "=" not in item and not item.startswith("~"):      # ~key deletes (Hydra): ~model.targets.mlm
            raise ConfigError(f"override '{item}' is not key=value (e.g. trainer.max_steps=100) or ~key")
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=config_dir, version_base="1.3", job_name="modalzoo"):
            base = _compose(config_name, name, search)
            cfg = _compose(config_name, name, search + [_allow_new_option(o, base) for o in overrides], base)
    finally:
        GlobalHydra.instance().clear()
    OmegaConf.set_struct(cfg, False)
    cfg.recipe = str(name)
    validate_recipe(cfg)
    return cfg


def _allow_new_option(override: str, base: DictConfig) -> str:
    """Inside model/data, a component option the recipe leaves at its default may be set without '+'.

    The registry validates it afterwards, so a typo still fails with the component's full key list.
    """
    key = override.split("=", 1)[0]
    if key.startswith(("+", "~")) or not key.startswith(("model.", "data.")):
        return override
    parent = key.rpartition(".")[0]
    missing = OmegaConf.select(base, key, default="__missing__") == "__missing__"
    parent_is_component = isinstance(OmegaConf.select(base, parent), DictConfig) and \
        "name" in OmegaConf.select(base, parent)
    return "+" + override if missing and parent_is_component else override


def _compose(config_name: str, name: str, overrides: list[str], base: DictConfig | None = None) -> DictConfig:
    try:
        return compose(config_name=config_name, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(_explain(name, err, overrides, base)) from None


def _explain(name: str, err: Exception, overrides: list[str], base: DictConfig | None) -> str:
    """Turn Hydra/OmegaConf's message into one line naming the key and the closest valid one."""
    text = " ".join(str(err).split())
    cause = err.__cause__ or err.__context__
    cause_text = " ".join(str(cause).split()) if cause else ""
    if base is not None:
        for item in overrides:
            key = item.split("=", 1)[0].lstrip("+~")
            if item.startswith(("+", "~", "hydra.")):
                continue
            if OmegaConf.select(base, key, default="__missing__") == "__missing__":
                parent, _, leaf = key.rpartition(".")
                node = OmegaConf.select(base, parent) if parent else base
                options = list(node.keys()) if isinstance(node, DictConfig) else []
                hint = closest(leaf, options)
                where = f"'{parent}'" if parent else "the top level"
                return (f"recipe {name}: unknown key '{key}' in {where}"
                        + (f"; did you mean '{parent + '.' if parent else ''}{hint}'?" if hint else "")
                        + (f" Valid keys there: {', '.join(map(str, options))}" if options else ""))
    full_key = re.search(r"full_key: ([\w.\[\]]+)", text + " " + cause_text)
    detail = (cause_text or text).split(" full_key:")[0]
    at = f" at '{full_key.group(1)}'" if full_key else ""
    return f"recipe {name}{at}: {detail}"


def validate_recipe(cfg: DictConfig) -> None:
    """Check every section against the registry; raises ConfigError naming the offending key."""
    import_components()
    try:
        plain = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as err:
        raise ConfigError(f"recipe {cfg.get('recipe')}: {' '.join(str(err).split())}") from None
    _refuse_targets(plain, "")
    if not isinstance(plain.get("data"), Mapping):
        raise ConfigError("the recipe has no 'data' section (a registered dataset: "
                          f"{', '.join(DATASETS.names())})")
    data_cfg = DATASETS.make_config(plain["data"], "data")
    if isinstance(getattr(data_cfg, "tokenizer", None), Mapping):
        TOKENIZERS.make_config(data_cfg.tokenizer, "data.tokenizer")
    model = plain.get("model")
    if not isinstance(model, Mapping):
        raise ConfigError("the recipe has no 'model' section (model.streams and model.targets)")
    for key in model:
        if key not in ("streams", "targets"):
            hint = closest(key, ["streams", "targets"])
            raise ConfigError(f"unknown key 'model.{key}'" + (f"; did you mean 'model.{hint}'?" if hint else ""))
    streams = model.get("streams") or {}
    if not streams:
        raise ConfigError("'model.streams' must name at least one stream")
    for stream_name, stream in streams.items():
        where = f"model.streams.{stream_name}"
        if not isinstance(stream, Mapping):
            raise ConfigError(f"'{where}' must be a mapping of slots ({', '.join(STREAM_SLOTS)})")
        for slot, spec in stream.items():
            if slot not in SLOT_KINDS:
                hint = closest(slot, STREAM_SLOTS)
                raise ConfigError(f"unknown key '{where}.{slot}'" + (f"; did you mean '{hint}'?" if hint else "")
                                  + f" A stream has: {', '.join(STREAM_SLOTS)}")
            if spec is not None:
                registry_for(SLOT_KINDS[slot]).make_config(spec, f"{where}.{slot}")
    targets = model.get("targets") or {}
    if not targets:
        raise ConfigError("'model.targets' must name at least one target")
    for target_name, spec in targets.items():
        TARGETS.make_config(spec, f"model.targets.{target_name}")
    dataclass_from_dict(TrainerConfig, plain["trainer"], "trainer")
    OPTIMIZERS.make_config(plain["trainer"]["optimizer"], "trainer.optimizer")
    SCHEDULERS.make_config(plain["trainer"]["scheduler"], "trainer.scheduler")


def _refuse_targets(node, where: str) -> None:
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key in ("_target_", "_partial_", "_call_"):
                raise ConfigError(f"'{where + '.' if where else ''}{key}': recipes name registered components "
                                  "only; import paths are not allowed")
            _refuse_targets(value, f"{where}.{key}" if where else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _refuse_targets(value, f"{where}[{i}]")
