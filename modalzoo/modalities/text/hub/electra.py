"""Weight and config mapping between the zoo's ELECTRA (an `electra` target over a generator and a discriminator
stream) and `ElectraForPreTraining` (the discriminator) / `ElectraForMaskedLM` (the generator).

    hf_to_zoo(hf.state_dict(), role="discriminator")   # -> zoo names (load with strict=False: one stream's part)
    zoo_to_hf(zoo.state_dict(), role="generator")      # -> ElectraForMaskedLM names (load with strict=True)
    ElectraConfig(**hf_config_kwargs(recipe, role="discriminator"))   # refuses what ELECTRA cannot express

Each export holds one stream: its encoder, its head and the word/position/type tables and norm it reads. In the
recipes the generator shares those tables with the discriminator (``shares:``), so the generator's tables come
from the discriminator's embedding, and both exports carry the same ones; each keeps its own
``embeddings_project`` (the zoo's ``project``). The encoder layers are BERT's (`bert.TABLE`'s rows); the only
non-renaming step is the fused ``qkv``. The `Architecture`s at the end (electra: the discriminator, detected;
electra_generator: chosen with ``--arch``) are what ``modalzoo export`` / ``init_from=hf:`` use.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ....errors import ModalzooError
from ....hub.architecture import Architecture, only_target, register, target_kinds
from ....hub.mapping import HIDDEN_ACT, Row, check_names, count_layers, expand, from_zoo, refuse, to_zoo
from ....registry import EMBEDDINGS, ENCODERS, TARGETS, to_plain
from . import bert

ROLES = ("discriminator", "generator")

# zoo name -> HF name: {e} the module path of the embedding that owns the tables, {s} the stream, {h} the head.
EMBEDDING: list[Row] = [
    ("{e}.word.weight", "electra.embeddings.word_embeddings.weight"),
    ("{e}.position.table.weight", "electra.embeddings.position_embeddings.weight"),
    ("{e}.token_type.weight", "electra.embeddings.token_type_embeddings.weight"),
    ("{e}.norm.{p}", "electra.embeddings.LayerNorm.{p}"),
]
PROJECT: list[Row] = [("streams.{s}.embedding.project.{p}", "electra.embeddings_project.{p}")]
ENCODER: list[Row] = [row for row in bert.TABLE if ".encoder." in row[0]]      # ELECTRA's layers are BERT's
HEADS: dict[str, list[Row]] = {
    "discriminator": [("{h}.dense.{p}", "discriminator_predictions.dense.{p}"),
                      ("{h}.prediction.{p}", "discriminator_predictions.dense_prediction.{p}")],
    "generator": [("{h}.dense.{p}", "generator_predictions.dense.{p}"),
                  ("{h}.norm.{p}", "generator_predictions.LayerNorm.{p}"),
                  ("{h}.bias", "generator_lm_head.bias")],
}
TIED = ("generator_lm_head.weight", "electra.embeddings.word_embeddings.weight")   # ElectraForMaskedLM's tie
IGNORED_BUFFERS = {"electra.embeddings.position_ids", "electra.embeddings.token_type_ids"}


def names(model: dict) -> dict[str, str]:
    """The electra target's name and its two streams: {"target", "generator", "discriminator"}."""
    target, spec = only_target(model, "electra")
    cfg = TARGETS.make_config(spec, f"model.targets.{target}")
    return {"target": target, "generator": cfg.generator, "discriminator": cfg.discriminator}


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ModalzooError(f"unknown ELECTRA role '{role}'; expected one of {', '.join(ROLES)}")


def _pairs(role: str, layers: int, project: bool, stream: str, target: str, tables: str):
    _check_role(role)
    table = [*EMBEDDING, *(PROJECT if project else []), *ENCODER, *HEADS[role]]
    fill = {"e": tables, "s": stream, "h": f"targets.{target}.{role}_head", "base": "electra"}
    return expand(table, fill, {"i": layers})


def hf_to_zoo(hf_state: Mapping[str, Tensor], role: str = "discriminator", stream: str | None = None,
              target: str = "electra", tables: str | None = None) -> dict[str, Tensor]:
    """An `ElectraForPreTraining` (role discriminator) or `ElectraForMaskedLM` (generator) state dict as zoo
    names. ``stream`` defaults to the role's name, ``tables`` (the module path of the embedding that owns the
    word/position/type tables) to that stream's embedding. Every HF tensor is mapped or known to be redundant
    (buffers; the generator's tied decoder, which must equal the word table); anything else raises."""
    stream = stream or role
    tables = tables or f"streams.{stream}.embedding"
    pairs = _pairs(role, count_layers(hf_state, "electra.encoder.layer."), "electra.embeddings_project.weight"
                   in hf_state, stream, target, tables)
    ignored = set(IGNORED_BUFFERS)
    if role == "generator" and TIED[0] in hf_state:
        if not torch.equal(hf_state[TIED[0]], hf_state[TIED[1]]):
            raise ModalzooError(f"'{TIED[0]}' differs from '{TIED[1]}': the zoo's generator ties them "
                                "(tie_word_embeddings must be true)")
        ignored.add(TIED[0])
    return to_zoo(pairs, hf_state, f"HF electra {role}", ignored=ignored)


