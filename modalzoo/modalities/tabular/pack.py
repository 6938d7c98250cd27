"""`modalzoo data pack-table`: users' tables (CSV, TSV, JSONL, Parquet; `sources.py`) -> shards and one
schema per table for the `table` dataset (`tables.py`); `pack_dataframe` does the same from Python."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ...errors import ModalzooError
from ...registry import PACKERS
from .sources import file_source, frame_source
from .tables import pack_tables


@dataclass
class PackTableConfig:
    """The `data pack-table` flags (metadata "help": their help)."""
    label: str | None = field(default=None, metadata={"help": "the label column (of every table given)"})
    val_fraction: float = field(default=0.1, metadata={"help": "rows routed to the validation split"})
    val_split: str = field(default="validation", metadata={"help": "the validation split's folder name"})
    stratify: bool = field(default=False, metadata={"help": "the same validation share from every label class"})
    column_types: dict[str, str] = field(default_factory=dict, metadata={
        "help": "type overrides, e.g. '{zip: categorical, notes: text}' (numeric binary categorical text date id)"})
    max_categories: int = field(default=50, metadata={"help": "more distinct strings than this: a text column"})
    encoding: str = field(default="utf-8", metadata={"help": "the text encoding of CSV/JSONL files"})


def pack_dataframe(X, out: str | Path, name: str = "table", label: str | None = None, y=None, **options) -> dict:
    """Pack a pandas DataFrame (or a dict of columns) as one table; ``options`` as `pack_tables` takes them."""
    return pack_tables([frame_source(X, name, label, y)], out, **options)


@PACKERS.register("pack-table")
class PackTable:
    """Pack tables into webdataset shards (for the table dataset): one sample per row, one schema per table
    (column types inferred, --column-types overrides; id-like and constant columns dropped and listed;
    numeric statistics fitted on the training rows only). SRC: .csv/.tsv (delimiter sniffed), .jsonl or
    .parquet files, each one table named after its file. Ragged or unreadable rows are skipped and counted."""

    Config = PackTableConfig
    inputs = "TABLE"
    example = "modalzoo data pack-table churn.csv --label churned --out data/my-tables --stratify true"

    def __init__(self, cfg: PackTableConfig):
        if cfg.max_categories < 2:
            raise ValueError("max_categories must be at least 2")
        self.cfg = cfg

    def pack(self, sources: list[Path], out: Path) -> str:
        cfg = self.cfg
        if not sources:
            raise ModalzooError("give at least one table file")
        tables = [file_source(Path(s), cfg.label, cfg.encoding) for s in sources]
        info = pack_tables(tables, out, cfg.val_fraction, cfg.val_split, cfg.stratify, cfg.column_types,
                           cfg.max_categories)
        lines = [f"packed {len(tables)} table(s) into {out}: {info['rows']['train']} train / "
                 f"{info['rows'][cfg.val_split]} {cfg.val_split} rows, {info['skipped']} skipped"]
        for name, t in info["tables"].items():
            dropped = ", ".join(f"{c} ({why})" for c, why in t["dropped"].items()) or "none"
            classes = ", ".join(t["classes"][:5])
            label = f"label {t['label']} ({t['label_type']}: {classes})" if t["label"] else "no label"
            lines.append(f"  {name}: {t['columns']} columns {t['types']}; {label}; dropped: {dropped}"
                         + (f"; skipped: {t['skipped']}" if t["skipped"] else ""))
        return "\n".join(lines)
