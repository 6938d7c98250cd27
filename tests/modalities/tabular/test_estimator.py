"""The scikit-learn estimators (`modalzoo.tabular`) over a tiny "pretrained" table model: a zoo export folder
built in process (config.json + model.safetensors + tokenizer.json, the layout `modalzoo export --format
modalzoo` writes), whose tokenizer learned another pool's words. They pass scikit-learn's own estimator
checks, work inside Pipeline / cross_val_score / GridSearchCV, read DataFrames, dicts of columns and arrays
alike, learn simple rules, and `save_pretrained` / `from_pretrained` reproduce predictions exactly."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from modalzoo import ModalzooError
from modalzoo.modalities.tabular.estimator import load_estimator
from modalzoo.modalities.tabular.finetune import table_tokenizer
from modalzoo.model import build_model
from modalzoo.tabular import TabularClassifier, TabularEncoder, TabularRegressor

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.timeout(300)]

POOL_WORDS = ["age income city colour", "red green blue", "paris london rome", "0 1 2 3 4 5 6 7 8 9 . - e +",
              "january february march april", "monday tuesday wednesday", "year month weekday", "yes no"] * 3
STREAM = {"embedding": {"name": "table_cells", "dim": 32, "vocab_size": 300},
          "encoder": {"name": "transformer", "layers": 1, "dim": 32, "heads": 2, "ffn_dim": 64}}
FAST = {"epochs": 2, "batch_size": 32}


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """A tiny table model as a modalzoo export: its stream is what the estimators fine-tune."""
    out = tmp_path_factory.mktemp("tabular") / "export"
    out.mkdir()
    spec = {"streams": {"table": STREAM}, "targets": {"cells": {"name": "masked_cells", "stream": "table"}}}
    tokenizer = {"name": "wordpiece", "vocab_size": 300}
    torch.manual_seed(0)
    model = build_model({"model": spec})
    (out / "config.json").write_text(json.dumps({"modalzoo": {"version": "0.1.0", "format": 1}, "model": spec,
                                                 "data": {"name": "table", "path": "unused", "tokenizer": tokenizer}}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
    table_tokenizer(POOL_WORDS, 300).save(out / "tokenizer.json")       # reproducible ids, unlike a trained one
    return str(out)


def table(n: int, seed: int = 0) -> tuple[dict, np.ndarray]:
    """x numeric, colour categorical, noise numeric, city categorical; y = "yes" iff x + 1.5 [colour is red] > 0.5."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n).round(3)
    colour = rng.choice(["red", "green", "blue"], n)
    X = {"x": x, "colour": colour, "noise": rng.normal(size=n).round(3),
         "city": rng.choice(["paris", "rome", "oslo"], n)}
    return X, np.where(x + 1.5 * (colour == "red") > 0.5, "yes", "no")


def rows(X: dict, index) -> dict:
    return {k: np.asarray(v)[index] for k, v in X.items()}


def as_array(X: dict) -> np.ndarray:
    return np.array([list(r) for r in zip(*X.values())], dtype=object)


@pytest.fixture(scope="module")
def learned(export):
    """A classifier fine-tuned on 240 rows of the rule, and 160 held-out rows."""
    X, y = table(400)
    clf = TabularClassifier(pretrained=export, epochs=12, lr=3e-3, seed=0).fit(rows(X, slice(0, 240)), y[:240])
    return clf, rows(X, slice(240, None)), y[240:]


