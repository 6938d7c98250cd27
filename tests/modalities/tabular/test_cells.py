"""Rows -> cells -> batch tensors (`cells.py`): each cell kind (a scaled and clipped number, spelled digits,
a date's three cells, missing, seen and unseen categories, text cut to its cap), labels, collation and its
padding, the eval / train finishers under ``max_cells``; the `table` dataset's loader (shapes, skipped rows,
the wide-table warning, a run's saved schemas) and the `table_cells` embedding's view of the cells."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import pytest
import torch

from conftest import sibling
from modalzoo.errors import ModalzooError
from modalzoo.modalities.tabular.cells import (
    CELL_KEYS,
    MISSING,
    NUMBER,
    TOKENS,
    CellFinisher,
    TableField,
    _digits,
    collate_rows,
    readable,
    row_cells,
    row_label,
    select_cells,
)
from modalzoo.modalities.tabular.columns import Column, TableSchema
from modalzoo.modalities.tabular.embedding import TableEmbedding, TableEmbeddingConfig
from modalzoo.registry import DATASETS

td = sibling(__file__, "table_data")
ROW = {"age": "60", "colour": "green", "income": "12.5", "visit": "2021-03-06", "note": "likes long walks 3",
       "plan": "2"}


def cells(row: dict, table: str = "people", st=None):
    st = st or td.state()
    return row_cells(row, st.schemas[table], st)


def column(name: str, table: str = "people") -> Column:
    return next(c for c in td.schemas()[table].columns if c.name == name)


# --- cells ----------------------------------------------------------------------------------------------
def test_a_row_is_one_cell_per_kept_column_in_schema_order():
    st = td.state()
    got = cells(ROW, st=st)
    names = ["age", "colour", "income", "visit year", "visit month", "visit weekday", "note", "plan"]
    assert [c.name for c in got] == [st.tokens(n, 8) for n in names]
    assert [c.kind for c in got] == [NUMBER, TOKENS, NUMBER, NUMBER, TOKENS, TOKENS, TOKENS, TOKENS]
    cols = ["age", "colour", "income", "visit", "visit", "visit", "note", "plan"]
    assert [c.col for c in got] == [st.column_index[("people", n)] for n in cols]


def test_numbers_are_robustly_scaled_and_clipped():
    age = column("age")
    c = cells(ROW)[0]
    assert c.kind == NUMBER and c.value == () and c.cat == -1
    assert c.num == pytest.approx((60 - age.median) / age.scale) and c.target == c.num
    assert cells({**ROW, "age": "1e9"})[0].num == 5.0 and cells({**ROW, "age": -1e9})[0].num == -5.0
    assert cells({**ROW, "age": 60})[0].num == c.num                                # JSON numbers too


@pytest.mark.parametrize("x,spelled", [(60, "6 0"), (2.5, "2 . 5"), (-0.125, "- 0 . 1 2 5"), (1234.5, "1 2 3 4"),
                                       (123456, "1 . 2 3 5 e + 0 5")])
def test_digits_spell_four_significant_digits(x, spelled):
    assert _digits(x) == spelled


def test_digits_mode_makes_number_tokens_and_keeps_the_scaled_target():
    st = td.state(numbers="digits")
    c = cells({**ROW, "age": "60"}, st=st)[0]
    assert c.kind == TOKENS and c.value == st.tokens("6 0", 16) and c.num == 0.0 and c.cat == -1
    assert c.target == pytest.approx(column("age").scaled(60.0))
    assert cells(ROW, st=st)[3].kind == NUMBER                                     # a date's year stays a number


@pytest.mark.parametrize("value", ["2021-03-06", "2021-03-06T10:20:00", "2021-03-06 10:20", " 2021-03-06 "])
def test_a_date_is_three_cells(value):
    st = td.state()
    year, month, weekday = cells({**ROW, "visit": value}, st=st)[3:6]
    visit = column("visit")
    assert year.kind == NUMBER and year.num == pytest.approx(visit.scaled(2021.0))
    assert month.kind == TOKENS and month.value == st.tokens("march", 16)
    assert weekday.kind == TOKENS and weekday.value == st.tokens("saturday", 16)    # 2021-03-06 was a Saturday
    assert {year.col, month.col, weekday.col} == {st.column_index[("people", "visit")]}
    assert all(c.cat == -1 for c in (year, month, weekday))


@pytest.mark.parametrize("value", [None, "NA", "", "2021-02-30", "not a date"])
def test_a_missing_or_impossible_date_is_three_missing_cells(value):
    got = cells({**ROW, "visit": value})[3:6]
    assert [c.kind for c in got] == [MISSING] * 3 and all(c.value == () for c in got)


def test_a_date_without_leading_zeros_is_read():
    st = td.state()
    assert [c.kind for c in cells({**ROW, "visit": "2021-3-6"}, st=st)[3:6]] == [NUMBER, TOKENS, TOKENS]


@pytest.mark.parametrize("value", [None, "NA", "?", "", " n/a ", float("nan"), "not a number"])
def test_missing_values_are_missing_cells_under_their_column_name(value):
    st = td.state()
    c = cells({**ROW, "age": value}, st=st)[0]
    assert c.kind == MISSING and c.name == st.tokens("age", 8) and c.col == st.column_index[("people", "age")]
    assert c.value == () and c.num == 0.0 and c.cat == -1 and math.isnan(c.target)
    assert (cells({**ROW, "colour": value}, st=st)[1].kind == MISSING) == (value != "not a number")


def test_an_absent_column_is_missing_and_an_unknown_one_is_ignored():
    got = cells({k: v for k, v in ROW.items() if k != "income"})
    assert got[2].kind == MISSING and len(got) == 8
    assert cells({**ROW, "shoe size": "44", "id": "7"}) == cells(ROW)


def test_categories_index_their_column_and_unseen_ones_are_just_tokens():
    st = td.state()
    colour, plan = column("colour"), column("plan")
    c = cells(ROW, st=st)[1]
    assert c.cat == colour.categories.index("green") and c.value == st.tokens("green", 16)
    unseen = cells({**ROW, "colour": "purple"}, st=st)[1]
    assert unseen.kind == TOKENS and unseen.cat == -1 and unseen.value == st.tokens("purple", 16)
    for v in ("2", 2, 2.0):                                                        # CSV text, JSON int or float
        assert cells({**ROW, "plan": v}, st=st)[7].cat == plan.categories.index("2")


def test_text_is_cut_at_max_value_tokens():
    st = td.state(max_value_tokens=3)
    note = cells({**ROW, "note": "likes long walks quiet neighbour here plays chess"}, st=st)[6]
    assert note.kind == TOKENS and len(note.value) == 3 and note.cat == -1


def test_column_names_read_underscores_and_dots_as_spaces():
    assert readable("monthly_charges.usd") == "monthly charges usd" and readable(" a__b ") == "a b"
    schema = TableSchema("bill", [Column("monthly_charges.usd", "numeric", median=1.0, scale=2.0)])
    st = td.state(bill=schema)
    c = row_cells({"monthly_charges.usd": 3}, schema, st)[0]
    assert c.name == st.tokens("monthly charges usd", 8) and c.num == 1.0


def test_row_labels():
    people = td.schemas()["people"]                                                # binary: no, yes
    assert row_label("yes", people) == (1, pytest.approx(float("nan"), nan_ok=True))
    assert row_label("no", people)[0] == 0 and row_label("maybe", people)[0] == -100
    assert row_label(None, people)[0] == -100 and row_label("NA", people)[0] == -100
    reg = TableSchema("r", [], "y", "regression", label_median=10.0, label_scale=4.0)
    assert row_label("18", reg) == (-100, 2.0) and math.isnan(row_label("x", reg)[1])
    assert row_label("yes", TableSchema("u", []))[0] == -100                      # a table without a label


# --- collation and finishers ----------------------------------------------------------------------------
def test_collate_pads_every_key_as_documented():
    st = td.state()
    rows = td.rows_of(st, "people", [ROW], ["yes"]) + td.rows_of(st, "pets", [{"species": "cat", "weight": "4"}])
    b = collate_rows(rows)
    assert b["cell_kind"].shape == (2, 8) and set(CELL_KEYS) <= set(b)
    assert all(b[k].shape[:2] == (2, 8) for k in CELL_KEYS)
    assert b["name_ids"].dtype == b["value_ids"].dtype == b["cell_col"].dtype == torch.long
    assert b["cell_num"].dtype == b["cell_target"].dtype == torch.float32
    pad = slice(3, None)                                                          # pets: 3 cells
    assert (b["cell_kind"][1, pad] == 0).all() and (b["cell_col"][1, pad] == -1).all()
    assert (b["cell_cat"][1, pad] == -1).all() and torch.isnan(b["cell_target"][1, pad]).all()
    assert (b["name_ids"][1, pad] == 0).all() and (b["value_ids"][1, pad] == 0).all()
    assert (b["cell_num"][1, pad] == 0).all()
    assert b["cell_kind"][1, 2] == MISSING                                        # indoor: absent
    assert b["label"].tolist() == [1, -100] and b["table_index"].tolist() == [0, 1]
    assert torch.isnan(b["label_value"]).all()
    first = rows[0].cells[0]
    assert b["name_ids"][0, 0, : len(first.name)].tolist() == list(first.name)
    assert (b["name_ids"][0, 0, len(first.name):] == 0).all()
    assert collate_rows(rows, max_cells=4)["cell_kind"].shape == (2, 4)


def eq(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal, NaN included (cell_target is NaN off numeric cells)."""
    return a.shape == b.shape and torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num()) \
        if a.is_floating_point() else torch.equal(a, b)


