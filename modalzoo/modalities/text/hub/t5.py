"""Weight and config mapping between the zoo's T5-layout encoder-decoder and
`transformers.T5ForConditionalGeneration`.

    hf_to_zoo(hf_model.state_dict())             # -> load into the zoo PretrainModel (strict=True)
    zoo_to_hf(zoo_model.state_dict())            # -> load into T5ForConditionalGeneration (strict=True)
    T5Config(**hf_config_kwargs(recipe))          # the HF config of the same shape; refuses what T5 lacks

The zoo's T5 is one `token` stream whose decoder input (``target_embedding``) shares the encoder's table:
T5's ``shared`` (HF repeats it as ``encoder.embed_tokens`` and ``decoder.embed_tokens``, and, tied, as
``lm_head``). Each stack's relative position bias is one table, in HF block 0's self-attention (the other
blocks reuse it). The zoo fuses query/key/value (``qkv``) and the cross-attention's key/value (``kv``); a
gated feed-forward (geglu: T5 v1.1's gated-gelu, swiglu: gated-silu) fuses ``[wi_0 | wi_1]`` as ``fc1``.
The target is `span_corruption`, `ul2` or `clm` with ``source: decoder``; T5 v1.0 ties the head and scales the
decoder output by d_model ** -0.5 (the target's default), v1.1 unties it and does not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ....errors import ModalzooError
from ....hub.architecture import Architecture, register, target_kinds
from ....hub.mapping import check_names, count_layers, expand, from_zoo, refuse, stack_rows, to_zoo
from ....registry import DECODERS, EMBEDDINGS, ENCODERS, TARGET_EMBEDDINGS, TARGETS, to_plain
from .bert import text_batch

KINDS = ("span_corruption", "ul2", "clm")             # the targets a T5 export carries (on the decoder)
FEED_FORWARD = {"relu": "relu", "gelu": "gelu", "gelu_tanh": "gelu_new", "quick_gelu": "quick_gelu",
                "geglu": "gated-gelu", "swiglu": "gated-silu"}       # zoo activation -> T5's feed_forward_proj
GATED = ("geglu", "swiglu")
ATTENTION = [("attn.qkv.weight", [f"layer.0.SelfAttention.{w}.weight" for w in "qkv"]),
             ("attn.proj.weight", "layer.0.SelfAttention.o.weight"), ("norm1.weight", "layer.0.layer_norm.weight")]
CROSS = [("cross_attn.q.weight", "layer.1.EncDecAttention.q.weight"),
         ("cross_attn.kv.weight", ["layer.1.EncDecAttention.k.weight", "layer.1.EncDecAttention.v.weight"]),
         ("cross_attn.proj.weight", "layer.1.EncDecAttention.o.weight"),
         ("norm_cross.weight", "layer.1.layer_norm.weight")]
SHARED = "shared.weight"
HEAD = ("targets.{t}.head.weight", "lm_head.weight")     # the untied head (v1.1)
# Old checkpoints carry a relative bias for the decoder's cross-attention that T5 never reads (transformers
# drops it on load: `_keys_to_ignore_on_load_unexpected`); the zoo's cross-attention has none either.
UNREAD = "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight"


def feed_forward(n: int, gated: bool) -> list[tuple]:
    """The feed-forward rows of a block whose FF sublayer is HF's ``layer.{n}``."""
    ff = f"layer.{n}.DenseReluDense"
    fc1 = [f"{ff}.wi_0.weight", f"{ff}.wi_1.weight"] if gated else f"{ff}.wi.weight"
    return [("mlp.fc1.weight", fc1), ("mlp.fc2.weight", f"{ff}.wo.weight"),
            ("norm2.weight", f"layer.{n}.layer_norm.weight")]


def table(gated: bool, tie_weights: bool) -> list[tuple]:
    s = "streams.{s}."
    rows = [(s + "embedding.word.weight", SHARED)]
    for stack, layer, counter in (("encoder", ATTENTION + feed_forward(1, gated), "i"),
                                  ("decoder", ATTENTION + CROSS + feed_forward(2, gated), "j")):
        bias = f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"     # block 0 only
        rows += [(f"{s}{stack}.relative.table.weight", bias),
                 *stack_rows(layer, f"{s}{stack}.blocks.", f"{stack}.block.", counter),
                 (f"{s}{stack}.norm.weight", f"{stack}.final_layer_norm.weight")]
    return rows + ([] if tie_weights else [HEAD])


