"""Column type inference (`columns.py`): each rule (numeric, integer levels, binary, categorical, text, date,
id by name / row numbers / distinct strings, constant), overrides, mostly-numeric columns whose stray strings
are missing, the missing tokens, the robust statistics, and the schema file."""

from __future__ import annotations

import math
import random

import pytest

from modalzoo.errors import ModalzooError
from modalzoo.modalities.tabular.columns import (
    CLIP,
    Column,
    ColumnStats,
    TableSchema,
    infer,
    missing,
    number,
    robust,
    text,
)


def col(name: str, values, **kw) -> Column:
    stats = ColumnStats()
    for v in values:
        stats.add(v)
    return infer(name, stats, **kw)


# --- values ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [None, float("nan"), "", "  ", "NA", "na", "N/A", "nan", "NaN", "null", "None",
                                   "?", " ? ", "<NA>", "NaT"])
def test_missing_tokens(value):
    assert missing(value)


@pytest.mark.parametrize("value", [0, 0.0, "0", "no", False, "-", "none of them", "n", "a"])
def test_values_that_are_not_missing(value):
    assert not missing(value)


def test_number_reads_finite_numbers_only():
    assert number("3") == 3.0 and number(" 2.5 ") == 2.5 and number(7) == 7.0 and number("1,234") == 1234.0
    assert number("-1e3") == -1000.0
    for no in (True, False, None, "abc", "inf", "-inf", "nan", float("inf"), float("nan"), "2020-01-05", ""):
        assert number(no) is None, no


def test_a_decimal_comma_is_not_read_as_a_thousands_separator():
    assert number("2,5") in (None, 2.5) and number("0,5") in (None, 0.5)
    assert number("1,234,567") == 1234567.0


def test_text_is_the_display_form():
    assert text(3.0) == "3" and text(2.5) == "2.5" and text(True) == "yes" and text(False) == "no"
    assert text("  red ") == "red" and text(12) == "12"


# --- inference rules ------------------------------------------------------------------------------------
def shuffled(values, seed=0):
    values = list(values)
    random.Random(seed).shuffle(values)
    return values


@pytest.mark.parametrize("name,values,kind", [
    ("score", [f"{i * 0.37:.2f}" for i in range(40)], "numeric"),                 # many values
    ("ratio", ["0.5", "1.5", "2.5"] * 10, "numeric"),                              # few, but fractional
    ("count", [str(3 * (i % 15)) for i in range(60)], "numeric"),                  # 15 integer levels > 10
    ("rooms", [str(i % 10) for i in range(60)], "categorical"),                    # 10 integer levels
    ("stars", ["1", "2", "3", "4"] * 10, "categorical"),
    ("smoker", ["yes", "no", "no"] * 10, "binary"),
    ("flag", [0, 1, 1] * 10, "binary"),
    ("member", [True, False] * 10, "binary"),
    ("colour", ["red", "green", "blue"] * 10, "categorical"),
    ("note", [f"the quick brown fox number {i}" for i in range(60)], "text"),      # long distinct strings
    ("word", [f"w{i % 60}" for i in range(120)], "text"),                          # 60 > max_categories=50
    ("visit", [f"202{i % 4}-0{1 + i % 9}-1{i % 10}" for i in range(30)], "date"),
    ("stamp", [f"2021-03-1{i % 10}T10:2{i % 10}:00" for i in range(30)], "date"),
    ("id", [str(7 * i) for i in range(30)], "id"),                                 # by name
    ("user_id", [str(7 * i) for i in range(30)], "id"),
    ("Unnamed: 0", [str(7 * i) for i in range(30)], "id"),
    ("index", [str(7 * i) for i in range(30)], "id"),
    ("", [str(7 * i) for i in range(30)], "id"),                                  # no name: R's row names
    ("n", shuffled(str(i + 1) for i in range(30)), "id"),                          # row numbers
    ("code", [f"X{i:04d}" for i in range(30)], "id"),                              # a distinct string per row
    ("k", ["const"] * 20, "constant"),
    ("empty", ["NA", None, ""] * 5, "constant"),
])
def test_inference_rules(name, values, kind):
    assert col(name, values).type == kind


