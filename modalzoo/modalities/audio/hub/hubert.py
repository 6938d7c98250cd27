"""Weight and config mapping between a zoo HuBERT (a `waveform_conv` stream + `transformer` encoder, trained
with the `hubert` target) and transformers' `HubertModel`; and, for the parity tests and the benchmark,
the zoo -> torchaudio `HuBERTPretrainModel` direction.

    hf_to_zoo(hubert_model.state_dict(), spec)        # -> zoo names (strict: unmapped HF tensors raise)
    zoo_to_hf(zoo.state_dict(), spec)                 # -> HubertModel names
    zoo_to_torchaudio(zoo.state_dict(), spec)         # -> hubert_pretrain_model names (head included)
    HubertConfig(**hf_config_kwargs(spec))            # the HF config of the same shape; refuses what it lacks

``spec`` is a recipe, its ``model`` section, or the model section's stream. Names are the modules' own
(the positional conv's weight norm as ``parametrizations.weight.original0/1``, torch's parametrization;
transformers renames the older ``weight_g``/``weight_v`` on load). The zoo fuses q, k, v into one ``qkv``.
HuBERT Base is post-norm: the LayerNorm before the first layer (HF ``encoder.layer_norm``) is the embedding's
``norm``; a pre-norm stack (Large, ``do_stable_layer_norm``) has it as the encoder's final norm. The
pretraining head (``final_proj``, label embeddings) has no HubertModel counterpart and is not exported; an
``init_from=hf:`` import leaves it at its initialisation.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ....errors import ModalzooError
from ....hub.architecture import Architecture, only_target, register, target_kinds
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
from ....registry import EMBEDDINGS, ENCODERS, TARGETS

LAYER: list[Row] = block_rows("attention.{w}_proj", "attention.out_proj", "layer_norm",
                               "feed_forward.intermediate_dense", "feed_forward.output_dense", "final_layer_norm")

# Where each part sits in the two references (the zoo side is "{z}embedding." / "{z}encoder.").
HF_NAMES = {"fe": "feature_extractor.", "fp": "feature_projection.", "mask": "masked_spec_embed",
            "pos": "encoder.pos_conv_embed.", "enc": "encoder.", "layers": "encoder.layers."}
TORCHAUDIO_NAMES = {"fe": "wav2vec2.feature_extractor.", "fp": "wav2vec2.encoder.feature_projection.",
                    "mask": "mask_generator.mask_embedding", "pos": "wav2vec2.encoder.transformer.pos_conv_embed.",
                    "enc": "wav2vec2.encoder.transformer.", "layers": "wav2vec2.encoder.transformer.layers."}


def stream_spec(spec, stream: str | None = None) -> tuple[str, dict]:
    """(stream name, stream spec) of the HuBERT stream: the hubert target's, or the only waveform stream;
    ``spec`` may be a stream spec itself (name "audio")."""
    model = model_section(spec)
    if "embedding" in model:
        return stream or "audio", model
    streams = model.get("streams") or {}
    if stream is None:
        found = [t for t in (model.get("targets") or {}).values() if t.get("name") == "hubert"]
        if len(found) == 1:
            stream = TARGETS.make_config(found[0], "target").stream
        else:
            waves = [n for n, s in streams.items() if (s.get("embedding") or {}).get("name") == "waveform_conv"]
            stream = waves[0] if len(waves) == 1 else None
    if stream not in streams:
        raise ModalzooError(f"hubert export needs a waveform stream (embedding: waveform_conv); the model has "
                            f"{list(streams)}")
    return stream, streams[stream]


def _configs(spec, stream: str | None):
    name, s = stream_spec(spec, stream)
    where = f"model.streams.{name}"
    check_names("hubert", [(f"{where}.embedding", s.get("embedding"), "waveform_conv"),
                           (f"{where}.encoder", s.get("encoder"), "transformer")])
    emb = EMBEDDINGS.make_config(s["embedding"], f"{where}.embedding")
    enc = ENCODERS.make_config(s["encoder"], f"{where}.encoder")
    return name, where, emb, enc


def _rows(emb) -> list[Row]:
    """The table for this front-end: which convs carry a norm and a bias, where the pre-layer LN sits."""
    norms = range(len(emb.conv_dim)) if emb.extractor_mode == "layer" else [0]
    conv = [(f"{{z}}embedding.convs.{c}.conv.weight", f"{{fe}}conv_layers.{c}.conv.weight")
            for c in range(len(emb.conv_dim))]
    if emb.conv_bias:
        conv += [(f"{{z}}embedding.convs.{c}.conv.bias", f"{{fe}}conv_layers.{c}.conv.bias")
                 for c in range(len(emb.conv_dim))]
    conv += [(f"{{z}}embedding.convs.{c}.norm.{{p}}", f"{{fe}}conv_layers.{c}.layer_norm.{{p}}") for c in norms]
    weight_norm = "pos_conv.parametrizations.weight.original"
    pre_layers = "{z}embedding.norm.{p}" if emb.norm == "layernorm" else "{z}encoder.norm.{p}"
    return [*conv,
            ("{z}embedding.feature_norm.{p}", "{fp}layer_norm.{p}"),
            ("{z}embedding.projection.{p}", "{fp}projection.{p}"),
            ("{z}embedding.mask_emb", "{mask}"),
            ("{z}embedding.pos_conv.bias", "{pos}conv.bias"),
            *[(f"{{z}}embedding.{weight_norm}{k}", f"{{pos}}conv.parametrizations.weight.original{k}")
              for k in (0, 1)],
            (pre_layers, "{enc}layer_norm.{p}"),
            *stack_rows(LAYER, "{z}encoder.blocks.", "{layers}")]


def zoo_prefix(stream: str | None) -> str:
    return "" if stream is None else f"streams.{stream}."


def hf_to_zoo(hf_state: Mapping[str, Tensor], spec, stream: str | None = None,
              prefix: str | None = None) -> dict[str, Tensor]:
    """A `HubertModel` state dict as zoo names (``streams.<stream>.`` unless ``prefix`` is given: "" for a bare
    `Stream`); a missing or unmapped HF key raises. The mapping is built from the recipe's front-end and
    encoder, so every tensor of the zoo stream is filled (the `Architecture` maps one stream, and
    `init_from` checks only what the mapping names)."""
    name, _, emb, enc = _configs(spec, stream)
    z = zoo_prefix(name) if prefix is None else prefix
    # the recipe's layer count, not the checkpoint's: a checkpoint with fewer or more layers is refused
    pairs = expand(_rows(emb), {"z": z, **HF_NAMES}, {"i": enc.layers})
    return to_zoo(pairs, hf_state, "HF hubert")


def zoo_to_hf(zoo_state: Mapping[str, Tensor], spec, stream: str | None = None,
              prefix: str | None = None) -> dict[str, Tensor]:
    """The inverse of `hf_to_zoo`, from a stream's tensors (``prefix`` as there; other keys are not read)."""
    name, _, emb, _ = _configs(spec, stream)
    z = zoo_prefix(name) if prefix is None else prefix
    own = {k: v for k, v in zoo_state.items() if k.startswith(f"{z}embedding.") or k.startswith(f"{z}encoder.")}
    pairs = expand(_rows(emb), {"z": z, **HF_NAMES}, {"i": count_layers(own, f"{z}encoder.blocks.")})
    return from_zoo(pairs, own)


