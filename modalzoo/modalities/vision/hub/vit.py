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
The `Architecture` at the end exports one image stream's encoder (``modalzoo export --arch vit --stream S``).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ....errors import ModalzooError
from ....hub.architecture import Architecture, register
from ....hub.mapping import (
    HIDDEN_ACT,
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
from ....registry import EMBEDDINGS, ENCODERS

# One ViT (and ViT-MAE) layer: zoo block name -> HF layer name, both after "<stack>.<i>.".
LAYER: list[Row] = block_rows("attention.{w}_proj", "attention.o_proj", "layernorm_before", "mlp.fc1", "mlp.fc2",
                               "layernorm_after")


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


# ---------------------------------------------------------------------------------------------- Architecture

def image_batch(size: int, channels: int = 3, count: int = 2) -> Tensor:
    return torch.randn(count, channels, size, size, generator=torch.Generator().manual_seed(0))


def _image_stream(model: dict, stream: str | None) -> tuple[str, dict]:
    streams = model.get("streams") or {}
    images = [n for n, s in streams.items() if (s.get("embedding") or {}).get("name") == "patch"]
    stream = stream or (images[0] if len(images) == 1 else None)
    if stream not in streams:
        raise ModalzooError(f"vit export needs --stream naming an image stream; image streams: {images}")
    return stream, streams[stream]


def _config(model: dict, stream: str | None, _prep) -> dict:
    """ViTModel of the stream's encoder. Masking is a training-time input, not an architecture choice, and a
    fixed sin-cos table is exported as the values of ViT's learned table, so MAE encoders export too."""
    stream, spec = _image_stream(model, stream)
    emb = dict(spec["embedding"], mask_ratio=0.0)
    if emb.get("positions") == "sincos2d":
        emb["positions"] = "learned"
    return hf_config_kwargs({"embedding": emb, "encoder": spec.get("encoder")}, stream)


def _to_hf(model: nn.Module, spec: dict, stream: str | None, _kwargs) -> dict[str, Tensor]:
    stream, _ = _image_stream(spec, stream)
    module = model.streams[stream]
    state = {k: v for k, v in module.state_dict().items() if k.startswith(("embedding.", "encoder."))}
    state["embedding.position"] = module.embedding.position.detach()   # a buffer when it is the fixed table
    return zoo_to_hf(state, stream=None)


def _to_zoo(hf_state, spec: dict, stream: str | None) -> dict[str, Tensor]:
    stream, _ = _image_stream(spec, stream)
    return hf_to_zoo(hf_state, stream=stream)


def _compare(zoo, hf, spec: dict, stream: str | None, _prep) -> dict[str, float]:
    stream, _ = _image_stream(spec, stream)
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


USAGE = '''import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModel

processor = AutoImageProcessor.from_pretrained("{model_id}")
model = AutoModel.from_pretrained("{model_id}", add_pooling_layer=False).eval()
image = Image.new("RGB", (64, 48), (200, 30, 30))      # your image here
with torch.no_grad():
    features = model(**processor(image, return_tensors="pt")).last_hidden_state[:, 0]
print(features.shape)'''

register(Architecture(
    name="vit", model_type="vit", model_class="ViTModel", auto_class="AutoModel", config_class="ViTConfig",
    matches=lambda model: False,       # never detected: one stream of a larger model, chosen with --arch vit
    needs="--arch vit --stream NAME (it exports one image stream's encoder alone)",
    hf_config=_config, to_hf=_to_hf, to_zoo=_to_zoo, compare=_compare,
    pipeline_tag="image-feature-extraction", tags=("vit", "image-feature-extraction", "vision"),
    preprocessing={"image": "vit"}, usage=USAGE, load_args={"add_pooling_layer": False},
    card_note="ViTModel's optional pooler is not part of the export (the zoo has none): load with "
              "`add_pooling_layer=False`.",
    whole_model=False))