def tied_copies(tie_weights: bool) -> list[str]:
    """HF keys that repeat ``shared.weight``."""
    return ["encoder.embed_tokens.weight", "decoder.embed_tokens.weight"] + (["lm_head.weight"] if tie_weights else [])


def _pairs(stream: str, target: str, enc_layers: int, dec_layers: int, gated: bool, tie_weights: bool):
    return expand(table(gated, tie_weights), {"s": stream, "t": target}, {"i": enc_layers, "j": dec_layers})


def hf_to_zoo(hf_state: Mapping[str, Tensor], stream: str = "text", target: str = "t5",
              tie_weights: bool = True) -> dict[str, Tensor]:
    """A `T5ForConditionalGeneration` state dict as zoo names; every HF tensor is mapped or (the copies of
    ``shared``) checked equal to it, anything else raises. ``tie_weights=False``: ``lm_head`` -> the target's
    own ``head`` (T5 v1.1)."""
    ignored = {UNREAD}
    for copy in tied_copies(tie_weights):
        if copy in hf_state:
            if SHARED in hf_state and not torch.equal(hf_state[copy], hf_state[SHARED]):
                raise ModalzooError(f"'{copy}' differs from '{SHARED}': the zoo ties them"
                                    + (" (set the target's tie_weights: false)" if copy == "lm_head.weight" else ""))
            ignored.add(copy)
    gated = "encoder.block.0.layer.1.DenseReluDense.wi_0.weight" in hf_state
    pairs = _pairs(stream, target, count_layers(hf_state, "encoder.block."), count_layers(hf_state, "decoder.block."),
                   gated, tie_weights)
    return to_zoo(pairs, hf_state, "HF t5", ignored=ignored)


def zoo_to_hf(zoo_state: Mapping[str, Tensor], stream: str = "text", target: str = "t5") -> dict[str, Tensor]:
    """The inverse of `hf_to_zoo`, with ``shared``'s copies filled in; an untied zoo head
    (``targets.<target>.head.weight``) gives an untied ``lm_head``."""
    tie_weights = f"targets.{target}.head.weight" not in zoo_state
    fc1 = zoo_state[f"streams.{stream}.encoder.blocks.0.mlp.fc1.weight"]
    fc2 = zoo_state[f"streams.{stream}.encoder.blocks.0.mlp.fc2.weight"]
    gated = fc1.shape[0] == 2 * fc2.shape[1]
    pairs = _pairs(stream, target, count_layers(zoo_state, f"streams.{stream}.encoder.blocks."),
                   count_layers(zoo_state, f"streams.{stream}.decoder.blocks."), gated, tie_weights)
    hf = from_zoo(pairs, zoo_state)
    for copy in tied_copies(tie_weights):
        hf[copy] = hf[SHARED]
    return hf


# ------------------------------------------------------------------------------------------------ config

def t5_target(model: dict) -> tuple[str, str] | None:
    """(stream, target) when the model is one decoder-side LM target over a `token` stream with a decoder."""
    kinds = target_kinds(model)
    if len(kinds) != 1 or kinds[0] not in KINDS:
        return None
    name, spec = next(iter(model["targets"].items()))
    cfg = TARGETS.make_config(spec, f"model.targets.{name}")
    stream = (model.get("streams") or {}).get(cfg.stream) or {}
    if cfg.source != "decoder" or not stream.get("decoder") or (stream.get("embedding") or {}).get("name") != "token":
        return None
    return cfg.stream, name


@dataclass
class Parts:
    stream: str
    target: str
    emb: object
    temb: object
    enc: object
    dec: object
    lm: object
    where_s: str
    where_t: str