@pytest.mark.parametrize("name,values,kind", [
    ("paid", [str(7 * i) for i in range(30)], "numeric"),     # "id" inside a word is not an id-like name
    ("valid", [str(7 * i) for i in range(30)], "numeric"),
    ("id", ["a", "b", "c", "b"] * 5, "categorical"),          # an id-like name holding a few strings
    ("n", [str(i + 1) for i in range(19)], "numeric"),        # too few rows to call them row numbers
    ("n", [str(2 * i) for i in range(30)], "numeric"),        # distinct, but not consecutive
    ("code", [f"X{i:04d}" for i in range(19)], "categorical"),  # too few rows for the distinct-string rule
])
def test_near_misses_of_the_id_rules(name, values, kind):
    assert col(name, values).type == kind


def test_levels_boundary_follows_max_levels():
    values = [str(i % 12) for i in range(60)]
    assert col("x", values).type == "numeric"
    assert col("x", values, max_levels=12).type == "categorical"


def test_categories_boundary_follows_max_categories():
    values = [f"w{i % 30}" for i in range(90)]
    assert col("w", values).type == "categorical"
    assert col("w", values, max_categories=20).type == "text"


def test_categories_rank_most_frequent_first_with_counts():
    c = col("colour", ["red"] * 5 + ["blue"] * 9 + ["green"] * 5 + ["NA"] * 2)
    assert c.categories == ["blue", "green", "red"] and c.counts == [9, 5, 5]       # ties: alphabetical
    assert c.missing_rate == pytest.approx(2 / 21, abs=1e-4)


def test_binary_values_are_display_forms():
    assert sorted(col("member", [True, False, True] * 4).categories) == ["no", "yes"]
    assert sorted(col("flag", [0.0, 1.0] * 4).categories) == ["0", "1"]


def test_date_statistics_are_of_the_year():
    c = col("visit", ["2010-01-01", "2012-06-30", "2014-12-31", "NA"])
    assert c.type == "date" and c.median == 2012.0 and c.scale > 0 and c.missing_rate == 0.25


def test_dropped_columns_say_why():
    assert col("id", [str(i) for i in range(30)]).reason == "an id-like name"
    assert col("n", [str(i) for i in range(30)]).reason.startswith("row numbers")
    assert col("k", ["x"] * 5).reason == "one value" and col("e", [None] * 5).reason == "no values"
    assert "nearly every row" in col("code", [f"X{i}" for i in range(30)]).reason


# --- mostly numeric -------------------------------------------------------------------------------------
def test_mostly_numeric_reads_stray_strings_as_missing():
    values = [f"{i * 0.5:.1f}" for i in range(99)] + ["unknown"]
    c = col("x", values)
    assert c.type == "numeric" and "1 non-numeric values read as missing" in c.reason
    assert c.missing_rate == pytest.approx(0.01)
    assert c.median == pytest.approx(24.5)                               # the stray string is no number


def test_stray_strings_and_missing_tokens_both_count_as_missing():
    values = [str(i * 1.5) for i in range(96)] + ["x", "NA", None, ""]
    c = col("x", values)
    assert c.type == "numeric" and c.missing_rate == pytest.approx(0.04)


def test_more_than_five_percent_strings_is_not_numeric():
    values = [f"{i * 0.5:.1f}" for i in range(90)] + ["x"] * 10
    assert col("x", values).type != "numeric"


def test_a_few_strings_among_few_numbers_are_categorical():
    c = col("size", ["1", "2", "small", "large"] * 6)
    assert c.type == "categorical" and "mixed" in c.reason


# --- overrides ------------------------------------------------------------------------------------------
def test_overrides_win_over_inference():
    numbers = [f"{i * 0.37:.2f}" for i in range(40)]
    c = col("zip", numbers, override="categorical")
    assert c.type == "categorical" and c.reason == "given" and len(c.categories) == 40
    assert col("colour", ["red", "green", "blue"] * 5, override="text").type == "text"
    assert col("colour", ["red", "green", "blue"] * 5, override="id").type == "id"
    assert col("id", [str(i) for i in range(30)], override="numeric").type == "numeric"
    assert col("n", [str(i) for i in range(30)], override="numeric").median == pytest.approx(14.5)


