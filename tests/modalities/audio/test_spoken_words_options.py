"""spoken-words' bind options: ``vocabulary=digits`` (zero..nine only; classes.json = the digits image classes in
order) and ``captions=words`` (what is said, no speaker; the same audio plan as speaker captions), the digit
words tokenized alike in these captions and the digits image captions, and bad option values refused by name."""

from __future__ import annotations

import importlib.util
import json
import re

import pytest

from modalzoo.errors import ConfigError
from modalzoo.modalities.audio import samples
from modalzoo.modalities.vision.samples import DIGIT_CAPTIONS, DIGIT_WORDS
from modalzoo.registry import REGISTRIES
from shapes_data import read_split

needs_espeak = pytest.mark.skipif(importlib.util.find_spec("espeakng_loader") is None,
                                  reason="needs modalzoo[speech]")
pytestmark = pytest.mark.usefixtures("one_thread")
BIND = {"utterances": 30, "single_word_fraction": 0.5, "clips_per_shard": 15, "vocabulary": "digits",
        "captions": "words"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "spoken-digits"
    return out, samples.SpokenWords(samples.SpokenWordsConfig(**BIND)).build(out)


def clips(out):
    return [member for split in samples.SPLITS for member in read_split(out, split).values()]


@needs_espeak
def test_digits_vocabulary_matches_the_digits_image_classes(built):
    out, info = built
    classes = json.loads((out / "classes.json").read_text())
    assert classes["classes"] == DIGIT_WORDS and classes["templates"] == samples.WORD_TEMPLATES
    assert info["vocabulary"] == DIGIT_WORDS and info["config"]["vocabulary"] == "digits"
    singles = 0
    for member in clips(out):
        said = json.loads(member["json"])["text"].split()
        assert set(said) <= set(DIGIT_WORDS)
        if len(said) == 1:
            assert DIGIT_WORDS[int(member["cls"])] == said[0]
            singles += 1
        else:
            assert "cls" not in member
    assert singles == sum(info["single_word_clips"].values()) and 5 < singles < 25


@needs_espeak
def test_word_captions_say_what_is_said_and_nothing_of_the_speaker(built):
    out, info = built
    assert info["captions"] == {"style": "words", "templates": samples.WORDS_CAPTIONS}
    used = set()
    for member in clips(out):
        caption, text = member["txt"].decode(), json.loads(member["json"])["text"]
        template = next(t for t in samples.WORDS_CAPTIONS
                        if caption == t.format(text, s="s" if " " in text else ""))
        used.add(template)
        assert "'" not in caption and not caption.startswith(text)
        assert not {"man", "woman", "accent", "whispering"} & set(caption.replace(".", "").split())
    assert len(used) >= 3


def test_word_captions_keep_the_audio_plan_and_the_defaults_keep_theirs():
    """captions=words adds a template per clip and changes nothing else; vocabulary=all is the default."""
    size = {"utterances": 60, "single_word_fraction": 0.5}
    speaker = samples.SpokenWords(samples.SpokenWordsConfig(**size, vocabulary="digits")).plan()
    words = samples.SpokenWords(samples.SpokenWordsConfig(**size, vocabulary="digits", captions="words")).plan()
    assert [{k: v for k, v in s.items() if k != "template"} for s in words] == speaker
    default = samples.SpokenWords(samples.SpokenWordsConfig(**size)).plan()
    assert samples.SpokenWordsConfig().vocabulary == "all" and samples.SpokenWordsConfig().captions == "speaker"
    assert "template" not in default[0] and {w for s in default for w in s["text"].split()} - set(DIGIT_WORDS)


@needs_espeak
def test_digit_words_tokenize_alike_in_both_datasets_captions(built):
    """One byte-level BPE (no prefix space, the default) trained on both caption sets splits each digit word
    one way in all of them: the spoken captions never put it first or after a quote, nor do the image ones."""
    out, _ = built
    spoken = [m["txt"].decode() for m in clips(out)]
    images = [t.format(w=w, n=n) for n, w in enumerate(DIGIT_WORDS) for t in DIGIT_CAPTIONS]
    tok = REGISTRIES["tokenizer"].build({"name": "bytelevel_bpe", "vocab_size": 400}).train(spoken + images)
    for word in DIGIT_WORDS:
        splits = {}
        for caption in spoken + images:
            enc = tok.tokenizer.encode(caption, add_special_tokens=False)
            for found in re.finditer(rf"\b{word}\b", caption):      # "one" in "someone" is not the word
                span = tuple(t for t, (a, b) in zip(enc.tokens, enc.offsets) if a < found.end() and b > found.start())
                splits.setdefault(span, []).append("spoken" if caption in spoken else "image")
        assert len(splits) == 1 and set(next(iter(splits.values()))) == {"spoken", "image"}, (word, splits)
    # the check can fail: the speaker captions quote the words, and a quote changes the split
    quoted = tok.tokenizer.encode("a man saying 'three five'", add_special_tokens=False).tokens
    assert "Ġthree" not in quoted


def test_bad_option_values_are_refused_by_name():
    with pytest.raises(ConfigError, match=r"'data build.vocabulary'.*did you mean 'digits'"):
        REGISTRIES["sample_data"].build({"name": "spoken-words", "vocabulary": "digit"}, "data build")
    with pytest.raises(ConfigError, match=r"'captions' = 'word'.*did you mean 'words'"):
        samples.SpokenWords(samples.SpokenWordsConfig(captions="word"))
