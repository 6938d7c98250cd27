"""The machinery shared by the weight mappings (`modalities/text/hub/bert.py`,
`modalities/vision/hub/{vit,vit_mae,clip}.py`).

A mapping is a table of name templates, zoo name -> source name(s), each optionally with a reshape:

    ("{z}encoder.blocks.{i}.attn.qkv.{p}", ["{b}layers.{i}.attention.q_proj.{p}", ...])

``{p}`` runs over weight and bias, every counter in ``counts`` (``{i}``: layers, ...) over its range, and
the other fields are filled from ``names``. A list of source names is concatenated along dim 0 (the
zoo's fused ``qkv``). Fixed tensors a checkpoint carries but the zoo recomputes (MAE's sin-cos tables)
are checked against the zoo's values on import and written on export.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from ..errors import ModalzooError
from ..registry import to_plain

# (source -> zoo, zoo -> source); exports return contiguous tensors (safetensors refuses others)
Transform = tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]
Row = tuple      # (zoo template, source template(s)[, Transform])
Pair = tuple[str, list[str], Transform | None]

LEADING_ONE: Transform = (lambda t: t[None], lambda t: t[0])                      # [N, D] <-> [1, N, D]
CLS_TOKEN: Transform = (lambda t: t.reshape(1, 1, -1), lambda t: t.reshape(-1))   # [D] <-> [1, 1, D]
TRANSPOSED: Transform = (lambda t: t.T.contiguous(), lambda t: t.T.contiguous())  # x @ W <-> Linear
SCALAR: Transform = (lambda t: t.reshape(1), lambda t: t.reshape(()))             # [] <-> [1] (logit scales)

HIDDEN_ACT = {"gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh", "quick_gelu": "quick_gelu", "relu": "relu"}


def listed(keys, limit: int = 8) -> str:
    """The first ``limit`` keys, comma-separated, and how many more there are."""
    keys = list(keys)
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def check_keys(missing: list[str], unexpected: list[str], source: str) -> None:
    """Raise naming the missing and the unmapped keys of a state dict (the first few of each)."""
    if missing or unexpected:
        parts = ([f"missing {listed(missing)}"] if missing else []) + \
                ([f"unmapped {listed(unexpected)}"] if unexpected else [])
        raise ModalzooError(f"{source} state dict does not fit the zoo mapping: {'; '.join(parts)}")


def expand(table: list[Row], names: Mapping[str, str], counts: Mapping[str, int]) -> list[Pair]:
    """Every (zoo name, [source names], transform) the table's templates stand for."""
    pairs = []
    for zoo, source, *rest in table:
        source = source if isinstance(source, list) else [source]
        loops = [k for k in counts if "{" + k + "}" in zoo]
        for combo in itertools.product(*(range(counts[k]) for k in loops)):
            for p in ("weight", "bias") if "{p}" in zoo else [None]:
                fill = dict(names, **dict(zip(loops, combo)), p=p)
                pairs.append((zoo.format(**fill), [s.format(**fill) for s in source], rest[0] if rest else None))
    return pairs


def block_rows(qkv: str, out: str, norm1: str, fc1: str, fc2: str, norm2: str) -> list[Row]:
    """The rows of one shared block (zoo name -> source name, both relative to the layer) for a layer whose
    tensors are named ``qkv`` (with ``{w}`` for q, k, v: the zoo's fused qkv is split), ``out``, ``norm1``,
    ``fc1``, ``fc2``, ``norm2`` (ViT: "attention.{w}_proj", "attention.o_proj", "layernorm_before", ...)."""
    return [("attn.qkv.{p}", [qkv.format(w=w) + ".{p}" for w in ("q", "k", "v")]), ("attn.proj.{p}", out + ".{p}"),
            ("norm1.{p}", norm1 + ".{p}"), ("mlp.fc1.{p}", fc1 + ".{p}"), ("mlp.fc2.{p}", fc2 + ".{p}"),
            ("norm2.{p}", norm2 + ".{p}")]


def stack_rows(layer: list[Row], zoo_stack: str, source_stack: str, counter: str = "i") -> list[Row]:
    """A per-layer table (zoo block name -> source layer name, both relative to the layer) for a whole
    stack: ``("norm1.{p}", "ln_1.{p}")`` -> ``("{zoo_stack}{i}.norm1.{p}", "{source_stack}{i}.ln_1.{p}")``."""
    rows = []
    for zoo, source, *rest in layer:
        source = source if isinstance(source, list) else [source]
        rows.append((f"{zoo_stack}{{{counter}}}.{zoo}", [f"{source_stack}{{{counter}}}.{s}" for s in source], *rest))
    return rows


