"""Loading exports: `modalzoo.from_pretrained(DIR | hf-hub:REPO)` for modalzoo-format folders, and a recipe's
``init_from=hf:DIR_or_REPO`` (a transformers checkpoint) or ``init_from=modalzoo:DIR`` to start training
from existing weights.

Weights are read from safetensors only (transformers is asked for ``use_safetensors=True``), so loading
never unpickles. Key checking is strict: every checkpoint tensor is mapped or named in the error (or
deliberately dropped with ``init_from_ignore``), and every zoo tensor of the mapped part is filled.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file
from torch import nn

from ..errors import ModalzooError
from . import architecture
from .mapping import listed

DOWNLOAD_PATTERNS = ["*.json", "*.safetensors", "*.md", "*.txt"]


def resolve(source: str) -> Path:
    """A local folder, or a Hub repo (``hf-hub:REPO`` or a bare ``owner/name`` that is not a local path)
    downloaded with `huggingface_hub` (json and safetensors files only)."""
    repo = source.removeprefix("hf-hub:")
    if not source.startswith("hf-hub:") and Path(source).exists():
        return Path(source)
    if not source.startswith("hf-hub:") and (repo.count("/") != 1 or repo.startswith((".", "/"))):
        raise ModalzooError(f"{source} does not exist (and is not an owner/name Hub repo id)")
    from huggingface_hub import snapshot_download
    try:
        return Path(snapshot_download(repo, allow_patterns=DOWNLOAD_PATTERNS))
    except Exception as err:
        raise ModalzooError(f"could not download {repo} from the Hub ({type(err).__name__}: {err})") from None


def from_pretrained(source: str | Path) -> nn.Module:
    """A modalzoo-format export (folder or ``hf-hub:REPO``) as a `PretrainModel` in eval mode, with its
    resolved recipe as ``model.recipe``."""
    from ..model import build_model, import_components
    import_components()
    path = resolve(str(source))
    config_file = path / "config.json"
    if not config_file.exists():
        raise ModalzooError(f"{path} has no config.json: not an export")
    config = json.loads(config_file.read_text())
    if "modalzoo" not in config:
        kind = config.get("model_type", "?")
        raise ModalzooError(f"{path} is a transformers export (model_type {kind!r}), not a modalzoo one: load it "
                            f"with transformers, or start a recipe from it with init_from=hf:{source}")
    config.pop("modalzoo")
    model = build_model(config["model"])
    _load_strict(model, path / "model.safetensors")
    model.recipe = OmegaConf.create(config)
    return model.eval()


def _load_strict(model: nn.Module, file: Path) -> None:
    if not file.exists():
        raise ModalzooError(f"{file} is missing: the export is incomplete")
    result = model.load_state_dict(load_file(str(file)), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ModalzooError(f"{file} does not fit the model its config.json describes: missing "
                            f"{listed(result.missing_keys)}; unexpected {listed(result.unexpected_keys)}")


# ------------------------------------------------------------------------------------------- init_from

def _load_streams_strict(model: nn.Module, file: Path, ignore: Sequence[str] = ()) -> list[str]:
    """Every stream tensor must match (both ways); a target the checkpoint lacks starts fresh (a fine-tune's
    new head), a target the model lacks is dropped only when ``ignore`` names its prefix (a pretraining head
    left behind on purpose: ``init_from_ignore=[targets.cells]``). Returns the fresh targets."""
    if not file.exists():
        raise ModalzooError(f"{file} is missing: the export is incomplete")
    state = load_file(str(file))
    theirs = {k.split(".")[1] for k in state if k.startswith("targets.")}
    ours = {k.split(".")[1] for k in model.state_dict() if k.startswith("targets.")}
    fresh = sorted(ours - theirs)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    wrong = [f"{k} {tuple(v.shape)} vs the model's {tuple(shapes[k])}" for k, v in state.items()
             if k in shapes and v.shape != shapes[k]]
    if wrong:
        raise ModalzooError(f"{file} does not fit the model: other shapes for {listed(wrong)} (the recipe's sizes "
                            f"must match the pretrained run's)")
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not (k.startswith("targets.") and k.split(".")[1] in fresh)]
    unexpected = [k for k in result.unexpected_keys if not k.startswith(tuple(ignore))]
    if missing or unexpected:
        dropped = sorted({f"targets.{k.split('.')[1]}" for k in unexpected if k.startswith("targets.")})
        hint = f" (leave pretraining heads behind with init_from_ignore=[{','.join(dropped)}])" if dropped else ""
        raise ModalzooError(f"{file} does not fit the model: missing {listed(missing)}; unexpected "
                            f"{listed(unexpected)}{hint}")
    return fresh


def init_from(model: nn.Module, cfg, tokenizer=None, echo: Callable[[str], None] = print, data=None) -> None:
    """Apply a recipe's ``init_from`` (``hf:SRC`` or ``modalzoo:SRC``) to a freshly built model. ``data``: the
    run's `DataContext`, with which a transformers checkpoint's config is checked against the recipe's."""
    source = str(cfg.init_from)
    if source.startswith("modalzoo:"):
        path = resolve(source.removeprefix("modalzoo:"))
        _check_tokenizer(path, tokenizer)
        fresh = _load_streams_strict(model, path / "model.safetensors", list(cfg.get("init_from_ignore") or []))
        echo(f"init_from: loaded {path} (modalzoo format)"
             + (f"; new heads start fresh: {', '.join(fresh)}" if fresh else ""))
        return
    if not source.startswith("hf:"):
        raise ModalzooError(f"init_from={source!r}: expected hf:DIR_or_REPO (a transformers checkpoint) or "
                            f"modalzoo:DIR_or_REPO (a modalzoo export)")
    import_hf(model, OmegaConf.to_container(cfg.model, resolve=True), source.removeprefix("hf:"),
              ignore=list(cfg.get("init_from_ignore") or []), tokenizer=tokenizer, echo=echo, data=data)


