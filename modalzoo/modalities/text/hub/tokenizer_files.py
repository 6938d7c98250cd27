"""Hugging Face tokenizer files for an exported run: `tokenizer.json` + `tokenizer_config.json` +
`special_tokens_map.json`, such that `transformers` (5.x, offline, no remote code) reproduces the zoo's
tokenization exactly.

    write_tokenizer_files(run_tokenizer, out_dir, model_max_length=seq_len, style="bert")
    # styles: bert, roberta, clip (text encoders); gpt2, llama (causal LMs)

``tokenizer.json`` is the run's own `tokenizers` file; ``tokenizer_config.json`` names the class
and the special-token roles:

- bert: ``BertTokenizer``; cls/sep/pad/unk/mask = [CLS] [SEP] [PAD] [UNK] [MASK], no bos/eos.
- roberta: ``RobertaTokenizer``; bos = cls = <s>, eos = sep = </s>, pad, unk, mask.
- clip: ``PreTrainedTokenizerFast``; bos = <s>, eos = </s>, pad, unk, mask.
- gpt2: ``GPT2Tokenizer`` (byte-level BPE); bos, eos, pad, unk; ``add_bos_token``.
- llama: ``PreTrainedTokenizerFast`` (any tokenizer.json: the zoo's byte-level BPE is not the SentencePiece
  model `LlamaTokenizer` rebuilds); bos, eos, pad, unk; ``add_bos_token``.
- t5: ``PreTrainedTokenizerFast`` (tokenizer.json as it is: bos + tokens + eos, an encoder input as the zoo
  frames it); bos, eos, pad, unk. Any style lists the sentinels <extra_id_N> and other extra specials
  (``data.tokenizer.extra_ids`` / ``extra_specials``) as ``extra_special_tokens``.

`BertTokenizer`/`RobertaTokenizer` rebuild their normaliser, pre-tokenizer and model from the file's
vocabulary (and merges) plus the config's options (``do_lower_case``, ``strip_accents``,
``add_prefix_space``, ...), which are read from the zoo tokenizer here; the post-processor (the
[CLS]/<s> ... [SEP]/</s> template) is taken from ``tokenizer.json``. A CLIP export's tokenizer is the zoo's
byte-level BPE, not CLIP's (no lowercasing, no ``</w>``) and usually has its specials at the end
(``specials_at_end``), so it is named ``PreTrainedTokenizerFast`` (`TokenizersBackend` in transformers 5),
which loads ``tokenizer.json`` as it is. The causal-LM styles (gpt2, llama) prepend bos and no eos, the framing
of a prompt (`modalities/text/generate.py`: a document that goes on); their ``tokenizer.json`` carries the
same rule as its post-processor (`TemplateProcessing`), so the file alone tokenizes as transformers does.
``padding_side`` and ``truncation_side`` are ``right``,
``model_max_length`` is the given length, added tokens keep their flags (``added_tokens_decoder``).

What matches, ids and attention mask, token for token:

- MLM text (bert/roberta): ``tok(texts)`` == the zoo's single-document encoding bos/[CLS] + tokens +
  eos/[SEP] (`modalities/text/packing.py::chunk_document` with one chunk); ``tok(texts, truncation=True,
  max_length=L)`` == the zoo's *first* chunk of a document longer than ``L`` (the zoo trains on every
  chunk; HF truncates to the first). The zoo never makes a row from an empty document; HF encodes ""
  as [CLS] [SEP]. ``padding=True`` right-pads with the pad id and mask 0, as `pad_batch` does. (Packed
  rows' segment/position ids are the zoo's training layout, not a tokenizer output.)
- Causal-LM prompts (gpt2/llama): ``tok(texts)`` == [bos] + the zoo's tokens, what
  `modalities/text/generate.py` feeds the model, so transformers' ``generate(**tok(prompt))`` continues
  the same ids as ``modalzoo generate``; ``padding=True`` right-pads (training rows are right-padded; for
  batched ``generate`` set ``tokenizer.padding_side = "left"``).
- CLIP captions and prompts: ``tok(texts, padding="max_length", max_length=L, truncation=True)`` ==
  `modalities/text/fields.py::encode_texts(tok, texts, seq_len=L)` (bos + tokens cut to L - 2 + eos,
  right-padded with the pad id), also for "" (bos, eos) and for texts longer than L (eos kept).
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer, processors

from ....errors import ModalzooError
from ..tokenizers import TextTokenizer

CAUSAL_ROLES = {"bos_token": "bos", "eos_token": "eos", "pad_token": "pad", "unk_token": "unk"}
# style -> HF tokenizer class, the tokenizers model it needs (None: any), HF role -> zoo role, and whether it
# prepends bos (and appends nothing) instead of the tokenizer's own [CLS]/<s> ... [SEP]/</s> template.
TOKENIZER_STYLES: dict[str, dict] = {
    "bert": {"class": "BertTokenizer", "model": "WordPiece",
             "roles": {"cls_token": "bos", "sep_token": "eos", "pad_token": "pad", "unk_token": "unk",
                       "mask_token": "mask"}},
    "roberta": {"class": "RobertaTokenizer", "model": "BPE",
                "roles": {"bos_token": "bos", "eos_token": "eos", "cls_token": "bos", "sep_token": "eos",
                          "pad_token": "pad", "unk_token": "unk", "mask_token": "mask"}},
    "clip": {"class": "PreTrainedTokenizerFast", "model": "BPE",
             "roles": {"bos_token": "bos", "eos_token": "eos", "pad_token": "pad", "unk_token": "unk",
                       "mask_token": "mask"}},
    "gpt2": {"class": "GPT2Tokenizer", "model": "BPE", "roles": CAUSAL_ROLES, "prepend_bos": True},
    "llama": {"class": "PreTrainedTokenizerFast", "model": None, "roles": CAUSAL_ROLES, "prepend_bos": True},
    # T5's encoder reads a whole document, bos ... eos: the zoo tokenizer's own template, kept as it is
    "t5": {"class": "PreTrainedTokenizerFast", "model": None, "roles": CAUSAL_ROLES},
}


def _write_json(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def default_style(tokenizer: TextTokenizer, tokenizer_name: str | None) -> str:
    """The style of a modalzoo-format export (no transformers architecture chosen): bert for WordPiece;
    RobertaTokenizer assumes RoBERTa's special-token ids, so other byte-level layouts get clip, which loads
    tokenizer.json as it is."""
    if tokenizer_name == "wordpiece":
        return "bert"
    return "roberta" if tokenizer.pad_id == 1 else "clip"


def _bert_options(spec: dict) -> dict:
    """BertTokenizer's options that rebuild the zoo's normaliser, checked against what BertTokenizer can build."""
    model, norm = spec["model"], spec.get("normalizer") or {}
    if norm.get("type") != "BertNormalizer" or not norm.get("clean_text", True):
        raise ModalzooError(f"style bert needs a BertNormalizer with clean_text, got {norm.get('type')}")
    pre = spec.get("pre_tokenizer") or {}
    if pre.get("type") != "BertPreTokenizer":
        raise ModalzooError(f"style bert needs the BertPreTokenizer, got {pre.get('type')}")
    if model.get("continuing_subword_prefix", "##") != "##" or model.get("max_input_chars_per_word", 100) != 100:
        raise ModalzooError("style bert needs WordPiece with the ## prefix and max_input_chars_per_word=100")
    strip = norm.get("strip_accents")
    return {"do_lower_case": bool(norm.get("lowercase", True)),
            "strip_accents": strip, "tokenize_chinese_chars": bool(norm.get("handle_chinese_chars", True))}


def _byte_level_options(spec: dict, style: str) -> dict:
    """The byte-level pre-tokenizer's ``add_prefix_space`` (and RoBERTa's ``trim_offsets``), checked."""
    pre = spec.get("pre_tokenizer") or {}
    if pre.get("type") != "ByteLevel" or not pre.get("use_regex", True):
        raise ModalzooError(f"style {style} needs a byte-level BPE tokenizer (bytelevel_bpe), got "
                            f"pre-tokenizer {pre.get('type')}")
    if spec["model"].get("dropout") is not None:
        raise ModalzooError(f"style {style}: BPE dropout is not reproducible")
    post = spec.get("post_processor") or {}
    return {"add_prefix_space": bool(pre.get("add_prefix_space", False)),
            "trim_offsets": bool(post.get("trim_offsets", True))}


def write_tokenizer_files(tokenizer: TextTokenizer, out_dir: str | Path, model_max_length: int,
                          style: str) -> list[Path]:
    """Write ``tokenizer.json``, ``tokenizer_config.json`` and ``special_tokens_map.json`` for ``style``
    (bert, roberta, clip, gpt2 or llama) into ``out_dir``; see the module docstring for the call that matches
    the zoo."""
    if style not in TOKENIZER_STYLES:
        raise ModalzooError(f"unknown tokenizer style {style!r}; choose from {sorted(TOKENIZER_STYLES)}")
    if model_max_length < 2:
        raise ModalzooError(f"model_max_length must leave room for the special tokens, got {model_max_length}")
    info = TOKENIZER_STYLES[style]
    spec = json.loads(tokenizer.tokenizer.to_str())
    if info["model"] is not None and spec["model"].get("type") != info["model"]:
        raise ModalzooError(f"style {style} needs a {info['model']} tokenizer, got {spec['model'].get('type')}")
    if spec.get("truncation") is not None or spec.get("padding") is not None:
        raise ModalzooError("the tokenizer has truncation or padding set; export an unconfigured one")
    if style == "bert":
        options = _bert_options(spec)
    elif info["class"] == "PreTrainedTokenizerFast":
        options = {}                   # it takes the whole pipeline from tokenizer.json
    else:
        options = _byte_level_options(spec, style)
    if style == "gpt2":                # GPT2Tokenizer rebuilds its pre-tokenizer from this option alone
        options = {"add_prefix_space": options["add_prefix_space"]}
    if info.get("prepend_bos"):
        options.update(add_bos_token=True, add_eos_token=False)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    roles = {hf: tokenizer.specials[zoo] for hf, zoo in info["roles"].items()}
    added = {str(t.pop("id")): t for t in (dict(t) for t in spec.get("added_tokens", []))}
    config = {
        "tokenizer_class": info["class"],
        **roles,
        **options,
        "model_max_length": int(model_max_length),
        "padding_side": "right",
        "truncation_side": "right",
        "clean_up_tokenization_spaces": False,
        "model_input_names": ["input_ids", "attention_mask"] if style != "bert"
        else ["input_ids", "token_type_ids", "attention_mask"],
        "added_tokens_decoder": added,
    }
    if tokenizer.added_specials:       # T5's sentinels, UL2's mode tokens: transformers' extra special tokens
        config["extra_special_tokens"] = tokenizer.added_specials
    paths = [out / "tokenizer.json"]
    (_prepending_bos(tokenizer) if info.get("prepend_bos") else tokenizer).save(paths[0])
    paths.append(_write_json(out / "tokenizer_config.json", config))
    paths.append(_write_json(out / "special_tokens_map.json", roles))
    return paths


def _prepending_bos(tokenizer: TextTokenizer) -> TextTokenizer:
    """A copy whose post-processor prepends bos and appends nothing: the rule transformers applies for
    ``add_bos_token`` (`TokenizersBackend.update_post_processor`), in tokenizer.json too."""
    tok = Tokenizer.from_str(tokenizer.tokenizer.to_str())
    bos = tokenizer.specials["bos"]
    tok.post_processor = processors.TemplateProcessing(single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1",
                                                       special_tokens=[(bos, tokenizer.bos_id)])
    return TextTokenizer(tok, tokenizer.specials)
