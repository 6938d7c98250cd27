"""Assembles a pretraining model from the registry: named streams and weighted targets.

A stream is one tower: embedding -> encoder -> [target embedding -> decoder]. Targets read every
stream's output plus the batch and return a loss and metrics; the model sums the weighted losses.
A target may drive a stream itself (`Target.driven_streams`): the model then leaves it to that target.
This is the only module that knows the five slots.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from .errors import ConfigError
from .pretrain_tasks.base import StreamOutput
from .registry import DECODERS, EMBEDDINGS, ENCODERS, TARGET_EMBEDDINGS, TARGETS, closest, to_plain

STREAM_SLOTS = ("embedding", "encoder", "target_embedding", "decoder")


@dataclass
class ModelOutput:
    loss: Tensor
    metrics: dict[str, Tensor]
    counts: dict[str, Tensor | int]


class Stream(nn.Module):
    def __init__(self, spec: Mapping, where: str):
        super().__init__()
        unknown = set(spec) - set(STREAM_SLOTS)
        if unknown:
            key = sorted(unknown)[0]
            hint = closest(key, STREAM_SLOTS)
            raise ConfigError(f"unknown key '{where}.{key}'" + (f"; did you mean '{hint}'?" if hint else "")
                              + f" A stream has: {', '.join(STREAM_SLOTS)}")
        for slot in ("embedding", "encoder"):
            if slot not in spec:
                raise ConfigError(f"'{where}' needs an '{slot}'")
        self.embedding = EMBEDDINGS.build(spec["embedding"], f"{where}.embedding")
        self.encoder = ENCODERS.build(spec["encoder"], f"{where}.encoder")
        te, dec = spec.get("target_embedding"), spec.get("decoder")
        if te is not None and dec is None:
            raise ConfigError(f"'{where}' has a target_embedding but no decoder")
        self.target_embedding = TARGET_EMBEDDINGS.build(te, f"{where}.target_embedding") if te else None
        self.decoder = DECODERS.build(dec, f"{where}.decoder") if dec else None

    def forward(self, batch: dict[str, Tensor]) -> StreamOutput:
        hidden = self.encoder(self.embedding(batch))
        decoded = None
        if self.decoder is not None:
            target_tokens = self.target_embedding(batch, hidden) if self.target_embedding else hidden
            decoded = self.decoder(target_tokens, memory=hidden)
        return StreamOutput(stream=self, hidden=hidden, decoded=decoded)


class PretrainModel(nn.Module):
    def __init__(self, spec: Mapping):
        super().__init__()
        spec = to_plain(spec)
        unknown = set(spec) - {"streams", "targets"}
        if unknown:
            key = sorted(unknown)[0]
            hint = closest(key, ["streams", "targets"])
            raise ConfigError(f"unknown key 'model.{key}'" + (f"; did you mean '{hint}'?" if hint else "")
                              + " The model has: streams, targets")
        if not spec.get("streams"):
            raise ConfigError("'model.streams' must name at least one stream")
        if not spec.get("targets"):
            raise ConfigError("'model.targets' must name at least one target")
        self.streams = nn.ModuleDict({name: Stream(s, f"model.streams.{name}")
                                      for name, s in spec["streams"].items()})
        self._bind_shared_modules()            # before the targets: their heads tie to shared tables
        self.targets = nn.ModuleDict({name: TARGETS.build(t, f"model.targets.{name}", streams=self.streams)
                                      for name, t in spec["targets"].items()})
        self.driven = self._bind_driven_streams()
        for name, target in self.targets.items():
            if hasattr(target, "bind_targets"):      # e.g. a contrastive target using another's projection
                target.bind_targets(self.targets, f"model.targets.{name}")
        self.apply(init_weights)
        for module in self.modules():
            if module is not self and hasattr(module, "init_weights"):
                module.init_weights()          # component-specific init (fixed tables, special tokens)

    def _bind_shared_modules(self) -> None:
        """Point every module whose config says ``shares: PATH`` (a T5 decoder's or an ELECTRA generator's
        token embedding) at the module at PATH, checked. PATH is a module path of this model."""
        paths = {name: module for name, module in self.named_modules() if name}
        for name, module in paths.items():
            source_path = getattr(getattr(module, "cfg", None), "shares", "")
            if not source_path or not hasattr(module, "share_from"):
                continue
            where = f"model.{name}"
            if source_path not in paths:
                candidates = [n for n, m in paths.items() if hasattr(m, "share_from") and m is not module]
                hint = closest(source_path, candidates)
                raise ConfigError(f"'{where}.shares' = '{source_path}' names no module of this model"
                                  + (f"; did you mean '{hint}'?" if hint else "")
                                  + (f" (candidates: {', '.join(candidates)})" if candidates else ""))
            if paths[source_path] is module:
                raise ConfigError(f"'{where}.shares' names the module itself")
            module.share_from(paths[source_path], where)

    def _bind_driven_streams(self) -> frozenset[str]:
        """The streams targets run themselves (`Target.driven_streams`), checked; each target gets
        `run_stream` (a plain attribute, not a submodule: the streams stay registered once, here)."""
        driven: dict[str, str] = {}
        for target_name, target in self.targets.items():
            for name in target.driven_streams():
                if name not in self.streams:
                    hint = closest(name, self.streams)
                    raise ConfigError(f"target 'model.targets.{target_name}' drives stream '{name}', but the model "
                                      f"has no such stream" + (f"; did you mean '{hint}'?" if hint else "")
                                      + f" The model's streams: {', '.join(self.streams)}")
                if name in driven:            # two targets would each run it: twice the work, two outputs
                    raise ConfigError(f"stream '{name}' is driven by two targets, 'model.targets.{driven[name]}' "
                                      f"and 'model.targets.{target_name}'; one target drives a stream")
                driven[name] = target_name
            # A bound method, so `copy.deepcopy(model)` rebinds it to the copy. It makes a model <-> target
            # cycle: after `del model`, memory returns at the next cyclic collection (`gc.collect()`).
            target._run_stream = self.run_stream
        return frozenset(driven)

    def run_stream(self, name: str, batch: dict[str, Tensor], targets: Mapping | None = None) -> StreamOutput:
        """One stream on ``batch`` plus the `stream_head` of every target (of ``targets``, default all)."""
        out = self.streams[name](batch)
        for target in (self.targets if targets is None else targets).values():
            head = target.stream_head(name, out)
            if head is not None:
                out.heads[target] = head
        return out

    def active_targets(self, batch: dict) -> dict[str, nn.Module]:
        """The targets a batch feeds: those its ``_targets`` names (a `mixture` source's), else all."""
        names = batch.get("_targets")
        if names is None:
            return dict(self.targets)
        unknown = [n for n in names if n not in self.targets]
        if unknown:
            hint = closest(unknown[0], self.targets)
            raise ConfigError(f"a batch feeds target '{unknown[0]}', which the model does not have"
                              + (f"; did you mean '{hint}'?" if hint else "")
                              + f" (targets: {', '.join(self.targets)})")
        return {n: self.targets[n] for n in names}

    def forward(self, batch: dict[str, Tensor]) -> ModelOutput:
        targets = self.active_targets(batch)
        needed = set(self.streams)
        if len(targets) < len(self.targets):      # a mixture's batch: only the streams its targets read
            reads = [t.reads() for t in targets.values()]
            needed = set(self.streams) if any(r is None for r in reads) else {n for r in reads for n in r}
        # Streams a target drives run inside that target's forward, on the inputs it builds.
        outputs = {name: self.run_stream(name, batch, targets) for name in self.streams
                   if name in needed and name not in self.driven}
        loss: Tensor | float = 0.0
        metrics: dict[str, Tensor] = {}
        counts: dict[str, Tensor | int] = {}
        for name, target in targets.items():
            out = target(outputs, batch)
            loss = loss + target.weight * out.loss
            metrics[f"{name}/loss"] = out.loss.detach()
            counts[name] = out.count
            for key, value in out.metrics.items():
                metrics[f"{name}/{key}"] = value.detach() if isinstance(value, Tensor) else torch.tensor(value)
        return ModelOutput(loss=loss, metrics=metrics, counts=counts)

    def batch_transforms(self, data, targets=None) -> list:
        """The batch transforms of every target (or of the ``targets`` named), built on ``data``'s states."""
        chosen = self.targets.values() if targets is None else [self.targets[n] for n in targets]
        return [fn for t in chosen if (fn := t.batch_transform(data)) is not None]

    def fsdp_units(self) -> list[nn.Module]:
        """The modules to shard one by one (every Transformer block); the root takes the rest."""
        units: list[nn.Module] = []
        for module in self.modules():
            if module is not self and hasattr(module, "fsdp_units"):
                units.extend(module.fsdp_units())
        return units

    def no_weight_decay(self, embeddings: bool = True) -> set[str]:
        """Parameter names AdamW should not decay: norms and biases, and embeddings if asked.

        A module can name more (a class token, a temperature) in a ``no_decay`` attribute.
        """
        names = set()
        for mod_name, module in self.named_modules():
            is_norm = isinstance(module, (nn.LayerNorm, nn.RMSNorm))
            is_embedding = embeddings and isinstance(module, nn.Embedding)
            extra = getattr(module, "no_decay", ())
            for p_name, _ in module.named_parameters(recurse=False):
                if is_norm or is_embedding or p_name == "bias" or p_name in extra:
                    names.add(f"{mod_name}.{p_name}" if mod_name else p_name)
        return names


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """BERT/GPT/ViT practice: N(0, 0.02) weights, zero biases, unit norms."""
    if isinstance(module, (nn.Linear, nn.Conv2d, nn.Conv1d)):
        nn.init.normal_(module.weight, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=std)
    elif isinstance(module, (nn.LayerNorm, nn.RMSNorm)):
        if module.weight is not None:
            nn.init.ones_(module.weight)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)


def build_model(cfg: Mapping | DictConfig) -> PretrainModel:
    """Build the model of a recipe (or of its ``model`` section)."""
    model_spec = cfg["model"] if "model" in cfg else cfg
    import_components()
    return PretrainModel(model_spec)


def import_components() -> None:
    """Import every built-in component module so that its registration runs."""
    from . import components  # noqa: F401
