"""Speech from eSpeak NG (GPL-3.0-or-later) through ctypes, with phone and word alignments from its events.

The library and its voice data come from the ``espeakng-loader`` wheel (``pip install modalzoo[speech]``); they
are loaded at data-build time only, never bundled with modalzoo or written into a dataset. eSpeak is set up
with ``espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, ..., espeakINITIALIZE_PHONEME_EVENTS)``: the synth callback
receives the samples and, with them, a phoneme event per phone and a word event per word, each at the output
sample where it starts. Those are the alignments (phones end where the next starts).

Synthesis runs in child processes (this file run by path, so a child imports only numpy): eSpeak keeps
state between utterances that no call resets (the pitch flutter index is a function-level static), so the
same utterance comes out slightly differently depending on what was spoken before in that process. A fresh
process per chunk of requests makes every build a function of its config alone, whatever else the calling
process synthesized, and lets chunks run in parallel.

Voices: an accent (eSpeak 1.52 language names; "en-gb" is refused there, British English is "en") plus a
variant (``voices/!v``: m1-m8, f1-f5, klatt, whisper, croak and community variants), a rate (words per minute,
80-450) and a pitch (0-99)."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

ENGINE = "espeak-ng"
LICENCE = "GPL-3.0-or-later"
INSTALL_HINT = "pip install modalzoo[speech]"

# eSpeak NG 1.52 voice names -> the accent as a caption says it ("a man with {} accent")
ACCENTS = {
    "en-us": "an american", "en": "a british", "en-gb-scotland": "a scottish", "en-gb-x-rp": "a posh english",
    "en-gb-x-gbclan": "a lancashire", "en-gb-x-gbcwmd": "a west midlands", "en-029": "a caribbean",
    "en-us-nyc": "a new york",
}

# Variants used: name -> (gender, kind). Gender from the variant file where it says, else from its pitch
# (median F0 of "seven three": every unmarked one used here is 90-125 Hz); kinds change the caption's words.
# Left out: Storm, antonio and iven (they reach full scale even at volume 60) and the untested rest.
_MALE = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "Andy", "Denis", "Diogo", "Henrique", "Lee", "michel",
         "miguel", "sandro", "travis", "victor", "boris", "edward", "john", "max",
         "norbert", "rob", "robert", "klatt", "klatt2", "klatt3", "klatt4"]
_FEMALE = ["f1", "f2", "f3", "f4", "f5", "Alicia", "Andrea", "Annie", "anika", "belinda", "linda", "steph",
           "steph2", "shelby", "aunty"]
VARIANTS: dict[str, tuple[str, str]] = {
    **{v: ("male", "plain") for v in _MALE}, **{v: ("female", "plain") for v in _FEMALE},
    "grandpa": ("male", "old"), "grandma": ("female", "old"),
    "whisper": ("male", "whisper"), "whisperf": ("female", "whisper"),
    "croak": ("male", "croaky"), "robosoft3": ("male", "robotic"), "UniRobot": ("male", "robotic"),
    "anikaRobot": ("female", "robotic"),
}

# speak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS, _INITIALIZE_DONT_EXIT = 0x0001, 0x8000
_EVENT_WORD, _EVENT_END, _EVENT_PHONEME = 1, 5, 7
_POS_CHARACTER, _CHARS_UTF8 = 1, 1
_RATE, _VOLUME, _PITCH, _RANGE, _WORDGAP = 1, 2, 3, 4, 7
_VOLUME_LEVEL = 60        # eSpeak's 100 saturates int16 for some variants; builders set their own level after


@dataclass(frozen=True)
class Voice:
    accent: str
    variant: str
    rate: int = 175
    pitch: int = 50

    @property
    def name(self) -> str:
        return f"{self.accent}+{self.variant}"

    def describe(self) -> dict:
        gender, kind = VARIANTS.get(self.variant, ("unknown", "plain"))
        return {"accent": self.accent, "variant": self.variant, "rate": self.rate, "pitch": self.pitch,
                "engine": ENGINE, "gender": gender, "kind": kind}


@dataclass
class Speech:
    wave: np.ndarray          # float32 [T] in [-1, 1] at `rate`
    rate: int
    words: list[dict]         # {"word", "start", "end"} in seconds
    phones: list[list]        # [phone, start_s, end_s], contiguous from 0 to the end ("sil" for pauses)


def check_voice(voice: Voice) -> None:
    """Refuse names eSpeak would not load (it silently keeps the previous variant for an unknown one)."""
    if voice.accent not in ACCENTS:
        raise ValueError(f"unknown accent {voice.accent!r}; known: {', '.join(ACCENTS)}")
    if voice.variant not in VARIANTS:
        raise ValueError(f"unknown voice variant {voice.variant!r}; known: {', '.join(VARIANTS)}")
    if not 80 <= voice.rate <= 450 or not 0 <= voice.pitch <= 99:
        raise ValueError(f"rate must be 80-450 words/min and pitch 0-99, got {voice.rate}, {voice.pitch}")


# ------------------------------------------------------------------------------------------- alignments
def phone_label(mnemonic: str) -> str:
    """eSpeak's phoneme mnemonic without stress marks; every pause ("_", "_:", "_!") is "sil"."""
    label = mnemonic.strip("',%=")
    return "sil" if not label or label.startswith("_") else label


