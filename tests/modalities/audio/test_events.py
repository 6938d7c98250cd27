"""Synthetic sound events and augmentation: every class renders, is deterministic for a seed and sounds like
its name (spectral checks); augmentation keeps length and rate (speed scales the length by 1 / factor)."""

from __future__ import annotations

import numpy as np
import pytest

from modalzoo.modalities.audio.synth import events as ev

pytestmark = pytest.mark.usefixtures("one_thread")
RATE = 16000


def band_power(wave: np.ndarray, lo: float, hi: float, rate: int = RATE) -> float:
    spec = np.abs(np.fft.rfft(wave)) ** 2
    f = np.fft.rfftfreq(len(wave), 1 / rate)
    return float(spec[(f >= lo) & (f < hi)].sum())


@pytest.mark.parametrize("cls", ev.EVENT_CLASSES)
def test_every_event_renders_deterministically_in_range(cls):
    for attr in ev.ATTRIBUTES[cls]:
        a, detail = ev.make_event(cls, attr, RATE, np.random.default_rng(3))
        b, _ = ev.make_event(cls, attr, RATE, np.random.default_rng(3))
        assert np.array_equal(a, b) and a.dtype == np.float32
        assert 0.1 * RATE < len(a) < 3 * RATE and np.isfinite(a).all() and 0.01 < np.abs(a).max() <= 0.9 + 1e-6
        assert a[0] == 0 and abs(a[-1]) < 1e-3                        # faded in and out
        assert ev.phrase(cls, attr, detail)


def test_events_sound_like_their_names():
    rng = np.random.default_rng(0)
    low, _ = ev.make_event("a low beep", "one", RATE, rng)
    high, _ = ev.make_event("a high beep", "one", RATE, rng)
    assert band_power(low, 200, 550) > 0.9 * band_power(low, 0, RATE / 2)
    assert band_power(high, 1400, 3100) > 0.9 * band_power(high, 0, RATE / 2)
    rise, _ = ev.make_event("a rising sweep", "slow", RATE, rng)
    half = len(rise) // 2
    assert band_power(rise[half:], 2000, 8000) > band_power(rise[:half], 2000, 8000) * 5
    white, pink, brown = (ev.coloured_noise(c, 2 ** 16, rng) for c in ("white", "pink", "brown"))
    ratio = [band_power(x, 100, 200) / band_power(x, 3200, 6400) for x in (white, pink, brown)]
    # per octave band: white grows x2 per octave up (ratio 1/32 over 5 octaves), pink flat, brown falls x2
    assert ratio[0] < 0.1 < 0.5 < ratio[1] < 2 < 10 < ratio[2]
    tones, detail = ev.make_event("telephone keypad tones", "three digits", RATE, rng)
    first = detail.split()[0]
    row = next(i for i, keys in enumerate(ev.DTMF_KEYS) if first in keys)
    col = ev.DTMF_KEYS[row].index(first)
    head = tones[:int(0.06 * RATE)]
    assert band_power(head, ev.DTMF_ROWS[row] - 20, ev.DTMF_ROWS[row] + 20) > 0.3 * band_power(head, 0, RATE / 2)
    assert band_power(head, ev.DTMF_COLS[col] - 20, ev.DTMF_COLS[col] + 20) > 0.3 * band_power(head, 0, RATE / 2)
    assert ev.phrase("a high beep", "three") == "three high beeps" and ev.phrase("white noise", "loud") == \
        "loud white noise"
    with pytest.raises(ValueError, match="no attribute"):
        ev.make_event("a siren", "purple", RATE, rng)


def test_mixtures_place_events_in_time():
    a, b = np.full(1600, 0.5, np.float32), np.full(3200, 0.2, np.float32)
    seq = ev.then(a, b, RATE, gap=0.1)
    assert len(seq) == 1600 + 1600 + 3200 and not seq[1600:3200].any()
    bed = ev.over(a, ev.coloured_noise("pink", 8000, np.random.default_rng(0)), RATE, background_db=-10, lead=0.1)
    assert len(bed) == 8000
    fg_rms = np.sqrt(np.mean(bed[1700:3100] ** 2))
    bg_rms = np.sqrt(np.mean(bed[4000:7000] ** 2))
    assert 20 * np.log10(bg_rms / 0.5) == pytest.approx(-10, abs=1.0) and fg_rms > 2 * bg_rms


def test_augmentation_keeps_length_and_rate():
    rng = np.random.default_rng(1)
    wave, _ = ev.make_event("a siren", "wailing", RATE, rng)
    for kind in ("noise", "gain", "reverb"):
        out, done = ev.augment(wave, RATE, rng, [kind])
        assert len(out) == len(wave) and out.dtype == np.float32 and done[0]["kind"] == kind
    noisy = ev.add_noise(wave, 10.0, rng, "white")
    snr = 10 * np.log10(np.mean(wave ** 2) / np.mean((noisy - wave) ** 2))
    assert snr == pytest.approx(10.0, abs=0.1)
    assert np.abs(ev.gain(wave, 40.0)).max() == pytest.approx(0.99, abs=1e-4)
    assert np.allclose(ev.gain(wave, -6.0), wave * 10 ** (-6 / 20))
    fast = ev.change_speed(wave, 1.25)
    assert abs(len(fast) - len(wave) / 1.25) <= 1
    # a tone played 1.25x faster at the same rate is 1.25x higher
    t = ev.tone(1000, 0.5, RATE)
    sped = ev.change_speed(t, 1.25)
    f = np.fft.rfftfreq(len(sped), 1 / RATE)[np.argmax(np.abs(np.fft.rfft(sped)))]
    assert f == pytest.approx(1250, abs=5)
    wet = ev.reverb(t, RATE, rng, rt60=0.5)
    assert len(wet) == len(t) and np.sqrt(np.mean(wet ** 2)) == pytest.approx(np.sqrt(np.mean(t ** 2)), rel=1e-3)
    rir = ev.synthetic_rir(RATE, 0.5, rng)
    energy = np.cumsum(rir[::-1] ** 2)[::-1]                     # Schroeder decay: about -60 dB at rt60
    assert 10 * np.log10(energy[int(0.25 * RATE)] / energy[0]) == pytest.approx(-30, abs=6)
