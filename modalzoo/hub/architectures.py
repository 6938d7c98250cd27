"""The transformers architectures a zoo model exports to and imports from: one `Architecture` per mapping.

Each entry ties a weight mapping (`bert`, `vit`, `vit_mae`, `clip`) to the transformers classes it fills,
the config it writes, the preprocessing files that go with it, and a check that runs both models on
the same inputs. `export.py` and `pretrained.py` (import) only talk to this table, so a new mapping is
one more entry here.

    arch = detect(model_spec)                       # "bert" | "roberta" | "vit_mae" | "clip" (or --arch vit)
    ARCHITECTURES[arch].hf_config(model_spec, Preprocessing(tokenizer=..., ...))
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..errors import ModalzooError, closest
from ..modalities.text.hub import bert
from ..modalities.vision.hub import clip, vit, vit_mae
from ..registry import EMBEDDINGS, TARGETS
from .mapping import model_section


@dataclass
class Preprocessing:
    """What the run's data path does to raw inputs, as the exporter needs it (from the run's data config)."""
    tokenizer: object | None = None           # modalities.tokenizers.TextTokenizer
    tokenizer_name: str | None = None         # registered name: wordpiece | bytelevel_bpe
    seq_len: int | None = None
    image_size: int | None = None
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Architecture:
    name: str
    model_class: str                          # transformers class written and loaded back
    auto_class: str                           # the Auto class that loads it
    config_class: str
    pipeline_tag: str
    text_style: str | None                    # tokenizer files: bert | roberta | clip; None = no text
    images: bool                              # write an image processor config
    # (model spec, stream or None, preprocessing) -> config kwargs; raises naming what blocks the export
    hf_config: Callable[[dict, str | None, Preprocessing], dict]
    # (zoo model, model spec, stream, config kwargs) -> HF state dict
    to_hf: Callable[[nn.Module, dict, str | None, dict], dict[str, Tensor]]
    # (HF state dict, model spec, stream) -> zoo state dict (strict: unmapped HF tensors raise)
    to_zoo: Callable[[Mapping[str, Tensor], dict, str | None], dict[str, Tensor]]
    # (zoo model, HF model, model spec, stream, preprocessing) -> {output: max |difference|}
    compare: Callable[..., dict[str, float]]
    whole_model: bool = True                  # False: maps one stream; the rest of the zoo model is not exported


def _only(kind: str, model: dict) -> tuple[str, dict]:
    """The one target of a registered kind (its name and spec)."""
    found = [(n, t) for n, t in (model.get("targets") or {}).items() if t.get("name") == kind]
    if len(found) != 1:
        raise ModalzooError(f"expected one '{kind}' target, found {len(found)}")
    return found[0]


def detect(model_spec) -> str:
    """The transformers architecture a model's targets call for (refining checks happen in `hf_config`)."""
    model = model_section(model_spec)
    kinds = sorted(t.get("name") for t in (model.get("targets") or {}).values())
    by_target = {"mlm": None, "mae": "vit_mae", "contrastive": "clip"}
    if len(kinds) == 1 and kinds[0] in by_target:
        if kinds[0] != "mlm":
            return by_target[kinds[0]]
        _, target = _only("mlm", model)
        emb = EMBEDDINGS.make_config(model["streams"][target.get("stream", "text")]["embedding"], "embedding")
        return "roberta" if emb.position_offset == 2 else "bert"
    raise ModalzooError(f"no transformers architecture has the targets {kinds} (one of {sorted(by_target)} is "
                        f"needed; `--arch vit --stream NAME` exports an image encoder alone); "
                        f"use --format modalzoo, which always works")


# ---------------------------------------------------------------------------------------------- BERT/RoBERTa

def _mlm_names(model: dict) -> tuple[str, str]:
    name, target = _only("mlm", model)
    return target.get("stream", "text"), name


