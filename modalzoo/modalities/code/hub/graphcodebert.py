"""A zoo GraphCodeBERT as transformers' `RobertaForMaskedLM` (the class of microsoft/graphcodebert-base): a
`code_dataflow` stream through the shared post-LN Transformer (RoBERTa's shape) with one `mlm` head, plus any
parameter-free `data_flow` targets (edge prediction and node alignment are dot products of final states: no
weights to export).

    config_kwargs(recipe)               # RobertaConfig kwargs; refuses (naming them) the options RoBERTa lacks
    zoo_to_hf / hf_to_zoo               # text's RoBERTa table (`modalities/text/hub/bert.py`), arch="roberta"

The weights are RoBERTa's and map through text's one table: the code embedding's word/position/type tables and
norm carry the token embedding's names. What transformers lacks is the input: it has no data-flow embedding and
takes the graph-guided mask only as a 4-D float additive mask, so the exported model is run with
`transformers_inputs` (``inputs_embeds`` = node-averaged word vectors, ``position_ids`` = ``position_idx``,
``attention_mask`` = the zoo's final mask, float [B, 1, L, L]). Verification on export does exactly that, under
eager and SDPA attention, on a batch with nodes, data-flow edges, node spans and padding.

Positions: the code embedding indexes its table with ``position_idx`` directly (0 nodes, 1 padding, 2.. text), as
RoBERTa indexes ``position_embeddings`` with ``position_ids``, so ``max_position_embeddings`` is the table's row
count, ``max_positions + position_offset`` (514 for GraphCodeBERT-base; ``position_offset`` itself is free here,
unlike a `token` stream's RoBERTa export where it must be 2). Importing (``init_from=hf:``) needs the same count.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ....encoders.masks import build_attention_mask
from ....errors import ModalzooError
from ....hub.architecture import Architecture, only_target, register
from ....hub.mapping import check_names, model_section, refuse
from ....registry import EMBEDDINGS, ENCODERS, TARGETS
from ...text.hub.bert import _stream_kwargs, _stream_needs, _tokenizer_kwargs, hf_to_zoo, zoo_to_hf
from .transformers_inputs import FIRST, NODE, PAD, final_mask, transformers_inputs

NAME = "graphcodebert"
PARAMETER_FREE = ("data_flow",)      # targets with no weights of their own: the export holds the whole model
POSITIONS = "roberta.embeddings.position_embeddings.weight"


def _targets(model: dict) -> dict[str, dict]:
    return {n: t for n, t in (model.get("targets") or {}).items() if t}


def _names(model: dict) -> tuple[str, str]:
    """The mlm target's stream and name."""
    name, target = only_target({"targets": _targets(model)}, "mlm")
    return TARGETS.make_config(target, f"model.targets.{name}").stream, name


def _matches(model: dict) -> bool:
    """One mlm target over a `code_dataflow` stream; the other targets parameter-free (data_flow)."""
    kinds = [str(t.get("name")) for t in _targets(model).values()]
    if kinds.count("mlm") != 1 or any(k not in ("mlm", *PARAMETER_FREE) for k in kinds):
        return False
    stream, _ = _names(model)
    emb = ((model.get("streams") or {}).get(stream) or {}).get("embedding") or {}
    return emb.get("name") == "code_dataflow"


def _stream_configs(model: dict):
    """(stream, target, embedding config, encoder config, mlm config), the kinds RoBERTa is made of."""
    stream, target = _names(model)
    streams, targets = model.get("streams") or {}, _targets(model)
    where_s, where_t = f"model.streams.{stream}", f"model.targets.{target}"
    if stream not in streams:
        raise ModalzooError(f"{NAME} export needs '{where_s}' (the stream of '{where_t}')")
    weighted = [n for n, t in targets.items() if n != target and t.get("name") not in PARAMETER_FREE]
    extra = [f"model.streams.{n}" for n in streams if n != stream] + [f"model.targets.{n}" for n in weighted] + \
            [f"{where_s}.{slot}" for slot in ("target_embedding", "decoder") if streams[stream].get(slot)]
    if extra:
        raise ModalzooError(f"RobertaForMaskedLM holds one code encoder and one MLM head; it cannot express "
                            f"{', '.join(extra)} (export the MLM model alone with --target {target}, or use "
                            f"--format modalzoo)")
    spec = streams[stream]
    check_names(NAME, [(f"{where_s}.embedding", spec.get("embedding"), "code_dataflow"),
                       (f"{where_s}.encoder", spec.get("encoder"), "transformer"), (where_t, targets[target], "mlm")])
    return (stream, target, EMBEDDINGS.make_config(spec["embedding"], f"{where_s}.embedding"),
            ENCODERS.make_config(spec["encoder"], f"{where_s}.encoder"),
            TARGETS.make_config(targets[target], where_t))


