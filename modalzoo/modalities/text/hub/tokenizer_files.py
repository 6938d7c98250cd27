"""Hugging Face tokenizer files for an exported run: `tokenizer.json` + `tokenizer_config.json` +
`special_tokens_map.json`, such that `transformers` (5.x, offline, no remote code) reproduces the zoo's
tokenization exactly.

    write_tokenizer_files(run_tokenizer, out_dir, model_max_length=seq_len, style="bert")   # or roberta, clip

``tokenizer.json`` is the run's own `tokenizers` file; ``tokenizer_config.json`` names the class
and the special-token roles:

- bert: ``BertTokenizer``; cls/sep/pad/unk/mask = [CLS] [SEP] [PAD] [UNK] [MASK], no bos/eos.
- roberta: ``RobertaTokenizer``; bos = cls = <s>, eos = sep = </s>, pad, unk, mask.
- clip: ``PreTrainedTokenizerFast``; bos = <s>, eos = </s>, pad, unk, mask.

`BertTokenizer`/`RobertaTokenizer` rebuild their normaliser, pre-tokenizer and model from the file's
vocabulary (and merges) plus the config's options (``do_lower_case``, ``strip_accents``,
``add_prefix_space``, ...), which are read from the zoo tokenizer here; the post-processor (the
[CLS]/<s> ... [SEP]/</s> template) is taken from ``tokenizer.json``. A CLIP export's tokenizer is the zoo's
byte-level BPE, not CLIP's (no lowercasing, no ``</w>``) and usually has its specials at the end
(``specials_at_end``), so it is named ``PreTrainedTokenizerFast`` (`TokenizersBackend` in transformers 5),
which loads ``tokenizer.json`` as it is. ``padding_side`` and ``truncation_side`` are ``right``,
``model_max_length`` is the given length, added tokens keep their flags (``added_tokens_decoder``).

What matches, ids and attention mask, token for token:

- MLM text (bert/roberta): ``tok(texts)`` == the zoo's single-document encoding bos/[CLS] + tokens +
  eos/[SEP] (`modalities/text/packing.py::chunk_document` with one chunk); ``tok(texts, truncation=True,
  max_length=L)`` == the zoo's *first* chunk of a document longer than ``L`` (the zoo trains on every
  chunk; HF truncates to the first). The zoo never makes a row from an empty document; HF encodes ""
  as [CLS] [SEP]. ``padding=True`` right-pads with the pad id and mask 0, as `pad_batch` does. (Packed
  rows' segment/position ids are the zoo's training layout, not a tokenizer output.)
- CLIP captions and prompts: ``tok(texts, padding="max_length", max_length=L, truncation=True)`` ==
  `modalities/text/fields.py::encode_texts(tok, texts, seq_len=L)` (bos + tokens cut to L - 2 + eos,
  right-padded with the pad id), also for "" (bos, eos) and for texts longer than L (eos kept).
"""

from __future__ import annotations

import json
from pathlib import Path

from ....errors import ModalzooError
from ..tokenizers import TextTokenizer

# style -> HF tokenizer class, the tokenizers model it needs, and HF role -> zoo role.
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
    (bert, roberta or clip) into ``out_dir``; see the module docstring for the call that matches the zoo."""
    if style not in TOKENIZER_STYLES:
        raise ModalzooError(f"unknown tokenizer style {style!r}; choose from {sorted(TOKENIZER_STYLES)}")
    if model_max_length < 2:
        raise ModalzooError(f"model_max_length must leave room for the special tokens, got {model_max_length}")
    info = TOKENIZER_STYLES[style]
    spec = json.loads(tokenizer.tokenizer.to_str())
    if spec["model"].get("type") != info["model"]:
        raise ModalzooError(f"style {style} needs a {info['model']} tokenizer, got {spec['model'].get('type')}")
    if spec.get("truncation") is not None or spec.get("padding") is not None:
        raise ModalzooError("the tokenizer has truncation or padding set; export an unconfigured one")
    options = _bert_options(spec) if style == "bert" else _byte_level_options(spec, style)
    if style == "clip":
        options = {}                   # PreTrainedTokenizerFast takes the whole pipeline from tokenizer.json

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
    paths = [out / "tokenizer.json"]
    tokenizer.save(paths[0])
    paths.append(_write_json(out / "tokenizer_config.json", config))
    paths.append(_write_json(out / "special_tokens_map.json", roles))
    return paths
