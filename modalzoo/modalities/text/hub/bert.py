"""Weight and config mapping between a zoo text stream and transformers' BERT/RoBERTa: the whole MLM model
(`BertForMaskedLM`/`RobertaForMaskedLM`) or one stream's encoder alone (`BertModel`/`RobertaModel`).

    hf_to_zoo(hf_model.state_dict(), arch="bert")     # -> load into the zoo PretrainModel (strict=True)
    zoo_to_hf(zoo_model.state_dict(), arch="bert")    # -> load into the HF model (strict=True)
    BertConfig(**hf_config_kwargs(recipe))            # the HF config of the same shape; refuses what BERT lacks
    encoder_to_hf(zoo.state_dict(), stream="text")    # one stream -> BertModel(config, add_pooling_layer=False)
    encoder_to_zoo(bert_model.state_dict(), stream="text")        # -> that stream's zoo names (strict=False load)
    BertConfig(**encoder_config_kwargs(recipe, stream="text"))

Both directions of both kinds read one table: `STREAM_ROWS` (embedding and encoder layers) and, for the MLM
model, `HEAD_ROWS`. The only non-renaming step is the attention input: the zoo fuses query/key/value into one
``qkv`` Linear. The `Architecture` entries at the end are what `modalzoo export` / ``init_from=hf:`` use:
bert and roberta (whole MLM models, detected) and bert_encoder and roberta_encoder (one BERT-shaped text
stream of any model, e.g. a CLAP's or CLIP-style model's text tower: ``--arch bert_encoder --stream text``).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ....errors import ModalzooError
from ....hub.architecture import Architecture, only_target, register, target_kinds
from ....hub.mapping import HIDDEN_ACT, Pair, Row, check_names, count_layers, expand, from_zoo, refuse, to_zoo
from ....registry import EMBEDDINGS, ENCODERS, TARGETS, to_plain

# The differences between the two MLM architectures' names: the model prefix and the MLM head's modules.
ARCHS = {
    "bert": {"base": "bert", "dense": "cls.predictions.transform.dense",
             "head_norm": "cls.predictions.transform.LayerNorm", "head": "cls.predictions"},
    "roberta": {"base": "roberta", "dense": "lm_head.dense", "head_norm": "lm_head.layer_norm", "head": "lm_head"},
}

# zoo name -> HF name(s), as templates: {s} stream, {t} target, {i} layer, {p} weight/bias, plus ARCHS' keys.
# A list of HF names is concatenated along dim 0 (query, key, value -> the fused qkv). ``{base}.`` is the HF
# model prefix: "bert." in BertForMaskedLM, nothing in BertModel (`_stream_pairs` drops it there).
STREAM_ROWS: list[Row] = [
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
]
HEAD_ROWS: list[Row] = [
    ("targets.{t}.dense.{p}", "{dense}.{p}"),
    ("targets.{t}.norm.{p}", "{head_norm}.{p}"),
    ("targets.{t}.bias", "{head}.bias"),
]
TABLE: list[Row] = [*STREAM_ROWS, *HEAD_ROWS]     # the MLM model's (ELECTRA reads its encoder rows)
# HF buffers that some checkpoints carry and that the zoo recomputes (after the model prefix, if any).
IGNORED_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")


def _check_arch(arch: str) -> None:
    if arch not in ARCHS:
        raise ModalzooError(f"unknown arch '{arch}'; expected one of {', '.join(ARCHS)}")


def _stream_pairs(stream: str, layers: int, base: str | None) -> list[Pair]:
    """The stream's (zoo name, [HF names], None); ``base`` the HF model prefix, None for BertModel's bare names."""
    pairs = expand(STREAM_ROWS, {"s": stream, "base": base or ""}, {"i": layers})
    return [(zoo, hs if base else [h.removeprefix(".") for h in hs], t) for zoo, hs, t in pairs]


def _pairs(arch: str, stream: str, target: str, layers: int, tie_weights: bool) -> list[Pair]:
    """(zoo name, [HF names], None) for every tensor of the zoo MLM model."""
    _check_arch(arch)
    names = dict(ARCHS[arch], t=target)
    head = expand(HEAD_ROWS, names, {})
    if not tie_weights:   # HF's forward adds decoder.bias; untied (transformers >= 5) it is not the head bias
        head = [(z, [f"{names['head']}.decoder.bias"] if z == f"targets.{target}.bias" else hs, t)
                for z, hs, t in head]
        head.append((f"targets.{target}.decoder.weight", [f"{names['head']}.decoder.weight"], None))
    return _stream_pairs(stream, layers, names["base"]) + head


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
    _check_arch(arch)
    base = ARCHS[arch]["base"]
    pairs = _pairs(arch, stream, target, count_layers(hf_state, f"{base}.encoder.layer."), tie_weights)
    duplicates = _duplicates(arch, tie_weights)
    for copy, original in duplicates.items():
        if tie_weights and copy in hf_state and original in hf_state and \
                not torch.equal(hf_state[copy], hf_state[original]):
            raise ModalzooError(f"'{copy}' differs from '{original}': the zoo ties them"
                                + (" (build the zoo model with tie_weights: false)" if "weight" in copy else ""))
    ignored = set(duplicates) | {f"{base}.{b}" for b in IGNORED_BUFFERS}
    return to_zoo(pairs, hf_state, f"HF {arch}", ignored=ignored)


def zoo_to_hf(zoo_state: Mapping[str, Tensor], stream: str = "text", target: str = "mlm", arch: str = "bert",
              ) -> dict[str, Tensor]:
    """The inverse of `hf_to_zoo`: zoo names -> HF names, with the tied decoder weight and bias filled in.

    An untied zoo head (a ``targets.<target>.decoder.weight``) gives an untied HF decoder."""
    layers = count_layers(zoo_state, f"streams.{stream}.encoder.blocks.")
    tie_weights = f"targets.{target}.decoder.weight" not in zoo_state
    hf = from_zoo(_pairs(arch, stream, target, layers, tie_weights), zoo_state)
    for copy, original in _duplicates(arch, tie_weights).items():
        hf[copy] = hf[original]
    return hf


def encoder_to_zoo(hf_state: Mapping[str, Tensor], stream: str = "text", arch: str = "bert") -> dict[str, Tensor]:
    """A `BertModel`/`RobertaModel` (no pooler) state dict as the zoo names of one stream; a missing or unmapped
    HF key raises (a pooler is unmapped: load with ``add_pooling_layer=False``)."""
    _check_arch(arch)
    pairs = _stream_pairs(stream, count_layers(hf_state, "encoder.layer."), None)
    return to_zoo(pairs, hf_state, f"HF {arch} encoder", ignored=set(IGNORED_BUFFERS))


def encoder_to_hf(zoo_state: Mapping[str, Tensor], stream: str = "text") -> dict[str, Tensor]:
    """The inverse of `encoder_to_zoo`, for the ``streams.<stream>.`` part of a zoo state dict (the other keys are
    left out); a missing or unmapped key of that stream raises."""
    part = {k: v for k, v in zoo_state.items() if k.startswith(f"streams.{stream}.")}
    return from_zoo(_stream_pairs(stream, count_layers(part, f"streams.{stream}.encoder.blocks."), None), part)


# ---------------------------------------------------------------------------------------------- configs

def _stream_configs(arch: str, spec: dict, where: str):
    """The stream's embedding and encoder configs, once both are the kinds BERT is made of."""
    check_names(arch, [(f"{where}.embedding", spec.get("embedding"), "token"),
                       (f"{where}.encoder", spec.get("encoder"), "transformer")])
    return (EMBEDDINGS.make_config(spec["embedding"], f"{where}.embedding"),
            ENCODERS.make_config(spec["encoder"], f"{where}.encoder"))


