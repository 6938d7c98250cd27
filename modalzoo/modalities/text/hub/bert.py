"""Weight and config mapping between the zoo's text MLM model and `BertForMaskedLM`/`RobertaForMaskedLM`.

    hf_to_zoo(hf_model.state_dict(), arch="bert")     # -> load into the zoo PretrainModel (strict=True)
    zoo_to_hf(zoo_model.state_dict(), arch="bert")    # -> load into the HF model (strict=True)
    BertConfig(**hf_config_kwargs(recipe))            # the HF config of the same shape; refuses what BERT lacks

The only non-renaming step is the attention input: the zoo fuses query/key/value into one ``qkv`` Linear.
The two `Architecture` entries at the end (bert, roberta) are what `modalzoo export` / ``init_from=hf:`` use.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ....errors import ModalzooError
from ....hub.architecture import Architecture, only_target, register, target_kinds
from ....hub.mapping import HIDDEN_ACT, check_keys, count_layers, expand, refuse
from ....registry import EMBEDDINGS, ENCODERS, TARGETS, to_plain

# The differences between the two architectures' names: the model prefix and the MLM head's modules.
ARCHS = {
    "bert": {"base": "bert", "dense": "cls.predictions.transform.dense",
             "head_norm": "cls.predictions.transform.LayerNorm", "head": "cls.predictions"},
    "roberta": {"base": "roberta", "dense": "lm_head.dense", "head_norm": "lm_head.layer_norm", "head": "lm_head"},
}

# zoo name -> HF name(s), as templates: {s} stream, {t} target, {i} layer, {p} weight/bias, plus ARCHS' keys.
# A list of HF names is concatenated along dim 0 (query, key, value -> the fused qkv).
TABLE: list[tuple[str, str | list[str]]] = [
    ("streams.{s}.embedding.word.weight", "{base}.embeddings.word_embeddings.weight"),
    ("streams.{s}.embedding.position.table.weight", "{base}.embeddings.position_embeddings.weight"),
    ("streams.{s}.embedding.token_type.weight", "{base}.embeddings.token_type_embeddings.weight"),
    ("streams.{s}.embedding.norm.{p}", "{base}.embeddings.LayerNorm.{p}"),
    ("streams.{s}.encoder.blocks.{i}.attn.qkv.{p}",
     [f"{{base}}.encoder.layer.{{i}}.attention.self.{w}.{{p}}" for w in ("query", "key", "value")]),
    ("streams.{s}.encoder.blocks.{i}.attn.proj.{p}", "{base}.encoder.layer.{i}.attention.output.dense.{p}"),
    ("streams.{s}.encoder.blocks.{i}.norm1.{p}", "{base}.encoder.layer.{i}.attention.output.LayerNorm.{p}"),
    ("streams.{s}.encoder.blocks.{i}.mlp.fc1.{p}", "{base}.encoder.layer.{i}.intermediate.dense.{p}"),
    ("streams.{s}.encoder.blocks.{i}.mlp.fc2.{p}", "{base}.encoder.layer.{i}.output.dense.{p}"),
    ("streams.{s}.encoder.blocks.{i}.norm2.{p}", "{base}.encoder.layer.{i}.output.LayerNorm.{p}"),
    ("targets.{t}.dense.{p}", "{dense}.{p}"),
    ("targets.{t}.norm.{p}", "{head_norm}.{p}"),
    ("targets.{t}.bias", "{head}.bias"),
]
# HF buffers that some checkpoints carry and that the zoo recomputes.
IGNORED_BUFFERS = ("{base}.embeddings.position_ids", "{base}.embeddings.token_type_ids")


def _pairs(arch: str, stream: str, target: str, layers: int, tie_weights: bool) -> list[tuple[str, list[str]]]:
    """(zoo name, [HF names]) for every zoo tensor."""
    if arch not in ARCHS:
        raise ModalzooError(f"unknown arch '{arch}'; expected one of {', '.join(ARCHS)}")
    names = dict(ARCHS[arch], s=stream, t=target)
    pairs = [(zoo, hf) for zoo, hf, _ in expand(TABLE, names, {"i": layers})]
    if not tie_weights:   # HF's forward adds decoder.bias; untied (transformers >= 5) it is not the head bias
        pairs = [(z, [f"{names['head']}.decoder.bias"] if z == f"targets.{target}.bias" else hs) for z, hs in pairs]
        pairs.append((f"targets.{target}.decoder.weight", [f"{names['head']}.decoder.weight"]))
    return pairs


def _duplicates(arch: str, tie_weights: bool) -> dict[str, str]:
    """HF keys that repeat a mapped HF key: tied to it, or (untied) a head bias HF's forward never reads."""
    base, head = ARCHS[arch]["base"], ARCHS[arch]["head"]
    if tie_weights:
        return {f"{head}.decoder.weight": f"{base}.embeddings.word_embeddings.weight",
                f"{head}.decoder.bias": f"{head}.bias"}
    return {f"{head}.bias": f"{head}.decoder.bias"}