def test_scikit_learn_estimator_checks(export):
    from sklearn.utils.estimator_checks import check_estimator
    # one epoch keeps the checks fast: the two checks of a score on a training set are left to the tests below
    slow = {"check_classifiers_train": "one epoch", "check_regressors_train": "one epoch"}
    for est in (TabularClassifier(pretrained=export, epochs=1), TabularRegressor(pretrained=export, epochs=1),
                TabularEncoder(pretrained=export)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            results = check_estimator(est, expected_failed_checks=slow, on_fail=None, on_skip=None)
        failed = [f"{r['check_name']}: {r['exception']}" for r in results if r["status"] == "failed"]
        assert failed == [], failed
        assert sum(r["status"] == "passed" for r in results) > 35


def test_params_clone_and_set_params():
    clf = TabularClassifier(pretrained="somewhere", column_types={"zip": "categorical"}, epochs=3, lr=1e-3)
    params = clf.get_params()
    assert params == {"pretrained": "somewhere", "column_types": {"zip": "categorical"}, "epochs": 3,
                      "batch_size": 32, "lr": 1e-3, "weight_decay": 0.01, "max_cells": 64, "random_init": False,
                      "device": "cpu", "seed": 0, "verbose": False}
    twin = clone(clf)
    assert twin is not clf and twin.get_params() == params
    assert clf.set_params(epochs=7, seed=3) is clf and clf.get_params()["epochs"] == 7
    assert not [k for k in vars(clf) if k.endswith("_")]          # __init__ stores the params, nothing else
    assert set(TabularRegressor().get_params()) == set(params)
    assert set(TabularEncoder().get_params()) == {"pretrained", "column_types", "pooling", "batch_size",
                                                  "max_cells", "random_init", "device", "seed"}


def test_pipeline_cross_val_and_grid_search(export):
    X, y = table(90, seed=1)
    A = as_array(X)
    pipe = make_pipeline(FunctionTransformer(lambda a: a, validate=False),
                         TabularClassifier(pretrained=export, **FAST))
    assert pipe.fit(A, y).predict(A).shape == (90,)
    scores = cross_val_score(TabularClassifier(pretrained=export, **FAST), A, y, cv=3)
    assert scores.shape == (3,) and ((0 <= scores) & (scores <= 1)).all()
    search = GridSearchCV(TabularClassifier(pretrained=export, batch_size=32), {"epochs": [1, 2]}, cv=2).fit(A, y)
    assert search.best_params_["epochs"] in (1, 2) and search.best_estimator_.classes_.tolist() == ["no", "yes"]


def test_dict_array_and_dataframe_inputs_agree(export):
    X, y = table(80, seed=2)
    names = {f"c{i}": v for i, v in enumerate(X.values())}        # an array's columns are c0, c1, ...
    from_dict = TabularClassifier(pretrained=export, **FAST).fit(names, y)
    from_array = TabularClassifier(pretrained=export, **FAST).fit(as_array(X), y)
    np.testing.assert_array_equal(from_dict.predict_proba(names), from_array.predict_proba(as_array(X)))
    assert from_dict.feature_names_in_.tolist() == list(names) and not hasattr(from_array, "feature_names_in_")
    assert from_array.n_features_in_ == 4
    # by name, in any order; an array by position (scikit-learn's warning when the fit had names)
    shuffled = {k: names[k] for k in reversed(list(names))}
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        by_position = from_dict.predict_proba(as_array(X))
    np.testing.assert_array_equal(from_dict.predict_proba(shuffled), by_position)
    with pytest.warns(UserWarning, match="fitted without feature names"):
        renamed = from_array.predict_proba(X)                    # names it never saw: by position too
    np.testing.assert_array_equal(renamed, by_position)
    with pytest.raises(ValueError, match="X has 3 features, but TabularClassifier is expecting 4"):
        from_array.predict(as_array(X)[:, :3])
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(names)
    from_frame = TabularClassifier(pretrained=export, **FAST).fit(frame, pd.Series(y))
    np.testing.assert_array_equal(from_frame.predict_proba(frame), from_dict.predict_proba(names))
    assert from_frame.feature_names_in_.tolist() == list(names)


def test_labels_classes_and_errors(export):
    X, y = table(60, seed=3)
    clf = TabularClassifier(pretrained=export, **FAST).fit(X, y)
    assert clf.classes_.tolist() == ["no", "yes"]
    assert set(clf.predict(X)) <= {"no", "yes"}
    numbers = np.where(y == "yes", 10, 2)                    # sorted as numbers, not as text ("10" < "2")
    clf = TabularClassifier(pretrained=export, **FAST).fit(X, numbers)
    assert clf.classes_.tolist() == [2, 10] and clf.predict(X).dtype == numbers.dtype
    three = np.array(["a", "b", "c"])[np.arange(60) % 3]
    proba = TabularClassifier(pretrained=export, **FAST).fit(X, three).predict_proba(X)
    assert proba.shape == (60, 3) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(1), 1.0)
    with pytest.raises(ValueError, match="one class"):
        TabularClassifier(pretrained=export).fit(X, ["yes"] * 60)
    with pytest.raises(ValueError, match="missing labels"):
        TabularClassifier(pretrained=export).fit(X, [None] + list(y[1:]))
    with pytest.raises(ValueError, match="X has 60 rows but y has 59"):
        TabularClassifier(pretrained=export).fit(X, y[1:])
    with pytest.raises(ValueError, match="column_types names 'colour_'.*did you mean 'colour'"):
        TabularClassifier(pretrained=export, column_types={"colour_": "text"}).fit(X, y)
    with pytest.raises(ModalzooError, match="neither a run folder"):
        TabularClassifier(pretrained=str(export) + "/..").fit(X, y)


