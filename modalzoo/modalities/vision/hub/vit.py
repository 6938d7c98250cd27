"""Weight and config mapping between a zoo image stream (patch embedding + Transformer) and `ViTModel`.

    hf_to_zoo(vit.state_dict())                   # -> load into the zoo model (strict=True)
    zoo_to_hf(zoo.state_dict())                   # -> load into ViTModel(config, add_pooling_layer=False)
    ViTConfig(**hf_config_kwargs(stream_spec))    # the HF config of the same shape; refuses what ViT lacks

Names are those of the HF modules in memory (transformers >= 5: ``layers.<i>.attention.q_proj``); checkpoints
in the older layout (``encoder.layer.<i>.attention.attention.query``) are renamed by transformers' own
loader, so an exporter loads the mapped tensors into the HF model and lets ``save_pretrained`` write them.
The zoo side is ``streams.<stream>.*`` of a `PretrainModel`, or a bare `modalzoo.model.Stream` with
``stream=None``. The only non-renaming step is the zoo's fused ``qkv`` (HF's q, k, v concatenated).
ViTModel's optional pooler (``add_pooling_layer=True``) has no zoo counterpart and is refused as unmapped.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from ....errors import ModalzooError
from ....hub.mapping import (
    HIDDEN_ACT,
    Row,
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
from ....registry import EMBEDDINGS, ENCODERS

# One ViT (and ViT-MAE) layer: zoo block name -> HF layer name, both after "<stack>.<i>.".
LAYER: list[Row] = [
    ("attn.qkv.{p}", [f"attention.{w}_proj.{{p}}" for w in ("q", "k", "v")]),
    ("attn.proj.{p}", "attention.o_proj.{p}"),
    ("norm1.{p}", "layernorm_before.{p}"),
    ("mlp.fc1.{p}", "mlp.fc1.{p}"),
    ("mlp.fc2.{p}", "mlp.fc2.{p}"),
    ("norm2.{p}", "layernorm_after.{p}"),
]


# zoo name -> HF name(s): {z} the zoo prefix ("streams.image." or ""), {b} the HF prefix ("" in ViTModel).
TABLE: list[Row] = [
    ("{z}embedding.proj.{p}", "{b}embeddings.patch_embeddings.projection.{p}"),
    ("{z}embedding.cls", "{b}embeddings.cls_token"),
    ("{z}embedding.position", "{b}embeddings.position_embeddings"),
    *stack_rows(LAYER, "{z}encoder.blocks.", "{b}layers."),
    ("{z}encoder.norm.{p}", "{b}layernorm.{p}"),
]


def zoo_prefix(stream: str | None) -> str:
    return "" if stream is None else f"streams.{stream}."


def hf_to_zoo(hf_state: Mapping[str, Tensor], stream: str | None = "image") -> dict[str, Tensor]:
    """A `ViTModel` (no pooler) state dict as zoo names; a missing or unmapped HF key raises."""
    pairs = expand(TABLE, {"z": zoo_prefix(stream), "b": ""}, {"i": count_layers(hf_state, "layers.")})
    return to_zoo(pairs, hf_state, "HF vit")


def zoo_to_hf(zoo_state: Mapping[str, Tensor], stream: str | None = "image") -> dict[str, Tensor]:
    """The inverse of `hf_to_zoo`: zoo names -> `ViTModel` names; a missing or unmapped zoo key raises."""
    z = zoo_prefix(stream)
    pairs = expand(TABLE, {"z": z, "b": ""}, {"i": count_layers(zoo_state, f"{z}encoder.blocks.")})
    return from_zoo(pairs, zoo_state)


def stream_spec(recipe_cfg, stream: str) -> dict:
    """The stream's spec from a recipe, its ``model`` section, or a stream spec itself."""
    spec = model_section(recipe_cfg)
    if "embedding" in spec:
        return spec
    streams = spec.get("streams") or {}
    if stream not in streams:
        raise ModalzooError(f"vit export needs 'model.streams.{stream}'")
    return streams[stream]


def hf_config_kwargs(recipe_cfg, stream: str = "image") -> dict:
    """`ViTConfig` kwargs for an image stream (a recipe, its ``model`` section, or the stream's spec).

    Only the stream is exported; it must be a plain ViT: learned positions, a class token, no embedding
    norm, no masking, a pre-norm biased Transformer with a final norm. Raises ModalzooError naming every
    option ViT cannot express.
    """
    spec, where = stream_spec(recipe_cfg, stream), f"model.streams.{stream}"
    extra = [f"{where}.{slot}" for slot in ("target_embedding", "decoder") if spec.get(slot)]
    if extra:
        raise ModalzooError(f"ViTModel is an encoder; it cannot express {', '.join(extra)}")
    check_names("vit", [(f"{where}.embedding", spec.get("embedding"), "patch"),
                        (f"{where}.encoder", spec.get("encoder"), "transformer")])
    emb = EMBEDDINGS.make_config(spec["embedding"], f"{where}.embedding")
    enc = ENCODERS.make_config(spec["encoder"], f"{where}.encoder")
    e = f"{where}.embedding"
    refuse("vit", {
        **transformer_needs(f"{where}.encoder", enc),
        f"{where}.encoder.dim": (enc.dim, emb.dim),
        f"{e}.positions": (emb.positions, "learned"), f"{e}.cls_token": (emb.cls_token, True),
        f"{e}.mask_ratio": (emb.mask_ratio, 0.0), f"{e}.norm": (emb.norm, "none"),
        f"{e}.patch_bias": (emb.patch_bias, True), f"{e}.dropout": (emb.dropout, enc.dropout),
    })
    return dict(hidden_size=enc.dim, num_hidden_layers=enc.layers, num_attention_heads=enc.heads,
                intermediate_size=enc.hidden_ffn, hidden_act=HIDDEN_ACT[enc.activation],
                hidden_dropout_prob=enc.dropout, attention_probs_dropout_prob=enc.attn_dropout,
                layer_norm_eps=enc.norm_eps, image_size=emb.image_size, patch_size=emb.patch_size,
                num_channels=emb.channels, qkv_bias=True)
