"""The table targets (`objectives.py`): which cells masked-cell modelling hides (only valued cells of data
rows, about ``mask_rate``, at least one per row of two), its candidate categories and numeric targets; VPCL's
partition views (subsets of their row with the configured overlap, ``view_of``) and its contrastive loss
(self-supervised and supervised positives); the row-label head; either transform order; gradients; and a
learnability check (a tiny model's losses fall on a toy table)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import sibling
from modalzoo.datasets.fields import DataContext
from modalzoo.errors import ModalzooError
from modalzoo.modalities.tabular.cells import CELL_KEYS, MISSING, NUMBER, TOKENS, CellFinisher, collate_rows
from modalzoo.modalities.tabular.objectives import CellMasking, Partitions
from modalzoo.modalities.tabular.tables import fit_schema
from modalzoo.model import build_model
from modalzoo.pretrain_tasks.base import StreamOutput
from modalzoo.tokens import Tokens

pytestmark = pytest.mark.usefixtures("one_thread")




td = sibling(__file__, "table_data")
D = 32
EMBED = {"name": "table_cells", "dim": D, "vocab_size": td.V}
ENC = {"name": "transformer", "dim": D, "layers": 2, "heads": 4, "ffn_dim": 64}


def model(**targets):
    torch.manual_seed(0)
    return build_model({"model": {"streams": {"table": {"embedding": EMBED, "encoder": ENC}}, "targets": targets}})


def clone(batch: dict) -> dict:
    return {k: v.clone() if torch.is_tensor(v) else v for k, v in batch.items()}


def toy(n_people=8, n_pets=4, st=None):
    return td.collated(st, n_people, n_pets)


def mask(st, batch, rate=0.3, seed=0, k=32):
    return CellMasking(rate, k, st)(clone(batch), td.gen(seed))


def views(batch, p=3, overlap=0.5, seed=0):
    return Partitions(p, overlap)(clone(batch), td.gen(seed))


def valued(batch):
    return (batch["cell_kind"] == TOKENS) | (batch["cell_kind"] == NUMBER)


def expected_count(n: int, rate: float) -> int:
    if n < 2:
        return 0
    return max(1, int((torch.tensor(float(n)) * rate).round()))


def cell_id(batch, r, j) -> tuple:
    return (tuple(batch["name_ids"][r, j].tolist()), tuple(batch["value_ids"][r, j].tolist()),
            int(batch["cell_kind"][r, j]), float(batch["cell_num"][r, j]), int(batch["cell_col"][r, j]))


def real_ids(batch, r) -> list[tuple]:
    return [cell_id(batch, r, j) for j in (batch["cell_kind"][r] > 0).nonzero()[:, 0].tolist()]


def trimmed(ids: torch.Tensor) -> list[int]:
    return [i for i in ids.tolist() if i]


# --- masked cells: which cells ----------------------------------------------------------------------------
@pytest.mark.parametrize("rate", [0.01, 0.15, 0.3, 0.6])
def test_masked_cells_are_valued_cells_and_the_count_per_row_follows_the_rate(rate):
    st, b = toy()
    out = mask(st, b, rate)
    m = out["cell_masked"]
    assert m.dtype == torch.bool and m.shape == b["cell_kind"].shape
    assert not (m & ~valued(b)).any()                                     # never missing, never padding
    assert not (m & (b["cell_kind"] == MISSING)).any()
    for r in range(b["cell_kind"].shape[0]):
        assert int(m[r].sum()) == expected_count(int(valued(b)[r].sum()), rate)


@pytest.mark.parametrize("rate", [0.15, 0.3, 0.5])
def test_about_mask_rate_of_the_valued_cells_are_masked(rate):
    st, b = toy(n_people=64, n_pets=32)
    m = mask(st, b, rate)["cell_masked"]
    assert abs(int(m.sum()) / int(valued(b).sum()) - rate) < 0.06


def test_a_row_with_one_valued_cell_is_never_masked():
    st = td.state()
    rows = td.rows_of(st, "pets", [{"species": "cat"}, {"species": "dog", "weight": "3.5"}])
    m = mask(st, collate_rows(rows), 0.9)["cell_masked"]
    assert m[0].sum() == 0 and m[1].sum() == 2


def test_masking_is_a_function_of_the_generator():
    st, b = toy()
    assert torch.equal(mask(st, b, seed=3)["cell_masked"], mask(st, b, seed=3)["cell_masked"])
    assert not torch.equal(mask(st, b, seed=3)["cell_masked"], mask(st, b, seed=4)["cell_masked"])
    seen = sum(mask(st, b, seed=s)["cell_masked"].long() for s in range(40))
    assert (seen[valued(b) & (valued(b).sum(1, keepdim=True) >= 2)] > 0).all()  # every valued cell, sometimes


def test_masked_positions_are_listed_in_order():
    st, b = toy()
    out = mask(st, b)
    pos = out["mcm_pos"]
    assert torch.equal(pos, out["cell_masked"].nonzero())


# --- masked cells: targets --------------------------------------------------------------------------------
def test_categorical_targets_index_the_right_candidate():
    st, b = toy(n_people=32, n_pets=16)
    out = mask(st, b, 0.5)
    pos, idx = out["mcm_pos"], out["mcm_cat_index"]
    assert len(idx) > 5 and out["mcm_cat_ids"].shape[0] == len(idx) == len(out["mcm_cat_target"])
    for j, i in enumerate(idx.tolist()):
        r, c = pos[i].tolist()
        col, target = int(b["cell_col"][r, c]), int(out["mcm_cat_target"][j])
        table, name = st.columns[col]
        column = next(x for x in st.schemas[table].columns if x.name == name)
        assert column.type in ("categorical", "binary") and target == int(b["cell_cat"][r, c])
        assert trimmed(out["mcm_cat_ids"][j, target]) == trimmed(b["value_ids"][r, c])   # the cell's own value
        cands = st.candidates(col, 32)
        K, T = cands.shape
        assert np.array_equal(out["mcm_cat_ids"][j, :K, :T].numpy(), cands)
        assert (out["mcm_cat_ids"][j, K:] == 0).all() and (out["mcm_cat_ids"][j, :K, T:] == 0).all()
    categorical = [i for i, (r, c) in enumerate(pos.tolist()) if int(b["cell_cat"][r, c]) >= 0]
    assert idx.tolist() == categorical                                     # every masked known category


def test_categories_past_the_candidate_cap_are_only_noise():
    st, b = toy(n_people=0, n_pets=40)
    out = mask(st, b, 0.6, k=2)
    assert out["mcm_cat_ids"].shape[1] == 2 and (out["mcm_cat_target"] < 2).all()
    pos = out["mcm_pos"]
    over = [i for i, (r, c) in enumerate(pos.tolist()) if int(b["cell_cat"][r, c]) >= 2]
    assert over and not set(over) & set(out["mcm_cat_index"].tolist())


def test_numeric_targets_are_the_masked_scaled_values():
    st, b = toy(n_people=32, n_pets=16)
    out = mask(st, b, 0.5)
    pos, nidx = out["mcm_pos"], out["mcm_num_index"]
    numeric = [i for i, (r, c) in enumerate(pos.tolist()) if not math.isnan(float(b["cell_target"][r, c]))]
    assert nidx.tolist() == numeric and len(numeric) > 5
    for j, i in enumerate(nidx.tolist()):
        r, c = pos[i].tolist()
        assert int(b["cell_kind"][r, c]) == NUMBER
        assert float(out["mcm_num_target"][j]) == pytest.approx(float(b["cell_num"][r, c]))
        assert abs(float(out["mcm_num_target"][j])) <= 5


def test_digit_cells_regress_their_scaled_value():
    st, b = toy(n_people=32, n_pets=0, st=td.state(numbers="digits"))
    out = mask(st, b, 0.5)
    kinds = [int(b["cell_kind"][tuple(out["mcm_pos"][i].tolist())]) for i in out["mcm_num_index"].tolist()]
    assert kinds and set(kinds) == {TOKENS}                                # spelled numbers, still regressed


# --- VPCL partitions --------------------------------------------------------------------------------------
def shares(n: int, p: int) -> list[int]:
    bounds = np.linspace(0, n, p + 1).round().astype(int)
    return [int(bounds[k + 1] - bounds[k]) for k in range(p)]


@pytest.mark.parametrize("p,overlap", [(2, 0.0), (3, 0.5), (4, 0.25), (2, 0.9)])
def test_views_are_subsets_of_their_row_with_the_configured_overlap(p, overlap):
    _, b = toy()
    R = b["cell_kind"].shape[0]
    out = views(b, p, overlap)
    view_of = out["view_of"]
    counts = (b["cell_kind"] > 0).sum(1).tolist()
    expected_owners = [r for r in range(R) if counts[r] >= 2 for _ in range(p)]
    assert view_of[:R].tolist() == [-1] * R and view_of[R:].tolist() == expected_owners
    for k in CELL_KEYS:                                                   # the data rows are untouched
        a, o = b[k], out[k][:R, : b[k].shape[1]]
        assert torch.equal(a.nan_to_num(), o.nan_to_num()) if a.is_floating_point() else torch.equal(a, o)
    for key in ("label", "label_value", "table_index"):
        assert torch.equal(out[key][R:].nan_to_num(), b[key][view_of[R:]].nan_to_num())
    for r in sorted(set(expected_owners)):
        row = real_ids(b, r)
        mine = (view_of == r).nonzero()[:, 0].tolist()
        parts = [real_ids(out, v) for v in mine]
        assert all(len(set(part)) == len(part) and set(part) <= set(row) for part in parts)
        assert set().union(*map(set, parts)) == set(row)                  # together they cover the row
        n = counts[r]
        sizes = [max(1, s + min(math.ceil(s * overlap), n - s)) for s in shares(n, p)]   # an empty part: 1 cell
        assert sorted(len(part) for part in parts) == sorted(sizes)
        if overlap == 0:
            assert sum(len(part) for part in parts) == n                  # a partition
        else:
            assert any(set(parts[k]) & set(parts[k + 1]) for k in range(p - 1))


def test_a_row_of_one_cell_has_no_views():
    st = td.state()
    b = collate_rows(td.rows_of(st, "pets", [{"species": "cat", "weight": "1", "indoor": "no"}]) +
                     td.rows_of(st, "pets", [{"species": "cat"}])[:1])
    b["cell_kind"][1, 1:] = 0                                              # a single real cell
    out = views(b, 3)
    assert out["view_of"].tolist() == [-1, -1, 0, 0, 0]


def test_views_are_a_function_of_the_generator():
    _, b = toy()
    assert torch.equal(views(b, seed=1)["cell_col"], views(b, seed=1)["cell_col"])
    assert not torch.equal(views(b, seed=1)["cell_col"], views(b, seed=2)["cell_col"])


def test_view_padding_is_padding():
    _, b = toy()
    out = views(b, 3)
    pad = out["cell_kind"] == 0
    assert (out["cell_col"][pad] == -1).all() and (out["name_ids"][pad] == 0).all()
    assert torch.isnan(out["cell_target"][pad]).all() and (out["cell_num"][pad] == 0).all()


# --- either transform order -------------------------------------------------------------------------------
PRETRAIN = {"cells": {"name": "masked_cells", "mask_rate": 0.3}, "views": {"name": "vpcl", "projection": 16}}


@pytest.mark.parametrize("order", [("mask", "views"), ("views", "mask")])
def test_either_transform_order_leaves_both_targets_valid(order):
    st, b = toy()
    R = b["cell_kind"].shape[0]
    m = model(**PRETRAIN)
    transforms = dict(zip(("mask", "views"), m.batch_transforms(DataContext(states={"table": st}))))
    assert isinstance(transforms["mask"], CellMasking) and isinstance(transforms["views"], Partitions)
    g = td.gen(0)
    out = clone(b)
    for name in order:
        out = transforms[name](out, g)
    view_of, masked = out["view_of"], out["cell_masked"]
    assert masked.shape == out["cell_kind"].shape and not masked[view_of >= 0].any()
    assert (out["mcm_pos"][:, 0] < R).all() and masked[tuple(out["mcm_pos"].T)].all()
    assert int(masked.sum()) == len(out["mcm_pos"])
    for r in range(R):
        assert int(masked[r].sum()) == expected_count(int(valued(b)[r].sum()), 0.3)
        for v in (view_of == r).nonzero()[:, 0].tolist():
            assert set(real_ids(out, v)) <= set(real_ids(b, r))
    result = m(out)
    assert torch.isfinite(result.loss) and result.metrics["cells/loss"] > 0 and result.metrics["views/loss"] > 0
    result.loss.backward()
    emb = m.streams["table"].embedding
    for name, p in [("words", emb.words.weight), ("mask", emb.mask), ("number_scale", emb.number_scale),
                    ("missing", emb.missing), ("cls", emb.cls), ("category", m.targets["cells"].category[0].weight),
                    ("number", m.targets["cells"].number[0].weight),
                    ("project", m.targets["views"].project.weight)]:
        assert p.grad is not None and p.grad.abs().sum() > 0 and torch.isfinite(p.grad).all(), name


def test_the_finisher_then_both_transforms_through_the_loader(tmp_path):
    from modalzoo.registry import DATASETS
    data = DATASETS.build({"name": "table", "path": str(td.write(tmp_path / "t")), "num_workers": 0, "max_cells": 5,
                           "tokenizer": {"name": "wordpiece", "vocab_size": td.V}})
    with pytest.warns(UserWarning):
        data.prepare(None)
    m = model(**PRETRAIN)
    batch = next(iter(data.loader("train", 8, data.batch_transforms(m), seed=0, train=True)))
    assert batch["cell_kind"].shape[1] <= 5 and (batch["view_of"] >= 0).sum() == 8 * 3
    out = m(batch)
    out.loss.backward()
    assert torch.isfinite(out.loss)


# --- VPCL loss --------------------------------------------------------------------------------------------
def reference_vpcl(target, hidden, batch, supervised: bool, cosine: bool = True):
    view_of = batch["view_of"]
    v = (view_of >= 0).nonzero()[:, 0]
    z = target.project(hidden[v, 0]).float()
    z = F.normalize(z, dim=-1) if cosine else z
    sim = z @ z.T / target.cfg.temperature
    n = len(v)
    loss, rows = 0.0, 0
    for i in range(n):
        others = [j for j in range(n) if j != i]
        logp = sim[i, others] - sim[i, others].logsumexp(0)
        pos = []
        for k, j in enumerate(others):
            same_row = view_of[v[i]] == view_of[v[j]]
            same_label = (supervised and batch["label"][v[i]] == batch["label"][v[j]] != -100
                          and batch["table_index"][v[i]] == batch["table_index"][v[j]])
            if same_row or same_label:
                pos.append(k)
        if pos:
            loss, rows = loss - logp[pos].mean(), rows + 1
    return loss / rows, rows


@pytest.mark.parametrize("supervised,similarity", [(False, "cosine"), (True, "cosine"), (False, "dot")])
def test_vpcl_loss_contrasts_views_of_a_row_or_of_a_table_and_label(supervised, similarity):
    _, b = toy(n_people=4, n_pets=4)
    b["label"][0] = -100                                                 # a row without a label
    out = views(b, 2)
    m = model(views={"name": "vpcl", "supervised": supervised, "similarity": similarity, "projection": 16,
                     "temperature": 0.5})
    target = m.targets["views"]
    hidden = torch.randn(out["cell_kind"].shape[0], out["cell_kind"].shape[1] + 1, D,
                         generator=td.gen(1), requires_grad=True)
    got = target({"table": StreamOutput(stream=None, hidden=Tokens(x=hidden))}, out)
    want, rows = reference_vpcl(target, hidden, out, supervised, similarity == "cosine")
    assert got.loss.item() == pytest.approx(want.item(), rel=1e-4) and got.count == rows == 16
    assert 0 <= float(got.metrics["view_acc"]) <= 1
    got.loss.backward()
    assert hidden.grad[out["view_of"] >= 0, 0].abs().sum() > 0
    assert hidden.grad[out["view_of"] < 0].abs().sum() == 0                # the data rows are not contrasted


def test_supervised_positives_are_same_table_and_label_only():
    """Labels shared across tables (class 1 of people and of pets) are not positives of each other."""
    _, b = toy(n_people=4, n_pets=4)
    b["label"] = torch.tensor([1, 0, 1, 0, 1, 0, 1, 0])
    out = views(b, 2)
    m = model(views={"name": "vpcl", "supervised": True, "projection": 16})
    target = m.targets["views"]
    hidden = torch.randn(out["cell_kind"].shape[0], out["cell_kind"].shape[1] + 1, D, generator=td.gen(2))
    outputs = {"table": StreamOutput(stream=None, hidden=Tokens(x=hidden))}
    supervised = target(outputs, out).loss
    crossed = dict(out, table_index=torch.zeros_like(out["table_index"]))  # as if one table
    assert supervised.item() != pytest.approx(target(outputs, crossed).loss.item(), rel=1e-4)
    target.cfg.supervised = False
    assert supervised.item() != pytest.approx(target(outputs, out).loss.item(), rel=1e-4)


def test_vpcl_without_views_is_zero():
    st = td.state()
    b = collate_rows(td.rows_of(st, "pets", [{"species": "cat"}]))
    b["cell_kind"][0, 1:] = 0                                              # one real cell: no views
    out = views(b, 3)
    assert out["view_of"].tolist() == [-1]
    m = model(views={"name": "vpcl", "projection": 16})
    hidden = torch.randn(1, out["cell_kind"].shape[1] + 1, D)
    got = m.targets["views"]({"table": StreamOutput(stream=None, hidden=Tokens(x=hidden))}, out)
    assert got.loss.item() == 0 and got.count == 0


# --- table_label ------------------------------------------------------------------------------------------
def test_table_label_is_cross_entropy_on_the_data_rows():
    st, b = toy(n_people=6, n_pets=0)
    b["label"][1] = -100
    out = views(b, 2)
    m = model(label={"name": "table_label", "task": "binary", "classes": 2, "dropout": 0.0})
    target = m.targets["label"]
    hidden = torch.randn(out["cell_kind"].shape[0], out["cell_kind"].shape[1] + 1, D, generator=td.gen(3))
    got = target({"table": StreamOutput(stream=None, hidden=Tokens(x=hidden))}, out)
    keep = [0, 2, 3, 4, 5]
    logits = target.head(hidden[keep, 0])
    assert got.loss.item() == pytest.approx(F.cross_entropy(logits, b["label"][keep]).item(), rel=1e-5)
    assert got.count == 5
    assert float(got.metrics["acc"]) == pytest.approx((logits.argmax(-1) == b["label"][keep]).float().mean().item())


def test_table_label_regression_is_mse_on_the_scaled_label():
    m = model(label={"name": "table_label", "task": "regression", "dropout": 0.0})
    target = m.targets["label"]
    b = {"cell_kind": torch.ones(4, 2, dtype=torch.long), "label": torch.full((4,), -100),
         "label_value": torch.tensor([0.5, float("nan"), -1.0, 2.0])}
    hidden = torch.randn(4, 3, D, generator=td.gen(4))
    got = target({"table": StreamOutput(stream=None, hidden=Tokens(x=hidden))}, b)
    pred = target.head(hidden[[0, 2, 3], 0])[:, 0]
    assert got.loss.item() == pytest.approx(F.mse_loss(pred, b["label_value"][[0, 2, 3]]).item(), rel=1e-5)
    assert got.count == 3
    b["label_value"][:] = float("nan")
    assert target({"table": StreamOutput(stream=None, hidden=Tokens(x=hidden))}, b).count == 0


def test_table_label_errors_clearly_on_too_few_classes():
    with pytest.raises(ModalzooError, match="table_label: binary needs classes >= 2, got 1"):
        model(label={"name": "table_label", "classes": 1})
    with pytest.raises(ModalzooError, match="table_label: multiclass needs classes >= 2, got 0"):
        model(label={"name": "table_label", "task": "multiclass", "classes": 0})
    m = model(label={"name": "table_label", "task": "multiclass", "classes": 2})
    b = {"cell_kind": torch.ones(2, 2, dtype=torch.long), "label": torch.tensor([0, 2])}
    with pytest.raises(ModalzooError, match="2 classes but a row's label is class 2: set its classes from the"):
        m.targets["label"]({"table": StreamOutput(stream=None, hidden=Tokens(x=torch.randn(2, 3, D)))}, b)
    none = m.targets["label"]({"table": StreamOutput(stream=None, hidden=Tokens(x=torch.randn(2, 3, D)))},
                              {"cell_kind": b["cell_kind"], "label": torch.full((2,), -100)})
    assert none.count == 0 and none.loss.item() == 0


# --- configuration errors ---------------------------------------------------------------------------------
def test_configuration_errors_are_clear():
    with pytest.raises(ModalzooError, match=r"mask_rate must be in \(0, 1\), got 1.0"):
        model(cells={"name": "masked_cells", "mask_rate": 1.0})
    with pytest.raises(ModalzooError, match="vpcl needs partitions >= 2"):
        model(views={"name": "vpcl", "partitions": 1})
    with pytest.raises(ModalzooError, match="vpcl needs partitions >= 2"):
        model(views={"name": "vpcl", "overlap": 1.0})
    with pytest.raises(ModalzooError, match="masked_cells: no stream 'rows'"):
        model(cells={"name": "masked_cells", "stream": "rows"})
    text = {"name": "token", "vocab_size": 50, "dim": D}
    with pytest.raises(ModalzooError, match="vpcl reads a `table_cells` embedding; stream 'text' has 'token'"):
        build_model({"model": {"streams": {"text": {"embedding": text, "encoder": ENC}},
                               "targets": {"v": {"name": "vpcl", "stream": "text"}}}})
    m = model(**PRETRAIN)
    with pytest.raises(ModalzooError, match="a table target needs the `table` dataset"):
        m.batch_transforms(DataContext(tokenizer=object()))


# --- learnability -----------------------------------------------------------------------------------------
SHAPES = {"circle": ("red", 1.0), "square": ("green", 10.0), "triangle": ("blue", 100.0)}


def toy_table(n: int, seed: int) -> list[list]:
    r = random.Random(seed)
    rows = []
    for _ in range(n):
        shape = r.choice(list(SHAPES))
        colour, size = SHAPES[shape]
        rows.append([shape, colour, f"{size * (1 + r.uniform(-0.05, 0.05)):.3f}", "big" if size > 5 else "small"])
    return rows


def train_toy(targets: dict, lr: float, steps: int = 30) -> tuple[dict, dict]:
    """A tiny model optimised on one 64-row batch of the toy table, fresh masks and views every step: the mean
    metrics of the first and of the last five steps."""
    columns = ["shape", "colour", "size", "kind"]
    schema = fit_schema(td.source("shapes", columns, toy_table(200, 0), "kind"))
    words = ("shape colour size kind", "circle square triangle red green blue big small",
             " ".join("0123456789.-e+"), "year month weekday")
    st = td.state(shapes=schema)
    st.tokenizer = td.tokenizer(words)
    torch.manual_seed(0)                            # the same tiny model whatever ran before
    m = model(**targets)
    m.train()
    transforms = [CellFinisher(8, train=True), *m.batch_transforms(DataContext(states={"table": st}))]
    opt = torch.optim.AdamW(m.parameters(), lr=lr)
    rows = [dict(zip(columns, r)) for r in toy_table(64, 1)]
    batch = collate_rows(td.rows_of(st, "shapes", [{k: v for k, v in r.items() if k != "kind"} for r in rows],
                                    [r["kind"] for r in rows]))
    history = []
    for step in range(steps):
        b, g = dict(batch), td.gen(step)
        for fn in transforms:
            b = fn(b, g)
        out = m(b)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        history.append({k: float(v) for k, v in out.metrics.items()} | {"loss": float(out.loss.detach())})
    first = {k: float(np.mean([h[k] for h in history[:5]])) for k in history[0]}
    last = {k: float(np.mean([h[k] for h in history[-5:]])) for k in history[0]}
    return first, last


def test_masked_cells_learn_a_toy_table():
    """Colour follows from shape and size from shape: masked categories and numbers become predictable."""
    first, last = train_toy({"cells": {"name": "masked_cells", "mask_rate": 0.4}}, lr=3e-3, steps=80)
    assert first["cells/category_loss"] > math.log(3) - 0.1        # 3 candidates: no better than chance at first
    assert last["loss"] < 0.6 * first["loss"], (first, last)
    assert last["cells/category_loss"] < 0.8 * math.log(3), (first, last)
    assert last["cells/number_loss"] < 0.8 * first["cells/number_loss"], (first, last)


def test_vpcl_and_table_label_learn_a_toy_table():
    first, last = train_toy({"views": {"name": "vpcl", "projection": 16},
                             "label": {"name": "table_label", "classes": 2, "dropout": 0.0}}, lr=3e-3)
    assert last["label/loss"] < 0.3 * first["label/loss"] and last["label/acc"] > 0.9, (first, last)
    assert last["views/loss"] < 0.9 * first["views/loss"], (first, last)


def test_a_fine_tune_gives_every_parameter_a_gradient():
    _, b = toy()
    m = model(label={"name": "table_label", "classes": 2})
    m(b).loss.backward()
    assert [n for n, p in m.named_parameters() if p.grad is None] == []


def test_masked_cells_give_both_heads_a_gradient_on_any_batch():
    st = td.state()
    rows = [{"age": str(20 + i), "income": f"{i}.5", "visit": "2021-03-06", "note": "reads books"} for i in range(6)]
    b = collate_rows(td.rows_of(st, "people", rows))                           # colour and plan missing
    m = model(cells={"name": "masked_cells", "mask_rate": 0.5})
    b = m.batch_transforms(DataContext(states={"table": st}))[0](b, td.gen(0))
    assert len(b["mcm_cat_index"]) == 0 and len(b["mcm_num_index"]) > 0          # numbers masked, no category
    m(b).loss.backward()
    assert [n for n, p in m.named_parameters() if p.grad is None] == []
