"""Toy tables for the tabular tests and harness: two small tables (every column type), their schemas (fitted
in memory), a tokenizer trained on their words, their `TableState` and collated batches, and shards of them
(`write`) for the `table` dataset."""

from __future__ import annotations

import functools
import json
import random
from pathlib import Path

import torch

from modalzoo.modalities.tabular.cells import Row, TableState, collate_rows, row_cells, row_label
from modalzoo.modalities.tabular.columns import TableSchema
from modalzoo.modalities.tabular.dataset import tokenizer_words
from modalzoo.modalities.tabular.tables import TableSource, fit_schema, pack_tables

V = 300                                              # the tokenizer's (and the tiny embeddings') vocab_size
COLOURS = ["red", "green", "blue"]
PEOPLE = ["id", "age", "colour", "income", "visit", "smoker", "note", "plan", "k"]
PETS = ["species", "weight", "indoor", "adopted"]
NOTES = ["likes long walks", "quiet neighbour here", "plays chess often", "never late to work", "reads books"]


def people_rows(n: int = 120, seed: int = 0) -> list[list]:
    """age numeric, colour categorical, income numeric with NA, visit date, smoker binary (the label), note
    text, plan a few integer levels; id and k (a constant) are dropped."""
    r = random.Random(seed)
    rows = []
    for i in range(n):
        age = r.randint(18, 80)
        rows.append([str(i), str(age), r.choice(COLOURS), "NA" if i % 9 == 0 else f"{r.random() * 100:.2f}",
                     f"2020-{r.randint(1, 12):02d}-{r.randint(10, 28)}", "yes" if age > 45 else "no",
                     f"{r.choice(NOTES)} {i}", str(i % 4), "const"])
    return rows


def pets_rows(n: int = 60, seed: int = 1) -> list[list]:
    r = random.Random(seed)
    return [[r.choice(["cat", "dog", "bird", "fish"]), f"{r.gauss(5, 2):.2f}", r.choice(["yes", "no"]),
             r.choice(["yes", "no"])] for _ in range(n)]


def source(name: str, columns: list[str], rows: list[list], label: str | None = None) -> TableSource:
    return TableSource(name, list(columns), lambda: iter([list(r) for r in rows]), label)


def people(n: int = 120, seed: int = 0, label: str | None = "smoker") -> TableSource:
    return source("people", PEOPLE, people_rows(n, seed), label)


def pets(n: int = 60, seed: int = 1, label: str | None = "adopted") -> TableSource:
    return source("pets", PETS, pets_rows(n, seed), label)


@functools.cache
def schemas() -> dict[str, TableSchema]:
    """The two tables' schemas, fitted on all their rows (do not mutate: cached)."""
    return {"people": fit_schema(people()), "pets": fit_schema(pets())}


@functools.lru_cache(maxsize=8)
def tokenizer(words: tuple[str, ...] | None = None):
    from modalzoo.registry import TOKENIZERS
    words = words or tuple(tokenizer_words(schemas()) + [row[6] for row in people_rows()])
    # the built vocabulary: the trained WordPiece differs from process to process, and so would these tests
    return TOKENIZERS.build({"name": "table_words", "vocab_size": V, "min_frequency": 1}).train(list(words))


def state(numbers: str = "scaled", max_cells: int = 64, max_value_tokens: int = 16, **table_schemas) -> TableState:
    """A TableState over the toy schemas (or the ``table_schemas`` given, name -> schema)."""
    return TableState(dict(table_schemas) or dict(schemas()), tokenizer(), numbers, max_cells, 8, max_value_tokens)


def as_dict(columns: list[str], row: list) -> dict:
    return dict(zip(columns, row))


def rows_of(st: TableState, table: str, raw_rows: list[dict], labels: list | None = None) -> list[Row]:
    schema = st.schemas[table]
    out = []
    for i, raw in enumerate(raw_rows):
        label, value = row_label(None if labels is None else labels[i], schema)
        out.append(Row(row_cells(raw, schema, st), label, value, st.tables.index(table)))
    return out


def toy_rows(st: TableState, n_people: int = 8, n_pets: int = 4) -> list[Row]:
    """Rows of both tables, with their labels."""
    found = []
    for table, columns, rows in (("people", PEOPLE, people_rows()[:n_people]), ("pets", PETS, pets_rows()[:n_pets])):
        label_col = st.schemas[table].label
        found += rows_of(st, table, [as_dict(columns, r) for r in rows],
                         [as_dict(columns, r)[label_col] for r in rows])
    return found


def collated(st: TableState | None = None, n_people: int = 8, n_pets: int = 4) -> tuple[TableState, dict]:
    st = st or state()
    return st, collate_rows(toy_rows(st, n_people, n_pets))


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def write(out: Path, extra_train: list[bytes] = (), **pack) -> Path:
    """Both toy tables packed into ``out`` (plus raw ``extra_train`` rows in a shard of their own)."""
    from modalzoo.datasets.shards import ShardWriter
    pack_tables([people(), pets()], out, **{"val_fraction": 0.2, **pack})
    if extra_train:
        with ShardWriter(out, "train") as writer:
            writer.shards = 1000                       # a shard name of its own beside the packed ones
            for j, raw in enumerate(extra_train):
                writer.write({"__key__": f"bad{j:03d}", "json": raw})
    return out


def bad_rows() -> list[bytes]:
    """A row that is not JSON, one naming a table without a schema, one without its cells."""
    return [b"{not json", json.dumps({"t": "nosuch", "r": {"a": 1}}).encode(),
            json.dumps({"t": "people"}).encode()]


NOT_ROWS = [b"[1, 2]", b"{\"t\": \"people\", \"r\": null}"]   # valid JSON, not rows (test_cells: a known bug)
