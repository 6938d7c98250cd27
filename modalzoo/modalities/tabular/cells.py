"""Rows -> cells -> batch tensors (the `table` dataset's field), for the `table_cells` embedding.

Every kept column of a row becomes one cell, one encoder position: the tokens of its column name (underscores
and dots read as spaces) plus its value, which is one of
* tokens (kind 1): a categorical, binary or text value's tokens (at most ``max_value_tokens``; longer text is
  cut there, documented), a date's month and weekday names, or — with ``numbers: digits`` — a number spelled
  out character by character at 4 significant digits (UniTabE's choice);
* a number (kind 2, ``numbers: scaled``, TransTab's choice): the training rows' robust scale (`columns.py`),
  clipped to ±5, which the embedding multiplies into a learned vector; a date's year is one too;
* missing (kind 3): the embedding's missing vector under the column's name. Never 0, never "nan".

A date column gives three cells (``COL year``, ``COL month``, ``COL weekday``). Cells keep schema order here;
the training finisher shuffles them per row and epoch, and caps a row at ``max_cells`` (a random subset each
epoch in training, the first ``max_cells`` in schema order in evaluation; `TableData.prepare` warns for each
table wider than the cap). A column the schema does not know (a new table at fine-tune or predict time has
its own schema) is simply absent; a category the schema has not seen is just its tokens.

Batch keys: ``name_ids`` / ``value_ids`` long [R, C, T] (0 = padding), ``cell_num`` float [R, C],
``cell_kind`` long [R, C] (0 = no cell), ``cell_col`` long [R, C] (the column's index in the state's
column list, -1 none), ``cell_cat`` long [R, C] (the value's index among its column's categories, -1 none),
``cell_target`` float [R, C] (a numeric cell's scaled value, NaN otherwise), ``label`` long [R] (class
index, -100 none), ``label_value`` float [R] (a regression label, scaled; NaN none), ``table_index`` long
[R].
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .columns import TableSchema, missing, number, text

TOKENS, NUMBER, MISSING = 1, 2, 3
DATE_PREFIX = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})")
MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december"]
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


def readable(name: str) -> str:
    return " ".join(name.replace("_", " ").replace(".", " ").split())


@dataclass
class Cell:
    name: tuple[int, ...]
    kind: int
    value: tuple[int, ...] = ()
    num: float = 0.0
    col: int = -1
    cat: int = -1
    target: float = float("nan")


@dataclass
class Row:
    cells: list[Cell]
    label: int = -100
    label_value: float = float("nan")
    table: int = -1


@dataclass
class TableState:
    """Schemas (table -> `TableSchema`), the tokenizer, the column list (every (table, column) a cell can
    name, for the masked-cell candidates) and the cell settings. Picklable."""
    schemas: dict[str, TableSchema]
    tokenizer: object
    numbers: str = "scaled"
    max_cells: int = 64
    max_name_tokens: int = 8
    max_value_tokens: int = 16
    columns: list[tuple[str, str]] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.tables = sorted(self.schemas)
        self.columns = [(t, c.name) for t in self.tables for c in self.schemas[t].kept]
        self.column_index = {key: i for i, key in enumerate(self.columns)}
        self._cache: dict[str, tuple[int, ...]] = {}

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_cache"] = {}
        return state

    def tokens(self, value: str, limit: int) -> tuple[int, ...]:
        """Token ids of ``value`` without special tokens (cached: names and categories repeat)."""
        key = f"{limit}\x00{value}"
        ids = self._cache.get(key)
        if ids is None:
            enc = self.tokenizer.tokenizer.encode(value, add_special_tokens=False)
            ids = tuple(enc.ids[:limit]) or (self.tokenizer.unk_id,)
            if len(self._cache) < 200_000:
                self._cache[key] = ids
        return ids

    def candidates(self, col: int, k: int) -> np.ndarray:
        """[K, T] token ids of the first ``k`` categories of column ``col`` (0-padded)."""
        table, name = self.columns[col]
        column = next(c for c in self.schemas[table].columns if c.name == name)
        ids = [self.tokens(v, self.max_value_tokens) for v in column.categories[:k]]
        out = np.zeros((len(ids), max((len(i) for i in ids), default=1)), dtype=np.int64)
        for j, seq in enumerate(ids):
            out[j, : len(seq)] = seq
        return out


def _digits(x: float) -> str:
    return " ".join(f"{x:.4g}")


def row_cells(row: dict, schema: TableSchema, state: TableState) -> list[Cell]:
    """The cells of one row (``row``: column -> raw value) under its table's ``schema``."""
    cells = []
    for col in schema.kept:
        key = state.column_index.get((schema.name, col.name), -1)
        name = readable(col.name)
        value = row.get(col.name)
        if col.type == "date":
            cells += _date_cells(name, value, col, state, key)
            continue
        name_ids = state.tokens(name, state.max_name_tokens)
        if value is None or missing(value):
            cells.append(Cell(name_ids, MISSING, col=key))
            continue
        if col.type == "numeric":
            x = number(value)
            if x is None:                                 # a stray string in a numeric column: missing
                cells.append(Cell(name_ids, MISSING, col=key))
                continue
            scaled = col.scaled(x)
            if state.numbers == "digits":
                cells.append(Cell(name_ids, TOKENS, state.tokens(_digits(x), state.max_value_tokens), col=key,
                                  target=scaled))
            else:
                cells.append(Cell(name_ids, NUMBER, num=scaled, col=key, target=scaled))
            continue
        shown = text(value)
        cat = col.categories.index(shown) if col.type in ("categorical", "binary") and shown in col.categories else -1
        cells.append(Cell(name_ids, TOKENS, state.tokens(shown, state.max_value_tokens), col=key, cat=cat))
    return cells


