"""Weight and config mapping between a zoo audio stream (``fbank_patch`` + pre-norm Transformer) and
transformers' `ASTModel`, its `ASTFeatureExtractor` config, and the refusal of `ClapModel`.

    hf_to_zoo(ast.state_dict(), stream="audio")      # -> zoo names (load strict=True)
    zoo_to_hf(zoo.state_dict(), stream="audio")      # -> ASTModel names
    ASTConfig(**hf_config_kwargs(stream_spec))       # refuses what AST lacks, naming it
    ast_feature_config(stream_spec, sample_rate)     # preprocessor_config.json for ASTFeatureExtractor

The layers are ViT's (pre-norm, ``layernorm_before/after``, q/k/v split from the zoo's fused ``qkv``); the
embeddings are ``cls_token`` + ``distillation_token`` + ``position_embeddings`` [1, 2 + f*t, D] over the
fixed grid, so the stream needs ``prefix_tokens: 2``. ASTModel's ``pooler_output`` is the mean of those two
tokens; a CLAP trained with ``pooling: cls`` embeds ``last_hidden_state[:, 0]`` instead (the card says so).

Two architectures are registered: ``ast`` exports one audio stream's encoder (``modalzoo export RUN --format
hf --arch ast [--stream audio]``: a CLAP run's audio tower, or any run with a fbank_patch stream), and
``clap``, which matches a contrastive audio-text model so that asking for transformers' ClapModel (``--arch
clap``, or ``--format hf`` with no ``--arch`` on a CLAP run, or ``init_from=hf:`` a ClapModel checkpoint) is
refused with the reason: its HTSAT audio tower is a Swin transformer (windowed and shifted attention with a
relative position bias table, patch merging between stages) that the zoo's global-attention block does not
express. The whole CLAP exports with ``--format modalzoo`` (``modalzoo.from_pretrained``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

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
    refuse,
    stack_rows,
    to_zoo,
    transformer_needs,
)
from ....registry import EMBEDDINGS, ENCODERS, TARGETS
from .. import fbank  # noqa: F401  (registers fbank_patch, whose config the mapping reads)

# One AST layer (ViT's names): zoo block name -> HF layer name, both after "<stack>.<i>.".
LAYER: list[Row] = block_rows("attention.{w}_proj", "attention.o_proj", "layernorm_before", "mlp.fc1", "mlp.fc2",
                               "layernorm_after")
# zoo name -> ASTModel name: {z} the zoo prefix ("streams.audio." or "").
TABLE: list[Row] = [
    ("{z}embedding.proj.{p}", "embeddings.patch_embeddings.projection.{p}"),
    ("{z}embedding.cls", "embeddings.cls_token"),
    ("{z}embedding.distillation", "embeddings.distillation_token"),
    ("{z}embedding.position", "embeddings.position_embeddings"),
    *stack_rows(LAYER, "{z}encoder.blocks.", "layers."),
    ("{z}encoder.norm.{p}", "layernorm.{p}"),
]
AUDIO_EMBEDDINGS = ("fbank_patch", "waveform_conv")   # the audio front-ends a CLAP's audio tower may use

CLAP_REFUSAL = ("transformers' ClapModel cannot hold this model: its audio tower is HTSAT, a Swin transformer "
                "(windowed and shifted attention with a relative position bias table, patch merging between "
                "stages, BatchNorm over mel bins) that the zoo's global-attention Transformer block does not "
                "express, so no zoo CLAP maps onto its weights. Export the audio tower as ASTModel with "
                "--arch ast --stream AUDIO_STREAM (a fbank_patch stream with prefix_tokens: 2), or the whole CLAP "
                "with --format modalzoo (modalzoo.from_pretrained)")


def zoo_prefix(stream: str | None) -> str:
    return "" if stream is None else f"streams.{stream}."


def hf_to_zoo(hf_state: Mapping[str, Tensor], stream: str | None = "audio") -> dict[str, Tensor]:
    """An `ASTModel` state dict as zoo names; a missing or unmapped HF key raises."""
    pairs = expand(TABLE, {"z": zoo_prefix(stream)}, {"i": count_layers(hf_state, "layers.")})
    return to_zoo(pairs, hf_state, "HF ast")


def zoo_to_hf(zoo_state: Mapping[str, Tensor], stream: str | None = "audio") -> dict[str, Tensor]:
    """The inverse of `hf_to_zoo`; a missing or unmapped zoo key raises."""
    z = zoo_prefix(stream)
    pairs = expand(TABLE, {"z": z}, {"i": count_layers(zoo_state, f"{z}encoder.blocks.")})
    return from_zoo(pairs, zoo_state)


def _parts(spec: dict, where: str):
    extra = [f"{where}.{slot}" for slot in ("target_embedding", "decoder") if spec.get(slot)]
    if extra:
        raise ModalzooError(f"ASTModel is an encoder; it cannot express {', '.join(extra)}")
    check_names("ast", [(f"{where}.embedding", spec.get("embedding"), "fbank_patch"),
                        (f"{where}.encoder", spec.get("encoder"), "transformer")])
    return (EMBEDDINGS.make_config(spec["embedding"], f"{where}.embedding"),
            ENCODERS.make_config(spec["encoder"], f"{where}.encoder"))


def hf_config_kwargs(stream_spec: dict, where: str = "model.streams.audio") -> dict:
    """`ASTConfig` kwargs for an audio stream's spec; raises ModalzooError naming every option AST lacks."""
    emb, enc = _parts(stream_spec, where)
    e = f"{where}.embedding"
    refuse("ast", {
        **transformer_needs(f"{where}.encoder", enc),
        f"{where}.encoder.dim": (enc.dim, emb.dim),
        f"{e}.prefix_tokens": (emb.prefix_tokens, 2),
        f"{e}.dropout": (emb.dropout, enc.dropout),        # AST's hidden_dropout_prob drops the embeddings too
    })
    return dict(hidden_size=enc.dim, num_hidden_layers=enc.layers, num_attention_heads=enc.heads,
                intermediate_size=enc.hidden_ffn, hidden_act=HIDDEN_ACT[enc.activation],
                hidden_dropout_prob=enc.dropout, attention_probs_dropout_prob=enc.attn_dropout,
                layer_norm_eps=enc.norm_eps, qkv_bias=True, patch_size=emb.patch_size,
                frequency_stride=emb.frequency_stride, time_stride=emb.time_stride, max_length=emb.max_frames,
                num_mel_bins=emb.num_mel_bins)