def test_impossible_overrides_are_errors_naming_the_column():
    with pytest.raises(ModalzooError, match=r"column_types\['x'\] = 'float': expected one of numeric, binary"):
        col("x", ["1", "2"], override="float")
    with pytest.raises(ModalzooError, match="column 'c' is given as numeric but holds no number"):
        col("c", ["red", "blue"], override="numeric")
    with pytest.raises(ModalzooError, match="column 'c' is given as binary but has 3 values"):
        col("c", ["red", "blue", "green"], override="binary")


def test_a_date_override_on_non_dates_is_a_clear_error():
    with pytest.raises(ModalzooError, match="'c'"):
        col("c", ["red", "blue", "green"], override="date")


# --- large columns (beyond ColumnStats' cap of 5000 distinct values) ------------------------------------
def test_a_unique_key_column_of_many_rows_is_an_id():
    assert col("customer", [f"C{i:05d}" for i in range(6000)]).type == "id"


def test_row_numbers_of_many_rows_are_an_id():
    assert col("n", [str(i) for i in range(6000)]).type == "id"


def test_the_distinct_value_cap_bounds_memory_and_reads_as_text():
    stats = ColumnStats(cap=10)
    for i in range(40):
        stats.add(f"the word {i} and more")
    assert len(stats.values) == 10 and stats.overflow
    c = infer("note", stats)
    assert c.type == "text" and c.reason == "11+ distinct strings"


# --- statistics -----------------------------------------------------------------------------------------
def test_robust_median_and_iqr_scale():
    med, scale = robust([1.0, 2.0, 3.0, 4.0, 5.0, 100.0])
    assert med == 3.5
    assert scale == pytest.approx((4.75 - 2.25) / 1.349)       # numpy-style linear quantiles: an outlier is ignored


def test_robust_scale_falls_back_to_the_sd_then_one():
    med, scale = robust([0.0] * 10 + [10.0])                    # IQR 0
    mean = 10 / 11
    sd = math.sqrt((10 * mean ** 2 + (10 - mean) ** 2) / 10)
    assert med == 0.0 and scale == pytest.approx(sd)
    assert robust([4.0, 4.0, 4.0]) == (4.0, 1.0) and robust([2.0]) == (2.0, 1.0)


def test_numeric_statistics_ignore_missing_values():
    c = col("x", ["1.5", "2", "3", "NA", None, "", "4", "50"] * 3)
    expected = robust([1.5, 2.0, 3.0, 4.0, 50.0] * 3)
    assert c.type == "numeric"
    assert (c.median, c.scale) == pytest.approx(expected) and c.missing_rate == pytest.approx(3 / 8)


def test_scaled_is_robust_and_clipped():
    c = Column("x", "numeric", median=10.0, scale=2.0)
    assert c.scaled(14.0) == 2.0 and c.scaled(6.0) == -2.0
    assert c.scaled(1e9) == CLIP == 5.0 and c.scaled(-1e9) == -CLIP


# --- the schema file ------------------------------------------------------------------------------------
def test_schema_round_trips_and_lists_kept_and_dropped(tmp_path):
    cols = [col("id", [str(i) for i in range(30)]), col("age", [str(18 + 2 * i) for i in range(30)]),
            col("k", ["x"] * 30), col("colour", ["red", "blue"] * 15)]
    schema = TableSchema("people", cols, "y", "binary", ["no", "yes"], rows={"train": 30})
    schema.save(tmp_path / "people.json")
    back = TableSchema.load(tmp_path / "people.json")
    assert back == schema
    assert [c.name for c in back.kept] == ["age", "colour"]
    assert back.dropped() == {"id": "an id-like name", "k": "one value"}


def test_a_file_that_is_not_a_schema_is_a_clear_error(tmp_path):
    (tmp_path / "bad.json").write_text('{"name": "x"}')
    with pytest.raises(ModalzooError, match="bad.json: not a table schema"):
        TableSchema.load(tmp_path / "bad.json")
    (tmp_path / "worse.json").write_text("{oops")
    with pytest.raises(ModalzooError, match="not a table schema"):
        TableSchema.load(tmp_path / "worse.json")