def hf_to_zoo(hf_state: Mapping[str, Tensor], stream: str = "text", target: str = "mlm", arch: str = "bert",
              tie_weights: bool = True) -> dict[str, Tensor]:
    """A `BertForMaskedLM`/`RobertaForMaskedLM` state dict as zoo `PretrainModel` names.

    Every HF tensor is either mapped or known to be redundant (buffers; the tied decoder, which must equal
    the word embedding and head bias); anything else raises. ``tie_weights=False`` maps the decoder to the
    zoo's untied ``targets.<target>.decoder``.
    """
    layers = count_layers(hf_state, f"{arch}.encoder.layer.")
    pairs = _pairs(arch, stream, target, layers, tie_weights)
    duplicates = _duplicates(arch, tie_weights)
    for copy, original in duplicates.items():
        if tie_weights and copy in hf_state and original in hf_state and \
                not torch.equal(hf_state[copy], hf_state[original]):
            raise ModalzooError(f"'{copy}' differs from '{original}': the zoo ties them"
                                + (" (build the zoo model with tie_weights: false)" if "weight" in copy else ""))
    mapped = {h for _, hs in pairs for h in hs}
    ignored = set(duplicates) | {b.format(**ARCHS[arch]) for b in IGNORED_BUFFERS}
    check_keys([h for _, hs in pairs for h in hs if h not in hf_state],
                sorted(set(hf_state) - mapped - ignored), f"HF {arch}")
    return {zoo: torch.cat([hf_state[h] for h in hs]) if len(hs) > 1 else hf_state[hs[0]] for zoo, hs in pairs}


def zoo_to_hf(zoo_state: Mapping[str, Tensor], stream: str = "text", target: str = "mlm", arch: str = "bert",
              ) -> dict[str, Tensor]:
    """The inverse of `hf_to_zoo`: zoo names -> HF names, with the tied decoder weight and bias filled in.

    An untied zoo head (a ``targets.<target>.decoder.weight``) gives an untied HF decoder."""
    layers = count_layers(zoo_state, f"streams.{stream}.encoder.blocks.")
    tie_weights = f"targets.{target}.decoder.weight" not in zoo_state
    pairs = _pairs(arch, stream, target, layers, tie_weights)
    zoo_names = {z for z, _ in pairs}
    check_keys([z for z, _ in pairs if z not in zoo_state], sorted(set(zoo_state) - zoo_names), "zoo")
    hf: dict[str, Tensor] = {}
    for zoo, hs in pairs:
        if len(hs) == 1:
            hf[hs[0]] = zoo_state[zoo]
        else:   # copies, not views of qkv: tensors sharing storage are refused by safetensors
            hf.update((h, part.clone()) for h, part in zip(hs, zoo_state[zoo].chunk(len(hs))))
    for copy, original in _duplicates(arch, tie_weights).items():
        hf[copy] = hf[original]
    return hf


