"""The exported tokenizer files: `transformers` (offline, no remote code) reproduces the zoo's tokenization
(ids and attention mask) exactly."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, CLIPConfig, GPT2Config, LlamaConfig, RobertaConfig

from modalzoo.errors import ModalzooError
from modalzoo.modalities.text.fields import encode_texts
from modalzoo.modalities.text.hub.tokenizer_files import write_tokenizer_files
from modalzoo.modalities.text.packing import SpecialIds, chunk_document, pad_batch
from modalzoo.registry import TOKENIZERS
from tiny_models import CORPUS, PROBES, SEQ_LEN

CONFIGS = {"bert": BertConfig, "roberta": RobertaConfig, "clip": CLIPConfig}
# (style, tokenizer spec): every layout an export can meet.
CASES = {
    "bert": ("bert", {"name": "wordpiece", "vocab_size": 400, "min_frequency": 1}),
    "bert-cased": ("bert", {"name": "wordpiece", "vocab_size": 400, "min_frequency": 1, "lowercase": False}),
    "roberta": ("roberta", {"name": "bytelevel_bpe", "vocab_size": 400, "min_frequency": 1}),
    "roberta-prefix-space": ("roberta", {"name": "bytelevel_bpe", "vocab_size": 400, "min_frequency": 1,
                                         "add_prefix_space": True}),
    "clip": ("clip", {"name": "bytelevel_bpe", "vocab_size": 400, "min_frequency": 1, "specials_at_end": True}),
    "clip-specials-first": ("clip", {"name": "bytelevel_bpe", "vocab_size": 400, "min_frequency": 1}),
}
ROLES = {"bert": {"cls": "bos", "sep": "eos", "pad": "pad", "unk": "unk", "mask": "mask"},
         "roberta": {"bos": "bos", "eos": "eos", "cls": "bos", "sep": "eos", "pad": "pad", "unk": "unk",
                     "mask": "mask"},
         "clip": {"bos": "bos", "eos": "eos", "pad": "pad", "unk": "unk", "mask": "mask"}}
CLASSES = {"bert": "BertTokenizer", "roberta": "RobertaTokenizer", "clip": "TokenizersBackend"}


@pytest.fixture(scope="module")
def trained():
    return {case: TOKENIZERS.build(dict(spec)).train(CORPUS) for case, (_, spec) in CASES.items()}


def export_tokenizer(tok, style, out, with_config=True):
    write_tokenizer_files(tok, out, model_max_length=SEQ_LEN, style=style)
    if with_config:                             # a config.json of the model type, as an export has
        CONFIGS[style]().save_pretrained(out)
    return AutoTokenizer.from_pretrained(out)


@pytest.mark.parametrize("with_config", [True, False], ids=["config", "no-config"])
@pytest.mark.parametrize("case", list(CASES))
def test_tokenizer_matches_zoo(trained, case, with_config, tmp_path):
    style = CASES[case][0]
    tok = trained[case]
    hf = export_tokenizer(tok, style, tmp_path, with_config)
    assert type(hf).__name__ == CLASSES[style]
    assert len(hf) == tok.vocab_size == 400
    assert hf.padding_side == "right" and hf.truncation_side == "right" and hf.model_max_length == SEQ_LEN
    for hf_role, zoo_role in ROLES[style].items():
        assert getattr(hf, f"{hf_role}_token_id") == getattr(tok, f"{zoo_role}_id"), hf_role
    if style == "bert":
        assert hf.bos_token_id is None and hf.eos_token_id is None
    special = SpecialIds(tok.pad_id, tok.bos_id, tok.eos_id)

    # One sequence with its specials: tok(text) == bos/[CLS] + the zoo's tokens + eos/[SEP].
    for text in PROBES:
        ids = tok.encode(text)[0]
        out = hf(text)
        assert out["input_ids"] == [tok.bos_id, *ids, tok.eos_id], text
        assert out["attention_mask"] == [1] * (len(ids) + 2)
    # MLM rows: truncation keeps the zoo's first chunk of a long document; padding matches pad_batch.
    docs = [next(chunk_document(*tok.encode(t), SEQ_LEN, special)) for t in PROBES if t]
    assert any(len(ids) == SEQ_LEN for ids, _ in docs)                         # one was truncated
    for text, (ids, _) in zip([t for t in PROBES if t], docs):
        assert hf(text, truncation=True, max_length=SEQ_LEN)["input_ids"] == ids
    batch = hf([t for t in PROBES if t], padding=True, truncation=True, max_length=SEQ_LEN, return_tensors="pt")
    zoo = pad_batch(docs, tok.pad_id)
    assert torch.equal(batch["input_ids"], zoo["input_ids"])
    assert torch.equal(batch["attention_mask"].bool(), zoo["attention_mask"])
    # Captions / prompts: padding to max_length with truncation == encode_texts (empty text included).
    batch = hf(PROBES, padding="max_length", max_length=SEQ_LEN, truncation=True, return_tensors="pt")
    zoo = encode_texts(tok, PROBES, seq_len=SEQ_LEN)
    assert torch.equal(batch["input_ids"], zoo["input_ids"])
    assert torch.equal(batch["attention_mask"].bool(), zoo["attention_mask"])
    # The ids decode to the zoo's text.
    ids = hf(PROBES[0])["input_ids"]
    assert hf.decode(ids) == tok.decode(ids)


def test_clip_tokenizer_eos_is_largest_id(trained, tmp_path):
    tok = trained["clip"]
    hf = export_tokenizer(tok, "clip", tmp_path)
    assert hf.eos_token_id == tok.eos_id == tok.vocab_size - 1 and hf.bos_token_id == tok.vocab_size - 2
    rows = hf(PROBES, padding="max_length", max_length=SEQ_LEN, truncation=True, return_tensors="pt")
    ids, mask = rows["input_ids"], rows["attention_mask"]
    last = mask.sum(1) - 1
    assert (ids[torch.arange(len(PROBES)), last] == hf.eos_token_id).all()
    assert (ids.argmax(1) == last).all()                    # open_clip's argmax pooling finds the eos
    assert ((ids == hf.eos_token_id).sum(1) == 1).all()     # HF CLIP's first-eos pooling finds the same one


def test_tokenizer_config_files(trained, tmp_path):
    write_tokenizer_files(trained["bert-cased"], tmp_path / "bert", model_max_length=128, style="bert")
    config = json.loads((tmp_path / "bert" / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "BertTokenizer" and config["model_max_length"] == 128
    assert config["do_lower_case"] is False and config["strip_accents"] is False
    assert config["cls_token"] == "[CLS]" and config["sep_token"] == "[SEP]" and "bos_token" not in config
    assert {t["content"] for t in config["added_tokens_decoder"].values()} == {"[PAD]", "[UNK]", "[CLS]", "[SEP]",
                                                                              "[MASK]"}
    specials = json.loads((tmp_path / "bert" / "special_tokens_map.json").read_text())
    assert specials["mask_token"] == "[MASK]" and specials["pad_token"] == "[PAD]"
    saved = json.loads((tmp_path / "bert" / "tokenizer.json").read_text())
    assert saved == json.loads(trained["bert-cased"].tokenizer.to_str())
    write_tokenizer_files(trained["clip"], tmp_path / "clip", model_max_length=77, style="clip")
    config = json.loads((tmp_path / "clip" / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast" and config["eos_token"] == "</s>"
    assert config["added_tokens_decoder"][str(trained["clip"].vocab_size - 1)]["content"] == "</s>"


def test_tokenizer_style_must_fit(trained, tmp_path):
    with pytest.raises(ModalzooError, match="needs a WordPiece"):
        write_tokenizer_files(trained["roberta"], tmp_path, 16, "bert")
    with pytest.raises(ModalzooError, match="needs a BPE"):
        write_tokenizer_files(trained["bert"], tmp_path, 16, "clip")
    with pytest.raises(ModalzooError, match="unknown tokenizer style"):
        write_tokenizer_files(trained["bert"], tmp_path, 16, "xlnet")
    with pytest.raises(ModalzooError, match="needs a BPE"):
        write_tokenizer_files(trained["bert"], tmp_path, 16, "gpt2")


# Causal-LM styles: (style, tokenizer case); llama's PreTrainedTokenizerFast takes any tokenizer.json.
CAUSAL = {"gpt2": ("gpt2", "roberta"), "gpt2-prefix-space": ("gpt2", "roberta-prefix-space"),
          "llama": ("llama", "roberta"), "llama-specials-at-end": ("llama", "clip"),
          "llama-wordpiece": ("llama", "bert")}


@pytest.mark.parametrize("with_config", [True, False], ids=["config", "no-config"])
@pytest.mark.parametrize("case", list(CAUSAL))
def test_causal_lm_tokenizer_prepends_bos(trained, case, with_config, tmp_path):
    """tok(prompt) == [bos] + the zoo's tokens (generate's prompt framing); tokenizer.json alone agrees."""
    from tokenizers import Tokenizer
    style, tok_case = CAUSAL[case]
    tok = trained[tok_case]
    write_tokenizer_files(tok, tmp_path, model_max_length=SEQ_LEN, style=style)
    if with_config:
        (GPT2Config if style == "gpt2" else LlamaConfig)().save_pretrained(tmp_path)
    hf = AutoTokenizer.from_pretrained(tmp_path)
    assert type(hf).__name__ == {"gpt2": "GPT2Tokenizer", "llama": "TokenizersBackend"}[style]
    assert (hf.bos_token_id, hf.eos_token_id, hf.pad_token_id, hf.unk_token_id) == (tok.bos_id, tok.eos_id,
                                                                                    tok.pad_id, tok.unk_id)
    raw = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    for text in PROBES:
        want = [tok.bos_id, *tok.encode(text)[0]]
        assert hf(text)["input_ids"] == want, text
        assert raw.encode(text).ids == want, text
    batch = hf(PROBES[:3], padding=True, return_tensors="pt")         # right-padded as the zoo's rows
    zoo = pad_batch([([tok.bos_id, *tok.encode(t)[0]], [-1] * (1 + len(tok.encode(t)[0]))) for t in PROBES[:3]],
                    tok.pad_id)
    assert torch.equal(batch["input_ids"], zoo["input_ids"])
    assert torch.equal(batch["attention_mask"].bool(), zoo["attention_mask"])
    ids = hf(PROBES[3])["input_ids"]
    assert hf.decode(ids) == tok.decode(ids)