def import_hf(model: nn.Module, spec: dict, source: str, ignore: Sequence[str] = (), stream: str | None = None,
              tokenizer=None, echo: Callable[[str], None] = print, data=None) -> None:
    """Load a transformers checkpoint (any registered `Architecture`: `modalzoo export --help` lists them) into a
    zoo model, strictly."""
    import transformers
    path = resolve(source)
    config_file = path / "config.json"
    if not config_file.exists():
        raise ModalzooError(f"{path} has no config.json: not a transformers checkpoint")
    hf_config = json.loads(config_file.read_text())
    model_type = hf_config.get("model_type")
    arch = architecture.by_model_type(model_type, (hf_config.get("architectures") or [None])[0], spec)
    if arch is None:
        have = ", ".join(a.model_type for a in architecture.architectures().values())
        raise ModalzooError(f"init_from: model_type {model_type!r} in {config_file} has no zoo mapping "
                            f"(have {have})")
    if arch.whole_model:
        found = architecture.find(spec)
        if found is not arch:
            kind = f"a '{found.name}' model" if found else "no model transformers has"
            raise ModalzooError(f"init_from: {path} is a {arch.model_class} checkpoint but the recipe's model is "
                                f"{kind}")
    _check_tokenizer(path, tokenizer)
    try:
        hf, info = getattr(transformers, arch.model_class).from_pretrained(
            path, use_safetensors=True, output_loading_info=True, **arch.load_args)
    except OSError as err:
        raise ModalzooError(f"init_from: cannot load {path} as {arch.model_class} from safetensors ({err}); "
                            f"modalzoo never loads pickled .bin weights") from None
    unexpected = [k for k in info.get("unexpected_keys", []) if not k.startswith(tuple(ignore))]
    problems = {"missing from the checkpoint": info.get("missing_keys", []),
                "in the checkpoint but unmapped (drop deliberately with init_from_ignore=[prefix,...])": unexpected,
                "of another shape": [str(m) for m in info.get("mismatched_keys", [])]}
    problems = {what: keys for what, keys in problems.items() if keys}
    if problems:
        raise ModalzooError(f"init_from: {path} does not fit {arch.model_class}: "
                            + "; ".join(f"{what}: {listed(keys)}" for what, keys in problems.items()))
    if data is not None:
        _check_config(arch, spec, stream, data, hf.config, path)
    zoo_state = arch.to_zoo(hf.state_dict(), spec, stream)
    _load_mapped(model, zoo_state, arch, hf.config)
    echo(f"init_from: loaded {len(zoo_state)} tensors from {path} ({arch.model_class})")