def _mlm_config(arch: str):
    def config(model: dict, _stream, prep: Preprocessing) -> dict:
        stream, target = _mlm_names(model)
        kwargs = bert.hf_config_kwargs(model, stream=stream, target=target, arch=arch)
        tok = prep.tokenizer
        if tok is None:
            raise ModalzooError(f"{arch} export needs the run's tokenizer.json")
        want = "wordpiece" if arch == "bert" else "bytelevel_bpe"
        if prep.tokenizer_name != want:
            raise ModalzooError(f"{arch} export needs a {want} tokenizer; data.tokenizer.name is "
                                f"{prep.tokenizer_name!r}")
        if arch == "roberta" and tok.pad_id != 1:     # RoBERTa's positions count from padding_idx + 1 = 2
            raise ModalzooError(f"roberta needs the pad token at id 1, the tokenizer has it at {tok.pad_id} "
                                f"(data.tokenizer.specials_at_end must be false)")
        return {**kwargs, "pad_token_id": tok.pad_id, "bos_token_id": tok.bos_id, "eos_token_id": tok.eos_id}
    return config


def _mlm_to_hf(arch: str):
    def to_hf(model: nn.Module, spec: dict, _stream, _kwargs) -> dict[str, Tensor]:
        stream, target = _mlm_names(spec)
        return bert.zoo_to_hf(model.state_dict(), stream=stream, target=target, arch=arch)
    return to_hf


def _mlm_to_zoo(arch: str):
    def to_zoo(hf_state, spec: dict, _stream) -> dict[str, Tensor]:
        stream, target = _mlm_names(spec)
        tie = TARGETS.make_config(_only("mlm", spec)[1], "target").tie_weights
        return bert.hf_to_zoo(hf_state, stream=stream, target=target, arch=arch, tie_weights=tie)
    return to_zoo


def text_batch(vocab: int, tok, lengths=(12, 7)) -> dict[str, Tensor]:
    """Two rows of random non-special ids framed by bos/eos, the second right-padded."""
    g = torch.Generator().manual_seed(0)
    ordinary = torch.tensor([i for i in range(min(vocab, tok.vocab_size)) if i not in set(tok.special_ids)])
    B, L = len(lengths), max(lengths)
    ids = ordinary[torch.randint(len(ordinary), (B, L), generator=g)]
    mask = torch.arange(L)[None] < torch.tensor(lengths)[:, None]
    ids[:, 0] = tok.bos_id
    ids[torch.arange(B), torch.tensor(lengths) - 1] = tok.eos_id
    ids[~mask] = tok.pad_id
    return {"input_ids": ids, "attention_mask": mask.long()}


def _mlm_compare(zoo, hf, spec: dict, _stream, prep: Preprocessing) -> dict[str, float]:
    stream, target = _mlm_names(spec)
    batch = text_batch(hf.config.vocab_size, prep.tokenizer)
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        out = zoo.streams[stream](batch)
        zoo_logits = zoo.targets[target].logits(out.hidden.x[real], out)
        hf_logits = hf(**batch).logits[real]
    return {"logits": (zoo_logits - hf_logits).abs().max().item()}


# ---------------------------------------------------------------------------------------------- ViT (one stream)

def _vit_stream(model: dict, stream: str | None) -> tuple[str, dict]:
    streams = model.get("streams") or {}
    images = [n for n, s in streams.items() if (s.get("embedding") or {}).get("name") == "patch"]
    stream = stream or (images[0] if len(images) == 1 else None)
    if stream not in streams:
        raise ModalzooError(f"vit export needs --stream naming an image stream; image streams: {images}")
    return stream, streams[stream]


def _vit_config(model: dict, stream: str | None, _prep) -> dict:
    """ViTModel of the stream's encoder. Masking is a training-time input, not an architecture choice, and a
    fixed sin-cos table is exported as the values of ViT's learned table, so MAE encoders export too."""
    stream, spec = _vit_stream(model, stream)
    emb = dict(spec["embedding"], mask_ratio=0.0)
    if emb.get("positions") == "sincos2d":
        emb["positions"] = "learned"
    return vit.hf_config_kwargs({"embedding": emb, "encoder": spec.get("encoder")}, stream)


def _vit_to_hf(model: nn.Module, spec: dict, stream: str | None, _kwargs) -> dict[str, Tensor]:
    stream, _ = _vit_stream(spec, stream)
    module = model.streams[stream]
    state = {k: v for k, v in module.state_dict().items() if k.startswith(("embedding.", "encoder."))}
    state["embedding.position"] = module.embedding.position.detach()   # a buffer when it is the fixed table
    return vit.zoo_to_hf(state, stream=None)


