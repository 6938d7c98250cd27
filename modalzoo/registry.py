"""One Registry class, one instance per kind of component.

A component is registered once, with the dataclass that configures it:

    @ENCODERS.register("transformer")
    class Transformer(nn.Module):
        Config = TransformerConfig
        def __init__(self, cfg: TransformerConfig, **context): ...

Recipes name components by these names only (no import paths), so a recipe cannot run arbitrary code.
Each config dataclass is also stored in Hydra's ConfigStore under ``<kind>/<name>`` so Hydra users can
compose against the typed schema.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from .errors import ConfigError, ModalzooError, closest, unknown_name_message


@dataclasses.dataclass
class Entry:
    name: str
    cls: type
    config: type
    module: str                      # where the component lives: `cls.__module__` (`modalzoo list` prints it)

    @property
    def summary(self) -> str:
        doc = (self.cls.__doc__ or "").strip().splitlines()
        return doc[0] if doc else ""


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, config: type | None = None) -> Callable[[type], type]:
        def decorate(cls: type) -> type:
            cfg = config or getattr(cls, "Config", None)
            if cfg is None or not dataclasses.is_dataclass(cfg):
                raise TypeError(f"{cls.__name__}: register a dataclass config (Config = ...)")
            if name in self._entries and self._entries[name].cls is not cls:
                raise ValueError(f"{self.kind} '{name}' is already registered by {self._entries[name].cls}")
            if "Config" not in vars(cls):
                cls.Config = cfg
            if "registered_name" not in vars(cls):
                cls.registered_name = name
            self._entries[name] = Entry(name, cls, cfg, cls.__module__)
            ConfigStore.instance().store(group=f"modalzoo/{self.kind}", name=name, node=hydra_schema(cfg))
            return cls

        return decorate

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def get(self, name: str, where: str = "") -> Entry:
        if name not in self._entries:
            at = f" at '{where}'" if where else ""
            raise ConfigError(unknown_name_message(self.kind, name, self._entries) + at)
        return self._entries[name]

    def make_config(self, spec: Mapping | DictConfig, where: str = "") -> Any:
        """Validate ``{name: ..., **options}`` against the component's dataclass and return it."""
        spec = to_plain(spec)
        if not isinstance(spec, Mapping) or "name" not in spec:
            raise ConfigError(f"'{where or self.kind}' must be a mapping with a 'name' key naming a "
                              f"registered {self.kind} ({', '.join(self.names())})")
        entry = self.get(spec["name"], where + ".name" if where else "name")
        options = {k: v for k, v in spec.items() if k != "name"}
        try:
            return dataclass_from_dict(entry.config, options, where)
        except ConfigError as err:
            if "unknown key" not in str(err):
                raise
            # Hydra merges mappings: a recipe that swaps a component keeps the old one's options.
            raise ConfigError(f"{err} (for {self.kind} '{entry.name}'; if a recipe replaced another {self.kind} "
                              "here, remove the old options with ~key or define the section in full)") from None

    def build(self, spec: Mapping | DictConfig | Any, where: str = "", **context) -> Any:
        cfg = spec if dataclasses.is_dataclass(spec) else self.make_config(spec, where)
        name = spec["name"] if not dataclasses.is_dataclass(spec) else _name_of(self, type(spec))
        return self._entries[name].cls(cfg, **context)


@functools.cache
def hydra_schema(config_type: type) -> type:
    """A twin of ``config_type`` that OmegaConf accepts: Literal choices become ``str`` (checked by us)."""
    hints = typing.get_type_hints(config_type)

    def plain(hint: Any) -> Any:
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if origin is typing.Literal:
            return type(args[0])
        if origin in (typing.Union, types.UnionType):
            inner = [plain(a) for a in args if a is not type(None)]
            return typing.Optional[inner[0]] if len(inner) == 1 and type(None) in args else Any  # noqa: UP045
        if dataclasses.is_dataclass(hint):
            return hydra_schema(hint)
        return hint

    fields = []
    for f in dataclasses.fields(config_type):
        default = {"default": f.default} if f.default is not dataclasses.MISSING else {}
        if f.default_factory is not dataclasses.MISSING:
            default = {"default_factory": f.default_factory}
        if dataclasses.is_dataclass(hints[f.name]) and default.get("default_factory") is hints[f.name]:
            default = {"default_factory": hydra_schema(hints[f.name])}
        fields.append((f.name, plain(hints[f.name]), dataclasses.field(**default)))
    return dataclasses.make_dataclass(config_type.__name__, fields)