def zoo_to_torchaudio(zoo_state: Mapping[str, Tensor], spec, stream: str | None = None,
                      target: str | None = None) -> dict[str, Tensor]:
    """A zoo HuBERT `PretrainModel` state dict as `torchaudio.models.hubert_pretrain_model` names, the
    pretraining head (``final_proj``, ``label_embeddings``) included."""
    name, _, emb, _ = _configs(spec, stream)
    if target is None:
        target = only_target(model_section(spec), "hubert")[0]
    z = zoo_prefix(name)
    head = {f"targets.{target}.final_proj.{p}": f"logit_generator.final_proj.{p}" for p in ("weight", "bias")}
    head[f"targets.{target}.label_embeddings"] = "logit_generator.label_embeddings"
    own = {k: v for k, v in zoo_state.items() if k.startswith((f"{z}embedding.", f"{z}encoder."))}
    pairs = expand(_rows(emb), {"z": z, **TORCHAUDIO_NAMES}, {"i": count_layers(own, f"{z}encoder.blocks.")})
    out = from_zoo(pairs, own)
    out.update({ta: zoo_state[zoo] for zoo, ta in head.items()})
    return out


def hf_config_kwargs(spec, stream: str | None = None) -> dict:
    """`HubertConfig` kwargs for the HuBERT stream; raises ModalzooError naming every option it cannot express.
    Regularisation the zoo lacks (``layerdrop``) and fine-tuning SpecAugment (``mask_time_prob``) keep
    transformers' defaults, as fairseq conversions do; ``init_from`` does not compare them."""
    name, where, emb, enc = _configs(spec, stream)
    e, post = f"{where}.embedding", emb.norm == "layernorm"
    need = {**transformer_needs(f"{where}.encoder", enc),
            # post-norm (Base): the pre-layer LN is the embedding's, the encoder has none at the end;
            # pre-norm (do_stable_layer_norm): the encoder's final norm is that LN
            f"{where}.encoder.prenorm": (enc.prenorm, not post),
            f"{where}.encoder.final_norm": (enc.final_norm, not post),
            f"{where}.encoder.dim": (enc.dim, emb.dim),
            f"{where}.encoder.activation": (enc.activation, "gelu"),
            f"{e}.norm_eps": (emb.norm_eps, enc.norm_eps),
            f"{e}.dropout": (emb.dropout, enc.dropout)}
    refuse("hubert", need)
    return dict(hidden_size=enc.dim, num_hidden_layers=enc.layers, num_attention_heads=enc.heads,
                intermediate_size=enc.hidden_ffn, hidden_act=HIDDEN_ACT[enc.activation],
                hidden_dropout=enc.dropout, activation_dropout=0.0, attention_dropout=enc.attn_dropout,
                feat_proj_layer_norm=True, feat_proj_dropout=emb.dropout_input,
                layer_norm_eps=enc.norm_eps, feat_extract_norm=emb.extractor_mode, feat_extract_activation="gelu",
                conv_dim=list(emb.conv_dim), conv_stride=list(emb.conv_stride), conv_kernel=list(emb.conv_kernel),
                conv_bias=emb.conv_bias, num_conv_pos_embeddings=emb.pos_conv_kernel,
                num_conv_pos_embedding_groups=emb.pos_conv_groups, conv_pos_batch_norm=False,
                do_stable_layer_norm=not post)


