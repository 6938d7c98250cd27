"""Weight and config mapping between the zoo's MAE model and `ViTMAEForPreTraining`.

    hf_to_zoo(hf.state_dict())                        # -> load into the zoo PretrainModel (strict=True)
    zoo_to_hf(zoo.state_dict(), image_size=224)       # -> load into ViTMAEForPreTraining (strict=True)
    ViTMAEConfig(**hf_config_kwargs(recipe))          # the HF config of the same shape; refuses what it lacks

The zoo model: stream ``image`` = patch embedding (sincos2d positions, a class token, mask_ratio > 0) ->
Transformer -> ``mae`` target embedding -> Transformer decoder without cross-attention; target ``mae``.
Feeding the zoo ``batch["mae_noise"]`` and HF ``noise=`` the same [B, N] tensor masks the same patches.

Besides renaming and the fused ``qkv``, two HF tensors have no zoo parameter: the encoder's and the
decoder's fixed 2D sin-cos position tables (``vit.embeddings.position_embeddings``,
``decoder.decoder_pos_embed``), which the zoo recomputes. Import checks that they are those tables
(a checkpoint with other positions is refused); export writes them. Export has to: transformers 5
initialises a fresh ViTMAE's tables to zeros, so an exported checkpoint without them would load wrong.
The `Architecture` at the end is what `modalzoo export` / ``init_from=hf:`` use for MAE runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ....encoders.positions import sincos_2d_table
from ....errors import ModalzooError
from ....hub.architecture import Architecture, only_target, register, target_kinds
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
from ....registry import DECODERS, EMBEDDINGS, ENCODERS, TARGET_EMBEDDINGS, TARGETS
from .vit import LAYER, image_batch
from .vit import TABLE as VIT_TABLE

# zoo name -> HF name(s): {z} "streams.<stream>.", {t} the target, {b} "vit."; {i} encoder, {j} decoder blocks.
TABLE: list[Row] = [
    *(row for row in VIT_TABLE if row[0] != "{z}embedding.position"),   # the encoder's positions are fixed
    ("{z}target_embedding.proj.{p}", "decoder.decoder_embed.{p}"),
    ("{z}target_embedding.mask_token", "decoder.mask_token"),
    *stack_rows(LAYER, "{z}decoder.blocks.", "decoder.decoder_layers.", "j"),
    ("{z}decoder.norm.{p}", "decoder.decoder_norm.{p}"),
    ("targets.{t}.pred.{p}", "decoder.decoder_pred.{p}"),
]
POSITION_TABLES = ("vit.embeddings.position_embeddings", "decoder.decoder_pos_embed")


def position_table(grid: int, dim: int) -> Tensor:
    """[1, 1 + grid², dim]: a zero row for the class token, then the zoo's (and MAE's) 2D sin-cos table."""
    return torch.cat([torch.zeros(1, dim), sincos_2d_table(grid, grid, dim)])[None]


def _pairs(state: Mapping[str, Tensor], stream: str, target: str, hf: bool) -> list:
    z = f"streams.{stream}."
    counts = ({"i": count_layers(state, "vit.layers."), "j": count_layers(state, "decoder.decoder_layers.")} if hf
              else {"i": count_layers(state, f"{z}encoder.blocks."), "j": count_layers(state, f"{z}decoder.blocks.")})
    return expand(TABLE, {"z": z, "t": target, "b": "vit."}, counts)


def hf_to_zoo(hf_state: Mapping[str, Tensor], stream: str = "image", target: str = "mae") -> dict[str, Tensor]:
    """A `ViTMAEForPreTraining` state dict as zoo `PretrainModel` names.

    Every HF tensor is mapped or is a fixed sin-cos table equal to the zoo's; anything else raises.
    """
    fixed = {}
    for name in POSITION_TABLES:    # the table the zoo would compute for this shape (square grid)
        t = hf_state.get(name)
        fixed[name] = None if t is None else position_table(math.isqrt(t.shape[1] - 1), t.shape[-1])
    return to_zoo(_pairs(hf_state, stream, target, hf=True), hf_state, "HF vit_mae", fixed=fixed)


def zoo_to_hf(zoo_state: Mapping[str, Tensor], image_size: int, stream: str = "image", target: str = "mae",
              ) -> dict[str, Tensor]:
    """The inverse of `hf_to_zoo`, with the fixed position tables (for ``image_size``) filled in."""
    z = f"streams.{stream}."
    needed = [f"{z}embedding.proj.weight", f"{z}embedding.cls", f"{z}target_embedding.mask_token"]
    if any(k not in zoo_state for k in needed):
        raise ModalzooError(f"zoo state dict does not fit the zoo mapping: missing "
                            f"{', '.join(k for k in needed if k not in zoo_state)}")
    patch, cls = zoo_state[needed[0]].shape[-1], zoo_state[needed[1]]
    grid, dims = image_size // patch, (cls.shape[-1], zoo_state[needed[2]].shape[-1])
    fixed = {name: position_table(grid, dim).to(cls.dtype) for name, dim in zip(POSITION_TABLES, dims)}
    return from_zoo(_pairs(zoo_state, stream, target, hf=False), zoo_state, fixed=fixed)


def hf_config_kwargs(recipe_cfg, stream: str = "image", target: str = "mae") -> dict:
    """`ViTMAEConfig` kwargs for an MAE recipe (or its ``model`` section).

    Raises ModalzooError naming every option `ViTMAEForPreTraining` cannot express (HF shares one
    activation, norm eps and dropout between encoder and decoder, and has no embedding dropout).
    """
    model = model_section(recipe_cfg)
    streams, targets = model.get("streams") or {}, model.get("targets") or {}
    ws, wt = f"model.streams.{stream}", f"model.targets.{target}"
    if stream not in streams or target not in targets:
        raise ModalzooError(f"vit_mae export needs '{ws}' and '{wt}'")
    extra = [f"model.streams.{n}" for n in streams if n != stream] + \
            [f"model.targets.{n}" for n in targets if n != target]
    if extra:
        raise ModalzooError(f"vit_mae has one image stream and one MAE target; it cannot express {', '.join(extra)}")
    spec = streams[stream]
    check_names("vit_mae", [(f"{ws}.embedding", spec.get("embedding"), "patch"),
                            (f"{ws}.encoder", spec.get("encoder"), "transformer"),
                            (f"{ws}.target_embedding", spec.get("target_embedding"), "mae"),
                            (f"{ws}.decoder", spec.get("decoder"), "transformer"), (wt, targets[target], "mae")])
    emb = EMBEDDINGS.make_config(spec["embedding"], f"{ws}.embedding")
    enc = ENCODERS.make_config(spec["encoder"], f"{ws}.encoder")
    temb = TARGET_EMBEDDINGS.make_config(spec["target_embedding"], f"{ws}.target_embedding")
    dec = DECODERS.make_config(spec["decoder"], f"{ws}.decoder")
    mae = TARGETS.make_config(targets[target], wt)
    e, t, d = f"{ws}.embedding", f"{ws}.target_embedding", f"{ws}.decoder"
    refuse("vit_mae", {
        **transformer_needs(f"{ws}.encoder", enc), **transformer_needs(d, dec),
        f"{ws}.encoder.dim": (enc.dim, emb.dim),
        f"{e}.positions": (emb.positions, "sincos2d"), f"{e}.cls_token": (emb.cls_token, True),
        f"{e}.mask_ratio > 0": (emb.mask_ratio > 0, True), f"{e}.norm": (emb.norm, "none"),
        f"{e}.patch_bias": (emb.patch_bias, True), f"{e}.dropout": (emb.dropout, 0.0),
        f"{t}.encoder_dim": (temb.encoder_dim, enc.dim), f"{t}.dim": (temb.dim, dec.dim),
        f"{t}.grid": (temb.grid, emb.grid), f"{t}.cls_token": (temb.cls_token, True),
        f"{d}.activation": (dec.activation, enc.activation), f"{d}.norm_eps": (dec.norm_eps, enc.norm_eps),
        f"{d}.dropout": (dec.dropout, enc.dropout), f"{d}.attn_dropout": (dec.attn_dropout, enc.attn_dropout),
        f"{wt}.stream": (mae.stream, stream),
    })
    return dict(hidden_size=enc.dim, num_hidden_layers=enc.layers, num_attention_heads=enc.heads,
                intermediate_size=enc.hidden_ffn, hidden_act=HIDDEN_ACT[enc.activation],
                hidden_dropout_prob=enc.dropout, attention_probs_dropout_prob=enc.attn_dropout,
                layer_norm_eps=enc.norm_eps, image_size=emb.image_size, patch_size=emb.patch_size,
                num_channels=emb.channels, qkv_bias=True, decoder_hidden_size=dec.dim,
                decoder_num_hidden_layers=dec.layers, decoder_num_attention_heads=dec.heads,
                decoder_intermediate_size=dec.hidden_ffn, mask_ratio=emb.mask_ratio, norm_pix_loss=mae.norm_pix_loss)


# ---------------------------------------------------------------------------------------------- Architecture

def _names(model: dict) -> tuple[str, str]:
    name, target = only_target(model, "mae")
    return TARGETS.make_config(target, f"model.targets.{name}").stream, name


def _config(model: dict, _stream, _prep) -> dict:
    stream, target = _names(model)
    return hf_config_kwargs(model, stream=stream, target=target)


def _to_hf(model: nn.Module, spec: dict, _stream, kwargs: dict) -> dict[str, Tensor]:
    stream, target = _names(spec)
    return zoo_to_hf(model.state_dict(), kwargs["image_size"], stream=stream, target=target)


def _to_zoo(hf_state, spec: dict, _stream) -> dict[str, Tensor]:
    stream, target = _names(spec)
    return hf_to_zoo(hf_state, stream=stream, target=target)


def _compare(zoo, hf, spec: dict, _stream, _prep) -> dict[str, float]:
    stream, target = _names(spec)
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


USAGE = '''import torch
from PIL import Image
from transformers import AutoImageProcessor, ViTMAEForPreTraining

processor = AutoImageProcessor.from_pretrained("{model_id}")
model = ViTMAEForPreTraining.from_pretrained("{model_id}").eval()
image = Image.new("RGB", (64, 48), (200, 30, 30))      # your image here
with torch.no_grad():
    out = model(**processor(image, return_tensors="pt"))
print(f"reconstruction loss {{out.loss.item():.4f}}, hidden patches {{int(out.mask.sum())}}")'''

register(Architecture(
    name="vit_mae", model_type="vit_mae", model_class="ViTMAEForPreTraining", auto_class="AutoModelForPreTraining",
    config_class="ViTMAEConfig", matches=lambda model: target_kinds(model) == ["mae"],
    needs="one mae target", hf_config=_config, to_hf=_to_hf, to_zoo=_to_zoo, compare=_compare,
    pipeline_tag="image-feature-extraction", tags=("vit_mae", "mae", "vision"), preprocessing={"image": "vit"},
    usage=USAGE))