def parts(recipe_cfg) -> Parts:
    model = to_plain(recipe_cfg)
    model = model.get("model", model)
    found = t5_target(model)
    if found is None:
        raise ModalzooError(f"t5 export needs one target of {'/'.join(KINDS)} with source: decoder over a `token` "
                            f"stream with a decoder; the model has targets {target_kinds(model)}")
    stream, target = found
    streams = model["streams"]
    where_s, where_t = f"model.streams.{stream}", f"model.targets.{target}"
    extra = [f"model.streams.{n}" for n in streams if n != stream]
    if extra:
        raise ModalzooError(f"t5 has one encoder-decoder; it cannot express {', '.join(extra)}")
    spec = streams[stream]
    check_names("t5", [(f"{where_s}.embedding", spec.get("embedding"), "token"),
                       (f"{where_s}.encoder", spec.get("encoder"), "transformer"),
                       (f"{where_s}.target_embedding", spec.get("target_embedding"), "token"),
                       (f"{where_s}.decoder", spec.get("decoder"), "transformer")])
    return Parts(stream, target, EMBEDDINGS.make_config(spec["embedding"], f"{where_s}.embedding"),
                 TARGET_EMBEDDINGS.make_config(spec["target_embedding"], f"{where_s}.target_embedding"),
                 ENCODERS.make_config(spec["encoder"], f"{where_s}.encoder"),
                 DECODERS.make_config(spec["decoder"], f"{where_s}.decoder"),
                 TARGETS.make_config(model["targets"][target], where_t), where_s, where_t)


def stack_needs(where: str, stack, mask: str, cross: bool) -> dict[str, tuple]:
    return {f"{where}.prenorm": (stack.prenorm, True), f"{where}.final_norm": (stack.final_norm, True),
            f"{where}.norm": (stack.norm, "rmsnorm"), f"{where}.bias": (stack.bias, False),
            f"{where}.positions": (stack.positions, "t5_relative"), f"{where}.mask": (stack.mask, mask),
            f"{where}.cross_attention": (stack.cross_attention, cross), f"{where}.attn_scale": (stack.attn_scale, 1.0),
            f"{where}.kv_heads": (stack.key_value_heads, stack.heads),
            f"{where}.attn_dropout": (stack.attn_dropout, stack.dropout)}


def hf_config_kwargs(recipe_cfg) -> dict:
    """`T5Config` kwargs for a recipe (or its ``model`` section); raises naming every option T5 cannot express."""
    p = parts(recipe_cfg)
    emb, temb, enc, dec = p.emb, p.temb, p.enc, p.dec
    e, te, n, d = (f"{p.where_s}.{slot}" for slot in ("embedding", "target_embedding", "encoder", "decoder"))
    need = {**stack_needs(n, enc, "bidirectional", False), **stack_needs(d, dec, "causal", True),
            f"{e}.positions": (emb.positions, "none"), f"{e}.norm": (emb.norm, "none"),
            f"{e}.type_vocab_size": (emb.type_vocab_size, 0), f"{e}.shares": (emb.shares, ""),
            f"{e}.dropout": (emb.dropout, enc.dropout), f"{n}.dim": (enc.dim, emb.dim),
            f"{te}.shares": (temb.shares, f"streams.{p.stream}.embedding"),
            f"{te}.dropout": (temb.dropout, enc.dropout),
            # one value for both stacks in T5Config
            **{f"{d}.{k}": (getattr(dec, k), getattr(enc, k)) for k in (
                "dim", "heads", "hidden_ffn", "activation", "norm_eps", "rel_buckets", "rel_max_distance", "dropout")}}
    for where, cfg in ((e, emb), (te, temb)):
        if cfg.output_dim not in (0, cfg.dim):
            need[f"{where}.output_dim"] = (cfg.output_dim, 0)
    if enc.activation not in FEED_FORWARD:
        need[f"{n}.activation"] = (enc.activation, "|".join(FEED_FORWARD))
    refuse("t5", need)
    return dict(vocab_size=emb.vocab_size, d_model=enc.dim, d_kv=enc.dim // enc.heads, d_ff=enc.hidden_ffn,
                num_layers=enc.layers, num_decoder_layers=dec.layers, num_heads=enc.heads,
                relative_attention_num_buckets=enc.rel_buckets, relative_attention_max_distance=enc.rel_max_distance,
                dropout_rate=enc.dropout, layer_norm_epsilon=enc.norm_eps,
                feed_forward_proj=FEED_FORWARD.get(enc.activation, "relu"), tie_word_embeddings=p.lm.tie_weights,
                scale_decoder_outputs=p.lm.scaled)


