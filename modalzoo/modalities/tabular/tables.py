"""Tables -> webdataset shards for the `table` dataset: one sample per row, one schema per table.

`pack_tables` reads every table twice (``TableSource.rows`` is called once per pass, so a file is streamed,
never held; three times with ``stratify``, whose split needs every label first): pass 1 decides each row's
split and fits the schema (`columns.py`) on the training rows only; pass 2 writes ``OUT/train`` and
``OUT/<val_split>`` shards and ``OUT/schemas/<table>.json``. A row's split comes from a hash of its values
(or, with ``stratify``, from the hash order within its label class, a numeric label's deciles, so each class
sends the same share), so re-packing keeps the split and identical rows never straddle it.

A sample is ``{"t": table, "r": {column: value | null}, "y": label}`` (``KEY.json``): raw values of the kept
columns (missing as null), so the numeric encoding (scaled or digits) is a recipe choice made at read time.
A ragged row (another number of cells than the header) or a row without its label (when the table has one)
is skipped and counted by reason in info.json; a label with one class, or a table with no rows left, is an
error that names the table.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ...datasets.shards import ShardWriter
from ...errors import ModalzooError
from .columns import DROPPED, ColumnStats, TableSchema, infer, missing, number, robust, text

SCHEMAS = "schemas"


@dataclass
class TableSource:
    """One table to pack. ``rows()`` is called once per pass and yields raw values in ``columns`` order."""
    name: str
    columns: list[str]
    rows: Callable[[], Iterator[list]]
    label: str | None = None
    source: str = ""
    licence: str = ""
    description: str = ""


def _digest(row: list) -> str:
    return hashlib.sha1(json.dumps([None if missing(v) else text(v) for v in row]).encode()).hexdigest()


def _check_name(name: str) -> None:
    if not name or "/" in name or name.startswith("."):
        raise ModalzooError(f"table name {name!r}: use a plain file-name-safe name")


class _Pass1:
    """Split assignment and schema fitting for one table: one read of ``rows()`` (two with ``stratify``, whose
    split needs every label before any statistic)."""

    def __init__(self, table: TableSource, val_fraction: float, stratify: bool, val_split: str, skipped: Counter):
        self.table, self.val_fraction, self.val_split = table, val_fraction, val_split
        cols = table.columns
        if len(set(cols)) != len(cols):
            dup = next(c for c in cols if cols.count(c) > 1)
            raise ModalzooError(f"table {table.name}: column {dup!r} appears twice in the header")
        if table.label is not None and table.label not in cols:
            from ...errors import closest
            hint = closest(table.label, cols)
            raise ModalzooError(f"table {table.name}: no label column {table.label!r}"
                                f"{f' (did you mean {hint!r}?)' if hint else ''}; columns: {', '.join(cols)}")
        self.li = cols.index(table.label) if table.label is not None else None
        self.stats = [ColumnStats() for _ in cols]
        self.labels: Counter = Counter()
        self.numbers: list[float] = []
        self.counts: Counter = Counter()
        self.rows: list[tuple[str, str | None]] = []          # (digest, label text) per row; "" = skipped
        self.splits: dict[str, str] = {}
        hashed = not stratify or self.li is None
        for row in table.rows():
            reason = self._check(row)
            if reason:
                skipped[f"{table.name}: {reason}"] += 1
                self.rows.append(("", None))
                continue
            digest = _digest(row)
            label = text(row[self.li]) if self.li is not None else None
            self.rows.append((digest, label))
            if hashed:
                split = self.splits.setdefault(digest, self._hash_split(digest))
                self._observe(split, row, label)
        good = [(d, y) for d, y in self.rows if d]
        if not good:
            raise ModalzooError(f"table {table.name}: no rows left (skipped: "
                                f"{ {k: v for k, v in skipped.items() if k.startswith(table.name + ':')} })")
        if not hashed:
            self.splits = self._stratified(good)
            for (digest, label), row in zip(self.rows, table.rows()):
                if digest:
                    self._observe(self.splits[digest], row, label)

    def _check(self, row) -> str:
        if row is None:                                       # a source's unreadable row (a bad JSONL line)
            return "unreadable row"
        if len(row) != len(self.table.columns):
            return f"ragged row ({len(row)} cells, header has {len(self.table.columns)})"
        if self.li is not None and missing(row[self.li]):
            return "missing label"
        return ""

    def _hash_split(self, digest: str) -> str:
        return self.val_split if int(digest[:8], 16) % 10_000 < self.val_fraction * 10_000 else "train"

    def _observe(self, split: str, row: list, label: str | None) -> None:
        self.counts[split] += 1
        if split != "train":
            return
        for s, value in zip(self.stats, row):
            s.add(value)
        if label is not None:
            self.labels[label] += 1
            if (x := number(row[self.li])) is not None:
                self.numbers.append(x)

    def _stratified(self, good: list[tuple[str, str | None]]) -> dict[str, str]:
        """Within each label class (a numeric label with many values: within its deciles), the rows of the
        lowest hashes go to validation; shares are rounded with a running remainder across classes, so many
        small classes still send ``val_fraction`` of the rows in all."""
        values = [number(y) for _, y in good]
        if all(v is not None for v in values) and len({y for _, y in good}) > 20:
            edges = sorted(values)
            cuts = [edges[int(len(edges) * q / 10)] for q in range(1, 10)]
            groups = [str(sum(v > c for c in cuts)) for v in values]
        else:
            groups = [y for _, y in good]
        by_class: dict[str | None, set[str]] = {}
        for (d, _), g in zip(good, groups):
            by_class.setdefault(g, set()).add(d)
        out, carry = {}, 0.0
        for g in sorted(by_class, key=str):
            members = sorted(by_class[g])
            want = self.val_fraction * len(members) + carry
            k = min(len(members), int(want + 0.5))
            carry = want - k
            out.update({d: self.val_split if i < k else "train" for i, d in enumerate(members)})
        return out

    def schema(self, column_types: dict[str, str], max_categories: int, max_levels: int) -> TableSchema:
        table, cols, labels, numbers = self.table, self.table.columns, self.labels, self.numbers
        if not self.counts["train"]:
            raise ModalzooError(f"table {table.name}: every row went to {self.val_split}; lower the fraction")
        columns = [infer(c, s, max_categories, max_levels, column_types.get(c)) for c, s in zip(cols, self.stats)
                   if c != table.label]
        schema = TableSchema(table.name, columns, table.label, rows=dict(self.counts), source=table.source,
                             licence=table.licence, description=table.description)
        if table.label is not None:
            if len(labels) < 2:
                raise ModalzooError(f"table {table.name}: label {table.label!r} has one class in the training rows "
                                    f"({', '.join(labels) or 'none'}): nothing to learn")
            numeric = len(numbers) == sum(labels.values()) and (len(labels) > 20 or any(not x.is_integer()
                                                                                         for x in numbers))
            if numeric and column_types.get(table.label) != "categorical":
                schema.label_type = "regression"
                schema.label_median, schema.label_scale = robust(numbers)
            else:
                ranked = sorted(labels, key=lambda v: (-labels[v], v))
                schema.classes = sorted(ranked) if len(ranked) == 2 else ranked
                schema.label_type = "binary" if len(ranked) == 2 else "multiclass"
        return schema


def pack_tables(tables: list[TableSource], out: str | Path, val_fraction: float = 0.05, val_split: str = "validation",
                stratify: bool = False, column_types: dict[str, str] | None = None, max_categories: int = 50,
                max_levels: int = 10, rows_per_member: int = 200) -> dict:
    """Pack ``tables`` into ``out`` (written to ``OUT.partial`` and renamed when complete); returns info.json."""
    from tqdm import tqdm

    out = Path(out)
    if not tables:
        raise ModalzooError("no table to pack")
    if not 0 <= val_fraction < 1:
        raise ModalzooError(f"the validation fraction must be in [0, 1), got {val_fraction}")
    if val_split == "train" or not val_split or "/" in val_split:
        raise ModalzooError(f"the validation split must be a plain folder name other than 'train', got {val_split!r}")
    names = [t.name for t in tables]
    for name in names:
        _check_name(name)
    if len(set(names)) != len(names):
        raise ModalzooError(f"two tables are named {next(n for n in names if names.count(n) > 1)!r}")
    if out.exists() and any(out.iterdir()):
        raise ModalzooError(f"{out} exists and is not empty: pack into a new folder (or delete it first)")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / SCHEMAS).mkdir(parents=True)
    skipped: Counter = Counter()
    writers: dict[str, ShardWriter] = {}
    counts: Counter = Counter()
    info_tables = {}
    try:
        for table in tables:
            first = _Pass1(table, val_fraction, stratify, val_split, skipped)
            schema = first.schema(dict(column_types or {}), max_categories, max_levels)
            kept = [(i, c) for i, c in enumerate(table.columns) if c != table.label and
                    schema.columns[[k.name for k in schema.columns].index(c)].type not in DROPPED]
            written = Counter()
            rows = zip(first.rows, table.rows())
            for n, ((digest, _), row) in enumerate(tqdm(rows, total=len(first.rows), desc=table.name, unit=" rows",
                                                        disable=None)):
                if not digest:
                    continue
                split = first.splits[digest]
                sample = {"t": table.name, "r": {c: None if missing(row[i]) else row[i] for i, c in kept}}
                if first.li is not None:
                    sample["y"] = row[first.li]
                if split not in writers:
                    writers[split] = ShardWriter(tmp, split, per_member=rows_per_member)
                writers[split].write({"__key__": f"{table.name}-{n:09d}", "json": json.dumps(sample, default=str)})
                written[split] += 1
            counts.update(written)
            schema.save(tmp / SCHEMAS / f"{table.name}.json")
            info_tables[table.name] = {
                "rows": dict(written), "columns": len(schema.kept), "label": table.label,
                "label_type": schema.label_type, "classes": schema.classes,
                "types": dict(Counter(c.type for c in schema.kept)), "dropped": schema.dropped(),
                "skipped": {k.split(": ", 1)[1]: v for k, v in skipped.items() if k.startswith(table.name + ": ")},
                "source": table.source, "licence": table.licence}
    except BaseException:
        for w in writers.values():
            w.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for w in writers.values():
        w.close()
    info = {"name": "pack-table", "tables": info_tables, "rows": {"train": counts["train"],
                                                                  val_split: counts[val_split]},
            "skipped": sum(skipped.values()), "val_split": val_split, "stratified": stratify}
    (tmp / "info.json").write_text(json.dumps(info, indent=2))
    if out.exists():
        out.rmdir()
    tmp.rename(out)
    return info


def load_schemas(folder: str | Path) -> dict[str, TableSchema]:
    """Every table schema of a packed folder (``FOLDER/schemas/*.json``)."""
    folder = Path(folder) / SCHEMAS
    if not folder.is_dir():
        raise ModalzooError(f"{folder} is missing: a table dataset keeps one schema per table there "
                            f"(modalzoo data pack-table, or modalzoo data build tables-sample)")
    return {p.stem: TableSchema.load(p) for p in sorted(folder.glob("*.json"))}


def fit_schema(table: TableSource, column_types: dict[str, str] | None = None, max_categories: int = 50,
               max_levels: int = 10) -> TableSchema:
    """The schema of ``table`` fitted on all its rows (an in-memory training set: the estimator's ``fit``);
    a ragged row or a row without its label raises, naming the reason."""
    skipped: Counter = Counter()
    first = _Pass1(table, 0.0, False, "validation", skipped)
    if skipped:
        reasons = ", ".join(f"{n} x {reason.split(': ', 1)[1]}" for reason, n in skipped.items())
        raise ModalzooError(f"table {table.name}: {reasons}")
    return first.schema(dict(column_types or {}), max_categories, max_levels)