def _vit_to_zoo(hf_state, spec: dict, stream: str | None) -> dict[str, Tensor]:
    stream, _ = _vit_stream(spec, stream)
    return vit.hf_to_zoo(hf_state, stream=stream)


def image_batch(size: int, channels: int = 3, count: int = 2) -> Tensor:
    return torch.randn(count, channels, size, size, generator=torch.Generator().manual_seed(0))


def _vit_compare(zoo, hf, spec: dict, stream: str | None, _prep) -> dict[str, float]:
    stream, _ = _vit_stream(spec, stream)
    module = zoo.streams[stream]
    pixels = image_batch(hf.config.image_size, hf.config.num_channels)
    masking, module.embedding.apply_mask = module.embedding.apply_mask, False
    try:
        with torch.no_grad():
            zoo_out = module.encoder(module.embedding({module.embedding.cfg.key: pixels})).x
            hf_out = hf(pixel_values=pixels).last_hidden_state
    finally:
        module.embedding.apply_mask = masking
    return {"last_hidden_state": (zoo_out - hf_out).abs().max().item()}


# ---------------------------------------------------------------------------------------------- ViT-MAE

def _mae_names(model: dict) -> tuple[str, str]:
    name, target = _only("mae", model)
    return target.get("stream", "image"), name


def _mae_config(model: dict, _stream, _prep) -> dict:
    stream, target = _mae_names(model)
    return vit_mae.hf_config_kwargs(model, stream=stream, target=target)


def _mae_to_hf(model: nn.Module, spec: dict, _stream, kwargs: dict) -> dict[str, Tensor]:
    stream, target = _mae_names(spec)
    return vit_mae.zoo_to_hf(model.state_dict(), kwargs["image_size"], stream=stream, target=target)


def _mae_to_zoo(hf_state, spec: dict, _stream) -> dict[str, Tensor]:
    stream, target = _mae_names(spec)
    return vit_mae.hf_to_zoo(hf_state, stream=stream, target=target)