def config_kwargs(recipe_cfg) -> dict:
    """`RobertaConfig` kwargs of the `RobertaForMaskedLM` a GraphCodeBERT recipe (or its ``model`` section) is,
    without the tokenizer's ids. Raises naming every option RoBERTa cannot express (pre-LN, RMSNorm, rotary or no
    positions, a causal mask, ...)."""
    model = model_section(recipe_cfg)
    stream, target, emb, enc, mlm = _stream_configs(model)
    where_s, where_t = f"model.streams.{stream}", f"model.targets.{target}"
    need = _stream_needs("roberta", where_s, emb, enc)
    del need[f"{where_s}.embedding.position_offset"]        # position_idx indexes the table directly (docstring)
    refuse(NAME, {
        **need,
        f"{where_t}.head_norm": (mlm.head_norm, "layernorm"),
        f"{where_t}.head_norm_eps": (mlm.head_norm_eps, enc.norm_eps),
        f"{where_t}.head_activation": (mlm.head_activation, "gelu"),     # RoBERTa's head: exact GELU
    })
    return {**_stream_kwargs("roberta", emb, enc), "tie_word_embeddings": mlm.tie_weights}


def _config(model: dict, _stream, prep) -> dict:
    return {**config_kwargs(model), **_tokenizer_kwargs("roberta", prep, NAME)}


def _to_hf(model: nn.Module, spec: dict, _stream, _kwargs) -> dict[str, Tensor]:
    stream, target = _names(spec)
    return zoo_to_hf(model.state_dict(), stream=stream, target=target, arch="roberta")


def _to_zoo(hf_state: Mapping[str, Tensor], spec: dict, _stream) -> dict[str, Tensor]:
    stream, target = _names(spec)
    model = model_section(spec)
    where = f"model.streams.{stream}.embedding"
    emb = EMBEDDINGS.make_config(model["streams"][stream]["embedding"], where)
    table = hf_state.get(POSITIONS)
    rows = emb.max_positions + emb.position_offset
    if table is not None and table.shape[0] != rows:
        raise ModalzooError(f"the checkpoint's position table has {table.shape[0]} rows (max_position_embeddings); "
                            f"the recipe's code_dataflow table has {rows} ({where}.max_positions "
                            f"{emb.max_positions} + position_offset {emb.position_offset}): set max_positions to "
                            f"{table.shape[0] - emb.position_offset} (position_idx indexes the table directly)")
    mlm = TARGETS.make_config(_targets(model)[target], f"model.targets.{target}")
    return hf_to_zoo(hf_state, stream=stream, target=target, arch="roberta", tie_weights=mlm.tie_weights)


# ---------------------------------------------------------------------------------------------- verification