# Config keys a recipe may set apart from its checkpoint on purpose (regularisation, special-token ids: the
# tokenizer is checked on its own) or that the tensor shapes already decide.
FREE_KEYS = ("dropout", "_prob", "token_id", "init", "tie_word_embeddings", "vocab_size", "size", "layers", "heads",
             "intermediate", "positions", "max_position_embeddings")


def _check_config(arch, spec: dict, stream, data, hf_config, path: Path) -> None:
    """Refuse a checkpoint whose config gives the same tensors another meaning than the recipe does (a RoPE
    base, a norm epsilon, an activation): names and shapes alone would load it silently. Where the recipe has
    no such config (transformers cannot express it), nothing is compared."""
    try:
        want = arch.hf_config(spec, stream, data)
    except ModalzooError:
        return
    pairs = []                        # (name, recipe's value, checkpoint's), one level into dicts (rope_parameters)
    for key, value in want.items():
        have = getattr(hf_config, key, None)
        if isinstance(value, dict):
            pairs += [(f"{key}.{k}", v, have.get(k) if isinstance(have, dict) else None) for k, v in value.items()]
        else:
            pairs.append((key, value, have))
    differ = []
    for key, value, have in pairs:
        if any(free in key for free in FREE_KEYS) or not isinstance(value, (bool, int, float, str)):
            continue
        if have is None or have == value or (isinstance(value, float) and isinstance(have, (int, float))
                                             and abs(have - value) <= 1e-9 * max(abs(value), 1e-30)):
            continue
        differ.append(f"{key}: checkpoint {have!r}, recipe {value!r}")
    if differ:
        raise ModalzooError(f"init_from: {path}'s config differs from the recipe's where the weights mean something "
                            f"else: {'; '.join(differ)}; set the recipe's options to the checkpoint's")


def _load_mapped(model: nn.Module, zoo_state: dict[str, torch.Tensor], arch, hf_config) -> None:
    own = model.state_dict()
    buffers = dict(model.named_buffers())
    wrong_shape = [f"{k}: checkpoint {list(v.shape)} vs recipe {list(own[k].shape)}"
                   for k, v in zoo_state.items() if k in own and own[k].shape != v.shape]
    if wrong_shape:
        dims = {k: getattr(hf_config, k) for k in ("hidden_size", "num_hidden_layers", "vocab_size", "image_size",
                                                   "patch_size") if hasattr(hf_config, k)}
        raise ModalzooError(f"init_from: the recipe's model has another shape than the checkpoint ({dims}): "
                            + listed(wrong_shape, 6))
    for key in [k for k in zoo_state if k not in own]:
        fixed = buffers.get(key)       # e.g. the recipe fixes sin-cos positions the checkpoint learned
        if fixed is None or fixed.shape != zoo_state[key].shape or not torch.allclose(fixed, zoo_state[key],
                                                                                       atol=1e-6):
            raise ModalzooError(f"init_from: '{key}' has no place in the recipe's model"
                                + (" (it fixes this tensor to other values: make it learned)" if fixed is not None
                                   else ""))
        del zoo_state[key]
    result = model.load_state_dict(zoo_state, strict=False)
    if arch.whole_model and result.missing_keys:
        raise ModalzooError(f"init_from: the checkpoint leaves zoo tensors unset: {listed(result.missing_keys)}")


def _check_tokenizer(path: Path, tokenizer) -> None:
    """A checkpoint's embeddings are indexed by its own tokenizer's ids: the run must use the same one."""
    file = path / "tokenizer.json"
    if tokenizer is None or not file.exists():
        return
    from tokenizers import Tokenizer
    if Tokenizer.from_file(str(file)).get_vocab() != tokenizer.tokenizer.get_vocab():
        raise ModalzooError(f"init_from: the run's tokenizer is not {file}'s (the embeddings would be read with "
                            f"other ids); set data.tokenizer.path={file}")
