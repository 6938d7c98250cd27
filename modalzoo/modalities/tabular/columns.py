"""Column types and a table's schema: what each column is, inferred from its values, with the statistics the
cells need fitted on the training rows only.

Types: ``numeric`` (every value reads as a number and more than ``max_levels`` of them differ, or any is
fractional), ``binary`` (exactly two values), ``categorical`` (at most ``max_categories`` values, or a few
integers), ``text`` (other strings: tokens carry them), ``date`` (ISO dates; three derived cells: year,
month, weekday), and two that are dropped and said so: ``id`` (a value per row: names, keys, row numbers) and
``constant`` (one value, or none). ``overrides`` (column -> type) win over inference.

A mostly numeric column (>= 95% numbers) is numeric: its stray strings are read as missing, and said so in
the column's ``reason``. Missing is its own state, never 0 and never the text "nan": ``None``, NaN, "", "NA",
"N/A", "nan", "null", "None", "?" are missing; a missing cell shows the embedding's missing vector under its
column name.
Numeric statistics are the training rows' median and inter-quartile range (robust scale, clipped to ±5).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ...errors import ModalzooError

MISSING_TEXT = {"", "na", "n/a", "nan", "null", "none", "?", "<na>", "nat"}
TYPES = ("numeric", "binary", "categorical", "text", "date", "id", "constant")
DROPPED = ("id", "constant")
DATE = re.compile(r"^\d{4}-\d{1,2}-\d{1,2}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?$")
ID_NAMES = re.compile(r"^(id|index|idx|key|row|rownames|unnamed.*)$|(^|_)id$", re.IGNORECASE)
CLIP = 5.0
THOUSANDS = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$")


def missing(value) -> bool:
    if value is None or type(value).__name__ in ("NAType", "NaTType"):     # pandas' NA / NaT
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, str) and value.strip().lower() in MISSING_TEXT


def number(value) -> float | None:
    """The value as a finite float (bools are not numbers), or None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    try:
        raw = str(value).strip() if isinstance(value, str) else value
        if isinstance(raw, str) and THOUSANDS.match(raw):      # 1,234,567.5 (a decimal comma stays a non-number)
            raw = raw.replace(",", "")
        out = float(raw)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def text(value) -> str:
    """The display form of a non-missing value: integers without ".0", strings stripped."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


@dataclass
class Column:
    name: str
    type: str
    missing_rate: float = 0.0
    categories: list[str] = field(default_factory=list)   # categorical/binary: train values, most frequent first
    counts: list[int] = field(default_factory=list)
    median: float = 0.0                                     # numeric (and a date's year)
    scale: float = 1.0
    reason: str = ""                                        # why a column is dropped / how it was typed

    def scaled(self, value: float) -> float:
        return max(-CLIP, min(CLIP, (value - self.median) / self.scale))


@dataclass
class TableSchema:
    """One table: its columns in order, its label (column and classes / regression), where it came from."""
    name: str
    columns: list[Column]
    label: str | None = None
    label_type: str = ""                       # "binary" | "multiclass" | "regression"
    classes: list[str] = field(default_factory=list)
    label_median: float = 0.0
    label_scale: float = 1.0
    rows: dict[str, int] = field(default_factory=dict)
    source: str = ""
    licence: str = ""
    description: str = ""

    @property
    def kept(self) -> list[Column]:
        return [c for c in self.columns if c.type not in DROPPED]

    def dropped(self) -> dict[str, str]:
        return {c.name: c.reason or c.type for c in self.columns if c.type in DROPPED}

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TableSchema:
        data = dict(data)
        data["columns"] = [Column(**c) for c in data["columns"]]
        return cls(**data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> TableSchema:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError, TypeError, KeyError) as err:
            raise ModalzooError(f"{path}: not a table schema ({err})") from None


class ColumnStats:
    """What one pass over a column's training values saw (bounded memory: at most ``cap`` distinct values)."""

    def __init__(self, cap: int = 5000):
        self.cap, self.values, self.overflow = cap, Counter(), False
        self.n = self.missing = self.numeric = self.integer = self.dates = self.long = 0
        self.numbers: list[float] = []

    def add(self, value) -> None:
        self.n += 1
        if missing(value):
            self.missing += 1
            return
        shown = text(value)
        if shown in self.values or len(self.values) < self.cap:
            self.values[shown] += 1
        else:
            self.overflow = True
        x = number(value)
        if x is not None:
            self.numeric += 1
            self.integer += x.is_integer()
            if len(self.numbers) < 100_000:
                self.numbers.append(x)
        elif isinstance(value, str) and DATE.match(value.strip()):
            self.dates += 1
        if len(shown) > 30 or shown.count(" ") >= 3:
            self.long += 1