def zoo_to_hf(zoo_state: Mapping[str, Tensor], role: str = "discriminator", stream: str | None = None,
              target: str = "electra", tables: str | None = None) -> dict[str, Tensor]:
    """The inverse of `hf_to_zoo`, for the role's part of a zoo state dict (other keys are left out): its
    tables, stream and head, with the generator's tied decoder weight filled in."""
    stream = stream or role
    tables = tables or f"streams.{stream}.embedding"
    _check_role(role)
    own = (*(f"{tables}.{t}." for t in ("word", "position", "token_type", "norm")), f"streams.{stream}.",
           f"targets.{target}.{role}_head.")
    part = {k: v for k, v in zoo_state.items() if k.startswith(own)}
    pairs = _pairs(role, count_layers(part, f"streams.{stream}.encoder.blocks."),
                   f"streams.{stream}.embedding.project.weight" in part, stream, target, tables)
    hf = from_zoo(pairs, part)
    if role == "generator":
        hf[TIED[0]] = hf[TIED[1]]
    return hf


def tables_of(model: dict, stream: str) -> str:
    """The module path of the embedding whose tables ``stream`` reads: the one it shares, or its own."""
    emb = (((model.get("streams") or {}).get(stream) or {}).get("embedding")) or {}
    return emb.get("shares") or f"streams.{stream}.embedding"


def hf_config_kwargs(recipe_cfg, role: str = "discriminator") -> dict:
    """`ElectraConfig` kwargs of the role's stream of an ELECTRA recipe (or its ``model`` section).

    Raises ModalzooError naming every option ELECTRA cannot express."""
    _check_role(role)
    model = to_plain(recipe_cfg)
    model = model.get("model", model)
    n = names(model)
    stream, where_t = n[role], f"model.targets.{n['target']}"
    streams = model.get("streams") or {}
    spec, where_s = streams.get(stream) or {}, f"model.streams.{stream}"
    extra = [f"{where_s}.{slot}" for slot in ("target_embedding", "decoder") if spec.get(slot)] + \
            [f"model.targets.{t}" for t in (model.get("targets") or {}) if t != n["target"]]
    if extra:
        raise ModalzooError(f"ELECTRA is one text encoder with its head; it cannot express {', '.join(extra)}")
    check_names("electra", [(f"{where_s}.embedding", spec.get("embedding"), "token"),
                            (f"{where_s}.encoder", spec.get("encoder"), "transformer")])
    emb = EMBEDDINGS.make_config(spec["embedding"], f"{where_s}.embedding")
    enc = ENCODERS.make_config(spec["encoder"], f"{where_s}.encoder")
    cfg = TARGETS.make_config(model["targets"][n["target"]], where_t)
    e, c = f"{where_s}.embedding", f"{where_s}.encoder"
    need = {  # option -> (its value, the value ELECTRA has)
        f"{c}.prenorm": (enc.prenorm, False), f"{c}.final_norm": (enc.final_norm, False),
        f"{c}.norm": (enc.norm, "layernorm"), f"{c}.positions": (enc.positions, "none"),
        f"{c}.mask": (enc.mask, "bidirectional"), f"{c}.bias": (enc.bias, True),
        f"{c}.cross_attention": (enc.cross_attention, False), f"{c}.kv_heads": (enc.key_value_heads, enc.heads),
        f"{c}.attn_scale": (getattr(enc, "attn_scale", 0.0), 0.0),
        f"{c}.dim": (enc.dim, emb.output_dim or emb.dim),            # embeddings_project: embedding -> hidden
        f"{e}.positions": (emb.positions, "learned"), f"{e}.position_offset": (emb.position_offset, 0),
        f"{e}.norm": (emb.norm, "layernorm"), f"{e}.norm_eps": (emb.norm_eps, enc.norm_eps),
        f"{e}.dropout": (emb.dropout, enc.dropout),
    }
    if role == "discriminator":
        need[f"{where_t}.discriminator_activation"] = (cfg.discriminator_activation, enc.activation)
    else:   # ElectraGeneratorPredictions: exact GELU, LayerNorm with the model's eps
        need.update({f"{where_t}.head_activation": (cfg.head_activation, "gelu"),
                     f"{where_t}.head_norm": (cfg.head_norm, "layernorm"),
                     f"{where_t}.head_norm_eps": (cfg.head_norm_eps, enc.norm_eps)})
    if enc.activation not in HIDDEN_ACT:
        need[f"{c}.activation"] = (enc.activation, "|".join(HIDDEN_ACT))
    if emb.type_vocab_size < 1:
        need[f"{e}.type_vocab_size"] = (emb.type_vocab_size, ">= 1")
    refuse("electra", need)
    return dict(vocab_size=emb.vocab_size, embedding_size=emb.dim, hidden_size=enc.dim,
                num_hidden_layers=enc.layers, num_attention_heads=enc.heads, intermediate_size=enc.hidden_ffn,
                max_position_embeddings=emb.max_positions, type_vocab_size=emb.type_vocab_size,
                layer_norm_eps=enc.norm_eps, hidden_act=HIDDEN_ACT[enc.activation],
                hidden_dropout_prob=enc.dropout, attention_probs_dropout_prob=enc.attn_dropout,
                tie_word_embeddings=True)


