"""Hugging Face preprocessing files for an exported run: `tokenizer.json` + `tokenizer_config.json` +
`special_tokens_map.json`, and `preprocessor_config.json`, such that `transformers` (5.x, offline, no
remote code) reproduces the zoo's own preprocessing exactly.

    write_tokenizer_files(run_tokenizer, out_dir, model_max_length=seq_len, style="bert")   # or roberta, clip
    write_image_processor(out_dir, image_size=224, mean=CLIP_MEAN, std=CLIP_STD, style="clip")  # or vit

**Text.** ``tokenizer.json`` is the run's own `tokenizers` file; ``tokenizer_config.json`` names the class
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
  eos/[SEP] (`datasets/packing.py::chunk_document` with one chunk); ``tok(texts, truncation=True,
  max_length=L)`` == the zoo's *first* chunk of a document longer than ``L`` (the zoo trains on every
  chunk; HF truncates to the first). The zoo never makes a row from an empty document; HF encodes ""
  as [CLS] [SEP]. ``padding=True`` right-pads with the pad id and mask 0, as `pad_batch` does. (Packed
  rows' segment/position ids are the zoo's training layout, not a tokenizer output.)
- CLIP captions and prompts: ``tok(texts, padding="max_length", max_length=L, truncation=True)`` ==
  `datasets/images.py::encode_texts(tok, texts, seq_len=L)` (bos + tokens cut to L - 2 + eos, right-padded
  with the pad id), also for "" (bos, eos) and for texts longer than L (eos kept).

**Images.** ``preprocessor_config.json`` describes the zoo's eval path (`datasets/images.py`: any mode to
RGB with transparency composited onto white, shorter side resized to ``image_size`` with bicubic
antialiasing, centre crop, /255, normalise with mean/std): ``image_processor_type`` ``CLIPImageProcessor``
(style clip, with ``processor_class`` ``CLIPProcessor``) or ``ViTImageProcessor`` (style vit, for ViT and
MAE), both with every option written out: ``size={"shortest_edge": S}``, ``resample=3`` (bicubic),
``do_center_crop`` with ``crop_size`` S x S, ``rescale_factor=1/255``, ``image_mean``/``image_std``,
``do_convert_rgb``. ``AutoImageProcessor``/``AutoProcessor`` load the torchvision backend of these
classes by default (``backend="pil"`` picks the PIL one), so the zoo resizes exactly as that backend does
(`datasets/images.py::resize_center_crop`: torchvision's bicubic on the uint8 tensor, the longer side
``int(S * long / short)``, crop offsets ``int((side - S) / 2)``); HF's RGB conversion is PIL's, as the
zoo's. ``processor(images=pil_images, return_tensors="pt")["pixel_values"]`` equals the zoo's normalised
pixels to float32 rounding (<= 1e-6: HF fuses the /255 into mean and std).

Known differences: the PIL backend (``backend="pil"``) resizes with PIL's bicubic, a few uint8 levels off
(up to 3 on the tests' photo-like images, up to ~10 when upscaling noise); a processor run with
``device="cuda"`` resizes in float32 and rounds instead of using the CPU's uint8 kernel (not measured);
16-bit and float greyscale images ("I;16", "I", "F") are scaled to 8 bits by the zoo but clipped by PIL's
convert("RGB") in HF; with the dataset option ``jpeg_draft: true`` (off by default) the zoo decodes JPEGs
at least twice ``image_size`` on both sides at a reduced DCT scale (``Image.draft``), so to match those
call ``img.draft(None, (S, S))`` on the opened image before the processor. Images are compared as PIL
images; numpy arrays or tensors lose the PIL mode.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from ..errors import ModalzooError
from ..modalities.text.tokenizers import TextTokenizer

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

# style -> HF image processor class (torchvision backend; the PIL one is the same name + "Pil") and processor.
IMAGE_STYLES: dict[str, dict] = {
    "clip": {"class": "CLIPImageProcessor", "processor": "CLIPProcessor"},
    "vit": {"class": "ViTImageProcessor", "processor": None},
}

BICUBIC = 3                       # PIL.Image.Resampling.BICUBIC, as HF stores ``resample``


def _write_json(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


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


def image_processor_config(image_size: int, mean: Sequence[float], std: Sequence[float], style: str) -> dict:
    """The ``preprocessor_config.json`` contents for the zoo's eval image path at ``image_size``."""
    if style not in IMAGE_STYLES:
        raise ModalzooError(f"unknown image processor style {style!r}; choose from {sorted(IMAGE_STYLES)}")
    if len(mean) != 3 or len(std) != 3:
        raise ModalzooError(f"mean and std need 3 values (RGB), got {list(mean)} and {list(std)}")
    info = IMAGE_STYLES[style]
    config = {
        "image_processor_type": info["class"],
        "do_convert_rgb": True,
        "do_resize": True,
        "size": {"shortest_edge": int(image_size)},
        "default_to_square": False,
        "resample": BICUBIC,
        "do_center_crop": True,
        "crop_size": {"height": int(image_size), "width": int(image_size)},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [float(m) for m in mean],
        "image_std": [float(s) for s in std],
        "do_pad": False,
    }
    if info["processor"]:
        config["processor_class"] = info["processor"]
    return config


def write_image_processor(out_dir: str | Path, image_size: int, mean: Sequence[float], std: Sequence[float],
                          style: str) -> Path:
    """Write ``preprocessor_config.json`` (style clip or vit) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return _write_json(out / "preprocessor_config.json", image_processor_config(image_size, mean, std, style))
