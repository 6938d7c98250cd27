"""Files and in-memory tables -> `TableSource`s (`tables.py`), each read as a stream of rows.

* CSV (delimiter sniffed among , ; tab |; ``encoding`` given, UTF-8 by default: a file in another encoding
  stops with one message naming ``--encoding``, never with mojibake cells);
* JSONL, one object per line (columns: the union of the keys, in order of first appearance; a line that is
  not an object is an unreadable row, counted);
* Parquet (pyarrow, part of the ``[tabular]`` extra), read batch by batch;
* a pandas DataFrame, a dict of columns or a NumPy array (``columns`` names its columns), from Python.
"""

from __future__ import annotations

import csv
import itertools
import json
import re
from collections.abc import Iterator
from pathlib import Path

from ...errors import ModalzooError
from .tables import TableSource

SUFFIXES = (".csv", ".tsv", ".jsonl", ".parquet")


def table_name(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", path.stem).strip("._") or "table"


def _lines(path: Path, encoding: str) -> Iterator[str]:
    """The text lines of ``path``, decoded one by one (so a bad byte is reported on its own line; a UTF-8
    byte-order mark is dropped)."""
    codec = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode(codec if n == 1 else encoding)
            except UnicodeDecodeError as err:
                byte = raw[err.start:err.start + 1]
                raise ModalzooError(f"{path} is not {encoding} text (line {n}, byte {byte!r}): pass its encoding, "
                                    f"e.g. --encoding latin-1") from None
            except LookupError:
                raise ModalzooError(f"--encoding {encoding!r}: not a text encoding Python knows") from None
            yield line


def csv_source(path: Path, label: str | None = None, encoding: str = "utf-8", name: str | None = None) -> TableSource:
    head = "".join(itertools.islice(_lines(path, encoding), 200))
    if not head.strip():
        raise ModalzooError(f"{path} is empty")
    try:
        delimiter = csv.Sniffer().sniff(head, delimiters=",;\t|").delimiter
    except csv.Error:
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","

    def reader():
        return csv.reader(_lines(path, encoding), delimiter=delimiter)

    columns = [c.strip() for c in next(reader())]

    def body():
        it = reader()
        next(it)
        for row in it:
            if row:
                yield row
    return TableSource(name or table_name(path), columns, body, label, source=str(path))


def jsonl_source(path: Path, label: str | None = None, encoding: str = "utf-8", name: str | None = None) -> TableSource:
    columns: dict[str, None] = {}
    for line in _lines(path, encoding):
        try:
            obj = json.loads(line) if line.strip() else None
        except ValueError:
            continue
        if isinstance(obj, dict):
            columns.update(dict.fromkeys(obj))
    names = list(columns)

    def body():
        for line in _lines(path, encoding):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                obj = None
            if not isinstance(obj, dict):
                yield None                           # counted as an unreadable row
                continue
            yield [_plain(obj.get(c)) for c in names]
    return TableSource(name or table_name(path), names, body, label, source=str(path))


def _plain(value):
    """A JSON/Arrow/NumPy value as a plain cell (nested values become their JSON text)."""
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            pass
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def parquet_source(path: Path, label: str | None = None, name: str | None = None) -> TableSource:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ModalzooError("reading Parquet needs pyarrow: pip install 'modalzoo[tabular]'") from None
    names = list(pq.ParquetFile(path).schema_arrow.names)

    def body():
        for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
            columns = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
            for row in zip(*columns):
                yield [_plain(v) for v in row]
    return TableSource(name or table_name(path), names, body, label, source=str(path))


def file_source(path: Path, label: str | None = None, encoding: str = "utf-8") -> TableSource:
    if not path.exists():
        raise ModalzooError(f"no such file: {path}")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return csv_source(path, label, encoding)
    if suffix == ".jsonl":
        return jsonl_source(path, label, encoding)
    if suffix == ".parquet":
        return parquet_source(path, label)
    raise ModalzooError(f"{path}: expected a .csv, .tsv, .jsonl or .parquet table")


def frame_source(X, name: str = "table", label: str | None = None, y=None,
                 columns: list[str] | None = None) -> TableSource:
    """A pandas DataFrame, a dict of columns or a 2-D NumPy array (with ``columns``, else c0, c1, ...), plus
    optional labels ``y`` (then named ``label`` or "label")."""
    names, cols = frame_columns(X, columns)
    if y is not None:
        y = list(y.tolist() if hasattr(y, "tolist") else y)
        if len(y) != (len(cols[0]) if cols else 0):
            raise ModalzooError(f"X has {len(cols[0]) if cols else 0} rows but y has {len(y)}")
        label = label or "label"
        if label in names:
            raise ModalzooError(f"X already has a column {label!r}; name the label otherwise")
        names, cols = [*names, label], [*cols, y]

    def body():
        for row in zip(*cols):
            yield [_plain(v) for v in row]
    return TableSource(name, names, body, label)


def frame_columns(X, columns: list[str] | None = None) -> tuple[list[str], list[list]]:
    """(names, column value lists) of a DataFrame, a dict of columns or a 2-D array; NaN/NaT stay as they are
    (`columns.missing` reads them as missing)."""
    if hasattr(X, "columns") and hasattr(X, "iloc"):                       # pandas
        names = [str(c) for c in X.columns]
        cols = []
        for c in X.columns:
            series = X[c]
            values = series.astype(object).where(series.notna(), None).tolist()
            cols.append(values)
        return names, cols
    if isinstance(X, dict):
        names = [str(k) for k in X]
        cols = [list(v.tolist() if hasattr(v, "tolist") else v) for v in X.values()]
        if len({len(c) for c in cols}) > 1:
            raise ModalzooError(f"the columns of X have different lengths: {sorted({len(c) for c in cols})}")
        return names, cols
    import numpy as np
    array = np.asarray(X, dtype=object)
    if array.ndim != 2:
        raise ModalzooError(f"X must be a table (DataFrame, dict of columns or 2-D array), got shape {array.shape}")
    names = list(columns) if columns is not None else [f"c{i}" for i in range(array.shape[1])]
    if len(names) != array.shape[1]:
        raise ModalzooError(f"{len(names)} column names for {array.shape[1]} columns")
    return names, [array[:, i].tolist() for i in range(array.shape[1])]