def identities(batch: dict, r: int) -> list[tuple]:
    """The real cells of row ``r`` as comparable tuples."""
    real = batch["cell_kind"][r] > 0
    return sorted((tuple(batch["name_ids"][r, j].tolist()), tuple(batch["value_ids"][r, j].tolist()),
                   int(batch["cell_kind"][r, j]), float(batch["cell_num"][r, j]), int(batch["cell_col"][r, j]))
                  for j in real.nonzero()[:, 0].tolist())


def test_select_cells_reorders_every_cell_key():
    _, b = td.collated(n_people=2, n_pets=0)
    order = torch.tensor([[7, 0, 3], [1, 1, 2]])
    out = select_cells(b, order)
    for k in CELL_KEYS:
        for r in range(2):
            assert eq(out[k][r], b[k][r][order[r]])
    assert out["label"] is b["label"]


def test_the_eval_finisher_keeps_the_first_max_cells_in_schema_order():
    _, b = td.collated()
    out = CellFinisher(5, train=False)(dict(b), td.gen(0))
    for k in CELL_KEYS:
        assert eq(out[k], b[k][:, :5]), k
    same = CellFinisher(8, train=False)(dict(b), td.gen(0))
    assert all(eq(same[k], b[k]) for k in CELL_KEYS)


def test_the_train_finisher_keeps_a_random_subset_of_real_cells():
    _, b = td.collated(n_people=8, n_pets=4)                                     # people: 8 cells, pets: 3
    picks = []
    for seed in range(6):
        out = CellFinisher(5, train=True)(dict(b), td.gen(seed))
        assert out["cell_kind"].shape == (12, 5)
        for r in range(8):
            kept = identities(out, r)
            assert len(kept) == 5 and len(set(kept)) == 5 and set(kept) <= set(identities(b, r))
        for r in range(8, 12):                                                   # a narrower row keeps them all
            assert identities(out, r) == identities(b, r) and (out["cell_kind"][r, 3:] == 0).all()
        picks.append([identities(out, r) for r in range(8)])
    assert len({json.dumps(p) for p in picks}) == 6                               # differs across seeds
    again = CellFinisher(5, train=True)(dict(b), td.gen(3))
    assert all(eq(again[k], CellFinisher(5, train=True)(dict(b), td.gen(3))[k]) for k in CELL_KEYS)
    chosen = {c for p in picks for row in p for c in row}
    assert chosen == {c for r in range(8) for c in identities(b, r)}             # not a fixed prefix


