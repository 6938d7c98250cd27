"""`modalzoo data build spoken-words` and `sound-captions`: audio made at build time, offline.

spoken-words: 1-4-word utterances over a vocabulary of digits and command words, spoken by eSpeak NG
(GPL-3.0+, from the ``espeakng-loader`` wheel: ``pip install modalzoo[speech]``; used at build time, never
bundled, and no audio is committed to modalzoo) in 8 English accents x 52 voice variants x rates x pitches,
a fraction augmented (noise at an SNR, gain, speed, synthetic reverb). Every clip keeps its word and phone
alignments from the synthesizer's events (KEY.json), single-word clips their word's class id (KEY.cls), and
each a caption describing speaker and text (KEY.txt). train / validation / test are split by held-out voice
variants: a voice of the test split is heard nowhere else.

Two options make the data for binding audio to another modality through text (bind_tiny pairs it with the
`digits` images; the defaults keep the data above): ``vocabulary=digits`` says only zero..nine, so every
utterance is about classes the images have, and classes.json lists exactly those ten words in order, so
class ids match the digits classes by name (``all``: the 30 words). ``captions=words`` captions what is said
and nothing of the speaker ("someone saying three five.", "the spoken words three five"), from
WORDS_CAPTIONS: phrasings of their own that share the digit words with the image captions, never put a word
first or in quotes (a byte-level BPE splits "three" there differently from " three" mid-sentence: the speaker
captions' quoted 'three five' gives "three", not "Ġthree", whatever add_prefix_space says), and draw on
their own random stream, so the audio is that of ``captions=speaker``.

sound-captions: audio-caption pairs for CLAP: speech with speaker descriptions, synthetic events (beeps,
sweeps, sirens, coloured noise, clicks, chords, DTMF, noise bursts) and two-event mixtures ("X then Y",
"X over Y"), captioned from what made each clip. Held out for zero-shot testing: caption templates (the test
split's captions and classes.json's prompts use only those), one attribute value per event class, a share of
the event pairs, and voices. Single-event clips carry their class id."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ...datasets.shards import ShardWriter
from ...errors import ConfigError, closest
from ...registry import SAMPLE_DATA
from .synth.espeak import ACCENTS, VARIANTS, Voice
from .synth.events import ATTRIBUTES, EVENT_CLASSES

SPLITS = ("train", "validation", "test")
VOCABULARY = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
              "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go",
              "forward", "backward", "bed", "bird", "cat", "dog", "happy", "house", "tree", "wow"]
VOCABULARIES = {"all": VOCABULARY, "digits": VOCABULARY[:10]}     # digits: class id = the digit
# captions=words: what is said, never first or quoted (one BPE split of each word); {s} plurals "word"
WORDS_CAPTIONS = ["someone saying {}.", "a voice saying {}.", "the spoken word{s} {}", "a person says {}.",
                  "a recording of someone saying {}.", "a short clip of the word{s} {} said aloud."]
WORD_TEMPLATES = ["someone saying {}.", "a voice saying the word {}.", "the spoken word {}.", "a person says {}."]
SPEECH_CLASS = "a person speaking"
KIND_NOUNS = {"plain": "{g}", "old": "old {g}", "whisper": "{g}", "croaky": "{g} with a croaky voice",
              "robotic": "robotic {g} voice"}


# ------------------------------------------------------------------------------------------- voices, captions
def voice_split(seed: int, validation: int, test: int) -> dict[str, list[str]]:
    """Voice variants per split: the held-out ones are "plain" voices, half men and half women (so a held-out
    voice differs from the training voices in timbre, not in kind); the rest train."""
    rng = np.random.default_rng([seed, 7])
    by_gender = {g: [v for v, (gg, kind) in VARIANTS.items() if gg == g and kind == "plain"]
                 for g in ("male", "female")}
    for names in by_gender.values():
        rng.shuffle(names)
    held = {"test": [], "validation": []}
    for split, count in (("test", test), ("validation", validation)):
        for i in range(count):
            pool = by_gender["male" if i % 2 == 0 else "female"] or by_gender["male"] or by_gender["female"]
            if not pool:
                raise ValueError(f"not enough voice variants to hold out {validation} + {test}")
            held[split].append(pool.pop())
    taken = set(held["test"]) | set(held["validation"])
    return {"train": [v for v in VARIANTS if v not in taken], **{s: sorted(held[s]) for s in held}}


def speaker_phrase(speaker: dict, accent: bool = True) -> tuple[str, str]:
    """(subject, verb) for a speaker: ("a woman with a scottish accent", "saying")."""
    gender = {"male": "man", "female": "woman"}.get(speaker["gender"], "person")
    noun = KIND_NOUNS[speaker["kind"]].format(g=gender)
    article = "an" if noun[0] in "aeiou" else "a"
    verb = "whispering" if speaker["kind"] == "whisper" else "saying"
    subject = f"{article} {noun}"
    if accent:
        subject += f" {'and' if ' with ' in noun else 'with'} {ACCENTS[speaker['accent']]} accent"
    return subject, verb


def manner(speaker: dict) -> str:
    rate, pitch = speaker["rate"], speaker["pitch"]
    words = (["slowly"] if rate < 150 else ["quickly"] if rate > 220 else []) + \
            (["in a low voice"] if pitch < 30 else ["in a high voice"] if pitch > 70 else [])
    return (" " + " ".join(words)) if words else ""


def speech_caption(speaker: dict, text: str) -> str:
    subject, verb = speaker_phrase(speaker)
    return f"{subject} {verb} '{text}'{manner(speaker)}"


def _counts(total: int, validation: float, test: float) -> dict[str, int]:
    if not 0 <= validation < 1 or not 0 <= test < 1 or validation + test >= 1:
        raise ValueError(f"validation_fraction + test_fraction must be below 1, got {validation} + {test}")
    n_val, n_test = round(total * validation), round(total * test)
    return {"train": total - n_val - n_test, "validation": n_val, "test": n_test}


def _engine() -> dict:
    import shutil

    from .synth.espeak import engine_info
    info = engine_info()
    info["second_engine"] = ("flite found on PATH but not used: only eSpeak NG has phone alignments here"
                             if shutil.which("flite") else "flite not found on PATH: skipped (eSpeak NG only)")
    return info


def _random_voice(rng: np.random.Generator, variants: list[str], cfg) -> Voice:
    return Voice(str(rng.choice(list(ACCENTS))), str(rng.choice(variants)),
                 int(rng.integers(cfg.rate_min, cfg.rate_max + 1)), int(rng.integers(cfg.pitch_min, cfg.pitch_max + 1)))


def _speech_clip(speech, voice, rng: np.random.Generator, rate: int, augment_fraction: float):
    """A synthesized utterance at a random level, maybe augmented; alignments follow a speed change."""
    from .synth.events import augment

    wave = speech.wave * (float(rng.uniform(0.35, 0.9)) / max(float(np.abs(speech.wave).max()), 1e-6))
    done: list[dict] = []
    if rng.random() < augment_fraction:
        kinds = list(rng.choice(["noise", "gain", "speed", "reverb"], size=int(rng.integers(1, 3)), replace=False))
        wave, done = augment(wave, rate, rng, kinds)
    factor = next((d["factor"] for d in done if d["kind"] == "speed"), 1.0)
    end = round(len(wave) / rate, 5)

    def scale(t):
        return None if t is None else min(round(t / factor, 5), end)
    words = [{**w, "start": scale(w["start"]), "end": scale(w["end"])} for w in speech.words]
    phones = [[p, scale(s), scale(e)] for p, s, e in speech.phones]
    if phones:
        phones[-1][2] = end
    return np.clip(wave, -1, 1).astype(np.float32), words, phones, done


def _write_root(out: Path, classes: dict, info: dict) -> None:
    (out / "classes.json").write_text(json.dumps(classes, indent=2))
    (out / "info.json").write_text(json.dumps(info, indent=2))


# ------------------------------------------------------------------------------------------- spoken-words
@dataclass
class SpokenWordsConfig:
    utterances: int = 3000           # ~1 h of speech per 4,500; 20,000+ for a HuBERT run worth its name
    validation_fraction: float = 0.1
    test_fraction: float = 0.1
    validation_voices: int = 4       # voice variants heard only in validation / only in test
    test_voices: int = 6
    single_word_fraction: float = 0.4   # these carry KEY.cls (the word's index in the vocabulary)
    max_words: int = 4
    rate_min: int = 120              # eSpeak words per minute (its default is 175)
    rate_max: int = 260
    pitch_min: int = 15              # eSpeak pitch, 0-99
    pitch_max: int = 85
    augment_fraction: float = 0.3    # clips given 1-2 of noise / gain / speed / reverb
    sample_rate: int = 16000
    clips_per_shard: int = 1000
    workers: int = 1                 # parallel synthesis processes (the output does not depend on it)
    seed: int = 0
    vocabulary: Literal["all", "digits"] = "all"     # digits: zero..nine only (class ids = the digits')
    captions: Literal["speaker", "words"] = "speaker"  # words: what is said only, no speaker description


def _choice(key: str, value: str, valid) -> None:
    if value not in valid:
        hint = closest(value, valid)
        raise ConfigError(f"'{key}' = {value!r} is not allowed; expected one of {list(valid)}"
                          + (f" (did you mean '{hint}'?)" if hint else ""))


@SAMPLE_DATA.register("spoken-words")
class SpokenWords:
    """Synthesized 1-4-word utterances (digits + commands) with phone alignments, split by held-out voices."""

    Config = SpokenWordsConfig

    def __init__(self, cfg: SpokenWordsConfig):
        if cfg.utterances < 3:
            raise ValueError(f"utterances must be at least 3 (one per split), got {cfg.utterances}")
        if not 1 <= cfg.max_words <= 8 or not 0 <= cfg.single_word_fraction <= 1:
            raise ValueError("max_words must be 1-8 and single_word_fraction in [0, 1]")
        if not 80 <= cfg.rate_min <= cfg.rate_max <= 450 or not 0 <= cfg.pitch_min <= cfg.pitch_max <= 99:
            raise ValueError("need 80 <= rate_min <= rate_max <= 450 and 0 <= pitch_min <= pitch_max <= 99")
        _choice("vocabulary", cfg.vocabulary, VOCABULARIES)     # also when the config is built directly
        _choice("captions", cfg.captions, ("speaker", "words"))
        self.cfg = cfg
        self.words = VOCABULARIES[cfg.vocabulary]
        self.counts = _counts(cfg.utterances, cfg.validation_fraction, cfg.test_fraction)

    def plan(self) -> list[dict]:
        """What to say, who says it, per clip (a function of the config)."""
        cfg = self.cfg
        voices = voice_split(cfg.seed, cfg.validation_voices, cfg.test_voices)
        rng = np.random.default_rng([cfg.seed, 1])
        pick = np.random.default_rng([cfg.seed, 5])    # caption templates: apart, so the audio stays the same
        specs = []
        for split in SPLITS:
            for i in range(self.counts[split]):
                n = 1 if rng.random() < cfg.single_word_fraction else int(rng.integers(min(2, cfg.max_words),
                                                                                      cfg.max_words + 1))
                words = [str(w) for w in rng.choice(self.words, size=n)]
                specs.append({"split": split, "key": f"{split}-{i:06d}", "text": " ".join(words),
                              "voice": _random_voice(rng, voices[split], cfg)})
                if cfg.captions == "words":
                    specs[-1]["template"] = str(pick.choice(WORDS_CAPTIONS))
        return specs

    def caption(self, spec: dict, speaker: dict) -> str:
        if self.cfg.captions == "speaker":
            return speech_caption(speaker, spec["text"])
        return spec["template"].format(spec["text"], s="s" if " " in spec["text"] else "")

    def build(self, out: Path) -> dict:
        from tqdm import tqdm

        from .io import encode_audio
        from .synth.espeak import synthesize

        cfg, out = self.cfg, Path(out)
        engine = _engine()                      # fails first, with the install hint, if eSpeak is missing
        specs = self.plan()
        seconds = dict.fromkeys(SPLITS, 0.0)
        singles = dict.fromkeys(SPLITS, 0)
        writers = {s: ShardWriter(out, s, max_count=cfg.clips_per_shard) for s in SPLITS}
        speech = synthesize([(s["text"], s["voice"]) for s in specs], cfg.sample_rate, cfg.workers, seed=cfg.seed)
        started = time.time()
        try:
            for n, (spec, said) in enumerate(tqdm(zip(specs, speech), total=len(specs), desc="spoken-words",
                                                  unit="clip", disable=None)):
                rng = np.random.default_rng([cfg.seed, 2, n])
                wave, words, phones, done = _speech_clip(said, spec["voice"], rng, cfg.sample_rate,
                                                         cfg.augment_fraction)
                speaker = spec["voice"].describe()
                meta = {"text": spec["text"], "words": words, "phones": phones, "speaker": speaker,
                        "augment": done, "seconds": round(len(wave) / cfg.sample_rate, 5)}
                sample = {"__key__": spec["key"], "flac": encode_audio(wave, cfg.sample_rate),
                          "json": json.dumps(meta), "txt": self.caption(spec, speaker)}
                if len(words) == 1:
                    sample["cls"] = str(self.words.index(words[0]["word"]))
                    singles[spec["split"]] += 1
                writers[spec["split"]].write(sample)
                seconds[spec["split"]] += meta["seconds"]
        finally:
            for w in writers.values():
                w.close()
        voices = voice_split(cfg.seed, cfg.validation_voices, cfg.test_voices)
        info = {"name": "spoken-words", "sample_rate": cfg.sample_rate, "clips": self.counts,
                "single_word_clips": singles, "seconds": {s: round(v, 1) for s, v in seconds.items()},
                "voices": voices, "accents": list(ACCENTS), "vocabulary": self.words,
                "captions": {"style": cfg.captions, **({"templates": WORDS_CAPTIONS} if cfg.captions == "words"
                                                       else {})},
                "split_by": "voice variant: validation and test voices are heard in no other split",
                "engine": engine, "build_seconds": round(time.time() - started, 1), "config": asdict(cfg)}
        _write_root(out, {"classes": self.words, "templates": WORD_TEMPLATES}, info)
        return info


# ------------------------------------------------------------------------------------------- sound-captions
TRAIN_TEMPLATES = ["{}.", "a recording of {}.", "you can hear {}.", "an audio clip of {}.", "a short clip with {}.",
                   "listen: {}."]
TEST_TEMPLATES = ["the sound of {}.", "this is the sound of {}.", "a sound recording of {}."]
BACKGROUNDS = ("a siren", "white noise", "pink noise", "brown noise", "slow clicking", "fast clicking")
RELATIONS = {"then": ["{} then {}", "{} followed by {}"], "over": ["{} over {}", "{} with {} in the background"]}


@dataclass
class SoundCaptionsConfig:
    clips: int = 12000               # 8,400 train clips: what clap_tiny trains on (~50 s to build, ~230 MB)
    validation_fraction: float = 0.1
    test_fraction: float = 0.2
    speech_fraction: float = 0.3     # spoken words with speaker descriptions
    mixture_fraction: float = 0.3    # two events; the rest are single events (KEY.cls)
    held_out_pair_fraction: float = 0.2   # of the unordered class pairs: mixed only in test
    validation_voices: int = 4
    test_voices: int = 6
    rate_min: int = 120
    rate_max: int = 260
    pitch_min: int = 15
    pitch_max: int = 85
    augment_fraction: float = 0.2
    sample_rate: int = 16000
    clips_per_shard: int = 1000
    workers: int = 1
    seed: int = 0


def held_out(seed: int, pair_fraction: float) -> dict:
    """What only the test split holds: one attribute value per event class and a share of the class pairs."""
    rng = np.random.default_rng([seed, 11])
    attributes = {c: str(rng.choice(ATTRIBUTES[c])) for c in EVENT_CLASSES}
    classes = EVENT_CLASSES + [SPEECH_CLASS]
    pairs = [(a, b) for i, a in enumerate(classes) for b in classes[i + 1:]]
    order = rng.permutation(len(pairs))
    chosen = sorted(pairs[i] for i in order[:round(pair_fraction * len(pairs))])
    return {"attributes": attributes, "pairs": [list(p) for p in chosen]}


@SAMPLE_DATA.register("sound-captions")
class SoundCaptions:
    """Audio-caption pairs (speech, synthetic events, two-event mixtures) with held-out templates, attribute
    values, event pairs and voices for zero-shot tests."""

    Config = SoundCaptionsConfig

    def __init__(self, cfg: SoundCaptionsConfig):
        if cfg.clips < 3:
            raise ValueError(f"clips must be at least 3 (one per split), got {cfg.clips}")
        if not 0 <= cfg.speech_fraction + cfg.mixture_fraction <= 1:
            raise ValueError("speech_fraction + mixture_fraction must be in [0, 1]")
        if not 0 < cfg.held_out_pair_fraction < 1:
            raise ValueError(f"held_out_pair_fraction must be in (0, 1), got {cfg.held_out_pair_fraction}")
        self.cfg = cfg
        self.counts = _counts(cfg.clips, cfg.validation_fraction, cfg.test_fraction)
        self.held = held_out(cfg.seed, cfg.held_out_pair_fraction)

    # what each clip is (no audio yet)
    def _part(self, cls: str, rng, split: str, voices: list[str]) -> dict:
        if cls == SPEECH_CLASS:
            n = int(rng.integers(1, 4))
            return {"class": cls, "text": " ".join(str(w) for w in rng.choice(VOCABULARY, size=n)),
                    "voice": _random_voice(rng, voices, self.cfg)}
        values = ATTRIBUTES[cls]
        if split != "test":
            values = [v for v in values if v != self.held["attributes"][cls]]
        elif len(values) > 1 and rng.random() < 0.7:      # test leans on the values training never heard
            values = [self.held["attributes"][cls]]
        return {"class": cls, "attribute": str(rng.choice(values))}

    def plan(self) -> list[dict]:
        cfg = self.cfg
        voices = voice_split(cfg.seed, cfg.validation_voices, cfg.test_voices)
        rng = np.random.default_rng([cfg.seed, 3])
        classes = EVENT_CLASSES + [SPEECH_CLASS]
        held_pairs = {tuple(p) for p in self.held["pairs"]}
        pairs = [(a, b) for i, a in enumerate(classes) for b in classes[i + 1:]]
        seen_pairs = [p for p in pairs if p not in held_pairs]
        specs = []
        for split in SPLITS:
            templates = TEST_TEMPLATES if split == "test" else TRAIN_TEMPLATES
            for i in range(self.counts[split]):
                u = rng.random()
                spec = {"split": split, "key": f"{split}-{i:06d}", "template": str(rng.choice(templates))}
                if u < cfg.speech_fraction:
                    spec.update(kind="speech", parts=[self._part(SPEECH_CLASS, rng, split, voices[split])])
                elif u < cfg.speech_fraction + cfg.mixture_fraction:
                    options = sorted(held_pairs) if split == "test" else seen_pairs
                    pair = list(options[int(rng.integers(len(options)))])
                    rng.shuffle(pair)
                    can_over = [c for c in pair if c in BACKGROUNDS]
                    relation = "over" if can_over and rng.random() < 0.5 else "then"
                    if relation == "over":                   # the second part plays underneath
                        background = str(rng.choice(can_over))
                        pair = [pair[0] if pair[1] == background else pair[1], background]
                    spec.update(kind="mixture", relation=relation,
                                connective=str(rng.choice(RELATIONS[relation])),
                                parts=[self._part(c, rng, split, voices[split]) for c in pair])
                else:
                    cls = EVENT_CLASSES[int(rng.integers(len(EVENT_CLASSES)))]
                    spec.update(kind="event", parts=[self._part(cls, rng, split, voices[split])])
                specs.append(spec)
        return specs

    def build(self, out: Path) -> dict:
        from tqdm import tqdm

        from .io import encode_audio
        from .synth.espeak import synthesize
        from .synth.events import augment, limit, make_event, over, phrase, then

        cfg, out = self.cfg, Path(out)
        engine = _engine()
        specs = self.plan()
        classes = EVENT_CLASSES + [SPEECH_CLASS]
        requests = [(p["text"], p["voice"]) for s in specs for p in s["parts"] if "voice" in p]
        speech = iter(synthesize(requests, cfg.sample_rate, cfg.workers, seed=cfg.seed))
        kinds = {s: dict.fromkeys(("speech", "event", "mixture"), 0) for s in SPLITS}
        seconds = dict.fromkeys(SPLITS, 0.0)
        writers = {s: ShardWriter(out, s, max_count=cfg.clips_per_shard) for s in SPLITS}
        rate, started = cfg.sample_rate, time.time()
        try:
            for n, spec in enumerate(tqdm(specs, desc="sound-captions", unit="clip", disable=None)):
                rng = np.random.default_rng([cfg.seed, 4, n])
                waves, phrases, parts_meta = [], [], []
                for part in spec["parts"]:
                    if "voice" in part:
                        said = next(speech)
                        wave = said.wave * (0.3 / max(float(np.abs(said.wave).max()), 1e-6))
                        speaker = part["voice"].describe()
                        if spec["kind"] == "speech":
                            text = speech_caption(speaker, part["text"])
                        else:                                # in a mixture: the speaker without the accent
                            text = "{} {} '{}'".format(*speaker_phrase(speaker, accent=False), part["text"])
                        meta = {"class": SPEECH_CLASS, "text": part["text"], "speaker": speaker,
                                "words": said.words, "phones": said.phones}
                    else:
                        wave, detail = make_event(part["class"], part["attribute"], rate, rng)
                        text = phrase(part["class"], part["attribute"], detail)
                        meta = {"class": part["class"], "attribute": part["attribute"]}
                        if detail:
                            meta["detail"] = detail
                    waves.append(wave)
                    phrases.append(text)
                    parts_meta.append(meta)
                if spec["kind"] == "mixture":
                    if spec["relation"] == "then":
                        wave = then(waves[0], waves[1], rate, float(rng.uniform(0.1, 0.3)))
                    else:
                        wave = over(waves[0], waves[1], rate, float(rng.uniform(-14, -6)))
                    description = spec["connective"].format(*phrases)
                else:
                    wave, description = waves[0], phrases[0]
                done: list[dict] = []
                if spec["kind"] != "speech" and rng.random() < cfg.augment_fraction:
                    wave, done = augment(wave, rate, rng, [str(rng.choice(["noise", "gain", "reverb"]))])
                wave = limit(np.clip(wave, -1, 1))
                caption = spec["template"].format(description)
                meta = {"kind": spec["kind"], "caption": caption, "template": spec["template"], "parts": parts_meta,
                        "augment": done, "seconds": round(len(wave) / rate, 5)}
                if spec["kind"] == "mixture":
                    meta["relation"] = spec["relation"]
                sample = {"__key__": spec["key"], "flac": encode_audio(wave, rate), "txt": caption,
                          "json": json.dumps(meta)}
                if spec["kind"] != "mixture":
                    sample["cls"] = str(classes.index(parts_meta[0]["class"]))
                writers[spec["split"]].write(sample)
                kinds[spec["split"]][spec["kind"]] += 1
                seconds[spec["split"]] += meta["seconds"]
        finally:
            for w in writers.values():
                w.close()
        voices = voice_split(cfg.seed, cfg.validation_voices, cfg.test_voices)
        info = {"name": "sound-captions", "sample_rate": rate, "clips": self.counts, "kinds": kinds,
                "seconds": {s: round(v, 1) for s, v in seconds.items()}, "classes": classes,
                "held_out": {"templates": TEST_TEMPLATES, "train_templates": TRAIN_TEMPLATES,
                             "attributes": self.held["attributes"], "pairs": self.held["pairs"],
                             "voices": {s: voices[s] for s in ("validation", "test")},
                             "rule": "the test split's captions use only the held-out templates; its single events "
                                     "mostly take the held-out attribute value (never heard in train/validation); "
                                     "its mixtures only the held-out pairs; its speech only test voices"},
                "voices": voices, "engine": engine, "build_seconds": round(time.time() - started, 1),
                "config": asdict(cfg)}
        _write_root(out, {"classes": classes, "templates": TEST_TEMPLATES}, info)
        return info