def test_unknown_columns_warn_and_unseen_values_work(learned):
    clf, X, _ = learned
    base = clf.predict_proba(X)
    with pytest.warns(UserWarning, match="not fitted with, ignored: shoe, hat") as caught:
        with_extra = clf.predict_proba({**X, "shoe": np.arange(len(X["x"])), "hat": ["x"] * len(X["x"])})
    assert len([w for w in caught if "ignored" in str(w.message)]) == 1
    np.testing.assert_array_equal(with_extra, base)
    unseen = clf.predict_proba({**X, "colour": ["purple"] * len(X["x"]), "city": ["tromsø"] * len(X["x"])})
    assert np.isfinite(unseen).all() and not np.array_equal(unseen, base)
    fewer = clf.predict_proba({k: v for k, v in X.items() if k != "noise"})      # a missing column: missing cells
    assert fewer.shape == base.shape and np.isfinite(fewer).all()


def test_missing_values(export):
    X, y = table(60, seed=4)
    X = {"x": [None if i % 7 == 0 else v for i, v in enumerate(X["x"].tolist())],
         "noise": np.where(np.arange(60) % 5 == 0, np.nan, X["noise"]),
         "colour": [None if i % 6 == 0 else v for i, v in enumerate(X["colour"].tolist())]}
    clf = TabularClassifier(pretrained=export, **FAST).fit(X, y)
    assert [c.type for c in clf.schema_.columns] == ["numeric", "numeric", "categorical"]
    assert clf.schema_.columns[0].missing_rate > 0
    proba = clf.predict_proba({"x": [None, np.nan], "noise": [float("nan"), 1.0], "colour": [None, "red"]})
    assert proba.shape == (2, 2) and np.isfinite(proba).all()


def test_pandas_missing_values_and_dtypes(export):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"n": pd.array([1, None, 3, 4, 5, 6, 7, 8] * 8, dtype="Int64"),
                          "kind": pd.Categorical(["x", "y", None, "x"] * 16),
                          "when": pd.to_datetime(["2020-01-02", None, "2021-06-30", "2019-11-11"] * 16),
                          "amount": [1.5, float("nan"), 2.25, 3.0] * 16})
    y = np.array([0, 1] * 32)
    clf = TabularClassifier(pretrained=export, epochs=1).fit(frame, y)
    types = {c.name: (c.type, c.missing_rate) for c in clf.schema_.columns}
    assert types == {"n": ("categorical", 0.125), "kind": ("binary", 0.25), "when": ("date", 0.25),
                     "amount": ("numeric", 0.25)}
    columns = {k: frame[k] for k in frame}                      # a dict of Series: NA and NaT are missing too
    again = TabularClassifier(pretrained=export, epochs=1).fit(columns, y)
    assert {c.name: (c.type, c.missing_rate) for c in again.schema_.columns} == types
    np.testing.assert_array_equal(again.predict_proba(columns), clf.predict_proba(frame))