def torchaudio_kwargs(spec, stream: str | None = None, target: str | None = None) -> dict:
    """`torchaudio.models.hubert_pretrain_model` kwargs of the same model (parity tests, the benchmark): its
    masking options are fairseq's, layer drop 0 (the zoo has none)."""
    _, _, emb, enc = _configs(spec, stream)
    model = model_section(spec)
    name, t = only_target(model, "hubert") if target is None else (target, model["targets"][target])
    hub = TARGETS.make_config(t, f"model.targets.{name}")
    refuse("torchaudio hubert", {"embedding.dropout": (emb.dropout, enc.dropout),
                                 "embedding.norm": (emb.norm, "none" if enc.prenorm else "layernorm")})
    return dict(extractor_mode=f"{emb.extractor_mode}_norm",
                extractor_conv_layer_config=list(zip(emb.conv_dim, emb.conv_kernel, emb.conv_stride)),
                extractor_conv_bias=emb.conv_bias, encoder_embed_dim=enc.dim,
                encoder_projection_dropout=emb.dropout_input, encoder_pos_conv_kernel=emb.pos_conv_kernel,
                encoder_pos_conv_groups=emb.pos_conv_groups, encoder_num_layers=enc.layers,
                encoder_num_heads=enc.heads, encoder_attention_dropout=enc.attn_dropout,
                encoder_ff_interm_features=enc.hidden_ffn, encoder_ff_interm_dropout=0.0,
                encoder_dropout=enc.dropout, encoder_layer_norm_first=enc.prenorm, encoder_layer_drop=0.0,
                mask_prob=hub.mask_prob, mask_selection="static", mask_other=0.0, mask_length=hub.mask_length,
                no_mask_overlap=False, mask_min_space=1, mask_channel_prob=0.0, mask_channel_selection="static",
                mask_channel_other=0.0, mask_channel_length=10, no_mask_channel_overlap=False,
                mask_channel_min_space=1, skip_masked=False, skip_nomask=False, num_classes=hub.num_classes,
                final_dim=hub.final_dim, feature_grad_mult=emb.feature_grad_mult if 0 < emb.feature_grad_mult < 1
                else None)


# ---------------------------------------------------------------------------------------------- Architecture