def _mae_compare(zoo, hf, spec: dict, _stream, _prep) -> dict[str, float]:
    stream, target = _mae_names(spec)
    cfg = hf.config
    pixels = image_batch(cfg.image_size, cfg.num_channels)
    noise = torch.rand(2, (cfg.image_size // cfg.patch_size) ** 2, generator=torch.Generator().manual_seed(1))
    batch = {zoo.streams[stream].embedding.cfg.key: pixels, "mae_noise": noise}
    with torch.no_grad():
        out = zoo.streams[stream](batch)
        zoo_logits = zoo.targets[target].reconstruct(out.decoded)
        zoo_loss = zoo.targets[target]({stream: out}, batch).loss
        hf_out = hf(pixel_values=pixels, noise=noise)
    return {"logits": (zoo_logits - hf_out.logits).abs().max().item(), "loss": abs(float(zoo_loss - hf_out.loss))}


# ---------------------------------------------------------------------------------------------- CLIP

def _clip_parts(model: dict) -> tuple[str, str, str]:
    name, _ = _only("contrastive", model)
    p = clip._parts(model, name, "clip")
    return p["image"], p["text"], name


def _clip_config(model: dict, _stream, prep: Preprocessing) -> dict:
    _, _, target = _clip_parts(model)
    tok = prep.tokenizer
    if tok is None:
        raise ModalzooError("clip export needs the run's tokenizer.json")
    if tok.eos_id == 2:
        raise ModalzooError("CLIPModel reads eos_token_id 2 as a legacy config and pools at the largest id; this "
                            "run's tokenizer has its end of text at id 2: train CLIP with "
                            "data.tokenizer.specials_at_end=true (the CLIP recipes do)")
    return clip.hf_config_kwargs(model, eos_token_id=tok.eos_id, target=target, bos_token_id=tok.bos_id,
                                 pad_token_id=tok.pad_id)


def _clip_to_hf(model: nn.Module, spec: dict, _stream, _kwargs) -> dict[str, Tensor]:
    image, text, target = _clip_parts(spec)
    state = dict(model.state_dict())
    # The zoo clamps exp(logit_scale) at max_logit_scale inside its forward; CLIPModel does not.
    cap = math.log(model.targets[target].cfg.max_logit_scale)
    key = f"targets.{target}.logit_scale"
    state[key] = state[key].clamp(max=cap)
    return clip.zoo_to_hf(state, image=image, text=text, target=target)


def _clip_to_zoo(hf_state, spec: dict, _stream) -> dict[str, Tensor]:
    image, text, target = _clip_parts(spec)
    return clip.hf_to_zoo(hf_state, image=image, text=text, target=target)


def _clip_compare(zoo, hf, spec: dict, _stream, prep: Preprocessing) -> dict[str, float]:
    image, text, target = _clip_parts(spec)
    vision = hf.config.vision_config
    batch = text_batch(hf.config.text_config.vocab_size, prep.tokenizer,
                       lengths=(hf.config.text_config.max_position_embeddings, 5))
    pixels = image_batch(vision.image_size, vision.num_channels)
    con = zoo.targets[target]
    prefix = zoo.streams[text].embedding.cfg.prefix
    with torch.no_grad():
        zoo_text = con.features(text, zoo.streams[text]({prefix + k: v for k, v in batch.items()}).hidden, "last")
        zoo_image = con.features(image, zoo.streams[image]({zoo.streams[image].embedding.cfg.key: pixels}).hidden,
                                 "cls")
        zoo_logits = con.logit_scale.exp().clamp(max=con.cfg.max_logit_scale) * zoo_image @ zoo_text.T
        out = hf(pixel_values=pixels, **batch)
    return {"image_embeds": (zoo_image - out.image_embeds).abs().max().item(),
            "text_embeds": (zoo_text - out.text_embeds).abs().max().item(),
            "logits_per_image": (zoo_logits - out.logits_per_image).abs().max().item()}


ARCHITECTURES: dict[str, Architecture] = {
    "bert": Architecture("bert", "BertForMaskedLM", "AutoModelForMaskedLM", "BertConfig", "fill-mask", "bert", False,
                         _mlm_config("bert"), _mlm_to_hf("bert"), _mlm_to_zoo("bert"), _mlm_compare),
    "roberta": Architecture("roberta", "RobertaForMaskedLM", "AutoModelForMaskedLM", "RobertaConfig", "fill-mask",
                            "roberta", False, _mlm_config("roberta"), _mlm_to_hf("roberta"), _mlm_to_zoo("roberta"),
                            _mlm_compare),
    "vit": Architecture("vit", "ViTModel", "AutoModel", "ViTConfig", "image-feature-extraction", None, True,
                        _vit_config, _vit_to_hf, _vit_to_zoo, _vit_compare, whole_model=False),
    "vit_mae": Architecture("vit_mae", "ViTMAEForPreTraining", "AutoModelForPreTraining", "ViTMAEConfig",
                            "image-feature-extraction", None, True, _mae_config, _mae_to_hf, _mae_to_zoo,
                            _mae_compare),
    "clip": Architecture("clip", "CLIPModel", "AutoModel", "CLIPConfig", "zero-shot-image-classification", "clip",
                         True, _clip_config, _clip_to_hf, _clip_to_zoo, _clip_compare),
}


def get(name: str) -> Architecture:
    if name not in ARCHITECTURES:
        hint = closest(name, ARCHITECTURES)
        raise ModalzooError(f"unknown architecture '{name}'" + (f"; did you mean '{hint}'?" if hint else "")
                            + f" (have {', '.join(ARCHITECTURES)})")
    return ARCHITECTURES[name]


def hf_model(arch: Architecture, kwargs: dict) -> nn.Module:
    """A fresh transformers model of ``arch`` from config kwargs (SDPA attention, as the zoo uses)."""
    import transformers
    config = getattr(transformers, arch.config_class)(**kwargs)
    extra = {"add_pooling_layer": False} if arch.name == "vit" else {}
    return getattr(transformers, arch.model_class)(config, **extra)