def ast_feature_config(stream_spec: dict, where: str = "model.streams.audio") -> dict:
    """`ASTFeatureExtractor` kwargs (preprocessor_config.json) that compute the stream's fbank features."""
    emb = EMBEDDINGS.make_config(stream_spec["embedding"], f"{where}.embedding")
    return dict(feature_extractor_type="ASTFeatureExtractor", feature_size=1, sampling_rate=emb.sample_rate,
                num_mel_bins=emb.num_mel_bins, max_length=emb.max_frames, padding_value=0.0,
                do_normalize=emb.normalize, mean=emb.mean, std=emb.std, return_attention_mask=False)


def write_ast_features(out: Path, stream_spec: dict, where: str = "model.streams.audio") -> Path:
    """preprocessor_config.json for `ASTFeatureExtractor` / `AutoFeatureExtractor`."""
    path = Path(out) / "preprocessor_config.json"
    path.write_text(json.dumps(ast_feature_config(stream_spec, where), indent=2) + "\n")
    return path


# ---------------------------------------------------------------------------------------------- Architecture

def _audio_stream(model: dict, stream: str | None) -> tuple[str, dict]:
    streams = model.get("streams") or {}
    audio = [n for n, s in streams.items() if (s.get("embedding") or {}).get("name") == "fbank_patch"]
    stream = stream or (audio[0] if len(audio) == 1 else None)
    if stream not in streams:
        raise ModalzooError(f"ast export needs --stream naming a fbank_patch stream; fbank_patch streams: {audio}")
    return stream, streams[stream]


def _config(model: dict, stream: str | None, prep) -> dict:
    stream, spec = _audio_stream(model, stream)
    where = f"model.streams.{stream}"
    kwargs = hf_config_kwargs(spec, where)
    emb = EMBEDDINGS.make_config(spec["embedding"], f"{where}.embedding")
    rate = prep.get("sample_rate") if prep is not None else None
    if rate is not None and rate != emb.sample_rate:
        raise ModalzooError(f"{where}.embedding.sample_rate={emb.sample_rate} but the run's data is {rate} Hz: "
                            f"the feature extractor would compute other frames than training saw")
    audio_field = (getattr(prep, "fields", None) or {}).get("audio")
    if getattr(audio_field, "normalize", False):
        raise ModalzooError("the run normalised each waveform (data.normalize=true); ASTFeatureExtractor does not, "
                            "so the exported model would see other inputs")
    return kwargs


def _to_hf(model: nn.Module, spec: dict, stream: str | None, _kwargs) -> dict[str, Tensor]:
    stream, _ = _audio_stream(spec, stream)
    state = {k: v for k, v in model.streams[stream].state_dict().items() if k.startswith(("embedding.", "encoder."))}
    return zoo_to_hf(state, stream=None)


def _to_zoo(hf_state, spec: dict, stream: str | None) -> dict[str, Tensor]:
    stream, _ = _audio_stream(spec, stream)
    return hf_to_zoo(hf_state, stream=stream)