def parse_date(value) -> datetime.date | None:
    """The date of an ISO-like value (``2021-03-06``, ``2021-3-6``, with or without a time), or None."""
    match = DATE_PREFIX.match(str(value).strip())
    if match is None:
        return None
    try:
        return datetime.date(*(int(g) for g in match.groups()))
    except ValueError:
        return None


def _date_cells(name: str, value, col, state: TableState, key: int) -> list[Cell]:
    names = [state.tokens(f"{name} {part}", state.max_name_tokens) for part in ("year", "month", "weekday")]
    day = None
    if value is not None and not missing(value):
        day = parse_date(value)
    if day is None:
        return [Cell(n, MISSING, col=key) for n in names]
    year = col.scaled(float(day.year))
    return [Cell(names[0], NUMBER, num=year, col=key),
            Cell(names[1], TOKENS, state.tokens(MONTHS[day.month - 1], state.max_value_tokens), col=key),
            Cell(names[2], TOKENS, state.tokens(WEEKDAYS[day.weekday()], state.max_value_tokens), col=key)]


def row_label(raw, schema: TableSchema) -> tuple[int, float]:
    """(class index, scaled regression value) of a raw label; (-100, NaN) when there is none or it is unseen."""
    if raw is None or missing(raw) or not schema.label_type:
        return -100, float("nan")
    if schema.label_type == "regression":
        x = number(raw)
        return -100, float("nan") if x is None else (x - schema.label_median) / schema.label_scale
    shown = text(raw)
    return (schema.classes.index(shown) if shown in schema.classes else -100), float("nan")


def collate_rows(rows: list[Row], max_cells: int | None = None) -> dict[str, torch.Tensor]:
    R = len(rows)
    C = max(1, max((len(r.cells) for r in rows), default=1))
    if max_cells is not None:
        C = min(C, max_cells)
    Tn = max(1, max((len(c.name) for r in rows for c in r.cells[:C]), default=1))
    Tv = max(1, max((len(c.value) for r in rows for c in r.cells[:C]), default=1))
    name_ids = np.zeros((R, C, Tn), dtype=np.int64)
    value_ids = np.zeros((R, C, Tv), dtype=np.int64)
    num = np.zeros((R, C), dtype=np.float32)
    kind = np.zeros((R, C), dtype=np.int64)
    col = np.full((R, C), -1, dtype=np.int64)
    cat = np.full((R, C), -1, dtype=np.int64)
    target = np.full((R, C), np.nan, dtype=np.float32)
    for i, r in enumerate(rows):
        for j, c in enumerate(r.cells[:C]):
            name_ids[i, j, : len(c.name)] = c.name
            value_ids[i, j, : len(c.value)] = c.value
            num[i, j], kind[i, j], col[i, j], cat[i, j], target[i, j] = c.num, c.kind, c.col, c.cat, c.target
    return {"name_ids": torch.from_numpy(name_ids), "value_ids": torch.from_numpy(value_ids),
            "cell_num": torch.from_numpy(num), "cell_kind": torch.from_numpy(kind), "cell_col": torch.from_numpy(col),
            "cell_cat": torch.from_numpy(cat), "cell_target": torch.from_numpy(target),
            "label": torch.tensor([r.label for r in rows], dtype=torch.long),
            "label_value": torch.tensor([r.label_value for r in rows], dtype=torch.float32),
            "table_index": torch.tensor([r.table for r in rows], dtype=torch.long)}


