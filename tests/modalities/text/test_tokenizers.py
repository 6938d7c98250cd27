"""The text tokenizers' special-token layouts: RoBERTa's (specials first) and CLIP's (specials last)."""

from __future__ import annotations

import itertools

import pytest

from modalzoo.errors import ConfigError, ModalzooError
from modalzoo.modalities.text.tokenizers import load_or_train
from modalzoo.registry import TOKENIZERS

CORPUS = [f"The quick brown fox number {i} jumps over the lazy {w}. A photo of a {w}!"
          for i, w in zip(range(300), itertools.cycle(["cat", "dog", "seven", "three", "digit"]))]
CORPUS += ["special-token text in the data: <s> a </s> b <pad> <mask>"] * 30    # never learned as merges
VOCAB = 400


def bpe(**options):
    return TOKENIZERS.build({"name": "bytelevel_bpe", "vocab_size": VOCAB, "min_frequency": 1, **options}).train(CORPUS)


def test_default_layout_is_robertas():
    tok = bpe()
    assert [tok.bos_id, tok.pad_id, tok.eos_id, tok.unk_id, tok.mask_id] == [0, 1, 2, 3, 4]
    assert [tok.id_to_token(i) for i in range(5)] == ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    assert tok.vocab_size == VOCAB


def test_specials_at_end_take_the_largest_ids():
    tok = bpe(specials_at_end=True)
    assert tok.vocab_size == VOCAB                                             # exact, specials included
    assert tok.eos_id == VOCAB - 1 and tok.bos_id == VOCAB - 2                 # </s> is the very largest id
    assert [tok.pad_id, tok.unk_id, tok.mask_id] == [VOCAB - 5, VOCAB - 4, VOCAB - 3]
    assert tok.special_ids == list(range(VOCAB - 5, VOCAB))
    assert sorted(tok.tokenizer.get_vocab().values()) == list(range(VOCAB))   # no gaps or duplicates
    # The default layout's training, every other id shifted down by 5; ordinary text never makes a special.
    first = bpe()
    assert all(tok.id_to_token(i - 5) == first.id_to_token(i) for i in range(5, VOCAB))
    for text in ["A photo of a seven.", "unseen wörds 🙂", "the lazy dog " * 5]:
        ids = tok.encode(text)[0]
        assert ids == [i - 5 for i in first.encode(text)[0]]
        assert max(ids) < VOCAB - 5
    # The post-processor wraps with the moved ids; special-token text is one special token.
    assert tok.tokenizer.encode("a cat").ids[0] == tok.bos_id and tok.tokenizer.encode("a cat").ids[-1] == tok.eos_id
    assert tok.encode("a <mask> cat</s>")[0].count(tok.mask_id) == 1
    assert tok.decode(tok.encode("a photo of a cat")[0]) == "a photo of a cat"


def test_specials_at_end_survive_save_and_load(tmp_path):
    tok = bpe(specials_at_end=True)
    tok.save(tmp_path / "tokenizer.json")
    again = TOKENIZERS.build({"name": "bytelevel_bpe"}).load(tmp_path / "tokenizer.json")
    assert (again.eos_id, again.bos_id, again.pad_id, again.vocab_size) == (tok.eos_id, tok.bos_id, tok.pad_id, VOCAB)
    assert again.encode("a photo of a dog")[0] == tok.encode("a photo of a dog")[0]


def test_layouts_are_cached_apart(tmp_path):
    """load_or_train digests the spec, so the two layouts never share a cached tokenizer."""
    def texts():
        return iter(CORPUS)
    spec = {"name": "bytelevel_bpe", "vocab_size": VOCAB, "min_frequency": 1}
    first = load_or_train(spec, None, tmp_path, ["k"], texts)
    last = load_or_train({**spec, "specials_at_end": True}, None, tmp_path, ["k"], texts)
    assert first.eos_id == 2 and last.eos_id == VOCAB - 1
    assert len(list(tmp_path.glob("bytelevel_bpe-*.json"))) == 2


def test_specials_at_end_is_a_bytelevel_option():
    with pytest.raises(ConfigError):
        TOKENIZERS.build({"name": "wordpiece", "specials_at_end": True})


@pytest.mark.parametrize("name, options", [("wordpiece", {}), ("bytelevel_bpe", {}),
                                           ("bytelevel_bpe", {"specials_at_end": True})])
def test_sentinels_and_extra_specials(name, options, tmp_path):
    """extra_ids: T5's <extra_id_N> sentinels, and extra_specials (UL2's mode tokens): special tokens counted
    in vocab_size, never split, found again when the file is loaded by path."""
    spec = {"name": name, "vocab_size": VOCAB, "min_frequency": 1, "extra_ids": 4, "extra_specials": ["[NLU]"],
            **options}
    tok = TOKENIZERS.build(spec).train(CORPUS)
    assert tok.vocab_size == VOCAB and len(tok.sentinel_ids) == 4
    assert [tok.id_to_token(i) for i in tok.sentinel_ids] == [f"<extra_id_{i}>" for i in range(4)]
    assert set(tok.sentinel_ids) | {tok.extra_special_ids["[NLU]"]} <= set(tok.special_ids)
    assert tok.added_specials == [*(f"<extra_id_{i}>" for i in range(4)), "[NLU]"]
    ids = tok.encode("[NLU] a cat <extra_id_2> the dog")[0]
    assert ids[0] == tok.extra_special_ids["[NLU]"] and ids.count(tok.sentinel_ids[2]) == 1
    if options:
        assert tok.eos_id == VOCAB - 1                        # CLIP's layout keeps </s> the very largest id
    saved = tmp_path / "tokenizer.json"
    tok.save(saved)
    by_path = TOKENIZERS.build({"name": name, "path": str(saved)}).load(saved)
    assert by_path.sentinel_ids == tok.sentinel_ids                 # read from the file, whatever the config says
    with pytest.raises(ModalzooError, match="extra_ids = 8, but the tokenizer holds 4"):
        TOKENIZERS.build({"name": name, "extra_ids": 8}).load(saved)
    with pytest.raises(ModalzooError, match=r"extra_specials asks for \['\[S2S\]'\]"):
        TOKENIZERS.build({"name": name, "extra_specials": ["[NLU]", "[S2S]"]}).load(saved)