def test_the_schema_is_fitted_on_the_training_rows_only(export):
    X, y = table(60, seed=5)
    clf = TabularClassifier(pretrained=export, epochs=1).fit(rows(X, slice(0, 30)), y[:30])
    col = next(c for c in clf.schema_.columns if c.name == "x")
    assert col.median == pytest.approx(float(np.median(X["x"][:30])))
    assert clf.schema_.rows == {"train": 30}


def test_save_and_from_pretrained_round_trip(learned, export, tmp_path):
    clf, X, _ = learned
    out = clf.save_pretrained(tmp_path / "clf")
    assert sorted(p.name for p in out.iterdir()) == ["estimator.json", "model.safetensors", "schema.json",
                                                     "tokenizer.json"]
    assert not list(tmp_path.glob(".*"))                           # no temporary folder left behind
    meta = json.loads((out / "estimator.json").read_text())
    assert meta["class"] == "TabularClassifier" and meta["params"]["epochs"] == 12 and meta["classes"] == ["no", "yes"]
    back = TabularClassifier.from_pretrained(out)
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    assert type(load_estimator(out)) is TabularClassifier
    assert back.classes_.tolist() == clf.classes_.tolist() and back.get_params() == clf.get_params()
    clf.save_pretrained(out)                                       # saving over a saved estimator replaces it
    with pytest.raises(ModalzooError, match="holds a TabularClassifier, not a TabularRegressor"):
        TabularRegressor.from_pretrained(out)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ModalzooError, match="not a saved estimator"):
        clf.save_pretrained(tmp_path / "other")
    # a saved estimator is itself a starting point: its stream (not its head) is fine-tuned again
    again = TabularClassifier(pretrained=str(out), epochs=1).fit(X, learned[2])
    saved = load_file(str(out / "model.safetensors"))
    assert again.stream_source_.origin == str(out.resolve())
    assert not torch.equal(again.model_.state_dict()["streams.table.encoder.norm.weight"],
                           saved["streams.table.encoder.norm.weight"])     # one epoch moved it

    reg = TabularRegressor(pretrained=export, **FAST).fit(X, np.asarray(X["x"]) * 3)
    back = TabularRegressor.from_pretrained(reg.save_pretrained(tmp_path / "reg"))
    np.testing.assert_array_equal(back.predict(X), reg.predict(X))
    enc = TabularEncoder(pretrained=export).fit(X)
    np.testing.assert_array_equal(TabularEncoder.from_pretrained(enc.save_pretrained(tmp_path / "enc")).transform(X),
                                  enc.transform(X))


def test_classifier_learns_a_separable_rule(learned):
    clf, X, y = learned
    accuracy = (clf.predict(X) == y).mean()
    assert accuracy > 0.85, accuracy
    assert clf.score(X, y) == accuracy and clf.loss_curve_[-1] < clf.loss_curve_[0]


def test_regressor_beats_the_mean(export):
    rng = np.random.default_rng(6)
    X = {"a": rng.normal(size=200).round(3), "b": rng.normal(size=200).round(3),
         "colour": rng.choice(["red", "blue"], 200)}
    y = 5 + 3 * X["a"] - 2 * X["b"] + 0.1 * rng.normal(size=200)
    reg = TabularRegressor(pretrained=export, epochs=30, lr=1e-2, batch_size=16).fit(rows(X, slice(0, 150)), y[:150])
    pred = reg.predict(rows(X, slice(150, None)))
    mse, baseline = np.mean((pred - y[150:]) ** 2), np.mean((y[:150].mean() - y[150:]) ** 2)
    assert pred.dtype == np.float64 and mse < 0.2 * baseline, (mse, baseline)
    assert reg.schema_.label_type == "regression"


def test_encoder_outputs_and_weights(export):
    X, _ = table(50, seed=7)
    enc = TabularEncoder(pretrained=export).fit(X)
    cls, mean = enc.transform(X), enc.set_params(pooling="mean").transform(X)
    assert cls.shape == mean.shape == (50, 32) and cls.dtype == np.float64 and not np.allclose(cls, mean)
    assert enc.get_feature_names_out().tolist()[:2] == ["tabularencoder0", "tabularencoder1"]
    saved = load_file(f"{export}/model.safetensors")
    weights = enc.model_.state_dict()
    assert all(torch.equal(weights[k], saved[f"streams.table.{k}"]) for k in weights)      # the export's weights
    fresh = TabularEncoder(pretrained=export, random_init=True, seed=5).fit(X).model_.state_dict()
    matrices = [k for k in weights if weights[k].dim() == 2]
    assert matrices and not any(torch.equal(fresh[k], weights[k]) for k in matrices)      # the same shapes, fresh
    assert all(fresh[k].shape == weights[k].shape for k in weights)