def _name_of(registry: Registry, config_type: type) -> str:
    for entry in registry.entries():
        if entry.config is config_type:
            return entry.name
    raise ModalzooError(f"{config_type.__name__} is not the config of any registered {registry.kind}")


def to_plain(value: Any) -> Any:
    if isinstance(value, DictConfig) or OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=True)
    return value


def dataclass_from_dict(config_type: type, options: Mapping, where: str = "") -> Any:
    """Build ``config_type(**options)``, naming unknown keys (with the closest valid one) and bad types."""
    fields = {f.name: f for f in dataclasses.fields(config_type)}
    hints = typing.get_type_hints(config_type)
    values = {}
    for key, value in options.items():
        path = f"{where}.{key}" if where else key
        if key not in fields:
            hint = closest(key, fields)
            near = f"{where}.{hint}" if where and hint else hint
            raise ConfigError(f"unknown key '{path}'" + (f"; did you mean '{near}'?" if hint else "")
                              + f" Valid keys here: {', '.join(sorted(fields))}")
        values[key] = check_type(value, hints[key], path)
    try:
        return config_type(**values)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where or config_type.__name__}: {err}") from None


def check_type(value: Any, hint: Any, path: str) -> Any:
    """Check (and lightly coerce: int -> float) a value against a dataclass field's annotation."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return check_type(value, arg, path)
            except ConfigError as err:
                errors.append(err)
        raise errors[0] if errors else ConfigError(f"'{path}' has no valid type")
    if origin is typing.Literal:
        if value not in args:
            hint_word = closest(str(value), [str(a) for a in args])
            raise ConfigError(f"'{path}' = {value!r} is not allowed; expected one of {list(args)}"
                              + (f" (did you mean '{hint_word}'?)" if hint_word else ""))
        return value
    if origin in (list, tuple) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"'{path}' expected a list, got {type(value).__name__} {value!r}")
        item = args[0] if args else Any
        return [check_type(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"'{path}' expected a mapping, got {type(value).__name__} {value!r}")
        return dict(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"'{path}' expected a number (float), got {type(value).__name__} {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"'{path}' expected an integer, got {type(value).__name__} {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"'{path}' expected true or false, got {type(value).__name__} {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"'{path}' expected a string, got {type(value).__name__} {value!r}")
        return value
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise ConfigError(f"'{path}' expected a mapping, got {type(value).__name__} {value!r}")
        return dataclass_from_dict(hint, value, path)
    return value


EMBEDDINGS = Registry("embedding")
ENCODERS = Registry("encoder")
TARGET_EMBEDDINGS = Registry("target_embedding")
DECODERS = Registry("decoder")
TARGETS = Registry("target")
TOKENIZERS = Registry("tokenizer")
DATASETS = Registry("dataset")
OPTIMIZERS = Registry("optimizer")
SCHEDULERS = Registry("scheduler")
SAMPLE_DATA = Registry("sample_data")
PACKERS = Registry("packer")      # `modalzoo data NAME SOURCES --out DIR`: the user's own files -> shards

REGISTRIES: dict[str, Registry] = {r.kind: r for r in (
    EMBEDDINGS, ENCODERS, TARGET_EMBEDDINGS, DECODERS, TARGETS, TOKENIZERS, DATASETS, OPTIMIZERS, SCHEDULERS,
    SAMPLE_DATA, PACKERS)}


def registry_for(kind: str) -> Registry:
    if kind not in REGISTRIES:
        raise ConfigError(unknown_name_message("component kind", kind, REGISTRIES))
    return REGISTRIES[kind]