def test_the_train_finisher_shuffles_when_nothing_is_cut():
    _, b = td.collated(n_people=4, n_pets=4)
    out = CellFinisher(64, train=True)(dict(b), td.gen(1))
    assert out["cell_kind"].shape == b["cell_kind"].shape
    assert all(identities(out, r) == identities(b, r) for r in range(8))
    assert any(not torch.equal(out["cell_col"][r], b["cell_col"][r]) for r in range(4))
    real = out["cell_kind"] > 0
    assert (real.long().diff(dim=1) <= 0).all()                                   # padding stays last


# --- the state ------------------------------------------------------------------------------------------
def test_the_state_names_every_column_and_pickles():
    st = td.state()
    assert st.tables == ["people", "pets"] and len(st.columns) == 9
    assert st.columns[st.column_index[("pets", "indoor")]] == ("pets", "indoor")
    st.tokens("green", 16)
    back = pickle.loads(pickle.dumps(st))
    assert back._cache == {} and back.tokens("green", 16) == st.tokens("green", 16)
    assert back.column_index == st.column_index


def test_candidates_are_the_first_categories_as_cells_show_them():
    st = td.state()
    col = st.column_index[("pets", "species")]
    cats = column("species", "pets").categories
    ids = st.candidates(col, 2)
    assert ids.shape[0] == 2
    for j, v in enumerate(cats[:2]):
        seq = st.tokens(v, 16)
        assert ids[j, : len(seq)].tolist() == list(seq) and (ids[j, len(seq):] == 0).all()
    assert st.candidates(col, 50).shape[0] == len(cats) == 4