CELL_KEYS = ("name_ids", "value_ids", "cell_num", "cell_kind", "cell_col", "cell_cat", "cell_target")


def select_cells(batch: dict[str, torch.Tensor], order: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each row's cells reordered / subset by ``order`` [R, C'] (indexes into the row's cells)."""
    out = dict(batch)
    for key in CELL_KEYS:
        value = batch[key]
        index = order.view(*order.shape, *([1] * (value.dim() - 2))).expand(*order.shape, *value.shape[2:])
        out[key] = value.gather(1, index)
    return out


class CellFinisher:
    """Training: shuffle each row's cells and keep at most ``max_cells`` (a random subset per epoch).
    Evaluation: the first ``max_cells`` in schema order. Picklable; randomness from the batch generator."""

    def __init__(self, max_cells: int, train: bool):
        self.max_cells, self.train = max_cells, train

    def __call__(self, batch: dict, generator: torch.Generator) -> dict:
        kind = batch["cell_kind"]
        R, C = kind.shape
        if not self.train:
            return select_cells(batch, torch.arange(min(C, self.max_cells)).expand(R, -1)) \
                if C > self.max_cells else batch
        keys = torch.rand(R, C, generator=generator) + (kind == 0).float() * 2     # padding sorts last
        order = keys.argsort(dim=1)[:, : min(C, self.max_cells)]
        return select_cells(batch, order)


@dataclass
class TableField:
    """The `table` dataset's one field: ``KEY.json`` rows (`tables.py`) -> cells."""
    numbers: str = "scaled"
    max_cells: int = 64
    max_name_tokens: int = 8
    max_value_tokens: int = 16
    kind: str = "table"
    keys: tuple[str, ...] = ("json",)
    unit: str = "rows"
    rows: str = "rows"

    def prepare(self, data, run_dir: Path | None) -> TableState:
        return data.table_state(run_dir)

    def restore(self, data, run_dir: Path) -> TableState:
        return data.table_state(run_dir, restore=True)

    def decode(self, sample: dict, state: TableState) -> Row:
        import json
        raw = json.loads(sample["json"])
        if not isinstance(raw, dict) or not isinstance(raw.get("r"), dict):
            raise ValueError("not a table row")
        schema = state.schemas.get(raw.get("t"))
        if schema is None:
            raise ValueError(f"row of table {raw.get('t')!r}, which has no schema here")
        label, value = row_label(raw.get("y"), schema)
        return Row(row_cells(raw["r"], schema, state), label, value, state.tables.index(schema.name))

    def collate(self, values: list[Row], state: TableState) -> dict[str, torch.Tensor]:
        return collate_rows(values)

    def finisher(self, state: TableState, train: bool):
        return CellFinisher(self.max_cells, train)

    def count(self, batch: dict[str, torch.Tensor]) -> int:
        """Rows of the data (`vpcl`'s partition views are not rows)."""
        if "view_of" in batch:
            return int((batch["view_of"] < 0).sum())
        return int(batch["cell_kind"].shape[0])

    def files(self, state: TableState, out: Path, style: str | None) -> list[Path]:
        out = Path(out)
        folder = out / "table_schemas"
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for name, schema in state.schemas.items():
            schema.save(folder / f"{name}.json")
            written.append(folder / f"{name}.json")
        state.tokenizer.save(out / "tokenizer.json")
        return [*written, out / "tokenizer.json"]


