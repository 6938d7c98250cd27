"""Synthetic sound events, two-event mixtures and augmentation, in numpy (and torchaudio for resampling and
convolution). Every event is a class (`EVENT_CLASSES`, the zero-shot names) with one attribute (`ATTRIBUTES`)
that its caption phrase says: "two high beeps", "a slow falling sweep", "loud pink noise". Everything draws
from the ``numpy.random.Generator`` it is given, so a seed fixes the audio.

Levels: events come out at an RMS of about -20 dBFS (the noises' "quiet"/"loud" attribute sets their level),
with 5 ms fades so no clip starts or stops with a click it does not mean."""

from __future__ import annotations

import numpy as np

EVENT_CLASSES = ["a low beep", "a high beep", "a rising sweep", "a falling sweep", "a siren", "white noise",
                 "pink noise", "brown noise", "slow clicking", "fast clicking", "a major chord", "a minor chord",
                 "telephone keypad tones", "a burst of noise"]

# class -> the values of its one attribute (the caption says it; some pairs are held out for testing)
ATTRIBUTES = {
    "a low beep": ["one", "two", "three"], "a high beep": ["one", "two", "three"],
    "a rising sweep": ["quick", "slow"], "a falling sweep": ["quick", "slow"],
    "a siren": ["wailing", "yelping"],
    "white noise": ["quiet", "loud"], "pink noise": ["quiet", "loud"], "brown noise": ["quiet", "loud"],
    "slow clicking": ["steady", "irregular"], "fast clicking": ["steady", "irregular"],
    "a major chord": ["low", "high"], "a minor chord": ["low", "high"],
    "telephone keypad tones": ["three digits", "four digits", "seven digits"],
    "a burst of noise": ["sharp", "fading"],
}

NUMBER_WORDS = {"one": 1, "two": 2, "three": 3}
DIGIT_COUNTS = {"three digits": 3, "four digits": 4, "seven digits": 7}
DTMF_ROWS, DTMF_COLS = (697, 770, 852, 941), (1209, 1336, 1477, 1633)
DTMF_KEYS = ("123A", "456B", "789C", "*0#D")
TARGET_RMS = 0.1                                    # -20 dBFS


def phrase(cls: str, attr: str, detail: str = "") -> str:
    """The caption's noun phrase for an event: ("a high beep", "two") -> "two high beeps"."""
    if cls in ("a low beep", "a high beep"):
        n = NUMBER_WORDS[attr]
        return cls if n == 1 else f"{attr} {cls[2:]}s"
    if cls in ("a rising sweep", "a falling sweep", "a siren", "a major chord", "a minor chord"):
        return f"a {attr} {cls[2:]}"
    if cls in ("white noise", "pink noise", "brown noise"):
        return f"{attr} {cls}"
    if cls in ("slow clicking", "fast clicking"):
        return f"{attr} {cls}"
    if cls == "telephone keypad tones":
        return f"telephone keypad tones dialing {detail}" if detail else cls
    if cls == "a burst of noise":
        return "a sharp burst of noise" if attr == "sharp" else "a slowly fading burst of noise"
    raise KeyError(f"unknown event class {cls!r}")