def _quantile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    pos = q * (len(sorted_values) - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def robust(values: list[float]) -> tuple[float, float]:
    """Median and a robust scale (IQR / 1.349, the sd of a normal; the sd, then 1, when the IQR is 0)."""
    s = sorted(values)
    med = _quantile(s, 0.5)
    scale = (_quantile(s, 0.75) - _quantile(s, 0.25)) / 1.349
    if scale <= 0 and len(s) > 1:
        mean = sum(s) / len(s)
        scale = math.sqrt(sum((v - mean) ** 2 for v in s) / (len(s) - 1))
    return med, scale if scale > 0 else 1.0


def infer(name: str, stats: ColumnStats, max_categories: int = 50, max_levels: int = 10,
          override: str | None = None) -> Column:
    """The column's type and statistics from its training values (see the module docstring)."""
    present = stats.n - stats.missing
    rate = stats.missing / max(stats.n, 1)
    distinct = len(stats.values) + (1 if stats.overflow else 0)
    # past the distinct-value cap, "a value per row" is judged on the values counted before it filled
    unique_share = (len(stats.values) / max(sum(stats.values.values()), 1)) if stats.overflow else \
        distinct / max(present, 1)
    if override is not None and override not in TYPES:
        raise ModalzooError(f"column_types[{name!r}] = {override!r}: expected one of {', '.join(TYPES)}")
    kind, reason = override, "given"
    if kind is None:
        # mostly numbers: a numeric column whose few stray strings ("x", "unknown") are read as missing
        all_numeric = present > 0 and stats.numeric >= 0.95 * present
        if distinct <= 1:
            kind, reason = "constant", "one value" if distinct else "no values"
        elif distinct == 2:
            kind, reason = "binary", "two values"
        elif not name.strip() or (all_numeric and ID_NAMES.search(name.strip()) and stats.integer == present):
            kind, reason = "id", "an id-like name" if name.strip() else "no name (a row-name column)"
        elif all_numeric and stats.integer == present == len(stats.numbers) >= 20 and \
                len(set(stats.numbers)) == present and max(stats.numbers) - min(stats.numbers) + 1 == present:
            kind, reason = "id", "row numbers (consecutive distinct integers)"
        elif all_numeric and (distinct > max_levels or stats.integer < present):
            kind, reason = "numeric", f"{distinct} numeric values"
        elif all_numeric:
            kind, reason = "categorical", f"{distinct} integer levels"
        elif present and stats.dates == present:
            kind, reason = "date", "ISO dates"
        elif present >= 20 and unique_share >= 0.95 and stats.long < 0.5 * present:
            kind, reason = "id", "a distinct value in nearly every row"
        elif distinct <= max_categories and not stats.overflow:
            mixed = f", mixed: {stats.numeric} numbers and {present - stats.numeric} strings" if stats.numeric else ""
            kind, reason = "categorical", f"{distinct} values{mixed}"
        else:
            kind, reason = "text", f"{distinct}{'+' if stats.overflow else ''} distinct strings"
    col = Column(name, kind, round(rate, 4), reason=reason)
    if kind in ("categorical", "binary"):
        ranked = sorted(stats.values.items(), key=lambda kv: (-kv[1], kv[0]))
        col.categories, col.counts = [v for v, _ in ranked], [c for _, c in ranked]
        if kind == "binary" and len(col.categories) != 2:
            raise ModalzooError(f"column {name!r} is given as binary but has {len(col.categories)} values")
    elif kind == "numeric":
        if not stats.numbers:
            raise ModalzooError(f"column {name!r} is given as numeric but holds no number")
        if stats.numeric < present:
            col.reason += f"; {present - stats.numeric} non-numeric values read as missing"
            col.missing_rate = round((stats.n - stats.numeric) / max(stats.n, 1), 4)
        col.median, col.scale = robust(stats.numbers)
    elif kind == "date":
        bad = next((v for v in stats.values if not DATE.match(v)), None)
        if bad is not None:
            raise ModalzooError(f"column {name!r} is given as a date but holds {bad!r} (dates are YYYY-MM-DD)")
        years = [float(v[:4]) for v in stats.values.elements()]
        col.median, col.scale = robust(years)
    return col
