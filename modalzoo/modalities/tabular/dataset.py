"""The `table` dataset: rows of one or many tables (`tables.py` shards, ``schemas/`` beside them) as cells.

The tokenizer (WordPiece by default) is trained on the pool's own words — column names, categories, date
parts, digits and a sample of its text cells — and saved with the run, so nothing is downloaded; a fine-tune
names the pretrained run's ``tokenizer.json`` (``tokenizer.path``) so its embeddings read the same ids. The
run keeps the schemas it was trained with (``RUN/table_schemas/``): an export and `modalzoo eval` need no
shards. A row that is not valid JSON or names a table without a schema is skipped and counted.
"""

from __future__ import annotations

import itertools
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ...datasets.dataset import ShardDataConfig, ShardDataset
from ...errors import ModalzooError
from ...registry import DATASETS
from ..text.tokenizers import load_or_train
from .cells import MONTHS, WEEKDAYS, TableField, TableState, readable
from .columns import TableSchema, missing, text
from .tables import load_schemas


@dataclass
class TableDataConfig(ShardDataConfig):
    path: str = "data/tables-sample"
    numbers: Literal["scaled", "digits"] = "scaled"   # a number as a scaled value (TransTab) or digit tokens
    max_cells: int = 64              # cells per row (a random subset per epoch beyond it; see cells.py)
    max_name_tokens: int = 8
    max_value_tokens: int = 16       # a text cell's tokens beyond this are cut (documented)
    tokenizer: dict = field(default_factory=lambda: {"name": "wordpiece", "vocab_size": 4000})
    tokenizer_rows: int = 20000      # training rows whose text cells the tokenizer also learns from
    num_workers: int = 1

    def __post_init__(self):
        if self.max_cells < 1 or self.max_name_tokens < 1 or self.max_value_tokens < 1:
            raise ValueError("max_cells, max_name_tokens and max_value_tokens must be positive")


def tokenizer_words(schemas: dict[str, TableSchema]) -> list[str]:
    """Column names, categories, date parts and digits: the words every cell is made of."""
    words = [" ".join("0123456789.-e+"), " ".join(MONTHS), " ".join(WEEKDAYS), "year month weekday"]
    for schema in schemas.values():
        for col in schema.kept:
            words.append(readable(col.name))
            words += col.categories[:200]
    return words


@DATASETS.register("table")
class TableData(ShardDataset):
    """Rows of tables as cells: column-name tokens plus a value (tokens, a scaled number or missing)."""

    Config = TableDataConfig
    build_hint = "modalzoo data build tables-sample (or modalzoo data pack-table)"

    def make_fields(self) -> dict:
        cfg = self.cfg
        return {"table": TableField(cfg.numbers, cfg.max_cells, cfg.max_name_tokens, cfg.max_value_tokens)}

    def _text_cells(self, schemas: dict[str, TableSchema]):
        """The text cells of up to ``tokenizer_rows`` training rows (names and categories come first)."""
        text_columns = {(t, c.name) for t, s in schemas.items() for c in s.kept if c.type == "text"}
        if not text_columns:
            return
        from ...datasets.shards import ShardStream, SkipCounter

        def decode(samples, skips):
            for sample in samples:
                yield sample.get("json", b"")

        stream = ShardStream(self.shards(self.cfg.train_split), decode, shuffle=False, repeat=False)
        for raw in itertools.islice(stream.raw_batches(0, 1, SkipCounter()), self.cfg.tokenizer_rows):
            try:
                row = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(row, dict) or not isinstance(row.get("r"), dict):
                continue                                 # a malformed row: the loader skips and counts it
            for name, value in row["r"].items():
                if (row.get("t"), name) in text_columns and value is not None and not missing(value):
                    yield text(value)

    def table_state(self, run_dir: Path | None, restore: bool = False) -> TableState:
        cfg = self.cfg
        saved = Path(run_dir) / "table_schemas" if run_dir else None
        if restore:
            if saved is None or not saved.is_dir():
                raise ModalzooError(f"{run_dir} has no table_schemas/: not a table run")
            schemas = {p.stem: TableSchema.load(p) for p in sorted(saved.glob("*.json"))}
        else:
            schemas = load_schemas(cfg.path)
            if not schemas:
                raise ModalzooError(f"{cfg.path}/schemas has no table schema")
            for name, schema in schemas.items():
                cells = sum(3 if c.type == "date" else 1 for c in schema.kept)
                if cells > cfg.max_cells:
                    warnings.warn(f"table {name}: {cells} cells per row, over data.max_cells={cfg.max_cells}: training "
                                  f"sees a random {cfg.max_cells} of them per row and epoch, evaluation the first "
                                  f"{cfg.max_cells} in schema order; raise data.max_cells to keep them all",
                                  stacklevel=2)
        spec = dict(cfg.tokenizer)
        if restore:
            from ...registry import TOKENIZERS
            tok = TOKENIZERS.build(spec, "data.tokenizer").load(Path(run_dir) / "tokenizer.json")
        else:
            key = ["table", sorted(schemas), cfg.tokenizer_rows]
            tok = load_or_train(spec, run_dir, Path(cfg.path) / "tokenizers", key,
                                lambda: itertools.chain(tokenizer_words(schemas), self._text_cells(schemas)),
                                f"no column names in {cfg.path} to train the tokenizer on")
        if saved is not None and not restore:
            saved.mkdir(parents=True, exist_ok=True)
            for name, schema in schemas.items():
                schema.save(saved / f"{name}.json")
        return TableState(schemas, tok, cfg.numbers, cfg.max_cells, cfg.max_name_tokens, cfg.max_value_tokens)
