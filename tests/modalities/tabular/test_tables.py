"""Packing tables (`tables.py`, `sources.py`, `pack.py`): the samples and schemas written, the hash and
stratified splits (stable, per class, duplicates on one side), statistics fitted on training rows only, rows
skipped by reason, the errors that name the table / column / flag, cleanup after an interrupted pack, the
file readers (CSV with a sniffed delimiter, TSV, JSONL, Parquet, DataFrames, dicts, arrays) and
`modalzoo data pack-table`."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from conftest import sibling
from modalzoo.cli import main
from modalzoo.datasets.shards import ShardStream, SkipCounter, list_shards
from modalzoo.errors import ModalzooError
from modalzoo.modalities.tabular import tables as tables_module
from modalzoo.modalities.tabular.columns import robust
from modalzoo.modalities.tabular.pack import PackTable, PackTableConfig, pack_dataframe
from modalzoo.modalities.tabular.sources import csv_source, file_source, frame_source, jsonl_source, table_name
from modalzoo.modalities.tabular.tables import TableSource, fit_schema, load_schemas, pack_tables

table_data = sibling(__file__, "table_data")
source = table_data.source


def samples(out: Path, split: str = "train") -> list[dict]:
    def decode(items, skips):
        for item in items:
            yield json.loads(item["json"])
    folder = out / split
    if not folder.is_dir():
        return []
    return list(ShardStream(list_shards(out, split), decode, shuffle=False, repeat=False)
                .raw_batches(0, 1, SkipCounter()))


def key(sample: dict) -> str:
    return json.dumps([sample["r"], sample.get("y")], sort_keys=True)


def numbered(n: int, seed: int = 0, classes=("a", "b")) -> list[list]:
    r = random.Random(seed)
    return [[f"{r.gauss(0, 1):.4f}", r.choice(["x", "y", "z"]), classes[i % len(classes)]] for i in range(n)]


COLS = ["v", "c", "y"]


# --- what is written ------------------------------------------------------------------------------------
def test_pack_writes_one_sample_per_row_raw_values_and_a_schema(tmp_path):
    info = pack_tables([table_data.people(), table_data.pets()], tmp_path / "out", val_fraction=0.2)
    out = tmp_path / "out"
    assert not (tmp_path / "out.partial").exists()
    assert json.loads((out / "info.json").read_text()) == info
    train, val = samples(out), samples(out, "validation")
    assert len(train) + len(val) == 180 and info["rows"] == {"train": len(train), "validation": len(val)}
    assert {t: sum(t2["rows"].values()) for t, t2 in info["tables"].items()} == {"people": 120, "pets": 60}
    people = [s for s in train + val if s["t"] == "people"]
    assert set(people[0]["r"]) == {"age", "colour", "income", "visit", "note", "plan"}   # no id, k, label
    assert {s["y"] for s in people} == {"yes", "no"}
    incomes = [s["r"]["income"] for s in people]
    assert incomes.count(None) == 14 and "NA" not in incomes                            # missing as null
    raw = {r[6]: r for r in table_data.people_rows()}
    for s in people:                                                                    # values kept raw
        row = raw[s["r"]["note"]]
        assert s["r"]["age"] == row[1] and s["r"]["visit"] == row[4] and s["y"] == row[5]
    schemas = load_schemas(out)
    assert set(schemas) == {"people", "pets"} and schemas["people"].label == "smoker"
    assert schemas["people"].rows == info["tables"]["people"]["rows"]
    t = info["tables"]["people"]
    assert t["dropped"] == {"id": "an id-like name", "k": "one value"} and t["columns"] == 6
    assert t["types"] == {"numeric": 2, "categorical": 2, "date": 1, "text": 1}
    assert t["label_type"] == "binary" and t["classes"] == ["no", "yes"]


def test_label_types():
    def fit(labels):
        rows = [[f"{i * 0.3:.1f}", y] for i, y in enumerate(labels)]
        return fit_schema(source("t", ["v", "y"], rows, "y"))
    s = fit(["b", "a"] * 10)
    assert s.label_type == "binary" and s.classes == ["a", "b"]                       # binary: sorted
    s = fit(["2"] * 3 + ["0"] * 10 + ["1"] * 6)
    assert s.label_type == "multiclass" and s.classes == ["0", "1", "2"]
    s = fit(["x"] * 2 + ["z"] * 10 + ["y"] * 6)
    assert s.label_type == "multiclass" and s.classes == ["z", "y", "x"]              # most frequent first
    values = [f"{i * 1.25:.2f}" for i in range(30)]
    s = fit(values)
    assert s.label_type == "regression" and s.classes == []
    assert (s.label_median, s.label_scale) == pytest.approx(robust([float(v) for v in values]))
    s = fit([str(i) for i in range(30)])                                              # > 20 integers
    assert s.label_type == "regression"
    forced = fit_schema(source("t", ["v", "y"], [[str(i * 0.1), f"{i % 25}"] for i in range(50)], "y"),
                        column_types={"y": "categorical"})
    assert forced.label_type == "multiclass" and len(forced.classes) == 25


# --- splits ---------------------------------------------------------------------------------------------
def test_hash_split_is_stable_across_repacks_and_other_rows(tmp_path):
    rows = numbered(600)
    pack_tables([source("t", COLS, rows)], tmp_path / "a", val_fraction=0.2)
    pack_tables([source("t", COLS, rows[::-1])], tmp_path / "b", val_fraction=0.2)      # another order
    pack_tables([source("t", COLS, rows + numbered(300, seed=5))], tmp_path / "c", val_fraction=0.2)
    val_a = {key(s) for s in samples(tmp_path / "a", "validation")}
    assert val_a == {key(s) for s in samples(tmp_path / "b", "validation")}
    val_c = {key(s) for s in samples(tmp_path / "c", "validation")}
    assert val_a <= val_c and not val_a & {key(s) for s in samples(tmp_path / "c")}
    assert 0.14 < len(val_a) / 600 < 0.26


def test_stratified_split_sends_the_same_share_of_every_class(tmp_path):
    rows = numbered(300, classes=("a",)) + numbered(60, seed=1, classes=("b",)) + numbered(30, seed=2, classes=("c",))
    info = pack_tables([source("t", COLS, rows, "y")], tmp_path / "out", val_fraction=0.2, stratify=True)
    val = Counter(s["y"] for s in samples(tmp_path / "out", "validation"))
    assert val == {"a": 60, "b": 12, "c": 6} and info["stratified"] is True
    assert Counter(s["y"] for s in samples(tmp_path / "out")) == {"a": 240, "b": 48, "c": 24}


@pytest.mark.parametrize("stratify", [False, True])
def test_duplicate_rows_never_straddle_the_split(tmp_path, stratify):
    distinct = numbered(40)
    rows = [list(r) for r in distinct for _ in range(5)]
    random.Random(0).shuffle(rows)
    pack_tables([source("t", COLS, rows, "y")], tmp_path / "out", val_fraction=0.3, stratify=stratify)
    train = Counter(key(s) for s in samples(tmp_path / "out"))
    val = Counter(key(s) for s in samples(tmp_path / "out", "validation"))
    assert train and val and not set(train) & set(val)
    assert set(train.values()) | set(val.values()) == {5}                    # every copy on its row's side


def test_no_validation_rows_with_a_zero_fraction(tmp_path):
    info = pack_tables([source("t", COLS, numbered(50))], tmp_path / "out", val_fraction=0.0)
    assert info["rows"] == {"train": 50, "validation": 0} and not (tmp_path / "out" / "validation").exists()


def test_custom_validation_split_name(tmp_path):
    info = pack_tables([source("t", COLS, numbered(200))], tmp_path / "out", val_fraction=0.3, val_split="dev")
    assert info["val_split"] == "dev" and len(samples(tmp_path / "out", "dev")) == info["rows"]["dev"] > 0


def test_statistics_are_fitted_on_training_rows_only(tmp_path):
    """Normal values in training rows, extreme ones in validation rows: the median and scale ignore the latter."""
    candidates = [[f"{i * 0.1 + 0.05:.2f}", "ab"[i % 2]] for i in range(300)] + \
                 [[f"{1e6 + i:.1f}", "ab"[i % 2]] for i in range(300)]
    pack_tables([source("t", ["v", "c"], candidates)], tmp_path / "probe", val_fraction=0.5)
    went_val = {s["r"]["v"] for s in samples(tmp_path / "probe", "validation")}
    rows = [r for r in candidates if (r[0] in went_val) == (float(r[0]) >= 1e6)]    # normal->train, extreme->val
    info = pack_tables([source("t", ["v", "c"], rows)], tmp_path / "out", val_fraction=0.5)
    train, val = samples(tmp_path / "out"), samples(tmp_path / "out", "validation")
    assert len(train) > 100 and len(val) > 100 and info["rows"]["train"] == len(train)
    assert all(float(s["r"]["v"]) < 100 for s in train) and all(float(s["r"]["v"]) >= 1e6 for s in val)
    v = load_schemas(tmp_path / "out")["t"].columns[0]
    assert v.type == "numeric"
    assert (v.median, v.scale) == pytest.approx(robust([float(s["r"]["v"]) for s in train]))
    assert v.median < 30 and v.scale < 30


def test_categories_come_from_training_rows_only(tmp_path):
    rows = [[f"{i * 0.1:.1f}", ["p", "q"][i % 2], ["yes", "no"][i % 2]] for i in range(200)] + \
           [[f"{100 + i}.5", "rare", "yes"] for i in range(20)]
    pack_tables([source("t", ["v", "c", "y"], rows, "y")], tmp_path / "probe", val_fraction=0.5)
    val_tags = {s["r"]["v"] for s in samples(tmp_path / "probe", "validation")}
    keep = [r for r in rows if r[1] != "rare" or r[0] in val_tags]                   # "rare" only in validation
    pack_tables([source("t", ["v", "c", "y"], keep, "y")], tmp_path / "out", val_fraction=0.5)
    assert any(s["r"]["c"] == "rare" for s in samples(tmp_path / "out", "validation"))
    c = load_schemas(tmp_path / "out")["t"].columns[1]
    assert sorted(c.categories) == ["p", "q"] and sum(c.counts) == len(samples(tmp_path / "out"))


# --- skipped rows and errors ----------------------------------------------------------------------------
def test_ragged_rows_and_missing_labels_are_skipped_and_counted(tmp_path):
    rows = numbered(100) + [["1.0", "x"], ["1.0", "x", "a", "extra"], ["2.0", "y", "NA"], ["3.0", "z", ""],
                            ["4.0", "x", None]]
    info = pack_tables([source("t", COLS, rows, "y")], tmp_path / "out", val_fraction=0.1)
    assert info["skipped"] == 5 and sum(info["rows"].values()) == 100
    assert info["tables"]["t"]["skipped"] == {"ragged row (2 cells, header has 3)": 1,
                                              "ragged row (4 cells, header has 3)": 1, "missing label": 3}


def test_unreadable_jsonl_lines_are_counted(tmp_path):
    lines = [json.dumps({"v": i * 0.5, "c": "xyz"[i % 3], "y": "ab"[i % 2]}) for i in range(40)]
    lines[5:5] = ["{not json", "[1, 2]", '"a string"', ""]
    (tmp_path / "t.jsonl").write_text("\n".join(lines) + "\n")
    info = pack_tables([jsonl_source(tmp_path / "t.jsonl", "y")], tmp_path / "out", val_fraction=0.1)
    assert info["tables"]["t"]["skipped"] == {"unreadable row": 3} and sum(info["rows"].values()) == 40


def test_a_label_with_one_class_names_the_table():
    rows = [[str(i * 0.5), "x", "same"] for i in range(30)]
    with pytest.raises(ModalzooError, match=r"table churn: label 'y' has one class in the training rows \(same\)"):
        fit_schema(source("churn", COLS, rows, "y"))


def test_no_rows_left_names_the_table(tmp_path):
    with pytest.raises(ModalzooError, match=r"table broken: no rows left .*ragged row"):
        pack_tables([source("broken", COLS, [["1", "2"]] * 5)], tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
    with pytest.raises(ModalzooError, match="table empty: no rows left"):
        pack_tables([source("empty", COLS, [])], tmp_path / "out")


def test_every_row_in_validation_is_an_error(tmp_path):
    rows = [[str(i), "x", "ab"[i % 2]] for i in range(4)]          # stratified: round(0.9 * 2) = 2 per class
    with pytest.raises(ModalzooError, match="table t: every row went to validation; lower the fraction"):
        pack_tables([source("t", COLS, rows, "y")], tmp_path / "out", val_fraction=0.9, stratify=True)


def test_a_typo_in_the_label_names_the_closest_column(tmp_path):
    with pytest.raises(ModalzooError, match=r"table t: no label column 'churnd' \(did you mean 'churned'\?\)"):
        pack_tables([source("t", ["age", "churned"], [["1", "yes"]], "churnd")], tmp_path / "out")


def test_bad_arguments_are_clear_errors(tmp_path):
    t = source("t", COLS, numbered(20))
    with pytest.raises(ModalzooError, match="appears twice"):
        pack_tables([source("t", ["a", "a"], [["1", "2"]])], tmp_path / "o1")
    with pytest.raises(ModalzooError, match="two tables are named 't'"):
        pack_tables([t, source("t", COLS, numbered(20))], tmp_path / "o2")
    with pytest.raises(ModalzooError, match=r"must be in \[0, 1\)"):
        pack_tables([t], tmp_path / "o3", val_fraction=1.0)
    with pytest.raises(ModalzooError, match="other than 'train'"):
        pack_tables([t], tmp_path / "o4", val_split="train")
    with pytest.raises(ModalzooError, match="file-name-safe"):
        pack_tables([source("a/b", COLS, numbered(20))], tmp_path / "o5")
    with pytest.raises(ModalzooError, match="no table to pack"):
        pack_tables([], tmp_path / "o6")
    assert not any(tmp_path.iterdir())


def test_a_non_empty_out_is_an_error_and_an_empty_one_is_used(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(ModalzooError, match="exists and is not empty"):
        pack_tables([source("t", COLS, numbered(20))], tmp_path / "full")
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]
    (tmp_path / "empty").mkdir()
    pack_tables([source("t", COLS, numbered(20))], tmp_path / "empty")
    assert (tmp_path / "empty" / "info.json").is_file()


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_an_interrupted_pack_leaves_neither_out_nor_partial(tmp_path, monkeypatch, error):
    real = tables_module.ShardWriter

    class Failing(real):
        def write(self, sample):
            if self.count >= 30:
                raise error("interrupted")
            super().write(sample)

    monkeypatch.setattr(tables_module, "ShardWriter", Failing)
    with pytest.raises(error):
        pack_tables([source("t", COLS, numbered(200))], tmp_path / "out", rows_per_member=10)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_a_stale_partial_folder_is_replaced(tmp_path):
    (tmp_path / "out.partial" / "train").mkdir(parents=True)
    (tmp_path / "out.partial" / "train" / "shard-000099.tar").write_bytes(b"junk")
    pack_tables([source("t", COLS, numbered(50))], tmp_path / "out", val_fraction=0.0)
    assert [p.name for p in (tmp_path / "out" / "train").iterdir()] == ["shard-000000.tar"]


def test_wide_tables_pack(tmp_path):
    r = random.Random(0)
    cols = [f"feature_{i}" for i in range(300)]
    rows = [[f"{r.random():.3f}" for _ in cols] + ["ab"[i % 2]] for i in range(40)]
    info = pack_tables([source("wide", [*cols, "y"], rows, "y")], tmp_path / "out", val_fraction=0.1)
    assert info["tables"]["wide"]["columns"] == 300 and info["tables"]["wide"]["types"] == {"numeric": 300}
    assert len(samples(tmp_path / "out")[0]["r"]) == 300


def test_fit_schema_fits_every_row_and_refuses_bad_ones():
    rows = [[f"{i}.5", "x", "ab"[i % 2]] for i in range(30)]
    s = fit_schema(source("t", COLS, rows, "y"))
    assert s.rows == {"train": 30} and s.columns[0].median == pytest.approx(15.0)
    with pytest.raises(ModalzooError, match=r"table t: 1 x ragged row \(2 cells, header has 3\), 1 x missing label"):
        fit_schema(source("t", COLS, [*rows, ["1", "x"], ["2", "y", "NA"]], "y"))


# --- readers --------------------------------------------------------------------------------------------
CSV_ROWS = [["name", "score", "colour"]] + [[f"r{i}", f"{i * 1.5}", "ab"[i % 2]] for i in range(30)]


@pytest.mark.parametrize("delimiter,suffix", [(";", ".csv"), ("\t", ".tsv"), ("\t", ".csv"), ("|", ".csv"),
                                              (",", ".csv")])
def test_delimiters_are_sniffed(tmp_path, delimiter, suffix):
    path = tmp_path / f"scores{suffix}"
    path.write_text("".join(delimiter.join(r) + "\n" for r in CSV_ROWS))
    t = file_source(path)
    assert t.name == "scores" and t.columns == ["name", "score", "colour"]
    assert list(t.rows()) == CSV_ROWS[1:]


def test_csv_quotes_blank_lines_and_header_spaces(tmp_path):
    (tmp_path / "q.csv").write_text('a , b\n"x, y",1\n\n"he said ""hi""",2\n')
    t = csv_source(tmp_path / "q.csv")
    assert t.columns == ["a", "b"] and list(t.rows()) == [["x, y", "1"], ['he said "hi"', "2"]]