def verification_batch(vocab: int, tok, rows: int, seed: int = 0) -> dict[str, Tensor]:
    """Two rows in the `code` layout (``<s> comment </s> code </s>`` nodes, padding; the second shorter) of random
    ordinary ids, with node spans, data-flow edges and the graph-guided mask; the first row's last node has its
    code links hidden from the mask (as node alignment does), so only ``node_span`` says which subwords it is.
    Positions stay below ``rows``."""
    g = torch.Generator().manual_seed(seed)
    ordinary = torch.tensor([i for i in range(min(vocab, tok.vocab_size)) if i not in set(tok.special_ids)])
    room = rows - FIRST - 3                                    # text positions 2 .. rows - 1, three of them specials
    if room < 2:
        raise ModalzooError(f"a position table of {rows} rows leaves no room for comment and code tokens")
    shapes = []                                                # (comment, code, nodes) per row
    for c, k, n in ((4, 9, 3), (2, 5, 2)):
        c = min(c, max(room // 3, 1))
        shapes.append((c, min(k, room - c), n))
    L = max(3 + c + k + n for c, k, n in shapes) + 2           # at least two pads in every row
    ids = torch.full((2, L), tok.pad_id, dtype=torch.long)
    position = torch.full((2, L), PAD, dtype=torch.long)
    mask = torch.zeros(2, L, L, dtype=torch.bool)
    span = torch.zeros(2, L, 2, dtype=torch.long)
    for b, (c, k, n) in enumerate(shapes):
        text = 3 + c + k
        ids[b, :text] = ordinary[torch.randint(len(ordinary), (text,), generator=g)]
        ids[b, [0, c + 1, text - 1]] = torch.tensor([tok.bos_id, tok.eos_id, tok.eos_id])
        ids[b, text:text + n] = tok.unk_id
        position[b, :text] = torch.arange(FIRST, FIRST + text)
        position[b, text:text + n] = NODE
        mask[b, :text, :text] = True
        mask[b, [0, c + 1, text - 1], text:text + n] = True   # <s> and </s> see the nodes
        code_start = c + 2
        for j in range(n):
            s = code_start + int(torch.randint(k, (1,), generator=g))
            e = min(s + 1 + j % 2, code_start + k)             # one or two subwords
            span[b, text + j] = torch.tensor([s, e])
            if not (b == 0 and j == n - 1):
                mask[b, text + j, s:e] = mask[b, s:e, text + j] = True
            if j:
                mask[b, text + j, text + j - 1] = True         # node j's value comes from node j - 1
    return {"input_ids": ids, "position_idx": position, "attn_mask": mask, "node_span": span}


def _compare(zoo, hf, spec: dict, _stream, prep) -> dict[str, float]:
    """MLM logits on the comment/code tokens of `verification_batch` (with its node spans, and without them: then
    nodes average the subwords the mask links them to), the zoo model vs the export fed `transformers_inputs`,
    under eager and SDPA attention."""
    stream, target = _names(spec)
    module = zoo.streams[stream]
    prefix = module.embedding.cfg.prefix
    full = verification_batch(hf.config.vocab_size, prep.tokenizer, hf.config.max_position_embeddings)
    batches = [full, {k: v for k, v in full.items() if k != "node_span"}]
    before = hf.config._attn_implementation
    diffs = {"logits (eager)": 0.0, "logits (sdpa)": 0.0}
    try:
        for plain in batches:
            batch = {prefix + k: v for k, v in plain.items()}
            text = plain["position_idx"] >= FIRST
            with torch.no_grad():
                zoo_mask, _ = build_attention_mask(module.embedding(batch))
                if not torch.equal(zoo_mask[:, 0], final_mask(plain["position_idx"], plain["attn_mask"])):
                    raise ModalzooError("the zoo's attention mask is not the one transformers_inputs builds")
                out = module(batch)
                ours = zoo.targets[target].logits(out.hidden.x[text], out)
                inputs = transformers_inputs(hf.get_input_embeddings(), batch, prefix)
                for impl in ("eager", "sdpa"):
                    hf.set_attn_implementation(impl)
                    theirs = hf(**inputs).logits[text]
                    diffs[f"logits ({impl})"] = max(diffs[f"logits ({impl})"], (ours - theirs).abs().max().item())
    finally:
        hf.set_attn_implementation(before)
    return diffs


USAGE = '''import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer
from modalzoo.modalities.code.hub.transformers_inputs import transformers_inputs   # torch only: copy it if you like

tokenizer = AutoTokenizer.from_pretrained("{model_id}")
model = AutoModelForMaskedLM.from_pretrained("{model_id}").eval()

# One row as the `code` dataset lays it out: <s> comment </s> code </s>, then one token per data-flow node.
# Each code leaf is encoded on its own, so a node (a variable occurrence) is exactly a span of subwords.
comment = tokenizer.encode("add one to x", add_special_tokens=False)
leaves = ["y", "=", "x", "+", "1"]
ids, spans = [tokenizer.bos_token_id, *comment, tokenizer.eos_token_id], []
for i, leaf in enumerate(leaves):
    pieces = tokenizer.encode((" " if i else "") + leaf, add_special_tokens=False)
    spans.append((len(ids), len(ids) + len(pieces)))
    ids += pieces
ids.append(tokenizer.eos_token_id)
text = len(ids)
nodes, flows = [0, 2], [(0, 1)]              # nodes: leaves y and x; y's value comes from x (node 0 sees node 1)
ids += [tokenizer.unk_token_id] * len(nodes)
L = len(ids)
attn_mask = torch.zeros(1, L, L, dtype=torch.bool)
attn_mask[0, :text, :text] = True                             # comment and code see each other
attn_mask[0, [0, len(comment) + 1, text - 1], text:] = True   # <s> and </s> also see the nodes
node_span = torch.zeros(1, L, 2, dtype=torch.long)
for k, leaf in enumerate(nodes):
    (start, end), n = spans[leaf], text + k
    attn_mask[0, n, start:end] = attn_mask[0, start:end, n] = True   # a node and its subwords
    node_span[0, n] = torch.tensor([start, end])
for src, dst in flows:
    attn_mask[0, text + src, text + dst] = True
position_idx = torch.tensor([list(range(2, 2 + text)) + [0] * len(nodes)])   # 2.. text, 0 nodes (1: padding)
input_ids = torch.tensor([ids])
input_ids[0, 1] = tokenizer.mask_token_id                    # hide the comment's first token
batch = {{"input_ids": input_ids, "position_idx": position_idx, "attn_mask": attn_mask, "node_span": node_span}}

# inputs_embeds: word vectors, a node's = the mean of its subwords'; position_ids = position_idx;
# attention_mask: the graph-guided mask as a 4-D FLOAT additive mask [B, 1, L, L] (0 / finfo.min).
# transformers 5 rejects a 3-D [B, L, L] mask, and a 4-D bool one is silently wrong under eager attention.
inputs = transformers_inputs(model.get_input_embeddings(), batch)
with torch.no_grad():
    logits = model(inputs_embeds=inputs["inputs_embeds"], position_ids=inputs["position_ids"],
                   attention_mask=inputs["attention_mask"]).logits
print(tokenizer.convert_ids_to_tokens(logits[0, 1].topk(5).indices.tolist()))'''

CARD_NOTE = ("Why this call: transformers has no data-flow embedding, so GraphCodeBERT's inputs go in as "
             "`inputs_embeds` (a data-flow node's vector is the mean of its code subwords' word vectors), "
             "`position_ids` (0 nodes, 1 padding, 2.. text) and the graph-guided mask as a 4-D float additive "
             "`attention_mask` [B, 1, L, L] (0 where a token may attend, `torch.finfo(dtype).min` elsewhere; "
             "every token sees itself). transformers 5 raises on a 3-D [B, L, L] mask (what GraphCodeBERT's own "
             "code passes), and takes a 4-D bool mask right under SDPA but silently wrong under eager attention "
             "(it adds it to the scores). `transformers_inputs` "
             "(`modalzoo/modalities/code/hub/transformers_inputs.py`, torch only) builds the three from a `code` "
             "batch; the export was verified with it under both attention implementations. Plain "
             "`tokenizer(text)` inputs also run (RoBERTa over text alone), without data flow.")

register(Architecture(
    name=NAME, model_type="roberta", model_class="RobertaForMaskedLM", auto_class="AutoModelForMaskedLM",
    config_class="RobertaConfig", matches=_matches,
    needs="one mlm target over a `code_dataflow` stream (other targets only parameter-free data_flow ones)",
    hf_config=_config, to_hf=_to_hf, to_zoo=_to_zoo, compare=_compare, pipeline_tag="fill-mask",
    tags=("graphcodebert", "roberta", "fill-mask", "code", "data-flow"), preprocessing={"text": "roberta"},
    usage=USAGE, card_note=CARD_NOTE))