def untie(model: nn.Module, kwargs: dict) -> None:
    """T5 v1.1's own ``lm_head``. transformers 5's T5Config forces tie_word_embeddings to true (keeping only its
    "no output scaling" meaning), so a model built from a config shares ``shared`` and ``lm_head``; given its own
    Parameter here, the mapped weights load into both, save_pretrained writes both, and from_pretrained leaves
    them untied because they differ (as it loads Google's v1.1 checkpoints, logging that it does)."""
    if kwargs.get("tie_word_embeddings") is False:
        model.lm_head.weight = nn.Parameter(model.shared.weight.detach().clone())


# ---------------------------------------------------------------------------------------------- Architecture

def _config(model: dict, _stream, prep) -> dict:
    kwargs = hf_config_kwargs(model)
    tok = prep.tokenizer
    if tok is None:
        raise ModalzooError("t5 export needs the run's tokenizer.json")
    if not getattr(tok, "sentinel_ids", None):
        raise ModalzooError("t5 export needs sentinel tokens in the tokenizer (data.tokenizer.extra_ids)")
    # T5 starts the decoder from the pad id (decoder_start_token_id), as the zoo's generation does.
    return {**kwargs, "pad_token_id": tok.pad_id, "eos_token_id": tok.eos_id, "bos_token_id": tok.bos_id,
            "decoder_start_token_id": tok.pad_id}


def names(spec) -> tuple[str, str]:
    """(stream, target) of a T5-shaped recipe or model section."""
    model = to_plain(spec)
    model = model.get("model", model)
    found = t5_target(model)
    if found is None:
        parts(model)                                  # raises, naming what the model lacks
    return found


def _to_hf(model: nn.Module, spec: dict, _stream, _kwargs) -> dict[str, Tensor]:
    stream, target = names(spec)
    return zoo_to_hf(model.state_dict(), stream=stream, target=target)


def _to_zoo(hf_state, spec: dict, _stream) -> dict[str, Tensor]:
    p = parts(spec)
    return hf_to_zoo(hf_state, stream=p.stream, target=p.target, tie_weights=p.lm.tie_weights)


def seq2seq_batch(vocab: int, tok) -> dict[str, Tensor]:
    """Two right-padded encoder rows (`bert.text_batch`) and two decoder rows [pad, ...], the second shorter."""
    batch = text_batch(vocab, tok)
    decoder = text_batch(vocab, tok, lengths=(6, 4))
    ids = decoder["input_ids"].clone()
    ids[:, 0] = tok.pad_id                           # the decoder start
    return {**batch, "decoder_input_ids": ids, "decoder_attention_mask": decoder["attention_mask"]}


def zoo_logits(model: nn.Module, batch: dict[str, Tensor], stream: str, target: str) -> Tensor:
    """[B, T, vocab] logits of the zoo model at every decoder position."""
    out = model.streams[stream](batch)
    return model.targets[target].lm_logits(out.decoded.x, out)


def _compare(zoo, hf, spec: dict, _stream, prep) -> dict[str, float]:
    stream, target = names(spec)
    batch = seq2seq_batch(hf.config.vocab_size, prep.tokenizer)
    real = batch["decoder_attention_mask"].bool()
    with torch.no_grad():
        ours = zoo_logits(zoo, batch, stream, target)[real]
        theirs = hf(**batch).logits[real]
    return {"logits": (ours - theirs).abs().max().item()}


USAGE = '''import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("{model_id}")          # <s> ... </s>, as the encoder was trained
model = AutoModelForSeq2SeqLM.from_pretrained("{model_id}").eval()
inputs = tokenizer("Return the <extra_id_0> of the <extra_id_1>.", return_tensors="pt")
with torch.no_grad():
    out = model.generate(**inputs, max_new_tokens=20, do_sample=False)   # fills the sentinels
print(tokenizer.decode(out[0]))'''


register(Architecture(
    name="t5", model_type="t5", model_class="T5ForConditionalGeneration", auto_class="AutoModelForSeq2SeqLM",
    config_class="T5Config", matches=lambda model: t5_target(model) is not None,
    needs=f"one {'/'.join(KINDS)} target with source: decoder over a `token` stream with a decoder",
    hf_config=_config, to_hf=_to_hf, to_zoo=_to_zoo, compare=_compare, pipeline_tag="text2text-generation",
    tags=("t5", "text2text-generation", "text"), preprocessing={"text": "t5"}, usage=USAGE,
    after_build=untie))