def hf_config_kwargs(recipe_cfg, stream: str = "text", target: str = "mlm", arch: str = "bert") -> dict:
    """`BertConfig`/`RobertaConfig` kwargs for a recipe (or its ``model`` section).

    Raises ModalzooError naming every option the HF architecture cannot express.
    """
    if arch not in ARCHS:
        raise ModalzooError(f"unknown arch '{arch}'; expected one of {', '.join(ARCHS)}")
    model = to_plain(recipe_cfg)
    model = model.get("model", model)
    streams, targets = model.get("streams") or {}, model.get("targets") or {}
    where_s, where_t = f"model.streams.{stream}", f"model.targets.{target}"
    if stream not in streams or target not in targets:
        raise ModalzooError(f"{arch} export needs '{where_s}' and '{where_t}'")
    extra = [f"model.streams.{n}" for n in streams if n != stream] + \
            [f"model.targets.{n}" for n in targets if n != target] + \
            [f"{where_s}.{slot}" for slot in ("target_embedding", "decoder") if streams[stream].get(slot)]
    if extra:
        raise ModalzooError(f"{arch} has one text encoder and one MLM head; it cannot express {', '.join(extra)}")
    spec = streams[stream]
    parts = ((f"{where_s}.embedding", spec["embedding"], "token"),
             (f"{where_s}.encoder", spec["encoder"], "transformer"), (where_t, targets[target], "mlm"))
    for where, part, name in parts:
        if part.get("name") != name:
            raise ModalzooError(f"'{where}.name' = {part.get('name')!r}: {arch} export needs '{name}'")
    emb = EMBEDDINGS.make_config(spec["embedding"], f"{where_s}.embedding")
    enc = ENCODERS.make_config(spec["encoder"], f"{where_s}.encoder")
    mlm = TARGETS.make_config(targets[target], where_t)

    offset = 2 if arch == "roberta" else 0    # padding_idx + 1 in RoBERTa, with padding_idx = pad_token_id = 1
    need = {  # option -> (its value, the value BERT/RoBERTa has)
        f"{where_s}.encoder.prenorm": (enc.prenorm, False),
        f"{where_s}.encoder.final_norm": (enc.final_norm, False),
        f"{where_s}.encoder.norm": (enc.norm, "layernorm"),
        f"{where_s}.encoder.positions": (enc.positions, "none"),
        f"{where_s}.encoder.mask": (enc.mask, "bidirectional"),
        f"{where_s}.encoder.bias": (enc.bias, True),
        f"{where_s}.encoder.cross_attention": (enc.cross_attention, False),
        f"{where_s}.encoder.kv_heads": (enc.key_value_heads, enc.heads),
        f"{where_s}.encoder.attn_scale": (enc.attn_scale, 0.0),
        f"{where_s}.encoder.dim": (enc.dim, emb.dim),
        f"{where_s}.embedding.positions": (emb.positions, "learned"),
        f"{where_s}.embedding.position_offset": (emb.position_offset, offset),
        f"{where_s}.embedding.norm": (emb.norm, "layernorm"),
        f"{where_s}.embedding.norm_eps": (emb.norm_eps, enc.norm_eps),
        f"{where_s}.embedding.dropout": (emb.dropout, enc.dropout),
        f"{where_t}.head_norm": (mlm.head_norm, "layernorm"),
        f"{where_t}.head_norm_eps": (mlm.head_norm_eps, enc.norm_eps),
        # BERT's head uses hidden_act; RoBERTa's is always exact GELU
        f"{where_t}.head_activation": (mlm.head_activation, enc.activation if arch == "bert"
                                       and enc.activation in HIDDEN_ACT else "gelu"),
    }
    if enc.activation not in HIDDEN_ACT:
        need[f"{where_s}.encoder.activation"] = (enc.activation, "|".join(HIDDEN_ACT))
    if emb.type_vocab_size < 1:
        need[f"{where_s}.embedding.type_vocab_size"] = (emb.type_vocab_size, ">= 1")
    refuse(arch, need)
    return dict(vocab_size=emb.vocab_size, hidden_size=enc.dim, num_hidden_layers=enc.layers,
                num_attention_heads=enc.heads, intermediate_size=enc.hidden_ffn,
                max_position_embeddings=emb.max_positions + emb.position_offset,
                type_vocab_size=emb.type_vocab_size, layer_norm_eps=enc.norm_eps,
                hidden_act=HIDDEN_ACT[enc.activation], hidden_dropout_prob=enc.dropout,
                attention_probs_dropout_prob=enc.attn_dropout, tie_word_embeddings=mlm.tie_weights,
                **({"pad_token_id": offset - 1} if arch == "roberta" else {}))


# ---------------------------------------------------------------------------------------------- Architectures

def _mlm_names(model: dict) -> tuple[str, str]:
    name, target = only_target(model, "mlm")
    return TARGETS.make_config(target, f"model.targets.{name}").stream, name


def _matches(arch: str):
    """One mlm target over a `token` stream; RoBERTa's positions start at 2, BERT's anywhere else (its
    config then refuses any offset but 0, naming it)."""
    def matches(model: dict) -> bool:
        if target_kinds(model) != ["mlm"]:
            return False
        stream, _ = _mlm_names(model)
        emb = ((model.get("streams") or {}).get(stream) or {}).get("embedding") or {}
        if emb.get("name") != "token":
            return False
        roberta = EMBEDDINGS.make_config(emb, "embedding").position_offset == 2
        return roberta == (arch == "roberta")
    return matches


