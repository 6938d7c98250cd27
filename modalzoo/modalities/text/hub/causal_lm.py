"""What the GPT-2 and Llama mappings (`gpt2.py`, `llama.py`) share: which zoo models are decoder-only causal
LMs, their stream and target names, the options neither transformers class can express, the logits an
export is verified on, the tokenizer ids the config carries, and the card's snippet.

A causal LM here is one `clm` target predicting the next token of a `token` stream through a causal
`transformer` (no decoder: T5-style encoder-decoders map elsewhere). The embedding's positions tell the two
classes apart: learned (or any absolute) positions -> GPT-2, none (RoPE in the encoder) -> Llama.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ....errors import ModalzooError
from ....hub.architecture import only_target, target_kinds
from ....hub.mapping import check_names
from ....registry import EMBEDDINGS, ENCODERS, TARGETS, to_plain
from .bert import text_batch


def positions_kind(model: dict) -> str | None:
    """The embedding's ``positions`` of a causal LM (see the module docstring), None for any other model."""
    if target_kinds(model) != ["clm"]:
        return None
    name, spec = only_target(model, "clm")
    clm = TARGETS.make_config(spec, f"model.targets.{name}")
    stream = (model.get("streams") or {}).get(clm.stream) or {}
    emb, enc = stream.get("embedding") or {}, stream.get("encoder") or {}
    if clm.source != "encoder" or stream.get("decoder") or emb.get("name") != "token" \
            or enc.get("name") != "transformer":
        return None
    if ENCODERS.make_config(enc, f"model.streams.{clm.stream}.encoder").mask != "causal":
        return None
    return EMBEDDINGS.make_config(emb, f"model.streams.{clm.stream}.embedding").positions


def names(model: dict) -> tuple[str, str]:
    """(stream, target) of the model's one clm target."""
    name, spec = only_target(model, "clm")
    return TARGETS.make_config(spec, f"model.targets.{name}").stream, name


@dataclass
class Parts:
    """A causal LM's resolved configs and where they sit in the recipe (for refusals that name the option)."""
    stream: str
    target: str
    emb: object
    enc: object
    clm: object
    where_s: str
    where_t: str


def parts(arch: str, recipe_cfg) -> Parts:
    """The model's stream, target and configs; refuses (naming them) other streams, targets and slots."""
    model = to_plain(recipe_cfg)
    model = model.get("model", model)
    if target_kinds(model).count("clm") != 1:
        raise ModalzooError(f"{arch} export needs one clm target, the model has {target_kinds(model)}")
    stream, target = names(model)
    streams, targets = model.get("streams") or {}, model.get("targets") or {}
    where_s, where_t = f"model.streams.{stream}", f"model.targets.{target}"
    if stream not in streams:
        raise ModalzooError(f"{arch} export needs '{where_s}' (the stream of '{where_t}')")
    extra = [f"model.streams.{n}" for n in streams if n != stream] + \
            [f"model.targets.{n}" for n in targets if n != target] + \
            [f"{where_s}.{slot}" for slot in ("target_embedding", "decoder") if streams[stream].get(slot)]
    if extra:
        raise ModalzooError(f"{arch} has one token stream and one causal LM head; it cannot express "
                            f"{', '.join(extra)}")
    spec = streams[stream]
    check_names(arch, [(f"{where_s}.embedding", spec.get("embedding"), "token"),
                       (f"{where_s}.encoder", spec.get("encoder"), "transformer")])
    return Parts(stream, target, EMBEDDINGS.make_config(spec["embedding"], f"{where_s}.embedding"),
                 ENCODERS.make_config(spec["encoder"], f"{where_s}.encoder"),
                 TARGETS.make_config(targets[target], where_t), where_s, where_t)


def common_needs(p: Parts) -> dict[str, tuple]:
    """Options neither GPT2LMHeadModel nor LlamaForCausalLM has: option -> (its value, the value they need)."""
    e, n = f"{p.where_s}.embedding", f"{p.where_s}.encoder"
    need = {f"{p.where_t}.source": (p.clm.source, "encoder"),
            f"{n}.mask": (p.enc.mask, "causal"), f"{n}.prenorm": (p.enc.prenorm, True),
            f"{n}.final_norm": (p.enc.final_norm, True), f"{n}.cross_attention": (p.enc.cross_attention, False),
            f"{n}.dim": (p.enc.dim, p.emb.dim), f"{e}.norm": (p.emb.norm, "none"),
            f"{e}.type_vocab_size": (p.emb.type_vocab_size, 0), f"{e}.position_offset": (p.emb.position_offset, 0),
            f"{e}.shares": (p.emb.shares, "")}
    if p.emb.output_dim not in (0, p.emb.dim):
        need[f"{e}.output_dim"] = (p.emb.output_dim, 0)
    return need


def token_ids(arch: str, prep, tokenizer_name: str | None = None) -> dict:
    """The tokenizer's pad/bos/eos ids for the config (generate() reads them); ``tokenizer_name``: the
    registered tokenizer the export's tokenizer class rebuilds, refused otherwise."""
    tok = prep.tokenizer
    if tok is None:
        raise ModalzooError(f"{arch} export needs the run's tokenizer.json")
    if tokenizer_name and prep.get("tokenizer_name") != tokenizer_name:
        raise ModalzooError(f"{arch} export needs a {tokenizer_name} tokenizer; data.tokenizer.name is "
                            f"{prep.get('tokenizer_name')!r}")
    return {"pad_token_id": tok.pad_id, "bos_token_id": tok.bos_id, "eos_token_id": tok.eos_id}


def zoo_logits(model: nn.Module, batch: dict[str, Tensor], stream: str, target: str) -> Tensor:
    """[B, L, vocab] next-token logits of the zoo model at every position."""
    out = model.streams[stream](batch)
    return model.targets[target].lm_logits(out.hidden.x, out)


def compare(zoo, hf, spec: dict, _stream, prep) -> dict[str, float]:
    """Max |logit difference| at the real tokens of a right-padded batch of two rows."""
    stream, target = names(spec)
    batch = text_batch(hf.config.vocab_size, prep.tokenizer)
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        ours = zoo_logits(zoo, batch, stream, target)[real]
        theirs = hf(**batch).logits[real]
    return {"logits": (ours - theirs).abs().max().item()}


USAGE = '''import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("{model_id}")          # prepends <s>, as the model was trained
model = AutoModelForCausalLM.from_pretrained("{model_id}").eval()
inputs = tokenizer("Return the path of", return_tensors="pt")
with torch.no_grad():
    out = model.generate(**inputs, max_new_tokens=20, do_sample=False)
print(tokenizer.decode(out[0, inputs["input_ids"].shape[1]:]))'''
