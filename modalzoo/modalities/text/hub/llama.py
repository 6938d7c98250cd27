"""Weight and config mapping between the zoo's Llama-layout causal LM and `transformers.LlamaForCausalLM`.

    hf_to_zoo(hf_model.state_dict())             # -> load into the zoo PretrainModel (strict=True)
    zoo_to_hf(zoo_model.state_dict())            # -> load into LlamaForCausalLM (strict=True)
    LlamaConfig(**hf_config_kwargs(recipe))       # the HF config of the same shape; refuses what Llama lacks

The zoo fuses q/k/v into one ``qkv`` Linear laid out [q (heads x d) | k (kv_heads x d) | v (kv_heads x d)],
query head h reading kv head h // (heads / kv_heads), as Llama's `repeat_kv` does; the gated MLP's ``fc1`` is
[gate | up]. Both RoPEs rotate halves (``rotate_half``: x1, x2 -> -x2, x1) with inverse frequencies
base^(-2i/d), so no weight is permuted. Biases (Qwen2-style ``attention_bias`` and ``mlp_bias``) map when the
recipe has them. The `Architecture` at the end is what `modalzoo export` and ``init_from=hf:`` use.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ....errors import ModalzooError
from ....hub.architecture import Architecture, register
from ....hub.mapping import check_keys, count_layers, expand, from_zoo, refuse, stack_rows, to_zoo
from . import causal_lm

# The gated activations a LlamaMLP computes as act(gate_proj(x)) * up_proj(x): zoo name -> hidden_act.
HIDDEN_ACT = {"swiglu": "silu", "geglu": "gelu_pytorch_tanh"}
QKV = [f"self_attn.{w}_proj" for w in "qkv"]
LINEARS = [("attn.qkv", QKV), ("attn.proj", ["self_attn.o_proj"]), ("mlp.fc1", ["mlp.gate_proj", "mlp.up_proj"]),
           ("mlp.fc2", ["mlp.down_proj"])]
TIED = ("lm_head.weight", "model.embed_tokens.weight")   # (copy, original) when the head is tied
HEAD = ("targets.{t}.head.weight", "lm_head.weight")      # the untied head


def _table(bias: bool, tie_weights: bool) -> list:
    layer = [("norm1.weight", "input_layernorm.weight"), ("norm2.weight", "post_attention_layernorm.weight")]
    for p in ("weight", "bias") if bias else ("weight",):
        layer += [(f"{zoo}.{p}", [f"{h}.{p}" for h in hf]) for zoo, hf in LINEARS]
    return [("streams.{s}.embedding.word.weight", "model.embed_tokens.weight"),
            *stack_rows(layer, "streams.{s}.encoder.blocks.", "model.layers."),
            ("streams.{s}.encoder.norm.weight", "model.norm.weight"), *([] if tie_weights else [HEAD])]


def _pairs(stream: str, target: str, layers: int, bias: bool, tie_weights: bool):
    return expand(_table(bias, tie_weights), {"s": stream, "t": target}, {"i": layers})


def hf_to_zoo(hf_state: Mapping[str, Tensor], stream: str = "text", target: str = "lm", tie_weights: bool = True,
              bias: bool = False) -> dict[str, Tensor]:
    """A `LlamaForCausalLM` state dict as zoo `PretrainModel` names; every HF tensor is mapped or (the tied
    head) checked equal to the one it repeats, anything else raises (biases too unless ``bias``)."""
    copy, original = TIED
    ignored = set()
    if tie_weights and copy in hf_state:
        if original in hf_state and not torch.equal(hf_state[copy], hf_state[original]):
            raise ModalzooError(f"'{copy}' differs from '{original}': the zoo ties them (set the clm target's "
                                f"tie_weights: false)")
        ignored.add(copy)
    pairs = _pairs(stream, target, count_layers(hf_state, "model.layers."), bias, tie_weights)
    return to_zoo(pairs, hf_state, "HF llama", ignored=ignored)


def zoo_to_hf(zoo_state: Mapping[str, Tensor], stream: str = "text", target: str = "lm") -> dict[str, Tensor]:
    """The inverse of `hf_to_zoo` (biases and an untied head as the zoo state has them). The fused qkv is split
    at [dim, kv_dim, kv_dim] (grouped-query attention makes k and v narrower than q)."""
    tie_weights = f"targets.{target}.head.weight" not in zoo_state
    blocks = f"streams.{stream}.encoder.blocks."
    bias = any(k.startswith(blocks) and k.endswith(".attn.qkv.bias") for k in zoo_state)
    pairs = _pairs(stream, target, count_layers(zoo_state, blocks), bias, tie_weights)
    fused = {zoo: hfs for zoo, hfs, _ in pairs if ".attn.qkv." in zoo}
    check_keys([z for z in fused if z not in zoo_state], [], "zoo")
    hf = from_zoo([pair for pair in pairs if pair[0] not in fused], {k: v for k, v in zoo_state.items()
                                                                     if k not in fused})
    dim = zoo_state[f"streams.{stream}.encoder.norm.weight"].shape[0]
    for zoo, names in fused.items():
        kv_dim = (zoo_state[zoo].shape[0] - dim) // 2
        # copies, not views of qkv: tensors sharing storage are refused by safetensors
        hf.update((h, part.clone()) for h, part in zip(names, zoo_state[zoo].split([dim, kv_dim, kv_dim])))
    if tie_weights:
        hf[TIED[0]] = hf[TIED[1]]
    return hf


def hf_config_kwargs(recipe_cfg) -> dict:
    """`LlamaConfig` kwargs for a recipe (or its ``model`` section); raises naming every option Llama
    cannot express."""
    p = causal_lm.parts("llama", recipe_cfg)
    emb, enc, e, n = p.emb, p.enc, f"{p.where_s}.embedding", f"{p.where_s}.encoder"
    need = {**causal_lm.common_needs(p),
            f"{e}.positions": (emb.positions, "none"), f"{n}.positions": (enc.positions, "rope"),
            f"{n}.norm": (enc.norm, "rmsnorm"), f"{e}.dropout": (emb.dropout, 0.0),
            f"{n}.dropout": (enc.dropout, 0.0), f"{n}.attn_scale": (enc.attn_scale, 0.0)}
    if enc.activation not in HIDDEN_ACT:
        need[f"{n}.activation"] = (enc.activation, "|".join(HIDDEN_ACT))
    refuse("llama", need)
    return dict(vocab_size=emb.vocab_size, hidden_size=enc.dim, intermediate_size=enc.hidden_ffn,
                num_hidden_layers=enc.layers, num_attention_heads=enc.heads, num_key_value_heads=enc.key_value_heads,
                head_dim=enc.dim // enc.heads, hidden_act=HIDDEN_ACT[enc.activation],
                max_position_embeddings=emb.max_positions, rms_norm_eps=enc.norm_eps,
                rope_parameters={"rope_type": "default", "rope_theta": float(enc.rope_base)},
                attention_bias=enc.bias, mlp_bias=enc.bias, attention_dropout=enc.attn_dropout,
                tie_word_embeddings=p.clm.tie_weights)


# ---------------------------------------------------------------------------------------------- Architecture

def _config(model: dict, _stream, prep) -> dict:
    return {**hf_config_kwargs(model), **causal_lm.token_ids("llama", prep)}


def _to_hf(model: nn.Module, spec: dict, _stream, _kwargs) -> dict[str, Tensor]:
    stream, target = causal_lm.names(spec)
    return zoo_to_hf(model.state_dict(), stream=stream, target=target)


def _to_zoo(hf_state, spec: dict, _stream) -> dict[str, Tensor]:
    p = causal_lm.parts("llama", spec)
    return hf_to_zoo(hf_state, stream=p.stream, target=p.target, tie_weights=p.clm.tie_weights, bias=p.enc.bias)


register(Architecture(
    name="llama", model_type="llama", model_class="LlamaForCausalLM", auto_class="AutoModelForCausalLM",
    config_class="LlamaConfig", matches=lambda model: causal_lm.positions_kind(model) == "none",
    needs="one clm target over a `token` stream without absolute positions (RoPE) and a causal transformer",
    hf_config=_config, to_hf=_to_hf, to_zoo=_to_zoo, compare=causal_lm.compare, pipeline_tag="text-generation",
    tags=("llama", "text-generation", "text"), preprocessing={"text": "llama"}, usage=causal_lm.USAGE))