def _stream_needs(family: str, where: str, emb, enc) -> dict[str, tuple]:
    """The options of a BERT-shaped text stream: a bidirectional post-norm LayerNorm Transformer with biases
    over learned absolute positions (RoBERTa's from 2) and token types, one normed and dropped embedding sum.
    option -> (its value, the value BERT/RoBERTa has)."""
    e, s = f"{where}.embedding", f"{where}.encoder"
    offset = 2 if family == "roberta" else 0    # padding_idx + 1 in RoBERTa, with padding_idx = pad_token_id = 1
    need = {
        f"{s}.prenorm": (enc.prenorm, False), f"{s}.final_norm": (enc.final_norm, False),
        f"{s}.norm": (enc.norm, "layernorm"), f"{s}.positions": (enc.positions, "none"),
        f"{s}.mask": (enc.mask, "bidirectional"), f"{s}.bias": (enc.bias, True),
        f"{s}.cross_attention": (enc.cross_attention, False), f"{s}.kv_heads": (enc.key_value_heads, enc.heads),
        f"{s}.attn_scale": (enc.attn_scale, 0.0), f"{s}.dim": (enc.dim, emb.dim),
        f"{e}.positions": (emb.positions, "learned"), f"{e}.position_offset": (emb.position_offset, offset),
        f"{e}.norm": (emb.norm, "layernorm"), f"{e}.norm_eps": (emb.norm_eps, enc.norm_eps),
        f"{e}.dropout": (emb.dropout, enc.dropout),
        f"{e}.output_dim": (emb.output_dim, emb.output_dim if emb.output_dim in (0, emb.dim) else 0),
        f"{e}.shares": (emb.shares, ""),        # its tables belong to another stream (ELECTRA: --arch electra*)
    }
    if enc.activation not in HIDDEN_ACT:
        need[f"{s}.activation"] = (enc.activation, "|".join(HIDDEN_ACT))
    if emb.type_vocab_size < 1:
        need[f"{e}.type_vocab_size"] = (emb.type_vocab_size, ">= 1")
    return need