# ---------------------------------------------------------------------------------------------- Architectures

def _check_stream(model: dict, role: str, stream: str | None) -> dict[str, str]:
    n = names(model)
    if stream is not None and stream != n[role]:
        other = "electra_generator" if role == "discriminator" else "electra"
        raise ModalzooError(f"--arch {'electra' if role == 'discriminator' else 'electra_generator'} exports the "
                            f"{role} stream '{n[role]}', not '{stream}'; --arch {other} exports the other one")
    return n


def _config(role: str):
    def config(model: dict, stream: str | None, prep) -> dict:
        _check_stream(model, role, stream)
        kwargs = hf_config_kwargs(model, role)
        tok = prep.tokenizer
        if tok is None:
            raise ModalzooError("electra export needs the run's tokenizer.json")
        if prep.get("tokenizer_name") != "wordpiece":
            raise ModalzooError(f"electra export needs a wordpiece tokenizer; data.tokenizer.name is "
                                f"{prep.get('tokenizer_name')!r}")
        return {**kwargs, "pad_token_id": tok.pad_id, "bos_token_id": tok.bos_id, "eos_token_id": tok.eos_id}
    return config


def _to_hf(role: str):
    def to_hf(model: nn.Module, spec: dict, stream: str | None, _kwargs) -> dict[str, Tensor]:
        n = _check_stream(spec, role, stream)
        return zoo_to_hf(model.state_dict(), role, n[role], n["target"], tables_of(spec, n[role]))
    return to_hf


def _to_zoo(role: str):
    def to_zoo_(hf_state, spec: dict, stream: str | None) -> dict[str, Tensor]:
        n = _check_stream(spec, role, stream)
        return hf_to_zoo(hf_state, role, n[role], n["target"], tables_of(spec, n[role]))
    return to_zoo_


def _compare(role: str):
    def compare(zoo, hf, spec: dict, stream: str | None, prep) -> dict[str, float]:
        n = _check_stream(spec, role, stream)
        batch = bert.text_batch(hf.config.vocab_size, prep.tokenizer)
        real = batch["attention_mask"].bool()
        target = zoo.targets[n["target"]]
        with torch.no_grad():
            out = zoo.streams[n[role]](batch)
            if role == "discriminator":
                zoo_logits = target.discriminator_head(out.hidden.x)[real]
            else:
                zoo_logits = target.generator_head.logits(out.hidden.x[real], out)
            hf_logits = hf(**batch).logits[real]
        return {"logits": (zoo_logits - hf_logits).abs().max().item()}
    return compare


DISCRIMINATOR_USAGE = '''import torch
from transformers import AutoModelForPreTraining, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("{model_id}")
model = AutoModelForPreTraining.from_pretrained("{model_id}").eval()
inputs = tokenizer("return the path of the function", return_tensors="pt")
with torch.no_grad():
    replaced = model(**inputs).logits[0] > 0        # True where the discriminator sees a replaced token
print(list(zip(tokenizer.convert_ids_to_tokens(inputs["input_ids"][0].tolist()), replaced.tolist())))'''

register(
    Architecture(
        name="electra", model_type="electra", model_class="ElectraForPreTraining",
        auto_class="AutoModelForPreTraining", config_class="ElectraConfig",
        matches=lambda model: target_kinds(model) == ["electra"],
        needs="one electra target (the discriminator is exported; --arch electra_generator exports the generator)",
        hf_config=_config("discriminator"), to_hf=_to_hf("discriminator"), to_zoo=_to_zoo("discriminator"),
        compare=_compare("discriminator"), pipeline_tag="feature-extraction",
        tags=("electra", "text", "replaced-token-detection"), preprocessing={"text": "bert"},
        usage=DISCRIMINATOR_USAGE, whole_model=False,
        card_note="The discriminator of an ELECTRA run; its generator exports with `--arch electra_generator`."),
    Architecture(
        name="electra_generator", model_type="electra", model_class="ElectraForMaskedLM",
        auto_class="AutoModelForMaskedLM", config_class="ElectraConfig",
        matches=lambda model: False,     # never detected: the other stream of an electra run, chosen with --arch
        needs="--arch electra_generator on a run with one electra target (it exports the generator)",
        hf_config=_config("generator"), to_hf=_to_hf("generator"), to_zoo=_to_zoo("generator"),
        compare=_compare("generator"), pipeline_tag="fill-mask", tags=("electra", "fill-mask", "text"),
        preprocessing={"text": "bert"}, usage=bert.USAGE, whole_model=False,
        card_note="The generator of an ELECTRA run (a small masked LM); the discriminator exports with "
                  "`--arch electra`."),
)
