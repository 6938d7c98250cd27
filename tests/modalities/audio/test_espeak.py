"""eSpeak NG through ctypes: alignments from its events, real synthesis (voices, determinism, alignment sanity)
and the errors for a missing or broken install."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest

from modalzoo.errors import ModalzooError
from modalzoo.modalities.audio.synth import espeak
from modalzoo.modalities.audio.synth.espeak import Voice, alignments, synthesize

pytestmark = pytest.mark.usefixtures("one_thread")
needs_espeak = pytest.mark.skipif(importlib.util.find_spec("espeakng_loader") is None,
                                  reason="needs modalzoo[speech]")


def test_alignments_from_events_are_contiguous_and_name_words():
    # (type, sample, text_position, mnemonic): word 1 at char 1, word 2 at char 7 ("seven two")
    events = [(1, 0, 1, ""), (7, 100, 1, "s"), (7, 300, 1, "'E"), (7, 500, 1, "v"), (7, 600, 1, "_:"),
              (1, 650, 7, ""), (7, 700, 7, "t"), (7, 800, 7, "u:"), (7, 990, 7, "_"), (5, 1000, 10, "")]
    words, phones = alignments(events, 1000, "seven two", rate=1000)
    assert [p[0] for p in phones] == ["sil", "s", "E", "v", "sil", "t", "u:", "sil"]
    assert phones[0][1] == 0 and phones[-1][2] == 1.0
    assert all(a[2] == b[1] for a, b in zip(phones, phones[1:]))          # contiguous
    assert words == [{"word": "seven", "start": 0.1, "end": 0.6}, {"word": "two", "start": 0.7, "end": 0.99}]


@needs_espeak
def test_synthesis_aligns_phones_and_words_inside_the_clip():
    texts = ["seven three stop", "zero", "go left right"]
    voices = [Voice("en-us", "m3", 175, 50), Voice("en-gb-scotland", "f2", 240, 80), Voice("en", "whisper", 130, 20)]
    out = list(synthesize(list(zip(texts, voices)), rate=16000))
    for text, speech in zip(texts, out):
        end = len(speech.wave) / 16000
        assert speech.rate == 16000 and speech.wave.dtype == np.float32 and 0.2 < end < 3
        assert 0.05 < np.abs(speech.wave).max() < 1
        starts = [p[1] for p in speech.phones]
        assert starts[0] == 0 and starts == sorted(starts) and speech.phones[-1][2] == pytest.approx(end, abs=1e-4)
        assert all(s < e <= end + 1e-5 for _, s, e in speech.phones)
        assert [w["word"] for w in speech.words] == text.split()
        for w in speech.words:
            assert 0 <= w["start"] < w["end"] <= end + 1e-5
            inside = [p for p in speech.phones if w["start"] <= p[1] < w["end"]]
            assert inside and all(p[2] <= w["end"] + 1e-5 and p[0] != "sil" for p in inside)
        assert {p[0] for p in speech.phones} - {"sil"} and all("'" not in p[0] for p in speech.phones)


@needs_espeak
def test_synthesis_is_a_function_of_the_requests_and_voices_differ():
    requests = [("one two", Voice("en-us", "m1")), ("one two", Voice("en-us", "f4")),
                ("one two", Voice("en-029", "m1"))]
    a, b = list(synthesize(requests)), list(synthesize(requests))
    for x, y in zip(a, b):
        assert np.array_equal(x.wave, y.wave) and x.phones == y.phones
    assert len({x.wave.tobytes() for x in a}) == 3                      # variant and accent change the audio
    slow, fast = synthesize([("seven", Voice("en", "m2", 100)), ("seven", Voice("en", "m2", 300))])
    assert len(slow.wave) > 1.5 * len(fast.wave)


def test_unknown_voices_are_refused_before_synthesis():
    with pytest.raises(ValueError, match="unknown voice variant"):
        list(synthesize([("one", Voice("en-us", "nobody"))]))
    with pytest.raises(ValueError, match="unknown accent"):
        list(synthesize([("one", Voice("en-gb", "m1"))]))         # eSpeak 1.52 calls British English "en"


def test_a_missing_wheel_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)      # import now raises ImportError
    with pytest.raises(ModalzooError, match=r"pip install modalzoo\[speech\]"):
        espeak.engine_info()


@needs_espeak
def test_a_broken_library_says_how_to_reinstall(monkeypatch, tmp_path):
    import espeakng_loader
    fake = tmp_path / "libespeak-ng.so"
    fake.write_bytes(b"not a shared library")
    monkeypatch.setattr(espeakng_loader, "get_library_path", lambda: str(fake))
    with pytest.raises(ModalzooError, match=r"eSpeak NG failed.*pip install modalzoo\[speech\]"):
        espeak.engine_info()