def _stream_kwargs(family: str, emb, enc) -> dict:
    return dict(vocab_size=emb.vocab_size, hidden_size=enc.dim, num_hidden_layers=enc.layers,
                num_attention_heads=enc.heads, intermediate_size=enc.hidden_ffn,
                max_position_embeddings=emb.max_positions + emb.position_offset,
                type_vocab_size=emb.type_vocab_size, layer_norm_eps=enc.norm_eps,
                hidden_act=HIDDEN_ACT[enc.activation], hidden_dropout_prob=enc.dropout,
                attention_probs_dropout_prob=enc.attn_dropout,
                **({"pad_token_id": 1} if family == "roberta" else {}))


def hf_config_kwargs(recipe_cfg, stream: str = "text", target: str = "mlm", arch: str = "bert") -> dict:
    """`BertConfig`/`RobertaConfig` kwargs of a MaskedLM model for a recipe (or its ``model`` section).

    Raises ModalzooError naming every option the HF architecture cannot express.
    """
    _check_arch(arch)
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
    emb, enc = _stream_configs(arch, streams[stream], where_s)
    check_names(arch, [(where_t, targets[target], "mlm")])
    mlm = TARGETS.make_config(targets[target], where_t)
    refuse(arch, {
        **_stream_needs(arch, where_s, emb, enc),
        f"{where_t}.head_norm": (mlm.head_norm, "layernorm"),
        f"{where_t}.head_norm_eps": (mlm.head_norm_eps, enc.norm_eps),
        # BERT's head uses hidden_act; RoBERTa's is always exact GELU
        f"{where_t}.head_activation": (mlm.head_activation, enc.activation if arch == "bert"
                                       and enc.activation in HIDDEN_ACT else "gelu"),
    })
    return {**_stream_kwargs(arch, emb, enc), "tie_word_embeddings": mlm.tie_weights}


def encoder_config_kwargs(recipe_cfg, stream: str = "text", arch: str = "bert") -> dict:
    """`BertConfig`/`RobertaConfig` kwargs of a `BertModel`/`RobertaModel` holding one text stream of any model
    (a recipe, its ``model`` section, or the stream's spec). The rest of the model is not exported.

    Raises ModalzooError naming every option the stream has that BERT/RoBERTa cannot express (a causal mask,
    pre-norm, RMSNorm, RoPE, ...)."""
    _check_arch(arch)
    name, where = f"{arch}_encoder", f"model.streams.{stream}"
    spec = to_plain(recipe_cfg)
    spec = spec.get("model", spec)
    if "embedding" not in spec:
        if stream not in (spec.get("streams") or {}):
            raise ModalzooError(f"{name} export needs '{where}'")
        spec = spec["streams"][stream]
    extra = [f"{where}.{slot}" for slot in ("target_embedding", "decoder") if spec.get(slot)]
    if extra:
        raise ModalzooError(f"{arch.capitalize()}Model is one text encoder; it cannot express {', '.join(extra)}")
    emb, enc = _stream_configs(name, spec, where)
    refuse(name, _stream_needs(arch, where, emb, enc))
    return _stream_kwargs(arch, emb, enc)


def _tokenizer_kwargs(arch: str, prep, name: str) -> dict:
    """The special-token ids of the run's tokenizer, once it is the kind the architecture's tokenizer is."""
    tok = prep.tokenizer
    if tok is None:
        raise ModalzooError(f"{name} export needs the run's tokenizer.json")
    want = "wordpiece" if arch == "bert" else "bytelevel_bpe"
    if prep.get("tokenizer_name") != want:
        raise ModalzooError(f"{name} export needs a {want} tokenizer; data.tokenizer.name is "
                            f"{prep.get('tokenizer_name')!r}")
    if arch == "roberta" and tok.pad_id != 1:     # RoBERTa's positions count from padding_idx + 1 = 2
        raise ModalzooError(f"roberta needs the pad token at id 1, the tokenizer has it at {tok.pad_id} "
                            f"(data.tokenizer.specials_at_end must be false)")
    return {"pad_token_id": tok.pad_id, "bos_token_id": tok.bos_id, "eos_token_id": tok.eos_id}


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


# ---------------------------------------------------------------------------------------------- MaskedLM

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
        return {**kwargs, **_tokenizer_kwargs(arch, prep, arch)}
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


# ---------------------------------------------------------------------------------------------- one stream