# ------------------------------------------------------------------------------------------- building blocks
def fade(wave: np.ndarray, rate: int, seconds: float = 0.005) -> np.ndarray:
    n = min(int(seconds * rate), len(wave) // 2)
    if n > 0:
        ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
        wave[:n] *= ramp
        wave[-n:] *= ramp[::-1]
    return wave


def set_rms(wave: np.ndarray, rms: float) -> np.ndarray:
    current = float(np.sqrt(np.mean(wave.astype(np.float64) ** 2)))
    return (wave * (rms / current)).astype(np.float32) if current > 0 else wave.astype(np.float32)


def tone(freq: float, seconds: float, rate: int, harmonics: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wave = sum(np.sin(2 * np.pi * freq * k * t) / k for k in range(1, harmonics + 1) if freq * k < rate / 2)
    return np.asarray(wave, dtype=np.float32)


def coloured_noise(colour: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """White (flat), pink (power ~ 1/f) or brown (~ 1/f^2) noise of unit RMS, shaped in the frequency domain."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spectrum), dtype=np.float64)
    f[0] = 1.0
    power = {"white": 0.0, "pink": 1.0, "brown": 2.0}[colour]
    wave = np.fft.irfft(spectrum / f ** (power / 2), n)
    wave -= wave.mean()
    return set_rms(wave.astype(np.float32), 1.0)


def chirp(f0: float, f1: float, seconds: float, rate: int) -> np.ndarray:
    """Exponential sweep from f0 to f1 Hz (equal time per octave)."""
    t = np.arange(int(seconds * rate)) / rate
    k = np.log(f1 / f0) / seconds
    return np.sin(2 * np.pi * f0 * (np.exp(k * t) - 1) / k).astype(np.float32)


# ------------------------------------------------------------------------------------------- events
def make_event(cls: str, attr: str, rate: int, rng: np.random.Generator,
               seconds: float | None = None) -> tuple[np.ndarray, str]:
    """One event: (float32 wave, detail) — the detail is what the phrase needs beyond the attribute (the DTMF
    digits). ``seconds`` sets the length of events that have no natural one (noise, siren, clicks)."""
    if attr not in ATTRIBUTES[cls]:
        raise ValueError(f"{cls!r} has no attribute {attr!r}; it has {ATTRIBUTES[cls]}")
    dur = seconds if seconds is not None else float(rng.uniform(0.8, 1.6))
    detail = ""
    if cls in ("a low beep", "a high beep"):
        freq = rng.uniform(250, 500) if cls == "a low beep" else rng.uniform(1500, 3000)
        beep, gap = rng.uniform(0.15, 0.3), rng.uniform(0.08, 0.2)
        parts = []
        for _ in range(NUMBER_WORDS[attr]):
            parts += [fade(tone(freq, beep, rate), rate), np.zeros(int(gap * rate), np.float32)]
        wave = np.concatenate(parts[:-1])
    elif cls in ("a rising sweep", "a falling sweep"):
        lo, hi = rng.uniform(150, 400), rng.uniform(2500, 5000)
        length = rng.uniform(0.25, 0.45) if attr == "quick" else rng.uniform(1.0, 1.6)
        wave = chirp(lo, hi, length, rate) if cls == "a rising sweep" else chirp(hi, lo, length, rate)
    elif cls == "a siren":
        # a carrier swept by a slow (wail, ~0.3 Hz) or fast (yelp, ~3 Hz) triangle-like modulation
        rate_hz = rng.uniform(0.25, 0.5) if attr == "wailing" else rng.uniform(2.5, 4.0)
        dur = max(dur, 1.2 if attr == "wailing" else 0.6)
        t = np.arange(int(dur * rate)) / rate
        lo, hi = rng.uniform(500, 800), rng.uniform(1200, 1700)
        sweep = np.abs(((t * rate_hz + rng.uniform()) % 1.0) * 2 - 1)       # 0..1..0 triangle
        freq = lo + (hi - lo) * sweep
        wave = np.sin(2 * np.pi * np.cumsum(freq) / rate).astype(np.float32)
        wave += 0.3 * np.sin(2 * np.pi * 2 * np.cumsum(freq) / rate).astype(np.float32)
    elif cls in ("white noise", "pink noise", "brown noise"):
        wave = coloured_noise(cls.split()[0], int(dur * rate), rng)
        return fade(limit(set_rms(wave, 0.03 if attr == "quiet" else 0.2)), rate), detail
    elif cls in ("slow clicking", "fast clicking"):
        per_s = rng.uniform(2, 4) if cls == "slow clicking" else rng.uniform(10, 16)
        n = int(dur * rate)
        wave = np.zeros(n, np.float32)
        click = (rng.standard_normal(int(0.004 * rate)) * np.exp(-np.arange(int(0.004 * rate)) / (0.0008 * rate)))
        t, step = rng.uniform(0, 0.05), 1 / per_s
        while t * rate + len(click) < n:
            i = int(t * rate)
            wave[i:i + len(click)] += click.astype(np.float32)
            t += step * (rng.uniform(0.4, 1.6) if attr == "irregular" else 1.0)
    elif cls in ("a major chord", "a minor chord"):
        root = rng.uniform(110, 220) if attr == "low" else rng.uniform(440, 880)
        third = 4 if cls == "a major chord" else 3
        length = rng.uniform(0.8, 1.5)
        wave = sum(tone(root * 2 ** (s / 12), length, rate, harmonics=4) for s in (0, third, 7))
        wave = wave * np.exp(-np.arange(len(wave)) / (rate * length / 3))
    elif cls == "telephone keypad tones":
        digits = [str(d) for d in rng.integers(0, 10, DIGIT_COUNTS[attr])]
        detail = " ".join(digits)
        parts = []
        for d in digits:
            row = next(i for i, keys in enumerate(DTMF_KEYS) if d in keys)
            col = DTMF_KEYS[row].index(d)
            length = rng.uniform(0.07, 0.12)
            parts += [fade(tone(DTMF_ROWS[row], length, rate) + tone(DTMF_COLS[col], length, rate), rate),
                      np.zeros(int(rng.uniform(0.05, 0.09) * rate), np.float32)]
        wave = np.concatenate(parts[:-1])
    elif cls == "a burst of noise":
        length = rng.uniform(0.3, 0.6) if attr == "sharp" else rng.uniform(0.8, 1.4)
        n = int(length * rate)
        decay = 0.04 if attr == "sharp" else 0.35
        wave = coloured_noise(str(rng.choice(["white", "pink"])), n, rng) * np.exp(-np.arange(n) / (decay * rate))
    else:
        raise KeyError(f"unknown event class {cls!r}")
    return fade(limit(set_rms(np.asarray(wave, np.float32), TARGET_RMS)), rate), detail


def limit(wave: np.ndarray, peak: float = 0.9) -> np.ndarray:
    """Scaled down (never up) so the peak stays under ``peak``: clicks at -20 dBFS RMS would clip."""
    top = float(np.abs(wave).max()) if len(wave) else 0.0
    return (wave * (peak / top)).astype(np.float32) if top > peak else wave


def then(first: np.ndarray, second: np.ndarray, rate: int, gap: float = 0.2) -> np.ndarray:
    """"X then Y": one after the other with ``gap`` seconds of silence between."""
    return np.concatenate([first, np.zeros(int(gap * rate), np.float32), second]).astype(np.float32)


def over(foreground: np.ndarray, background: np.ndarray, rate: int, background_db: float = -10.0,
         lead: float = 0.25) -> np.ndarray:
    """"X over Y": X starts ``lead`` seconds into Y, which plays throughout at ``background_db`` relative to X
    (RMS); Y is looped or cut to cover X."""
    start = int(lead * rate)
    n = max(len(background), start + len(foreground) + start)
    bed = np.resize(background, n).astype(np.float32)
    fg_rms = float(np.sqrt(np.mean(foreground ** 2))) or TARGET_RMS
    out = set_rms(bed, fg_rms * 10 ** (background_db / 20))
    out[start:start + len(foreground)] += foreground
    return fade(out, rate)


# ------------------------------------------------------------------------------------------- augmentation
def add_noise(wave: np.ndarray, snr_db: float, rng: np.random.Generator, colour: str = "white") -> np.ndarray:
    """``wave`` plus coloured noise at ``snr_db`` (RMS over the whole clip); same length."""
    signal = float(np.sqrt(np.mean(wave.astype(np.float64) ** 2)))
    noise = coloured_noise(colour, len(wave), rng) * (signal * 10 ** (-snr_db / 20))
    return (wave + noise).astype(np.float32)


def gain(wave: np.ndarray, db: float, peak: float = 0.99) -> np.ndarray:
    """``wave`` scaled by ``db``, then limited so its peak stays under ``peak`` (16-bit storage clips)."""
    out = wave * 10 ** (db / 20)
    top = float(np.abs(out).max()) if len(out) else 0.0
    return (out * (peak / top) if top > peak else out).astype(np.float32)


def change_speed(wave: np.ndarray, factor: float) -> np.ndarray:
    """Played ``factor`` times faster at the same sample rate (pitch moves with it, as tape does): a resampling
    by 100/round(100 * factor), so the length becomes about len / factor and times scale by 1 / factor."""
    import torch
    import torchaudio.functional as AF

    orig = round(100 * factor)
    if orig == 100:
        return wave.astype(np.float32)
    return AF.resample(torch.from_numpy(np.ascontiguousarray(wave, np.float32)), orig, 100).numpy()


def synthetic_rir(rate: int, rt60: float, rng: np.random.Generator) -> np.ndarray:
    """A room impulse response: the direct path, then exponentially decaying noise (-60 dB at ``rt60`` s)
    that starts with a few sparse early reflections."""
    n = int(rt60 * rate)
    t = np.arange(n) / rate
    tail = rng.standard_normal(n) * 10 ** (-3 * t / rt60)
    early = int(0.005 * rate)
    tail[:early] = 0
    for _ in range(6):                                     # early reflections, 5-50 ms
        tail[int(rng.uniform(0.005, 0.05) * rate)] += rng.uniform(0.2, 0.6) * rng.choice([-1, 1])
    tail[0] = 1.0
    return (tail / np.sqrt(np.sum(tail ** 2))).astype(np.float32)


def reverb(wave: np.ndarray, rate: int, rng: np.random.Generator, rt60: float = 0.4) -> np.ndarray:
    """``wave`` in a synthetic room: convolved with `synthetic_rir`, cut to the input's length (alignments stay
    valid: the direct path is at 0) and brought back to the input's RMS."""
    import torch
    import torchaudio.functional as AF

    rir = torch.from_numpy(synthetic_rir(rate, rt60, rng))
    wet = AF.fftconvolve(torch.from_numpy(np.ascontiguousarray(wave, np.float32)), rir)[:len(wave)].numpy()
    rms = float(np.sqrt(np.mean(wave.astype(np.float64) ** 2)))
    return set_rms(wet, rms) if rms > 0 else wet.astype(np.float32)


def augment(wave: np.ndarray, rate: int, rng: np.random.Generator, kinds: list[str]) -> tuple[np.ndarray, list[dict]]:
    """Apply ``kinds`` (from "noise", "gain", "speed", "reverb") in that order with random strengths; returns the
    wave and what was done (``speed`` entries carry the factor: times scale by 1 / factor)."""
    done = []
    for kind in ("speed", "reverb", "noise", "gain"):
        if kind not in kinds:
            continue
        if kind == "speed":
            factor = round(float(rng.uniform(0.85, 1.15)), 2)
            wave = change_speed(wave, factor)
            done.append({"kind": "speed", "factor": round(100 * factor) / 100})
        elif kind == "reverb":
            rt60 = round(float(rng.uniform(0.15, 0.7)), 3)
            wave = reverb(wave, rate, rng, rt60)
            done.append({"kind": "reverb", "rt60": rt60})
        elif kind == "noise":
            snr, colour = round(float(rng.uniform(5, 30)), 1), str(rng.choice(["white", "pink", "brown"]))
            wave = add_noise(wave, snr, rng, colour)
            done.append({"kind": "noise", "snr_db": snr, "colour": colour})
        elif kind == "gain":
            db = round(float(rng.uniform(-12, 6)), 1)
            wave = gain(wave, db)
            done.append({"kind": "gain", "db": db})
    return wave, done