def count_layers(keys, prefix: str) -> int:
    """1 + the largest index right after ``prefix`` in ``keys`` (0 if none)."""
    found = {int(m.group(1)) for k in keys if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))}
    return max(found) + 1 if found else 0


def to_zoo(pairs: list[Pair], state: Mapping[str, Tensor], source: str, fixed: Mapping[str, Tensor] | None = None,
           ignored: set[str] = frozenset()) -> dict[str, Tensor]:
    """Map ``state`` (a checkpoint's names) to zoo names; every key must be mapped, fixed or ignored."""
    fixed = fixed or {}
    mapped = {s for _, ss, _ in pairs for s in ss}
    check_keys([s for _, ss, _ in pairs for s in ss if s not in state] + [f for f in fixed if f not in state],
                sorted(set(state) - mapped - set(fixed) - set(ignored)), source)
    for name, table in fixed.items():
        got = state[name]
        if got.shape != table.shape or not torch.allclose(got.float(), table.to(got.dtype).float(), atol=1e-6,
                                                          rtol=0):
            raise ModalzooError(f"'{name}' is not the fixed 2D sin-cos table the zoo computes "
                                f"({tuple(got.shape)} vs {tuple(table.shape)}); the zoo cannot load other positions")
    out = {}
    for zoo, ss, transform in pairs:
        t = torch.cat([state[s] for s in ss]) if len(ss) > 1 else state[ss[0]]
        out[zoo] = transform[0](t) if transform else t
    return out


def from_zoo(pairs: list[Pair], state: Mapping[str, Tensor], fixed: Mapping[str, Tensor] | None = None,
             ) -> dict[str, Tensor]:
    """The inverse of `to_zoo`, with the fixed tensors filled in; every zoo key must be mapped."""
    check_keys([z for z, _, _ in pairs if z not in state], sorted(set(state) - {z for z, _, _ in pairs}), "zoo")
    out: dict[str, Tensor] = {}
    for zoo, ss, transform in pairs:
        t = state[zoo]
        if len(ss) == 1:
            out[ss[0]] = transform[1](t) if transform else t
        else:   # copies, not views of qkv: tensors sharing storage are refused by safetensors
            out.update((s, part.clone()) for s, part in zip(ss, t.chunk(len(ss))))
    out.update(fixed or {})
    return out


def model_section(recipe_cfg) -> dict:
    """A recipe's ``model`` section (or the section itself), as plain containers."""
    from ..model import import_components
    import_components()          # fills the registries whose configs the helpers validate against
    model = to_plain(recipe_cfg)
    return model.get("model", model)


def check_names(arch: str, parts) -> None:
    """``parts``: (where, spec, the registered name the export needs)."""
    for where, part, name in parts:
        if not part or part.get("name") != name:
            got = part.get("name") if part else None
            raise ModalzooError(f"'{where}.name' = {got!r}: {arch} export needs '{name}'")


def refuse(arch: str, need: Mapping[str, tuple]) -> None:
    """``need``: option -> (its value, the value ``arch`` has); raises naming every mismatch."""
    bad = [f"{key}={got!r} (needs {want!r})" for key, (got, want) in need.items() if got != want]
    if bad:
        raise ModalzooError(f"{arch} cannot express {', '.join(bad)}")


def transformer_needs(where: str, enc, mask: str = "bidirectional") -> dict[str, tuple]:
    """The options a pre-norm, biased, absolute-position HF Transformer stack (ViT, CLIP) fixes."""
    need = {f"{where}.prenorm": (enc.prenorm, True), f"{where}.final_norm": (enc.final_norm, True),
            f"{where}.norm": (enc.norm, "layernorm"), f"{where}.positions": (enc.positions, "none"),
            f"{where}.mask": (enc.mask, mask), f"{where}.bias": (enc.bias, True),
            f"{where}.cross_attention": (enc.cross_attention, False),
            f"{where}.kv_heads": (enc.key_value_heads, enc.heads), f"{where}.attn_scale": (enc.attn_scale, 0.0)}
    if enc.activation not in HIDDEN_ACT:
        need[f"{where}.activation"] = (enc.activation, "|".join(HIDDEN_ACT))
    return need