def audio_batch(rate: int, seconds=(1.3, 0.4), seed: int = 0) -> tuple[Tensor, Tensor]:
    """Zero-padded clips (a tone in noise) and their lengths: one longer than the other, for padding."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([int(s * rate) for s in seconds])
    waves = torch.zeros(len(seconds), int(lengths.max()))
    for i, n in enumerate(lengths.tolist()):
        t = torch.arange(n) / rate
        waves[i, :n] = 0.3 * torch.sin(2 * torch.pi * 440 * (i + 1) * t) + 0.05 * torch.randn(n, generator=g)
    return waves, lengths


def _model_files(spec: dict, stream: str | None, out: Path) -> list[Path]:
    stream, stream_spec = _audio_stream(spec, stream)
    return [write_ast_features(out, stream_spec, f"model.streams.{stream}")]


def _compare(zoo, hf, spec: dict, stream: str | None, _prep) -> dict[str, float]:
    """Raw audio through the written feature extractor and the reloaded ASTModel vs the zoo stream.

    The feature extractor is loaded back from the export folder (``hf.name_or_path``; `_model_files` wrote its
    preprocessor_config.json there), so what is checked is what a user gets."""
    from transformers import ASTFeatureExtractor

    stream, stream_spec = _audio_stream(spec, stream)
    folder = Path(hf.name_or_path)
    if not (folder / "preprocessor_config.json").exists():
        raise ModalzooError(f"the export folder {hf.name_or_path!r} has no preprocessor_config.json")
    extractor = ASTFeatureExtractor.from_pretrained(folder)
    module = zoo.streams[stream]
    emb = module.embedding
    waves, lengths = audio_batch(emb.cfg.sample_rate, seconds=(1.3, 0.4, emb.cfg.max_frames / 100 + 0.5))
    with torch.no_grad():
        zoo_features = emb.features({emb.cfg.key: waves, emb.cfg.lengths_key: lengths})
        hf_features = extractor([waves[i, :n].numpy() for i, n in enumerate(lengths.tolist())],
                                sampling_rate=emb.cfg.sample_rate, return_tensors="pt")["input_values"]
        zoo_out = module.encoder(emb.embed(zoo_features)).x
        out = hf(input_values=hf_features)
    return {"feature_extractor": (zoo_features - hf_features).abs().max().item(),
            "last_hidden_state": (zoo_out - out.last_hidden_state).abs().max().item(),
            "pooler_output": ((zoo_out[:, 0] + zoo_out[:, 1]) / 2 - out.pooler_output).abs().max().item()}


USAGE = '''import numpy as np
import torch
from transformers import AutoFeatureExtractor, AutoModel

extractor = AutoFeatureExtractor.from_pretrained("{model_id}")
model = AutoModel.from_pretrained("{model_id}").eval()
rate = extractor.sampling_rate
wave = 0.3 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate).astype(np.float32)   # your mono clip here
with torch.no_grad():
    hidden = model(**extractor(wave, sampling_rate=rate, return_tensors="pt")).last_hidden_state
print(hidden[:, 0].shape)   # a CLAP audio tower trained with pooling: cls embeds this token'''


def _clap_matches(model: dict) -> bool:
    """A contrastive target over one audio stream and one text (`token`) stream: what ClapModel would be."""
    if target_kinds(model) != ["contrastive"]:
        return False
    name, target = only_target(model, "contrastive")
    streams = model.get("streams") or {}
    try:
        names = TARGETS.make_config(target, f"model.targets.{name}").streams
    except Exception:            # an invalid target is reported by the build, not by matching
        return False
    kinds = sorted(str(((streams.get(n) or {}).get("embedding") or {}).get("name")) for n in names)
    return len(kinds) == 2 and "token" in kinds and any(k in AUDIO_EMBEDDINGS for k in kinds)


def _refuse_clap(*_args, **_kwargs):
    raise ModalzooError(CLAP_REFUSAL)


register(
    Architecture(
        name="ast", model_type="audio-spectrogram-transformer", model_class="ASTModel", auto_class="AutoModel",
        config_class="ASTConfig",
        matches=lambda model: False,   # never detected: one stream of a larger model, chosen with --arch ast
        needs="--arch ast --stream NAME (it exports one fbank_patch stream's encoder alone)",
        hf_config=_config, to_hf=_to_hf, to_zoo=_to_zoo, compare=_compare, model_files=_model_files,
        pipeline_tag="feature-extraction", tags=("audio-spectrogram-transformer", "feature-extraction", "audio"),
        preprocessing={"audio": "ast"}, usage=USAGE,
        card_note="ASTModel's `pooler_output` is the mean of its two prefix tokens; a zoo CLAP trained with "
                  "`pooling: cls` uses `last_hidden_state[:, 0]` (then its projection, kept in the modalzoo "
                  "export).",
        whole_model=False),
    Architecture(
        name="clap", model_type="clap", model_class="ClapModel", auto_class="AutoModel", config_class="ClapConfig",
        matches=_clap_matches,
        needs="nothing the zoo builds (ClapModel's audio tower is a Swin transformer; refused with the reason)",
        hf_config=_refuse_clap, to_hf=_refuse_clap, to_zoo=_refuse_clap, compare=_refuse_clap,
        pipeline_tag="zero-shot-audio-classification", tags=("clap", "audio", "text")),
)
