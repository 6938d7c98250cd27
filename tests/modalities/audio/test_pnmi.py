"""Unit quality (phone purity, cluster purity, PNMI) on hand-made cases, and phones framed by frame centres."""

from __future__ import annotations

import math

import numpy as np
import pytest

from modalzoo.modalities.audio.pnmi import UnitPhoneCounts, frame_phones, quality_of, unit_quality

pytestmark = pytest.mark.usefixtures("one_thread")


def quality(units, phones):
    counts = UnitPhoneCounts()
    counts.add(units, phones)
    return unit_quality(counts.joint())


def test_perfect_finer_merged_and_independent_units():
    rng = np.random.default_rng(0)
    phones = [str(p) for p in rng.integers(0, 6, 5000)]
    perfect = quality([int(p) * 7 + 3 for p in phones], phones)        # a bijection, ids arbitrary
    assert perfect == pytest.approx({"pnmi": 1.0, "phone_purity": 1.0, "cluster_purity": 1.0})

    finer = quality([int(p) * 2 + int(rng.integers(0, 2)) for p in phones], phones)   # each phone split in 2
    assert finer["pnmi"] == pytest.approx(1.0) and finer["phone_purity"] == pytest.approx(1.0)
    assert finer["cluster_purity"] == pytest.approx(0.5, abs=0.03)

    even = ["a", "b", "c"] * 1000                                     # a and b share unit 0
    merged = quality([0 if p in "ab" else 1 for p in even], even)
    assert merged["pnmi"] == pytest.approx(1 - (2 / 3) * math.log(2) / math.log(3))
    assert merged["phone_purity"] == pytest.approx(2 / 3) and merged["cluster_purity"] == pytest.approx(1.0)

    many = [str(p) for p in rng.integers(0, 10, 200_000)]
    independent = quality(rng.integers(0, 20, 200_000).tolist(), many)
    assert 0 <= independent["pnmi"] < 0.01
    assert independent["phone_purity"] == pytest.approx(0.1, abs=0.01)


def test_phones_are_framed_by_frame_centres():
    phones = [["a", 0.0, 0.05], ["b", 0.05, 0.1]]
    # 100/s: centres 12.5, 22.5, ... ms; 50/s: 12.5, 32.5, 52.5, ... ms (both 25 ms windows)
    assert frame_phones(phones, 11, 100.0) == ["a"] * 4 + ["b"] * 5 + ["sil"] * 2
    assert frame_phones(phones, 6, 50.0) == ["a", "a", "b", "b", "b", "sil"]
    assert frame_phones([["a", 0.02, 0.04]], 5, 100.0, gap=None) == [None, "a", "a", None, None]

    counts = UnitPhoneCounts()
    counts.add([1, 1, 2, 2, 2], frame_phones([["a", 0.0, 0.035]], 5, 100.0, gap=None))
    assert counts.frames == 3                                           # unlabelled frames are left out


def test_quality_over_utterances():
    utterances = [([0, 0, 1, 1, 1, 2, 2], [["x", 0.0, 0.03], ["y", 0.03, 0.06]]),     # x x y y y sil sil
                  ([1, 1, 0, 2, 2], [["y", 0.0, 0.03], ["x", 0.03, 0.04]])]           # y y x sil sil
    result = quality_of(utterances, 100.0)
    assert (result["frames"], result["phones"], result["units"]) == (12, 3, 3)
    assert result["pnmi"] == pytest.approx(1.0) and result["phone_purity"] == pytest.approx(1.0)