def test_the_field_decodes_rows_and_refuses_others():
    st, f = td.state(), TableField()
    row = f.decode({"json": json.dumps({"t": "pets", "r": {"species": "dog"}, "y": "yes"}).encode()}, st)
    assert row.table == 1 and row.label == 1 and len(row.cells) == 3
    with pytest.raises(ValueError, match="no schema here"):
        f.decode({"json": json.dumps({"t": "other", "r": {}})}, st)
    for bad in ("[1]", '{"t": "pets", "r": [1]}', '{"t": "pets"}'):
        with pytest.raises(ValueError, match="not a table row"):
            f.decode({"json": bad}, st)


# --- the dataset ----------------------------------------------------------------------------------------
def dataset(path: Path, **cfg):
    return DATASETS.build({"name": "table", "path": str(path), "num_workers": 0,
                           "tokenizer": {"name": "wordpiece", "vocab_size": td.V}, **cfg})


def test_the_loader_yields_consistent_batches_and_counts_skipped_rows(tmp_path):
    path = td.write(tmp_path / "t", extra_train=td.bad_rows())
    info = json.loads((path / "info.json").read_text())
    data = dataset(path, max_cells=6)
    with pytest.warns(UserWarning, match=r"table people: 8 cells per row, over data.max_cells=6.*raise data.max_cells"):
        data.prepare(None)
    for split, train in (("train", False), ("val", False), ("train", True)):
        batches = [b for _, b in zip(range(4), data.loader(split, 16, [], seed=0, train=train))]
        for b in batches:
            R, C = b["cell_kind"].shape
            assert C <= 6 and all(b[k].shape[:2] == (R, C) for k in CELL_KEYS)
            assert b["label"].shape == b["label_value"].shape == b["table_index"].shape == (R,)
            assert set(b["table_index"].tolist()) <= {0, 1} and set(b["label"].tolist()) <= {0, 1}
            real = b["cell_kind"] > 0
            assert (b["cell_col"][real] >= 0).all() and (b["cell_col"][~real] == -1).all()
        if train:
            assert [int(b["cell_kind"].shape[0]) for b in batches] == [16] * 4
    every = list(data.loader("train", 40, [], seed=0, train=False))
    assert sum(int(b["cell_kind"].shape[0]) for b in every) == info["rows"]["train"]
    assert sum(int(b["_skipped"]) for b in every) == 3
    val = list(data.loader("val", 40, [], seed=0, train=False))
    assert sum(int(b["cell_kind"].shape[0]) for b in val) == info["rows"]["validation"]
    first = [next(iter(data.loader("train", 8, [], seed=s, train=True))) for s in (0, 0, 1)]
    assert torch.equal(first[0]["cell_col"], first[1]["cell_col"])
    assert not torch.equal(first[0]["cell_col"], first[2]["cell_col"])