def alignments(events: Sequence[Sequence], n_samples: int, text: str, rate: int) -> tuple[list[dict], list[list]]:
    """Word and phone spans (seconds) from eSpeak's events ``(type, sample, text_position, mnemonic)``.

    A phone runs from its event to the next one (the last to the end of the clip); the stretch before the first
    phone and every pause are "sil", adjacent silences merged. A word event's text position (1-based character
    offset) names its word of ``text``; the word spans its non-silent phones."""
    starts = [0]
    for w in text.split(" ")[:-1]:
        starts.append(starts[-1] + len(w) + 1)
    words = text.split(" ")
    marks: list[tuple[int, str, int | None]] = []
    word = None
    for kind, sample, position, mnemonic in events:
        if kind == _EVENT_WORD:
            word = max((i for i, s in enumerate(starts) if s <= position - 1), default=0)
        elif kind == _EVENT_PHONEME:
            label = phone_label(mnemonic)
            marks.append((min(max(int(sample), 0), n_samples), label, None if label == "sil" else word))
    if not marks or marks[0][0] > 0:
        marks.insert(0, (0, "sil", None))
    segments: list[list] = []        # [label, start, end, word] in samples
    for i, (start, label, w) in enumerate(marks):
        end = marks[i + 1][0] if i + 1 < len(marks) else n_samples
        if end <= start:
            continue
        if segments and label == "sil" and segments[-1][0] == "sil":
            segments[-1][2] = end
        else:
            segments.append([label, start, end, w])
    if segments:
        segments[-1][2] = n_samples  # the tail after the last event belongs to the last phone
    phones = [[label, round(s / rate, 5), round(e / rate, 5)] for label, s, e, _ in segments]
    spans = []
    for i, w in enumerate(words):
        own = [seg for seg in segments if seg[3] == i]
        if own:
            spans.append({"word": w, "start": round(own[0][1] / rate, 5), "end": round(own[-1][2] / rate, 5)})
        else:
            spans.append({"word": w, "start": None, "end": None})
    return spans, phones


# ------------------------------------------------------------------------------------------- the library
class _Event(ctypes.Structure):
    class _Id(ctypes.Union):
        _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]

    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _Id)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