def test_a_non_utf8_csv_is_one_message_naming_encoding(tmp_path, capsys):
    (tmp_path / "lat.csv").write_bytes(b"name,v\n" + "café,1\nnaïve,2\n".encode("latin-1"))
    assert main(["data", "pack-table", str(tmp_path / "lat.csv"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "lat.csv is not utf-8 text" in err and "--encoding latin-1" in err
    assert main(["data", "pack-table", str(tmp_path / "lat.csv"), "--out", str(tmp_path / "out"),
                 "--encoding", "latin-1", "--val-fraction", "0"]) == 0
    assert {s["r"]["name"] for s in samples(tmp_path / "out")} == {"café", "naïve"}


def test_a_bad_byte_after_the_sniffed_head_is_the_same_message_and_cleans_up(tmp_path, capsys):
    body = "".join(f"abc{i},{i}\n" for i in range(20000)).encode() + "café,2\n".encode("latin-1")
    (tmp_path / "big.csv").write_bytes(b"name,v\n" + body)
    assert main(["data", "pack-table", str(tmp_path / "big.csv"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "big.csv is not utf-8 text" in err and "--encoding latin-1" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_a_non_utf8_jsonl_is_the_same_message(tmp_path, capsys):
    (tmp_path / "t.jsonl").write_bytes(b'{"a": 1}\n' + '{"a": "café"}\n'.encode("latin-1"))
    assert main(["data", "pack-table", str(tmp_path / "t.jsonl"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "t.jsonl is not utf-8 text" in err and "--encoding latin-1" in err and err.count("\n") == 1


def test_the_decoding_error_names_the_right_line(tmp_path):
    body = "".join(f"abc{i},{i}\n" for i in range(20000)).encode() + "café,2\n".encode("latin-1")
    (tmp_path / "big.csv").write_bytes(b"name,v\n" + body)
    with pytest.raises(ModalzooError, match="line 20002"):
        list(csv_source(tmp_path / "big.csv").rows())


def test_a_byte_order_mark_is_not_part_of_the_first_column_name(tmp_path):
    (tmp_path / "bom.csv").write_bytes("\ufeffchurn,age\n".encode() + b"".join(
        f"{'yes' if i % 2 else 'no'},{20 + 3 * i}\n".encode() for i in range(30)))
    assert csv_source(tmp_path / "bom.csv").columns == ["churn", "age"]


def test_stratify_with_a_numeric_label_still_makes_a_validation_split(tmp_path):
    rows = [[f"{i * 0.37:.2f}", f"{i * 1.1:.2f}"] for i in range(200)]
    info = pack_tables([source("r", ["x", "y"], rows, "y")], tmp_path / "out", val_fraction=0.2, stratify=True)
    assert info["tables"]["r"]["label_type"] == "regression"
    assert 20 <= info["rows"]["validation"] <= 60


def test_jsonl_columns_are_the_union_of_keys_in_order(tmp_path):
    (tmp_path / "j.jsonl").write_text('{"a": 1, "b": "x"}\n\n{"a": 2, "c": true, "d": [1, 2]}\n{"b": null}\n')
    t = jsonl_source(tmp_path / "j.jsonl")
    assert t.columns == ["a", "b", "c", "d"]
    assert list(t.rows()) == [[1, "x", None, None], [2, None, True, "[1, 2]"], [None, None, None, None]]


def test_parquet_tables(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import datetime

    import pyarrow.parquet as pq
    n = 50
    table = pa.table({"age": [20 + 2 * i for i in range(n)], "score": [i * 0.5 if i % 7 else None for i in range(n)],
                      "colour": ["red", "green", "blue", "red", "green"] * 10,
                      "day": [datetime.date(2020, 1 + i % 12, 1 + i % 28) for i in range(n)],
                      "y": ["yes" if i % 3 else "no" for i in range(n)]})
    pq.write_table(table, tmp_path / "people.parquet", row_group_size=16)
    t = file_source(tmp_path / "people.parquet", "y")
    assert t.columns == ["age", "score", "colour", "day", "y"]
    first = next(iter(t.rows()))
    assert first == [20, None, "red", "2020-01-01", "no"]
    info = pack_tables([t], tmp_path / "out", val_fraction=0.1)
    assert sum(info["rows"].values()) == n
    types = {c.name: c.type for c in load_schemas(tmp_path / "out")["people"].columns}
    assert types == {"age": "numeric", "score": "numeric", "colour": "categorical", "day": "date"}


def test_dataframes_dicts_and_arrays(tmp_path):
    pd = pytest.importorskip("pandas")
    import numpy as np
    frame = pd.DataFrame({"v": [0.5, np.nan, 2.5, 3.5] * 10, "c": ["a", None, "b", "c"] * 10,
                          "when": pd.to_datetime(["2020-01-05", None, "2021-02-03", "2022-03-04"] * 10)})
    names, cols = table_data_frame_columns(frame)
    assert names == ["v", "c", "when"] and cols[0][1] is None and cols[1][1] is None and cols[2][1] is None
    info = pack_dataframe(frame, tmp_path / "out", name="f", y=[0, 1] * 20, val_fraction=0.0)
    assert info["tables"]["f"]["label"] == "label" and info["tables"]["f"]["classes"] == ["0", "1"]
    rows = samples(tmp_path / "out")
    assert sum(r["r"]["v"] is None for r in rows) == 10 and {r["y"] for r in rows} == {0, 1}
    assert {r["r"]["when"][:10] for r in rows if r["r"]["when"]} == {"2020-01-05", "2021-02-03", "2022-03-04"}
    t = frame_source({"a": [1, 2], "b": ["x", "y"]}, "d")
    assert t.columns == ["a", "b"] and list(t.rows()) == [[1, "x"], [2, "y"]]
    t = frame_source(np.array([[1.5, 2.0], [3.0, 4.0]]), "arr", y=np.array([1, 0]))
    assert t.columns == ["c0", "c1", "label"] and list(t.rows()) == [[1.5, 2.0, 1], [3.0, 4.0, 0]]
    assert frame_source(np.zeros((2, 2)), columns=["p", "q"]).columns == ["p", "q"]
    with pytest.raises(ModalzooError, match="X has 2 rows but y has 3"):
        frame_source({"a": [1, 2]}, y=[1, 2, 3])
    with pytest.raises(ModalzooError, match="already has a column 'a'"):
        frame_source({"a": [1, 2]}, label="a", y=[1, 2])
    with pytest.raises(ModalzooError, match="different lengths"):
        frame_source({"a": [1, 2], "b": [1]})
    with pytest.raises(ModalzooError, match="must be a table"):
        frame_source(np.zeros(3))
    with pytest.raises(ModalzooError, match="3 column names for 2 columns"):
        frame_source(np.zeros((2, 2)), columns=["a", "b", "c"])


def table_data_frame_columns(frame):
    from modalzoo.modalities.tabular.sources import frame_columns
    return frame_columns(frame)


def test_file_source_errors_and_names(tmp_path):
    with pytest.raises(ModalzooError, match="no such file"):
        file_source(tmp_path / "nope.csv")
    (tmp_path / "t.xlsx").write_text("x")
    with pytest.raises(ModalzooError, match=r"expected a \.csv, \.tsv, \.jsonl or \.parquet table"):
        file_source(tmp_path / "t.xlsx")
    (tmp_path / "blank.csv").write_text("\n\n")
    with pytest.raises(ModalzooError, match="blank.csv is empty"):
        file_source(tmp_path / "blank.csv")
    assert table_name(Path("my data (2021).csv")) == "my_data_2021" and table_name(Path("...csv")) == "table"


# --- the command ----------------------------------------------------------------------------------------
def write_churn(path: Path, n: int = 80) -> Path:
    r = random.Random(0)
    lines = ["customer_id,age,zip,plan,churned"]
    for i in range(n):
        lines.append(f"{i},{r.randint(18, 80)},{r.choice(['10001', '10002', '94105'])},{r.choice(['a', 'b'])},"
                     f"{'yes' if i % 3 else 'no'}")
    lines += ["1,2", "99,30,10001,a,NA"]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_cli_pack_table(tmp_path, capsys):
    csv = write_churn(tmp_path / "churn.csv")
    assert main(["data", "pack-table", str(csv), "--out", str(tmp_path / "out"), "--label", "churned",
                 "--stratify", "true", "--val-fraction", "0.25", "--column-types", "{zip: text}"]) == 0
    out = capsys.readouterr().out
    assert "packed 1 table(s) into" in out and "2 skipped" in out
    assert "label churned (binary: no, yes)" in out and "dropped: customer_id (an id-like name)" in out
    assert "skipped: {'ragged row (2 cells, header has 5)': 1, 'missing label': 1}" in out
    info = json.loads((tmp_path / "out" / "info.json").read_text())
    assert info["stratified"] is True and info["tables"]["churn"]["types"]["text"] == 1
    assert sum(info["rows"].values()) == 80
    assert main(["data", "pack-table", str(csv), "--out", str(tmp_path / "out")]) == 2
    assert "not empty" in capsys.readouterr().err


def test_cli_label_typo_and_several_files(tmp_path, capsys):
    csv = write_churn(tmp_path / "churn.csv")
    assert main(["data", "pack-table", str(csv), "--out", str(tmp_path / "o"), "--label", "churn"]) == 2
    assert "did you mean 'churned'" in capsys.readouterr().err
    (tmp_path / "more.tsv").write_text("a\tb\n" + "".join(f"{i * 0.5}\t{'xy'[i % 2]}\n" for i in range(30)))
    assert main(["data", "pack-table", str(csv), str(tmp_path / "more.tsv"), "--out", str(tmp_path / "o")]) == 0
    assert set(load_schemas(tmp_path / "o")) == {"churn", "more"}


def test_packer_is_registered_with_its_example():
    assert PackTable.example.startswith("modalzoo data pack-table")
    with pytest.raises(ValueError, match="max_categories"):
        PackTable(PackTableConfig(max_categories=1))
    with pytest.raises(ModalzooError, match="at least one table"):
        PackTable(PackTableConfig()).pack([], Path("unused"))


def test_table_source_rows_is_read_once_per_pass(tmp_path):
    calls = []

    def rows():
        calls.append(1)
        yield from numbered(30)
    pack_tables([TableSource("t", COLS, rows)], tmp_path / "out")
    assert len(calls) == 2