def _text_stream(name: str, model: dict, stream: str | None) -> tuple[str, dict]:
    """The stream to export: the one named, or the model's only `token` stream."""
    streams = model.get("streams") or {}
    texts = [n for n, s in streams.items() if (s.get("embedding") or {}).get("name") == "token"]
    stream = stream or (texts[0] if len(texts) == 1 else None)
    if stream not in streams:
        raise ModalzooError(f"{name} export needs --stream naming a text stream (a `token` embedding); text "
                            f"streams: {texts}")
    return stream, streams[stream]


def _encoder_config(arch: str):
    def config(model: dict, stream: str | None, prep) -> dict:
        stream, spec = _text_stream(f"{arch}_encoder", model, stream)
        kwargs = encoder_config_kwargs(spec, stream=stream, arch=arch)
        return {**kwargs, **_tokenizer_kwargs(arch, prep, f"{arch}_encoder")}
    return config


def _encoder_to_hf(arch: str):
    def to_hf(model: nn.Module, spec: dict, stream: str | None, _kwargs) -> dict[str, Tensor]:
        stream, _ = _text_stream(f"{arch}_encoder", spec, stream)
        return encoder_to_hf(model.state_dict(), stream=stream)
    return to_hf


def _encoder_to_zoo(arch: str):
    def to_zoo(hf_state, spec: dict, stream: str | None) -> dict[str, Tensor]:
        stream, _ = _text_stream(f"{arch}_encoder", spec, stream)
        return encoder_to_zoo(hf_state, stream=stream, arch=arch)
    return to_zoo


def _encoder_compare(arch: str):
    def compare(zoo, hf, spec: dict, stream: str | None, prep) -> dict[str, float]:
        """The stream's hidden states vs ``last_hidden_state`` at the real tokens of a padded batch (RoBERTa
        numbers pads apart from the zoo), with both token types where the stream has two."""
        stream, _ = _text_stream(f"{arch}_encoder", spec, stream)
        module = zoo.streams[stream]
        n = module.embedding.cfg.max_positions
        batch = text_batch(hf.config.vocab_size, prep.tokenizer, lengths=(min(12, n), min(7, n)))
        real = batch["attention_mask"].bool()
        if hf.config.type_vocab_size > 1:
            batch["token_type_ids"] = (torch.arange(real.shape[1]) >= real.shape[1] // 2).long() * real
        prefix = module.embedding.cfg.prefix
        with torch.no_grad():
            zoo_hidden = module({prefix + k: v for k, v in batch.items()}).hidden.x
            hf_hidden = hf(**batch).last_hidden_state
        return {"last_hidden_state": (zoo_hidden[real] - hf_hidden[real]).abs().max().item()}
    return compare


ENCODER_USAGE = '''import torch
from transformers import AutoModel, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("{model_id}")
model = AutoModel.from_pretrained("{model_id}", add_pooling_layer=False).eval()
inputs = tokenizer(["a dog barks twice", "rain on a window"], padding=True, return_tensors="pt")
with torch.no_grad():
    hidden = model(**inputs).last_hidden_state
print(hidden.shape)   # a contrastive text tower pools this as its recipe says (pooling: cls -> hidden[:, 0])'''


def _encoder_architecture(arch: str, model_class: str) -> Architecture:
    name = f"{arch}_encoder"
    return Architecture(
        name=name, model_type=arch, model_class=model_class, auto_class="AutoModel",
        config_class=model_class.removesuffix("Model") + "Config",
        matches=lambda model: False,   # never detected: one stream of a larger model, chosen with --arch
        needs=f"--arch {name} --stream NAME (it exports one {arch.capitalize()}-shaped `token` stream's encoder "
              "alone)",
        hf_config=_encoder_config(arch), to_hf=_encoder_to_hf(arch), to_zoo=_encoder_to_zoo(arch),
        compare=_encoder_compare(arch), pipeline_tag="feature-extraction", tags=(arch, "feature-extraction", "text"),
        preprocessing={"text": arch}, usage=ENCODER_USAGE, load_args={"add_pooling_layer": False},
        card_note=f"This is one text stream of the zoo model, without the rest of it: a contrastive model's pooling "
                  f"and projection into the joint space stay in the `--format modalzoo` export. {model_class}'s "
                  f"optional pooler is not part of the export (the zoo has none): load with "
                  f"`add_pooling_layer=False`.",
        whole_model=False)


# The MaskedLM entries first: a checkpoint of model_type bert/roberta whose class is neither listed picks them.
register(_architecture("bert", "BertForMaskedLM", "one mlm target over a `token` stream"),
         _architecture("roberta", "RobertaForMaskedLM",
                       "one mlm target over a `token` stream with position_offset 2"),
         _encoder_architecture("bert", "BertModel"), _encoder_architecture("roberta", "RobertaModel"))
