"""Weight and config mapping between the zoo's two-stream CLIP and `transformers.CLIPModel` / open_clip's `CLIP`.

    hf_to_zoo(hf.state_dict())                     # CLIPModel -> zoo PretrainModel names (load strict=True)
    zoo_to_hf(zoo.state_dict())                    # -> CLIPModel names
    CLIPConfig(**hf_config_kwargs(recipe, eos_token_id=49407))
    open_clip_to_zoo(oc.state_dict()) / zoo_to_open_clip(zoo.state_dict())
    open_clip.model.CLIP(**open_clip_config(recipe))

The zoo model: stream ``image`` = patch embedding (class token, learned positions, ``norm: layernorm`` as
CLIP's ``ln_pre``, ``patch_bias: false``) -> pre-norm Transformer whose final norm is ``post_layernorm`` /
``ln_post``; stream ``text`` = token embedding (learned positions) -> causal pre-norm Transformer whose final
norm is ``final_layer_norm`` / ``ln_final``; target ``contrastive`` pooling ``[cls, last]`` with bias-free
projections and ``logit_scale``. Besides renaming and the fused ``qkv``, the class token, position tables
and (open_clip) projection matrices change shape: [D] <-> [1, 1, D], [N, D] <-> [1, N, D], ``x @ P`` <-> a
Linear weight ``P.T``.

Text pooling: the zoo pools the last non-padding token (``last``, from ``attention_mask``); HF pools the
first ``eos_token_id`` of each row (or, for a legacy ``eos_token_id == 2`` config, the largest id), open_clip
the largest id (``argmax``) or the first ``eos_id`` (``pool_type: eos``). They agree when every row ends in
one EOS token, right-padded, with no earlier EOS; so an exporter must guarantee that its tokenizer appends
EOS (and keeps it under truncation) and that the exported config names the tokenizer's EOS id
(`hf_config_kwargs` refuses 2; `open_clip_config` uses ``argmax`` only if EOS is the largest id). The zoo
needs ``attention_mask`` for padded text: without it ``last`` is the last position.

Logit scale: the zoo clamps ``exp(logit_scale)`` at ``max_logit_scale`` in its forward, HF and open_clip
do not (OpenAI/open_clip clamp the parameter in place while training), so they agree while ``logit_scale
<= log(max_logit_scale)``; an exporter should clamp the exported value.

The `Architecture` at the end is what `modalzoo export` / ``init_from=hf:`` use. It matches only a
contrastive target over one `patch` image stream and one `token` text stream: a contrastive model over
other streams (two texts, text and code, audio and text) is not a CLIPModel.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ....errors import ModalzooError
from ....hub.architecture import Architecture, only_target, register, target_kinds
from ....hub.mapping import (
    CLS_TOKEN,
    HIDDEN_ACT,
    LEADING_ONE,
    SCALAR,
    TRANSPOSED,
    Row,
    block_rows,
    check_names,
    count_layers,
    expand,
    from_zoo,
    model_section,
    refuse,
    stack_rows,
    to_zoo,
    transformer_needs,
)
from ....registry import EMBEDDINGS, ENCODERS, TARGETS
from ...text.hub.bert import text_batch
from .vit import image_batch

# One CLIP encoder layer (both towers): zoo block name -> HF layer name, relative to the layer.
HF_LAYER: list[Row] = block_rows("self_attn.{w}_proj", "self_attn.out_proj", "layer_norm1", "mlp.fc1", "mlp.fc2",
                                  "layer_norm2")
# zoo name -> HF name(s): {zi}/{zt} "streams.<image|text>.", {image}/{text} the stream names, {t} the
# target; {i} vision layers, {j} text layers.
HF_TABLE: list[Row] = [
    ("{zi}embedding.proj.weight", "vision_model.embeddings.patch_embedding.weight"),
    ("{zi}embedding.cls", "vision_model.embeddings.class_embedding", CLS_TOKEN),
    ("{zi}embedding.position", "vision_model.embeddings.position_embedding.weight", LEADING_ONE),
    ("{zi}embedding.norm.{p}", "vision_model.pre_layrnorm.{p}"),
    *stack_rows(HF_LAYER, "{zi}encoder.blocks.", "vision_model.encoder.layers.", "i"),
    ("{zi}encoder.norm.{p}", "vision_model.post_layernorm.{p}"),
    ("{zt}embedding.word.weight", "text_model.embeddings.token_embedding.weight"),
    ("{zt}embedding.position.table.weight", "text_model.embeddings.position_embedding.weight"),
    *stack_rows(HF_LAYER, "{zt}encoder.blocks.", "text_model.encoder.layers.", "j"),
    ("{zt}encoder.norm.{p}", "text_model.final_layer_norm.{p}"),
    ("targets.{t}.projections.{image}.weight", "visual_projection.weight"),
    ("targets.{t}.projections.{text}.weight", "text_projection.weight"),
    ("targets.{t}.logit_scale", "logit_scale", SCALAR),
]
# Buffers that older CLIPModel checkpoints carry and that both sides recompute.
HF_IGNORED = {"vision_model.embeddings.position_ids", "text_model.embeddings.position_ids"}

# open_clip's ResidualAttentionBlock: nn.MultiheadAttention keeps q, k, v fused like the zoo.
OPEN_CLIP_LAYER: list[Row] = [
    ("attn.qkv.{p}", "attn.in_proj_{p}"),
    ("attn.proj.{p}", "attn.out_proj.{p}"),
    ("norm1.{p}", "ln_1.{p}"),
    ("mlp.fc1.{p}", "mlp.c_fc.{p}"),
    ("mlp.fc2.{p}", "mlp.c_proj.{p}"),
    ("norm2.{p}", "ln_2.{p}"),
]
OPEN_CLIP_TABLE: list[Row] = [
    ("{zi}embedding.proj.weight", "visual.conv1.weight"),
    ("{zi}embedding.cls", "visual.class_embedding", CLS_TOKEN),
    ("{zi}embedding.position", "visual.positional_embedding", LEADING_ONE),
    ("{zi}embedding.norm.{p}", "visual.ln_pre.{p}"),
    *stack_rows(OPEN_CLIP_LAYER, "{zi}encoder.blocks.", "visual.transformer.resblocks.", "i"),
    ("{zi}encoder.norm.{p}", "visual.ln_post.{p}"),
    ("{zt}embedding.word.weight", "token_embedding.weight"),
    ("{zt}embedding.position.table.weight", "positional_embedding"),
    *stack_rows(OPEN_CLIP_LAYER, "{zt}encoder.blocks.", "transformer.resblocks.", "j"),
    ("{zt}encoder.norm.{p}", "ln_final.{p}"),
    ("targets.{t}.projections.{image}.weight", "visual.proj", TRANSPOSED),
    ("targets.{t}.projections.{text}.weight", "text_projection", TRANSPOSED),
    ("targets.{t}.logit_scale", "logit_scale", SCALAR),
]
LAYER_PREFIXES = {"hf": ("vision_model.encoder.layers.", "text_model.encoder.layers."),
                  "open_clip": ("visual.transformer.resblocks.", "transformer.resblocks.")}


def _pairs(table: list[Row], image: str, text: str, target: str, counts: dict[str, int]) -> list:
    names = {"zi": f"streams.{image}.", "zt": f"streams.{text}.", "image": image, "text": text, "t": target}
    return expand(table, names, counts)


def _source_counts(state, source: str) -> dict[str, int]:
    vision, text = LAYER_PREFIXES[source]
    return {"i": count_layers(state, vision), "j": count_layers(state, text)}


def _zoo_counts(state, image: str, text: str) -> dict[str, int]:
    return {"i": count_layers(state, f"streams.{image}.encoder.blocks."),
            "j": count_layers(state, f"streams.{text}.encoder.blocks.")}


def hf_to_zoo(hf_state: Mapping[str, Tensor], image: str = "image", text: str = "text", target: str = "clip",
              ) -> dict[str, Tensor]:
    """A `CLIPModel` state dict as zoo `PretrainModel` names; a missing or unmapped HF key raises."""
    pairs = _pairs(HF_TABLE, image, text, target, _source_counts(hf_state, "hf"))
    return to_zoo(pairs, hf_state, "HF clip", ignored=HF_IGNORED)


def zoo_to_hf(zoo_state: Mapping[str, Tensor], image: str = "image", text: str = "text", target: str = "clip",
              ) -> dict[str, Tensor]:
    """The inverse of `hf_to_zoo`: zoo names -> `CLIPModel` names."""
    return from_zoo(_pairs(HF_TABLE, image, text, target, _zoo_counts(zoo_state, image, text)), zoo_state)


def open_clip_to_zoo(oc_state: Mapping[str, Tensor], image: str = "image", text: str = "text",
                     target: str = "clip") -> dict[str, Tensor]:
    """An open_clip `CLIP` (ViT tower, as ``open_clip.create_model('ViT-B-32')``) state dict as zoo names."""
    pairs = _pairs(OPEN_CLIP_TABLE, image, text, target, _source_counts(oc_state, "open_clip"))
    return to_zoo(pairs, oc_state, "open_clip")


def zoo_to_open_clip(zoo_state: Mapping[str, Tensor], image: str = "image", text: str = "text",
                     target: str = "clip") -> dict[str, Tensor]:
    """The inverse of `open_clip_to_zoo`."""
    return from_zoo(_pairs(OPEN_CLIP_TABLE, image, text, target, _zoo_counts(zoo_state, image, text)), zoo_state)


def _parts(recipe_cfg, target: str, arch: str) -> dict:
    """Validate what both CLIP layouts fix; return the streams' names and component configs."""
    model = model_section(recipe_cfg)
    streams, targets = model.get("streams") or {}, model.get("targets") or {}
    wt = f"model.targets.{target}"
    if target not in targets:
        raise ModalzooError(f"{arch} export needs '{wt}'")
    check_names(arch, [(wt, targets[target], "contrastive")])
    con = TARGETS.make_config(targets[target], wt)
    kinds = {n: (streams.get(n) or {}).get("embedding", {}).get("name") for n in con.streams}
    if sorted(kinds.values(), key=str) != ["patch", "token"]:
        raise ModalzooError(f"{arch} needs '{wt}.streams' to name one image (patch) and one text (token) stream; "
                            f"got {kinds}")
    image, text = (n for kind in ("patch", "token") for n in con.streams if kinds[n] == kind)
    extra = [f"model.streams.{n}" for n in streams if n not in (image, text)] + \
            [f"model.targets.{n}" for n in targets if n != target] + \
            [f"model.streams.{n}.{slot}" for n in (image, text) for slot in ("target_embedding", "decoder")
             if streams[n].get(slot)]
    if extra:
        raise ModalzooError(f"{arch} has two towers and one contrastive head; it cannot express {', '.join(extra)}")
    wi, wx = f"model.streams.{image}", f"model.streams.{text}"
    check_names(arch, [(f"{wi}.encoder", streams[image].get("encoder"), "transformer"),
                       (f"{wx}.encoder", streams[text].get("encoder"), "transformer")])
    p = {"image": image, "text": text, "con": con,
         "iemb": EMBEDDINGS.make_config(streams[image]["embedding"], f"{wi}.embedding"),
         "ienc": ENCODERS.make_config(streams[image]["encoder"], f"{wi}.encoder"),
         "temb": EMBEDDINGS.make_config(streams[text]["embedding"], f"{wx}.embedding"),
         "tenc": ENCODERS.make_config(streams[text]["encoder"], f"{wx}.encoder")}
    iemb, ienc, temb, tenc = p["iemb"], p["ienc"], p["temb"], p["tenc"]
    pooling = dict(zip(con.streams, con.pooling))
    refuse(arch, {
        **transformer_needs(f"{wi}.encoder", ienc), **transformer_needs(f"{wx}.encoder", tenc, mask="causal"),
        f"{wi}.encoder.dim": (ienc.dim, iemb.dim), f"{wx}.encoder.dim": (tenc.dim, temb.dim),
        f"{wi}.encoder.dropout": (ienc.dropout, 0.0), f"{wx}.encoder.dropout": (tenc.dropout, 0.0),
        f"{wi}.embedding.positions": (iemb.positions, "learned"), f"{wi}.embedding.cls_token": (iemb.cls_token, True),
        f"{wi}.embedding.mask_ratio": (iemb.mask_ratio, 0.0), f"{wi}.embedding.norm": (iemb.norm, "layernorm"),
        f"{wi}.embedding.norm_eps": (iemb.norm_eps, ienc.norm_eps),
        f"{wi}.embedding.patch_bias": (iemb.patch_bias, False), f"{wi}.embedding.dropout": (iemb.dropout, 0.0),
        f"{wx}.embedding.positions": (temb.positions, "learned"),
        f"{wx}.embedding.position_offset": (temb.position_offset, 0),
        f"{wx}.embedding.type_vocab_size": (temb.type_vocab_size, 0), f"{wx}.embedding.norm": (temb.norm, "none"),
        f"{wx}.embedding.dropout": (temb.dropout, 0.0),
        f"{wt}.pooling[{image}]": (pooling[image], "cls"), f"{wt}.pooling[{text}]": (pooling[text], "last"),
    })
    return p