def waveform_batch(sample_rate: int = 16000, seconds: tuple[float, ...] = (1.0, 0.7)) -> dict[str, Tensor]:
    """Zero-padded noise clips of the given lengths (a padded row checks the masks) for comparisons."""
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([int(s * sample_rate) for s in seconds])
    waves = torch.randn(len(seconds), int(lengths.max()), generator=g) * 0.1
    waves[torch.arange(waves.shape[1])[None] >= lengths[:, None]] = 0.0
    return {"input_values": waves, "audio_lengths": lengths}


def zoo_layers(stream: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, list[Tensor], Tensor]:
    """A zoo stream's last hidden state, every block's output and the real-frame mask, in one forward."""
    outputs: list[Tensor] = []
    hooks = [b.register_forward_hook(lambda _m, _i, out: outputs.append(out)) for b in stream.encoder.blocks]
    try:
        tokens = stream.embedding(batch)
        last = stream.encoder(tokens).x
    finally:
        for h in hooks:
            h.remove()
    real = tokens.pad_mask if tokens.pad_mask is not None else torch.ones(last.shape[:2], dtype=torch.bool)
    return last, outputs, real


def compare_hidden(stream: nn.Module, hf: nn.Module, batch: dict[str, Tensor]) -> dict[str, float]:
    """Max |difference| of the last hidden state and of every layer's output, on real frames (eval mode)."""
    was = stream.training
    stream.eval()
    try:
        with torch.no_grad():
            last, layers, real = zoo_layers(stream, batch)
            attention = (torch.arange(batch["input_values"].shape[1])[None] < batch["audio_lengths"][:, None]).long()
            out = hf(input_values=batch["input_values"], attention_mask=attention, output_hidden_states=True)
    finally:
        stream.train(was)
    hidden = max((zl - hl)[real].abs().max().item() for zl, hl in zip(layers, out.hidden_states[1:]))
    return {"last_hidden_state": (last - out.last_hidden_state)[real].abs().max().item(), "hidden_states": hidden}


def _matches(model: dict) -> bool:
    if target_kinds(model) != ["hubert"]:
        return False
    try:
        _, s = stream_spec(model)
    except ModalzooError:
        return False
    return (s.get("embedding") or {}).get("name") == "waveform_conv" and not s.get("decoder")


def _config(model: dict, stream: str | None, _prep) -> dict:
    return hf_config_kwargs(model, stream)


def _to_hf(model: nn.Module, spec: dict, stream: str | None, _kwargs) -> dict[str, Tensor]:
    return zoo_to_hf(model.state_dict(), spec, stream)


def _to_zoo(hf_state, spec: dict, stream: str | None) -> dict[str, Tensor]:
    return hf_to_zoo(hf_state, spec, stream)


def _compare(zoo, hf, spec: dict, stream: str | None, prep) -> dict[str, float]:
    name, _ = stream_spec(spec, stream)
    rate = (prep.get("sample_rate") if prep is not None else None) or 16000
    return compare_hidden(zoo.streams[name], hf, waveform_batch(rate))


USAGE = '''import numpy as np
import torch
from transformers import AutoFeatureExtractor, AutoModel

extractor = AutoFeatureExtractor.from_pretrained("{model_id}")
model = AutoModel.from_pretrained("{model_id}").eval()
wave = np.zeros(extractor.sampling_rate, dtype=np.float32)     # one second of your mono audio here
inputs = extractor(wave, sampling_rate=extractor.sampling_rate, return_tensors="pt")
with torch.no_grad():
    features = model(**inputs, output_hidden_states=True).hidden_states    # 50 frames/s at 16 kHz
print(len(features), features[-1].shape)'''

register(Architecture(
    name="hubert", model_type="hubert", model_class="HubertModel", auto_class="AutoModel",
    config_class="HubertConfig", matches=_matches, needs="one hubert target over a `waveform_conv` stream",
    hf_config=_config, to_hf=_to_hf, to_zoo=_to_zoo, compare=_compare,
    pipeline_tag="feature-extraction", tags=("hubert", "audio", "speech", "feature-extraction"),
    preprocessing={"audio": "wav2vec2"}, usage=USAGE,
    card_note="HuBERT's pretraining head (final_proj and the cluster embeddings) has no HubertModel counterpart "
              "and is not part of the export; the encoder's layers are (hidden_states[k] is layer k).",
    whole_model=False))
