"""How well units match phones (the HuBERT paper's unit-quality measures, Hsu et al. 2021, §IV-C), from the joint
distribution p(y, z) of frame-level phone labels y and unit ids z over many frames:

    phone purity     E_z[max_y p(y|z)]     how pure a unit is in phones (higher with more clusters)
    cluster purity   E_y[max_z p(z|y)]     how concentrated a phone is in one unit (lower with more clusters)
    PNMI             I(y; z) / H(y)        the share of the phone's uncertainty a unit removes: 1 = the units
                                           determine the phone, 0 = independent

Phone labels come from the alignments the spoken-word shards keep (``KEY.json`` "phones": [[phone, start_s,
end_s], ...]): frame j of a label set at R labels/s gets the phone whose span holds its centre j/R + 12.5 ms (the
middle of the 25 ms window of an MFCC frame and of a 400-sample conv frame at 16 kHz); frames no phone covers are
silence (``gap``), as forced alignments label them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

HALF_WINDOW_S = 0.0125
SILENCE = "sil"


def frame_phones(phones: Sequence[Sequence], frames: int, label_rate: float, gap: str | None = SILENCE,
                 half_window_s: float = HALF_WINDOW_S) -> list[str | None]:
    """The phone of each of ``frames`` frames at ``label_rate`` per second, by the frame's centre; ``gap`` (None:
    unlabelled) where no phone's [start, end) holds it."""
    centres = np.arange(frames) / label_rate + half_window_s
    labels: list[str | None] = [gap] * frames
    for phone, start, end in phones:
        first, last = np.searchsorted(centres, float(start), "left"), np.searchsorted(centres, float(end), "left")
        for j in range(first, last):
            labels[j] = str(phone)
    return labels


class UnitPhoneCounts:
    """The joint counts of (phone, unit) over frames, accumulated utterance by utterance."""

    def __init__(self):
        self.phones: dict[str, int] = {}
        self.counts: dict[tuple[int, int], int] = {}

    def add(self, units: Iterable[int], phones: Iterable[str | None]) -> None:
        """One utterance's frame-level units and phones (frames with phone None are left out; the shorter of the
        two sequences sets the frames counted)."""
        for z, y in zip(units, phones):
            if y is None:
                continue
            yi = self.phones.setdefault(y, len(self.phones))
            self.counts[(yi, int(z))] = self.counts.get((yi, int(z)), 0) + 1

    def joint(self) -> np.ndarray:
        """p(y, z) [phones, units seen] (units renumbered in order of first id)."""
        units = sorted({z for _, z in self.counts})
        column = {z: i for i, z in enumerate(units)}
        table = np.zeros((len(self.phones), len(units)))
        for (y, z), n in self.counts.items():
            table[y, column[z]] = n
        return table / max(table.sum(), 1)

    @property
    def frames(self) -> int:
        return sum(self.counts.values())


def unit_quality(joint: np.ndarray) -> dict[str, float]:
    """Phone purity, cluster purity and PNMI of a joint distribution p(y, z) [phones, units]."""
    p = np.asarray(joint, dtype=np.float64)
    if p.sum() <= 0:
        return {"pnmi": 0.0, "phone_purity": 0.0, "cluster_purity": 0.0}
    p = p / p.sum()
    py, pz = p.sum(1), p.sum(0)
    nz = p > 0
    mutual = float((p[nz] * np.log(p[nz] / (py[:, None] * pz[None, :])[nz])).sum())
    h_phone = float(-(py[py > 0] * np.log(py[py > 0])).sum())
    return {"pnmi": mutual / h_phone if h_phone > 0 else 0.0,
            "phone_purity": float(p.max(0).sum()),          # sum_z p(z) max_y p(y|z) = sum_z max_y p(y, z)
            "cluster_purity": float(p.max(1).sum())}        # sum_y p(y) max_z p(z|y) = sum_y max_z p(y, z)


def quality_of(pairs: Iterable[tuple[Sequence[int], Sequence]], label_rate: float,
               gap: str | None = SILENCE) -> dict[str, float]:
    """Unit quality over utterances given as (frame-level units, phone alignment [[phone, start_s, end_s], ...]);
    with the number of frames and distinct phones and units counted."""
    counts = UnitPhoneCounts()
    for units, phones in pairs:
        counts.add(units, frame_phones(phones, len(units), label_rate, gap))
    joint = counts.joint()
    return {**unit_quality(joint), "frames": counts.frames, "phones": joint.shape[0], "units": joint.shape[1]}