def hf_config_kwargs(recipe_cfg, eos_token_id: int, target: str = "clip", bos_token_id: int | None = None,
                     pad_token_id: int | None = None) -> dict:
    """`CLIPConfig` kwargs (with ``text_config``/``vision_config`` dicts) for a CLIP recipe or ``model`` section.

    ``eos_token_id`` is the tokenizer's end-of-text id, the token HF pools the text at. Raises
    ModalzooError naming every option `CLIPModel` cannot express.
    """
    p = _parts(recipe_cfg, target, "clip")
    iemb, ienc, temb, tenc, con = p["iemb"], p["ienc"], p["temb"], p["tenc"], p["con"]
    if eos_token_id == 2 or not 0 <= eos_token_id < temb.vocab_size:
        raise ModalzooError(f"clip export needs the tokenizer's EOS id in [0, {temb.vocab_size}), not 2 (HF then "
                            f"pools the largest id instead); got eos_token_id={eos_token_id}")
    text_config = dict(vocab_size=temb.vocab_size, hidden_size=tenc.dim, intermediate_size=tenc.hidden_ffn,
                       projection_dim=con.embed_dim, num_hidden_layers=tenc.layers,
                       num_attention_heads=tenc.heads, max_position_embeddings=temb.max_positions,
                       hidden_act=HIDDEN_ACT[tenc.activation], layer_norm_eps=tenc.norm_eps,
                       attention_dropout=tenc.attn_dropout, eos_token_id=eos_token_id,
                       bos_token_id=bos_token_id, pad_token_id=pad_token_id)
    vision_config = dict(hidden_size=ienc.dim, intermediate_size=ienc.hidden_ffn, projection_dim=con.embed_dim,
                         num_hidden_layers=ienc.layers, num_attention_heads=ienc.heads,
                         num_channels=iemb.channels, image_size=iemb.image_size, patch_size=iemb.patch_size,
                         hidden_act=HIDDEN_ACT[ienc.activation], layer_norm_eps=ienc.norm_eps,
                         attention_dropout=ienc.attn_dropout)
    return dict(text_config=text_config, vision_config=vision_config, projection_dim=con.embed_dim,
                logit_scale_init_value=math.log(1 / con.init_temperature))