class Library:
    """eSpeak NG loaded in this process (the worker side). One per process: the library is global state."""

    def __init__(self, library_path: str, data_path: str):
        lib = ctypes.CDLL(library_path)
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Info.restype = ctypes.c_char_p
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        self.rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(),
                                          _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_DONT_EXIT)
        if self.rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed ({self.rate}) with data at {data_path}")
        self.version = lib.espeak_Info(None).decode()
        self.lib, self.chunks, self.events = lib, [], []
        self._callback = _CALLBACK(self._collect)        # kept alive: eSpeak holds only the pointer
        lib.espeak_SetSynthCallback(self._callback)
        self._seed = getattr(lib, "espeak_ng_SetRandSeed", None)
        if self._seed is not None:
            self._seed.argtypes = [ctypes.c_long]

    def _collect(self, wav, n, events) -> int:
        if n > 0:
            self.chunks.append(ctypes.string_at(wav, n * 2))
        i = 0
        while events[i].type != 0:                         # espeakEVENT_LIST_TERMINATED
            e = events[i]
            if e.type in (_EVENT_WORD, _EVENT_PHONEME, _EVENT_END):
                name = e.id.string.decode("ascii", "replace") if e.type == _EVENT_PHONEME else ""
                self.events.append((e.type, e.sample, e.text_position, name))
            i += 1
        return 0

    def synth(self, text: str, voice: str, rate: int, pitch: int, seed: int = 0) -> tuple[bytes, list]:
        """int16 samples (bytes, at `self.rate`) and the word/phoneme events of ``text`` in ``voice``."""
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise RuntimeError(f"eSpeak has no voice {voice!r}")
        for param, value in ((_RATE, rate), (_VOLUME, _VOLUME_LEVEL), (_PITCH, pitch), (_RANGE, 50), (_WORDGAP, 0)):
            self.lib.espeak_SetParameter(param, value, 0)   # after the voice: a voice change resets them
        if self._seed is not None:
            self._seed(seed)
        self.chunks, self.events = [], []
        raw = text.encode()
        err = self.lib.espeak_Synth(raw, len(raw) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if err != 0:
            raise RuntimeError(f"espeak_Synth failed ({err}) for {text!r} in {voice}")
        return b"".join(self.chunks), self.events


def _worker() -> None:
    """Child process: requests (JSON on stdin) -> a hello line, then per request a JSON header + int16 bytes."""
    job = json.loads(sys.stdin.buffer.read())
    out = sys.stdout.buffer
    try:
        lib = Library(job["library"], job["data"])
    except (OSError, RuntimeError) as err:
        print(f"eSpeak NG could not be loaded: {err}", file=sys.stderr)
        sys.exit(3)
    out.write(json.dumps({"version": lib.version, "rate": lib.rate}).encode() + b"\n")
    for text, voice, rate, pitch, seed in job["requests"]:
        pcm, events = lib.synth(text, voice, rate, pitch, seed)
        out.write(json.dumps({"samples": len(pcm) // 2, "events": events}).encode() + b"\n")
        out.write(pcm)
    out.flush()


# ------------------------------------------------------------------------------------------- the parent side
def library_paths() -> tuple[str, str]:
    """The wheel's shared library and voice data, or a ModalzooError saying how to install them."""
    from ....errors import ModalzooError
    try:
        import espeakng_loader
    except ImportError:
        raise ModalzooError(f"speech synthesis needs eSpeak NG: {INSTALL_HINT} (the espeakng-loader wheel, "
                            f"{LICENCE}; used at build time only)") from None
    try:
        lib, data = espeakng_loader.get_library_path(), espeakng_loader.get_data_path()
    except (RuntimeError, OSError) as err:
        raise ModalzooError(f"the espeakng-loader install is broken ({err}): reinstall with {INSTALL_HINT}") from None
    if not os.path.exists(lib) or not os.path.isdir(os.path.join(data, "voices")):
        raise ModalzooError(f"the espeakng-loader install is incomplete ({lib}, {data}): reinstall with "
                            f"{INSTALL_HINT}")
    return lib, data


def _run_chunk(paths: tuple[str, str], requests: list) -> tuple[dict, list[tuple[dict, bytes]]]:
    from ....errors import ModalzooError
    job = json.dumps({"library": paths[0], "data": paths[1], "requests": requests}).encode()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, os.path.abspath(__file__)], input=job, capture_output=True, env=env)
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise ModalzooError(f"eSpeak NG failed (exit {proc.returncode}: {' / '.join(tail)}); reinstall it with "
                            f"{INSTALL_HINT}")
    data, pos = proc.stdout, 0

    def line() -> dict:
        nonlocal pos
        end = data.index(b"\n", pos)
        value, pos = json.loads(data[pos:end]), end + 1
        return value

    hello, results = line(), []
    for _ in requests:
        head = line()
        n = head["samples"] * 2
        results.append((head, data[pos:pos + n]))
        pos += n
    return hello, results


def engine_info() -> dict:
    """{"engine", "version", "licence", "native_rate"} from a child that loads the library (and nothing else)."""
    hello, _ = _run_chunk(library_paths(), [])
    return {"engine": ENGINE, "version": hello["version"], "licence": LICENCE, "native_rate": hello["rate"],
            "source": "espeakng-loader wheel (library + espeak-ng-data), loaded at build time, not distributed "
                      "with modalzoo"}


def synthesize(requests: Sequence[tuple[str, Voice]], rate: int = 16000, workers: int = 1,
               chunk: int = 250, seed: int = 0) -> Iterator[Speech]:
    """Speech for each ``(text, voice)`` in order, resampled to ``rate``, with word and phone alignments.

    Every ``chunk`` requests run in a fresh child process (``workers`` at a time), so the output depends only
    on the requests, ``chunk`` and ``seed``."""
    import torch
    import torchaudio

    for _, voice in requests:
        check_voice(voice)
    paths = library_paths()
    rows = [[text, v.name, v.rate, v.pitch, seed + i] for i, (text, v) in enumerate(requests)]
    chunks = [rows[i:i + chunk] for i in range(0, len(rows), chunk)]
    resamplers: dict[int, torch.nn.Module] = {}
    with ThreadPoolExecutor(max(1, workers)) as pool:
        pending = [pool.submit(_run_chunk, paths, c) for c in chunks[:workers + 1]]
        for i in range(len(chunks)):
            hello, results = pending[i].result()
            if i + workers + 1 < len(chunks):
                pending.append(pool.submit(_run_chunk, paths, chunks[i + workers + 1]))
            pending[i] = None                                   # free the chunk's bytes once read
            native = hello["rate"]
            if native != rate and native not in resamplers:     # the kernel is built once per rate pair
                resamplers[native] = torchaudio.transforms.Resample(native, rate)
            for (head, pcm), row in zip(results, chunks[i]):
                wave = np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0
                words, phones = alignments(head["events"], len(wave), row[0], native)
                if native != rate:
                    with torch.no_grad():
                        wave = resamplers[native](torch.from_numpy(wave)).numpy()
                end = round(len(wave) / rate, 5)
                if phones:
                    phones[-1][2] = end                          # the resampled length, exactly
                for w in words:
                    if w["end"] is not None and w["end"] > end:
                        w["end"] = end
                yield Speech(np.ascontiguousarray(wave, dtype=np.float32), rate, words, phones)


if __name__ == "__main__":
    _worker()