def _config(arch: str):
    def config(model: dict, _stream, prep) -> dict:
        stream, target = _mlm_names(model)
        kwargs = hf_config_kwargs(model, stream=stream, target=target, arch=arch)
        tok = prep.tokenizer
        if tok is None:
            raise ModalzooError(f"{arch} export needs the run's tokenizer.json")
        want = "wordpiece" if arch == "bert" else "bytelevel_bpe"
        if prep.get("tokenizer_name") != want:
            raise ModalzooError(f"{arch} export needs a {want} tokenizer; data.tokenizer.name is "
                                f"{prep.get('tokenizer_name')!r}")
        if arch == "roberta" and tok.pad_id != 1:     # RoBERTa's positions count from padding_idx + 1 = 2
            raise ModalzooError(f"roberta needs the pad token at id 1, the tokenizer has it at {tok.pad_id} "
                                f"(data.tokenizer.specials_at_end must be false)")
        return {**kwargs, "pad_token_id": tok.pad_id, "bos_token_id": tok.bos_id, "eos_token_id": tok.eos_id}
    return config


def _to_hf(arch: str):
    def to_hf(model: nn.Module, spec: dict, _stream, _kwargs) -> dict[str, Tensor]:
        stream, target = _mlm_names(spec)
        return zoo_to_hf(model.state_dict(), stream=stream, target=target, arch=arch)
    return to_hf


def _to_zoo(arch: str):
    def to_zoo(hf_state, spec: dict, _stream) -> dict[str, Tensor]:
        stream, target = _mlm_names(spec)
        tie = TARGETS.make_config(only_target(spec, "mlm")[1], "target").tie_weights
        return hf_to_zoo(hf_state, stream=stream, target=target, arch=arch, tie_weights=tie)
    return to_zoo


def text_batch(vocab: int, tok, lengths=(12, 7)) -> dict[str, Tensor]:
    """Two rows of random non-special ids framed by bos/eos, the second right-padded."""
    g = torch.Generator().manual_seed(0)
    ordinary = torch.tensor([i for i in range(min(vocab, tok.vocab_size)) if i not in set(tok.special_ids)])
    B, L = len(lengths), max(lengths)
    ids = ordinary[torch.randint(len(ordinary), (B, L), generator=g)]
    mask = torch.arange(L)[None] < torch.tensor(lengths)[:, None]
    ids[:, 0] = tok.bos_id
    ids[torch.arange(B), torch.tensor(lengths) - 1] = tok.eos_id
    ids[~mask] = tok.pad_id
    return {"input_ids": ids, "attention_mask": mask.long()}


def _compare(zoo, hf, spec: dict, _stream, prep) -> dict[str, float]:
    stream, target = _mlm_names(spec)
    batch = text_batch(hf.config.vocab_size, prep.tokenizer)
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        out = zoo.streams[stream](batch)
        zoo_logits = zoo.targets[target].logits(out.hidden.x[real], out)
        hf_logits = hf(**batch).logits[real]
    return {"logits": (zoo_logits - hf_logits).abs().max().item()}


USAGE = '''import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("{model_id}")
model = AutoModelForMaskedLM.from_pretrained("{model_id}").eval()
inputs = tokenizer(f"the {{tokenizer.mask_token}} of the function", return_tensors="pt")
with torch.no_grad():
    logits = model(**inputs).logits
masked = inputs["input_ids"][0] == tokenizer.mask_token_id
print(tokenizer.convert_ids_to_tokens(logits[0, masked].topk(5).indices[0].tolist()))'''


def _architecture(arch: str, model_class: str, needs: str) -> Architecture:
    return Architecture(
        name=arch, model_type=arch, model_class=model_class, auto_class="AutoModelForMaskedLM",
        config_class=model_class.removesuffix("ForMaskedLM") + "Config", matches=_matches(arch), needs=needs,
        hf_config=_config(arch), to_hf=_to_hf(arch), to_zoo=_to_zoo(arch), compare=_compare,
        pipeline_tag="fill-mask", tags=(arch, "fill-mask", "text"), preprocessing={"text": arch}, usage=USAGE)


register(_architecture("bert", "BertForMaskedLM", "one mlm target over a `token` stream"),
         _architecture("roberta", "RobertaForMaskedLM",
                       "one mlm target over a `token` stream with position_offset 2"))