OPEN_CLIP_ACT = {"gelu": False, "quick_gelu": True}   # activation -> open_clip's quick_gelu flag


def open_clip_config(recipe_cfg, target: str = "clip", eos_token_id: int | None = None) -> dict:
    """Keyword arguments of ``open_clip.model.CLIP`` (``embed_dim``, ``vision_cfg``, ``text_cfg``,
    ``quick_gelu``) for a CLIP recipe or ``model`` section.

    ``eos_token_id=None`` keeps open_clip's ``argmax`` text pooling (EOS must be the largest id, as in CLIP's
    BPE); an id selects ``pool_type: eos``. Raises ModalzooError naming every option open_clip cannot express.
    """
    p = _parts(recipe_cfg, target, "open_clip")
    iemb, ienc, temb, tenc, con = p["iemb"], p["ienc"], p["temb"], p["tenc"], p["con"]
    wi, wx = f"model.streams.{p['image']}.encoder", f"model.streams.{p['text']}.encoder"
    need = {f"{wi}.attn_dropout": (ienc.attn_dropout, 0.0), f"{wx}.attn_dropout": (tenc.attn_dropout, 0.0),
            f"{wx}.activation": (tenc.activation, ienc.activation)}   # one quick_gelu flag for both towers
    if ienc.activation not in OPEN_CLIP_ACT:
        need[f"{wi}.activation"] = (ienc.activation, "|".join(OPEN_CLIP_ACT))
    for where, enc in ((wi, ienc), (wx, tenc)):   # open_clip's MLP width is int(width * mlp_ratio)
        need[f"{where}.ffn_dim"] = (enc.hidden_ffn, int(enc.dim * (enc.hidden_ffn / enc.dim)))
    refuse("open_clip", need)

    def norm(enc) -> dict:
        return {} if enc.norm_eps == 1e-5 else {"norm_kwargs": {"eps": enc.norm_eps}}

    vision_cfg = dict(image_size=iemb.image_size, patch_size=iemb.patch_size, width=ienc.dim, layers=ienc.layers,
                      head_width=ienc.dim // ienc.heads, mlp_ratio=ienc.hidden_ffn / ienc.dim, **norm(ienc))
    text_cfg = dict(context_length=temb.max_positions, vocab_size=temb.vocab_size, width=tenc.dim,
                    heads=tenc.heads, layers=tenc.layers, mlp_ratio=tenc.hidden_ffn / tenc.dim, **norm(tenc))
    if eos_token_id is not None:
        text_cfg.update(pool_type="eos", eos_id=eos_token_id)
    return dict(embed_dim=con.embed_dim, vision_cfg=vision_cfg, text_cfg=text_cfg,
                quick_gelu=OPEN_CLIP_ACT[ienc.activation])


# ---------------------------------------------------------------------------------------------- Architecture

def _matches(model: dict) -> bool:
    if target_kinds(model) != ["contrastive"]:
        return False
    name, target = only_target(model, "contrastive")
    streams = model.get("streams") or {}
    kinds = sorted(str(((streams.get(n) or {}).get("embedding") or {}).get("name"))
                   for n in TARGETS.make_config(target, f"model.targets.{name}").streams)
    return kinds == ["patch", "token"]


def _names(model: dict) -> tuple[str, str, str]:
    name, _ = only_target(model, "contrastive")
    p = _parts(model, name, "clip")
    return p["image"], p["text"], name


def _config(model: dict, _stream, prep) -> dict:
    _, _, target = _names(model)
    tok = prep.tokenizer
    if tok is None:
        raise ModalzooError("clip export needs the run's tokenizer.json")
    if tok.eos_id == 2:
        raise ModalzooError("CLIPModel reads eos_token_id 2 as a legacy config and pools at the largest id; this "
                            "run's tokenizer has its end of text at id 2: train CLIP with "
                            "data.tokenizer.specials_at_end=true (the CLIP recipes do)")
    return hf_config_kwargs(model, eos_token_id=tok.eos_id, target=target, bos_token_id=tok.bos_id,
                            pad_token_id=tok.pad_id)


def _to_hf(model: nn.Module, spec: dict, _stream, _kwargs) -> dict[str, Tensor]:
    image, text, target = _names(spec)
    state = dict(model.state_dict())
    # The zoo clamps exp(logit_scale) at max_logit_scale inside its forward; CLIPModel does not.
    cap = math.log(model.targets[target].cfg.max_logit_scale)
    key = f"targets.{target}.logit_scale"
    state[key] = state[key].clamp(max=cap)
    return zoo_to_hf(state, image=image, text=text, target=target)


def _to_zoo(hf_state, spec: dict, _stream) -> dict[str, Tensor]:
    image, text, target = _names(spec)
    return hf_to_zoo(hf_state, image=image, text=text, target=target)


def _compare(zoo, hf, spec: dict, _stream, prep) -> dict[str, float]:
    image, text, target = _names(spec)
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


USAGE = '''import torch
from PIL import Image
from transformers import AutoProcessor, CLIPModel

processor = AutoProcessor.from_pretrained("{model_id}")
model = CLIPModel.from_pretrained("{model_id}").eval()
image = Image.new("RGB", (64, 48), (200, 30, 30))      # your image here
labels = {labels}
inputs = processor(text=[{template!r}.format(c) for c in labels], images=image, return_tensors="pt",
                   padding="max_length", truncation=True)
with torch.no_grad():
    probs = model(**inputs).logits_per_image.softmax(-1)[0]
print({{label: round(p, 3) for label, p in zip(labels, probs.tolist())}})'''

register(Architecture(
    name="clip", model_type="clip", model_class="CLIPModel", auto_class="AutoModel", config_class="CLIPConfig",
    matches=_matches, needs="one contrastive target over one `patch` (image) and one `token` (text) stream",
    hf_config=_config, to_hf=_to_hf, to_zoo=_to_zoo, compare=_compare,
    pipeline_tag="zero-shot-image-classification", tags=("clip", "zero-shot-image-classification", "vision", "text"),
    preprocessing={"text": "clip", "image": "clip"}, usage=USAGE))
