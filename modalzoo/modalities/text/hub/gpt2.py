"""Weight and config mapping between the zoo's GPT-2-layout causal LM and `transformers.GPT2LMHeadModel`.

    hf_to_zoo(hf_model.state_dict())             # -> load into the zoo PretrainModel (strict=True)
    zoo_to_hf(zoo_model.state_dict())            # -> load into GPT2LMHeadModel (strict=True)
    GPT2Config(**hf_config_kwargs(recipe))        # the HF config of the same shape; refuses what GPT-2 lacks

GPT-2 stores its projections as `Conv1D`, ``x @ W`` with W [in, out]: the transpose of a Linear weight.
``c_attn`` is the fused [q | k | v] projection, the zoo's ``qkv`` as it is. The LM head is tied to ``wte``
(or, untied, the clm target's ``head``). The `Architecture` at the end is what `modalzoo export` and
``init_from=hf:`` use.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ....errors import ModalzooError
from ....hub.architecture import Architecture, register
from ....hub.mapping import HIDDEN_ACT, TRANSPOSED, count_layers, expand, from_zoo, refuse, stack_rows, to_zoo
from . import causal_lm

# Per block, zoo name -> HF name (relative to the block), with the Conv1D weights transposed.
LAYER = [("norm1.{p}", "ln_1.{p}"), ("norm2.{p}", "ln_2.{p}"),
         *[row for zoo, hf in (("attn.qkv", "attn.c_attn"), ("attn.proj", "attn.c_proj"), ("mlp.fc1", "mlp.c_fc"),
                               ("mlp.fc2", "mlp.c_proj"))
           for row in ((f"{zoo}.weight", f"{hf}.weight", TRANSPOSED), (f"{zoo}.bias", f"{hf}.bias"))]]
TABLE = [("streams.{s}.embedding.word.weight", "transformer.wte.weight"),
         ("streams.{s}.embedding.position.table.weight", "transformer.wpe.weight"),
         *stack_rows(LAYER, "streams.{s}.encoder.blocks.", "transformer.h."),
         ("streams.{s}.encoder.norm.{p}", "transformer.ln_f.{p}")]
TIED = ("lm_head.weight", "transformer.wte.weight")      # (copy, original) when the head is tied
HEAD = ("targets.{t}.head.weight", "lm_head.weight")     # the untied head


def _pairs(stream: str, target: str, layers: int, tie_weights: bool):
    return expand(TABLE + ([] if tie_weights else [HEAD]), {"s": stream, "t": target}, {"i": layers})


def hf_to_zoo(hf_state: Mapping[str, Tensor], stream: str = "text", target: str = "lm",
              tie_weights: bool = True) -> dict[str, Tensor]:
    """A `GPT2LMHeadModel` state dict as zoo `PretrainModel` names; every HF tensor is mapped or (the tied
    head) checked equal to the one it repeats, anything else raises."""
    copy, original = TIED
    ignored = set()
    if tie_weights and copy in hf_state:
        if original in hf_state and not torch.equal(hf_state[copy], hf_state[original]):
            raise ModalzooError(f"'{copy}' differs from '{original}': the zoo ties them (set the clm target's "
                                f"tie_weights: false)")
        ignored.add(copy)
    pairs = _pairs(stream, target, count_layers(hf_state, "transformer.h."), tie_weights)
    return to_zoo(pairs, hf_state, "HF gpt2", ignored=ignored)


def zoo_to_hf(zoo_state: Mapping[str, Tensor], stream: str = "text", target: str = "lm") -> dict[str, Tensor]:
    """The inverse of `hf_to_zoo`; an untied zoo head (``targets.<target>.head.weight``) gives an untied
    ``lm_head``."""
    tie_weights = f"targets.{target}.head.weight" not in zoo_state
    layers = count_layers(zoo_state, f"streams.{stream}.encoder.blocks.")
    hf = from_zoo(_pairs(stream, target, layers, tie_weights), zoo_state)
    if tie_weights:
        hf[TIED[0]] = hf[TIED[1]]
    return hf


def hf_config_kwargs(recipe_cfg) -> dict:
    """`GPT2Config` kwargs for a recipe (or its ``model`` section); raises naming every option GPT-2
    cannot express."""
    p = causal_lm.parts("gpt2", recipe_cfg)
    emb, enc, e, n = p.emb, p.enc, f"{p.where_s}.embedding", f"{p.where_s}.encoder"
    need = {**causal_lm.common_needs(p),
            f"{e}.positions": (emb.positions, "learned"), f"{n}.positions": (enc.positions, "none"),
            f"{n}.norm": (enc.norm, "layernorm"), f"{n}.bias": (enc.bias, True),
            f"{n}.kv_heads": (enc.key_value_heads, enc.heads)}
    if enc.activation not in HIDDEN_ACT:
        need[f"{n}.activation"] = (enc.activation, "|".join(HIDDEN_ACT))
    if enc.attn_scale not in (0.0, 1.0):       # GPT-2 scales by 1/sqrt(head_dim) or (scale_attn_weights off) 1
        need[f"{n}.attn_scale"] = (enc.attn_scale, "0 (1/sqrt(head_dim)) or 1.0")
    refuse("gpt2", need)
    return dict(vocab_size=emb.vocab_size, n_positions=emb.max_positions, n_embd=enc.dim, n_layer=enc.layers,
                n_head=enc.heads, n_inner=enc.hidden_ffn, activation_function=HIDDEN_ACT[enc.activation],
                resid_pdrop=enc.dropout, embd_pdrop=emb.dropout, attn_pdrop=enc.attn_dropout,
                layer_norm_epsilon=enc.norm_eps, scale_attn_weights=enc.attn_scale == 0.0,
                tie_word_embeddings=p.clm.tie_weights)


# ---------------------------------------------------------------------------------------------- Architecture

def _config(model: dict, _stream, prep) -> dict:
    return {**hf_config_kwargs(model), **causal_lm.token_ids("gpt2", prep, tokenizer_name="bytelevel_bpe")}


def _to_hf(model: nn.Module, spec: dict, _stream, _kwargs) -> dict[str, Tensor]:
    stream, target = causal_lm.names(spec)
    return zoo_to_hf(model.state_dict(), stream=stream, target=target)


def _to_zoo(hf_state, spec: dict, _stream) -> dict[str, Tensor]:
    p = causal_lm.parts("gpt2", spec)
    return hf_to_zoo(hf_state, stream=p.stream, target=p.target, tie_weights=p.clm.tie_weights)


register(Architecture(
    name="gpt2", model_type="gpt2", model_class="GPT2LMHeadModel", auto_class="AutoModelForCausalLM",
    config_class="GPT2Config", matches=lambda model: causal_lm.positions_kind(model) not in (None, "none"),
    needs="one clm target over a `token` stream with learned positions and a causal transformer",
    hf_config=_config, to_hf=_to_hf, to_zoo=_to_zoo, compare=causal_lm.compare, pipeline_tag="text-generation",
    tags=("gpt2", "text-generation", "text"), preprocessing={"text": "gpt2"}, usage=causal_lm.USAGE))