def test_digits_mode_through_the_dataset(tmp_path):
    data = dataset(td.write(tmp_path / "t"), numbers="digits")
    data.prepare(None)
    b = next(iter(data.loader("val", 64, [], seed=0, train=False)))
    numbers = b["cell_kind"] == NUMBER
    st = data.ctx.states["table"]
    visit = st.column_index[("people", "visit")]
    assert numbers.any() and (b["cell_col"][numbers] == visit).all()               # only a date's year


def test_rows_that_are_json_but_not_rows_are_skipped_when_the_tokenizer_trains(tmp_path):
    data = dataset(td.write(tmp_path / "t", extra_train=td.NOT_ROWS))
    data.prepare(None)
    every = list(data.loader("train", 40, [], seed=0, train=False))
    assert sum(int(b["_skipped"]) for b in every) == 2


def test_a_run_keeps_its_schemas_and_tokenizer(tmp_path):
    path = td.write(tmp_path / "t")
    data = dataset(path)
    (tmp_path / "run").mkdir()
    before = data.prepare(tmp_path / "run").states["table"]
    assert sorted(p.name for p in (tmp_path / "run" / "table_schemas").iterdir()) == ["people.json", "pets.json"]
    assert (tmp_path / "run" / "tokenizer.json").is_file()
    import shutil
    shutil.rmtree(path)                                                            # no shards needed to restore
    after = dataset(path).context(tmp_path / "run").states["table"]
    assert after.columns == before.columns and after.schemas == before.schemas
    assert after.tokens("green", 16) == before.tokens("green", 16)
    written = TableField().files(after, tmp_path / "export", None)
    assert {p.name for p in written} == {"people.json", "pets.json", "tokenizer.json"}
    with pytest.raises(ModalzooError, match="no table_schemas"):
        dataset(path).context(tmp_path / "elsewhere")


def test_a_folder_without_schemas_is_a_clear_error(tmp_path):
    (tmp_path / "t" / "train").mkdir(parents=True)
    with pytest.raises(ModalzooError, match="schemas is missing.*pack-table"):
        dataset(tmp_path / "t").prepare(None)


# --- the embedding's view of cells ----------------------------------------------------------------------
def embedding(**kw) -> TableEmbedding:
    torch.manual_seed(0)
    emb = TableEmbedding(TableEmbeddingConfig(dim=16, vocab_size=td.V, **kw))
    emb.init_weights()
    return emb.eval()


def test_the_embedding_puts_cls_first_and_masks_padding():
    _, b = td.collated()
    tokens = embedding()(b)
    R, C = b["cell_kind"].shape
    assert tokens.x.shape == (R, C + 1, 16)
    assert tokens.pad_mask[:, 0].all() and torch.equal(tokens.pad_mask[:, 1:], b["cell_kind"] > 0)


def test_the_embedding_hides_masked_values_and_ignores_missing_ones():
    _, b = td.collated(n_people=2, n_pets=0)
    emb = embedding()
    b["cell_masked"] = torch.zeros_like(b["cell_kind"], dtype=torch.bool)
    b["cell_masked"][0, 1] = True                                                  # colour of row 0
    changed = dict(b, value_ids=b["value_ids"].clone(), cell_num=b["cell_num"] + 1.0)
    changed["value_ids"][0, 1] = changed["value_ids"][1, 1]                        # another colour
    base, other = emb(b).x, emb(changed).x
    assert torch.allclose(base[0, 2], other[0, 2])                                  # masked: value unseen
    assert not torch.allclose(base[0, 1], other[0, 1])                              # age (a number) seen
    missing = b["cell_kind"] == MISSING
    assert missing.any()
    assert torch.allclose(base[:, 1:][missing], other[:, 1:][missing])


def test_the_embedding_refuses_ids_past_its_vocab():
    _, b = td.collated(n_people=2, n_pets=0)
    with pytest.raises(ModalzooError, match="vocab_size=50"):
        TableEmbedding(TableEmbeddingConfig(dim=8, vocab_size=50))(b)