def test_fit_is_deterministic_and_leaves_the_global_rng_alone(export):
    X, y = table(60, seed=8)
    rng_before = torch.get_rng_state()
    a = TabularClassifier(pretrained=export, **FAST, seed=1).fit(X, y).predict_proba(X)
    assert torch.equal(torch.get_rng_state(), rng_before)
    b = TabularClassifier(pretrained=export, **FAST, seed=1).fit(X, y).predict_proba(X)
    c = TabularClassifier(pretrained=export, **FAST, seed=2).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_no_pretrained_model_trains_its_own_tokenizer():
    X, y = table(60, seed=9)
    clf = TabularClassifier(epochs=1).fit(X, y)
    vocab = clf.stream_source_.tokenizer.tokenizer.get_vocab()
    assert {"colour", "city", "paris", "x", "noise"} <= set(vocab)
    assert clf.stream_source_.spec["embedding"]["vocab_size"] == len(vocab)
    proba = clf.predict_proba(X)
    assert proba.shape == (60, 2)
    again = TabularClassifier(epochs=1).fit(X, y)                    # the same vocabulary, ids and weights
    assert again.stream_source_.tokenizer.tokenizer.get_vocab() == vocab
    np.testing.assert_array_equal(again.predict_proba(X), proba)


def test_a_run_folder_and_its_export_fine_tune_alike(tmp_path):
    """`pretrained` takes a training run as it is (config.yaml + checkpoints): a 2-step tab_pool_tiny run, then
    its `modalzoo export --format modalzoo` folder; both give the same stream, tokenizer and fit."""
    import modalzoo
    from modalzoo.hub.export import export_run
    from modalzoo.modalities.tabular.sources import frame_source
    from modalzoo.modalities.tabular.tables import pack_tables

    X, y = table(80, seed=10)
    pack_tables([frame_source(X, "pool", "label", y)], tmp_path / "data", val_fraction=0.2)
    tiny = {"model.streams.table.embedding.dim": 32, "model.streams.table.embedding.vocab_size": 300,
            "model.streams.table.encoder.dim": 32, "model.streams.table.encoder.heads": 2,
            "model.streams.table.encoder.ffn_dim": 64, "model.streams.table.encoder.layers": 1,
            "model.targets.partitions.projection": 16, "data.tokenizer.vocab_size": 300, "data.num_workers": 0,
            "trainer.batch_size": 16, "trainer.max_steps": 2, "trainer.log_every": 2, "trainer.eval_every": 2,
            "trainer.eval_batches": 1, "trainer.checkpoint_every": 2, "trainer.warmup_steps": 1,
            "trainer.progress": False, "run_dir": tmp_path / "run", "data.path": tmp_path / "data"}
    run = modalzoo.train(modalzoo.load_recipe("tab_pool_tiny", [f"{k}={v}" for k, v in tiny.items()]))
    out = export_run(run, tmp_path / "export", format="modalzoo", echo=lambda *_: None)
    X2, y2 = table(60, seed=11)
    from_run = TabularClassifier(pretrained=str(run), **FAST).fit(X2, y2)
    from_export = TabularClassifier(pretrained=str(out), **FAST).fit(X2, y2)
    assert from_run.stream_source_.tokenizer.tokenizer.get_vocab() == \
        from_export.stream_source_.tokenizer.tokenizer.get_vocab()
    np.testing.assert_array_equal(from_run.predict_proba(X2), from_export.predict_proba(X2))
    random = TabularClassifier(pretrained=str(run), random_init=True, **FAST).fit(X2, y2)
    assert not np.array_equal(random.predict_proba(X2), from_run.predict_proba(X2))
