"""scikit-learn estimators over a pretrained table transformer (public as `modalzoo.tabular`):

    from modalzoo.tabular import TabularClassifier
    clf = TabularClassifier(pretrained="runs/tab_pool_tiny").fit(X, y)   # a run, an export or None
    clf.predict_proba(X_test); clf.save_pretrained("my-model")
    TabularClassifier.from_pretrained("my-model").predict(X_test)

``X`` is a pandas DataFrame, a dict of columns or a 2-D NumPy array (columns c0, c1, ...; at predict time an
array is read by position, as the training columns). Column types are inferred from the training rows
(`columns.py`) unless ``column_types`` names them; the schema (types, category lists, numeric median and
scale) is fitted in ``fit`` on the training rows only, so a cross-validation fold never sees its test rows.
At predict time a column the schema does not know is ignored (one warning names them all), a column it
knows but ``X`` lacks is a missing cell, and a category never seen in training is just its tokens.

``pretrained``: a run folder (config.yaml + checkpoints/ + tokenizer.json), a modalzoo export (config.json +
model.safetensors + tokenizer.json, a folder or ``hf-hub:REPO``) or a saved estimator; its table stream is
fine-tuned with a fresh `table_label` head (`finetune.py`). ``random_init=True`` keeps the architecture and
tokenizer and draws fresh weights (the report's random-init arm). ``None``: tab_pool_tiny's shape, fresh,
with a WordPiece trained on ``X``'s own column names and values.

Every fit is deterministic given ``seed`` (weights, batch order, cell subsets and dropout come from it, in a
forked RNG: the caller's global torch RNG is untouched). `save_pretrained` writes safetensors weights, the
init params, the fitted schema, the tokenizer and the classes (never a pickle), atomically; `from_pretrained`
reproduces ``predict_proba`` exactly.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, TransformerMixin
from sklearn.exceptions import DataConversionWarning
from sklearn.utils.validation import check_is_fitted

from ...errors import ModalzooError, closest
from . import finetune as ft
from .columns import TableSchema, missing, robust, text
from .sources import _plain, frame_columns, frame_source
from .tables import fit_schema

FORMAT = 1
SCHEMA_FILE = "schema.json"
TOKENIZER_FILE = "tokenizer.json"
TABLE = "table"


class TabularInputError(ModalzooError, ValueError):
    """Input an estimator cannot take (a ValueError for scikit-learn, a one-line error for the CLI)."""


def _is_frame(X) -> bool:
    return hasattr(X, "columns") and hasattr(X, "iloc")


def _is_named(X) -> bool:
    """Columns given by name: a dict, or a DataFrame whose column names are all strings (scikit-learn's rule
    for ``feature_names_in_``: a frame with integer column names is read by position, like an array)."""
    return isinstance(X, dict) or (_is_frame(X) and all(isinstance(c, str) for c in X.columns))


def _cell(value):
    """A plain cell value; pandas' NA and NaT (a nullable column's missing values, as ``Series.tolist()`` gives
    them) are None."""
    if type(value).__name__ in ("NAType", "NaTType"):
        return None
    return _plain(value)


def _jsonable(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    return str(value)


class _TabularBase(BaseEstimator):
    """What the three estimators share: reading X, fitting the schema, loading the stream, saving."""

    # ------------------------------------------------------------------------------------------ inputs
    def _table(self, X, fitting: bool) -> dict[str, list]:
        """X as {column: plain values}; at predict time by the fitted names (an array: by position)."""
        if hasattr(X, "tocsr") or type(X).__module__.startswith("scipy.sparse"):
            raise TypeError(f"{type(self).__name__} does not take sparse input: pass a DataFrame, a dict of columns "
                            f"or a dense array")
        if not isinstance(X, dict) and not _is_frame(X):
            X = np.asarray(X)
            shape = X.shape
            if len(shape) != 2:
                raise TabularInputError(f"X must be a table (DataFrame, dict of columns or 2-D array), got shape "
                                        f"{shape}. Reshape your data either using array.reshape(-1, 1) if it has one "
                                        f"column or array.reshape(1, -1) if it is one row")
            if np.iscomplexobj(X):
                raise TabularInputError("Complex data not supported")
            if shape[1] == 0:
                raise TabularInputError(f"0 feature(s) (shape={shape}) while a minimum of 1 is required.")
        try:
            names, cols = frame_columns(X)
        except ModalzooError as err:
            raise TabularInputError(str(err)) from None
        if not names:
            raise TabularInputError("0 feature(s) (X has no column) while a minimum of 1 is required.")
        if _is_frame(X) and not _is_named(X):
            names = [f"c{i}" for i in range(len(names))]
        if len(set(names)) != len(names):
            dup = next(c for c in names if names.count(c) > 1)
            raise TabularInputError(f"X has two columns named {dup!r}")
        cls = type(self).__name__
        if not fitting and _is_named(X) and not hasattr(self, "feature_names_in_") and \
                len(names) == self.n_features_in_ and not set(names) & set(self.column_names_):
            warnings.warn(f"X has feature names, but {cls} was fitted without feature names: its columns are read "
                          f"by position", UserWarning, stacklevel=4)
            names = list(self.column_names_)
        elif not fitting and not _is_named(X):
            if len(names) != self.n_features_in_:
                raise TabularInputError(f"X has {len(names)} features, but {cls} is expecting "
                                        f"{self.n_features_in_} features as input (an array is read by position; "
                                        f"a DataFrame or a dict of columns gives them by name)")
            if hasattr(self, "feature_names_in_"):
                warnings.warn(f"X does not have valid feature names, but {cls} was fitted with feature names: its "
                              f"columns are read by position", UserWarning, stacklevel=4)
            names = list(self.column_names_)
        if not len(cols[0]):
            raise TabularInputError(f"Found array with 0 sample(s) (shape=(0, {len(names)})) while a minimum of 1 "
                                    f"is required.")
        return {n: [_cell(v) for v in c] for n, c in zip(names, cols)}

    def _column_types(self, names: list[str]) -> dict[str, str]:
        given = dict(self.column_types or {})
        for name in given:
            if name not in names:
                hint = closest(name, names)
                raise TabularInputError(f"column_types names {name!r}, which X does not have"
                                        + (f" (did you mean {hint!r}?)" if hint else ""))
        return given

    def _fit_inputs(self, X) -> dict[str, list]:
        table = self._table(X, fitting=True)
        names = list(table)
        self.column_names_ = np.array(names, dtype=object)
        self.n_features_in_ = len(names)
        if _is_named(X):
            self.feature_names_in_ = np.array(names, dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        return table

    def _predict_inputs(self, X) -> dict[str, list]:
        check_is_fitted(self, "model_")
        table = self._table(X, fitting=False)
        known = {c.name for c in self.schema_.columns}
        unknown = [c for c in table if c not in known]
        if unknown:
            warnings.warn(f"{type(self).__name__}: X has columns the model was not fitted with, ignored: "
                          f"{', '.join(map(str, unknown))}", UserWarning, stacklevel=3)
        return {c: v for c, v in table.items() if c in known}

    @staticmethod
    def _label_name(names) -> str:
        label = "label"
        while label in names:
            label = f"_{label}_"
        return label

    def _device(self) -> torch.device:
        from ...training.runs import resolve_device
        try:
            return resolve_device(str(self.device))
        except (ModalzooError, RuntimeError) as err:
            raise TabularInputError(f"device={self.device!r}: {err}") from None

    def _source(self, schema: TableSchema, table: dict[str, list]) -> ft.StreamSource:
        if self.pretrained is None:
            return ft.default_source(schema, table, seed=self.seed)
        return ft.load_source(self.pretrained, random_init=bool(self.random_init), seed=self.seed)

    def _state(self):
        state = getattr(self, "_table_state", None)
        if state is None or state.schemas.get(self.schema_.name) is not self.schema_:
            state = self._table_state = self.stream_source_.state(self.schema_)
        return state

    def _rows(self, table: dict[str, list], labels=None, values=None):
        return ft.table_rows(table, self.schema_, self._state(), labels, values)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.string = True
        tags.input_tags.categorical = True
        tags.non_deterministic = False
        return tags

    def __getstate__(self):
        state = dict(super().__getstate__())               # scikit-learn stamps its version here
        state.pop("_table_state", None)                     # a cache of token ids: rebuilt on use
        return state

    # ------------------------------------------------------------------------------------------ files
    def _module(self) -> torch.nn.Module:
        """The weights to save: a `TableModel` (stream + head), or for the encoder its stream as ``streams.NAME``."""
        return self.model_

    def save_pretrained(self, path: str | Path) -> Path:
        """Write the fitted estimator to the folder ``path`` (estimator.json, schema.json, tokenizer.json,
        model.safetensors), atomically: assembled under a temporary name, then renamed into place. A folder
        that holds anything but a saved estimator is never replaced."""
        from safetensors.torch import save_file

        from ... import __version__
        check_is_fitted(self, "model_")
        out = Path(path)
        if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / ft.ESTIMATOR_FILE).exists())):
            raise ModalzooError(f"{out} exists and is not a saved estimator: save into a new folder")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            meta = {"modalzoo": {"version": __version__, "format": FORMAT}, "class": type(self).__name__,
                    "params": _jsonable(self.get_params(deep=False)), "stream": self.stream_source_.settings(),
                    "column_names": [str(c) for c in self.column_names_], "named": hasattr(self, "feature_names_in_"),
                    "origin": self.stream_source_.origin, **self._meta()}
            (tmp / ft.ESTIMATOR_FILE).write_text(json.dumps(meta, indent=1))
            self.schema_.save(tmp / SCHEMA_FILE)
            self.stream_source_.tokenizer.save(tmp / TOKENIZER_FILE)
            weights = {k: v.detach().cpu().contiguous().clone() for k, v in self._module().state_dict().items()}
            save_file(weights, str(tmp / ft.WEIGHTS_FILE), metadata={"format": "modalzoo-tabular-estimator"})
            if out.exists():
                out.rename(old)
            tmp.rename(out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(old, ignore_errors=True)
        return out

    def _meta(self) -> dict:
        return {}

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | None = None):
        """A fitted estimator from `save_pretrained`'s folder (``device``: where to put it; default the saved
        ``device`` parameter)."""
        from safetensors.torch import load_file
        path = Path(path)
        file = path / ft.ESTIMATOR_FILE
        if not file.exists():
            raise ModalzooError(f"{path} has no {ft.ESTIMATOR_FILE}: not a saved tabular estimator")
        meta = json.loads(file.read_text())
        if meta.get("class") != cls.__name__:
            raise ModalzooError(f"{path} holds a {meta.get('class')}, not a {cls.__name__}: load it with "
                                f"{meta.get('class')}.from_pretrained")
        if meta.get("modalzoo", {}).get("format", FORMAT) > FORMAT:
            raise ModalzooError(f"{path} was saved by a newer modalzoo (format {meta['modalzoo']['format']})")
        params = dict(meta["params"])
        if device is not None:
            params["device"] = device
        est = cls(**params)
        with ft.seeded(0):                              # the weights are loaded over the fresh ones
            est.stream_source_ = ft.from_settings(meta["stream"], path / TOKENIZER_FILE)
            est.stream_source_.origin = meta.get("origin", "")
            est.schema_ = TableSchema.load(path / SCHEMA_FILE)
            names = meta["column_names"]
            est.column_names_ = np.array(names, dtype=object)
            est.n_features_in_ = len(names)
            if meta.get("named"):
                est.feature_names_in_ = np.array(names, dtype=object)
            est._restore(meta)
        state = load_file(str(path / ft.WEIGHTS_FILE))
        module = est._module()
        result = module.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise ModalzooError(f"{path / ft.WEIGHTS_FILE} does not fit the estimator: missing "
                                f"{result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}")
        module.to(est._device()).eval()
        return est


class _Supervised(_TabularBase):
    """Classifier and regressor: fine-tune the stream with a `table_label` head."""

    def _train(self, table: dict[str, list], schema: TableSchema, task: str, classes: int, labels=None,
               values=None):
        device = self._device()
        self.schema_ = schema
        self.stream_source_ = self._source(schema, table)          # its fresh weights drawn from seed, inside
        with ft.seeded(self.seed, device):                          # the head's, whatever loading drew before
            self.model_ = ft.TableModel(self.stream_source_.stream, task, classes, name=self.stream_source_.name)
        rows = self._rows(table, labels, values)
        settings = ft.TrainSettings(epochs=int(self.epochs), batch_size=int(self.batch_size), lr=float(self.lr),
                                    weight_decay=float(self.weight_decay), max_cells=int(self.max_cells),
                                    seed=int(self.seed), verbose=bool(self.verbose))
        self.loss_curve_ = ft.train_rows(self.model_, rows, settings, device)
        self.n_iter_ = len(self.loss_curve_)
        return self

    def _outputs(self, X) -> np.ndarray:
        table = self._predict_inputs(X)
        rows = self._rows(table)
        return ft.predict_rows(self.model_, rows, max_cells=int(self.max_cells), device=self._device())

    def _restore(self, meta: dict) -> None:
        self.loss_curve_ = list(meta.get("loss_curve", []))
        self.n_iter_ = len(self.loss_curve_)
        self.model_ = ft.TableModel(self.stream_source_.stream, meta["task"], meta.get("n_outputs", 1),
                                    name=self.stream_source_.name)

    def _meta(self) -> dict:
        return {"loss_curve": [float(x) for x in self.loss_curve_], "task": self.model_.head.cfg.task,
                "n_outputs": self.model_.head.cfg.classes}


def _labels(y, n: int) -> np.ndarray:
    if y is None:
        raise TabularInputError("this estimator requires y to be passed, but the target y is None")
    y = np.asarray(y.tolist() if hasattr(y, "tolist") and not isinstance(y, np.ndarray) else y)
    if y.ndim == 2 and y.shape[1] == 1:
        warnings.warn("A column-vector y was passed when a 1d array was expected. Please change the shape of y to "
                      "(n_samples,), for example using ravel().", DataConversionWarning, stacklevel=3)
        y = y[:, 0]
    if y.ndim != 1:
        raise TabularInputError(f"y must be one label per row (1-D), got shape {y.shape}")
    if len(y) != n:
        raise TabularInputError(f"X has {n} rows but y has {len(y)}")
    return y


class TabularClassifier(ClassifierMixin, _Supervised):
    """Fine-tunes a pretrained table transformer (or a small fresh one) to classify rows; binary or multiclass,
    string or integer labels (``classes_``: their sorted unique values, the order of ``predict_proba``)."""

    def __init__(self, pretrained=None, column_types=None, epochs=30, batch_size=32, lr=3e-4, weight_decay=0.01,
                 max_cells=64, random_init=False, device="cpu", seed=0, verbose=False):
        self.pretrained = pretrained
        self.column_types = column_types
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.max_cells = max_cells
        self.random_init = random_init
        self.device = device
        self.seed = seed
        self.verbose = verbose

    def fit(self, X, y):
        from sklearn.utils.multiclass import check_classification_targets
        table = self._fit_inputs(X)
        n = len(next(iter(table.values())))
        y = _labels(y, n)
        if any(missing(v) for v in y.tolist()):
            raise TabularInputError("y has missing labels (None, NaN or empty): drop those rows first")
        check_classification_targets(y)
        classes, index = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise TabularInputError(f"y has one class ({classes[0]!r}): a classifier needs at least two")
        self.classes_ = classes
        label = self._label_name(table)
        types = {**self._column_types(list(table)), label: "categorical"}
        try:
            schema = fit_schema(frame_source(table, TABLE, label, y.tolist()), types)
        except ModalzooError as err:
            raise TabularInputError(str(err)) from None
        schema.label_type = "binary" if len(classes) == 2 else "multiclass"
        schema.classes = [text(v) for v in classes.tolist()]
        return self._train(table, schema, schema.label_type, len(classes), labels=index.tolist())

    def predict_proba(self, X) -> np.ndarray:
        """[n, len(classes_)] float64 probabilities, columns in ``classes_`` order."""
        logits = torch.from_numpy(self._outputs(X))
        return torch.softmax(logits, dim=1).numpy()

    def predict(self, X) -> np.ndarray:
        proba = self.predict_proba(X)                   # first: an unfitted estimator raises NotFittedError
        return self.classes_[proba.argmax(1)]

    def _meta(self) -> dict:
        return {**super()._meta(), "classes": _jsonable(self.classes_.tolist()),
                "classes_dtype": self.classes_.dtype.str}

    def _restore(self, meta: dict) -> None:
        super()._restore(meta)
        self.classes_ = np.array(meta["classes"], dtype=np.dtype(meta["classes_dtype"]))


class TabularRegressor(RegressorMixin, _Supervised):
    """Fine-tunes a pretrained table transformer (or a small fresh one) to predict a number per row: MSE on the
    label standardised by the training rows' median and robust scale; ``predict`` in the label's units."""

    def __init__(self, pretrained=None, column_types=None, epochs=30, batch_size=32, lr=3e-4, weight_decay=0.01,
                 max_cells=64, random_init=False, device="cpu", seed=0, verbose=False):
        self.pretrained = pretrained
        self.column_types = column_types
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.max_cells = max_cells
        self.random_init = random_init
        self.device = device
        self.seed = seed
        self.verbose = verbose

    def fit(self, X, y):
        table = self._fit_inputs(X)
        n = len(next(iter(table.values())))
        y = _labels(y, n)
        try:
            y = y.astype(np.float64)
        except (TypeError, ValueError):
            raise TabularInputError("y must be numbers for a regressor (use TabularClassifier for classes)") from None
        if not np.isfinite(y).all():
            raise TabularInputError("y has missing or infinite values: drop those rows first")
        try:
            schema = fit_schema(frame_source(table, TABLE), self._column_types(list(table)))
        except ModalzooError as err:
            raise TabularInputError(str(err)) from None
        schema.label, schema.label_type = self._label_name(table), "regression"
        schema.label_median, schema.label_scale = robust(y.tolist())
        scaled = (y - schema.label_median) / schema.label_scale
        return self._train(table, schema, "regression", 1, values=scaled.tolist())

    def predict(self, X) -> np.ndarray:
        out = self._outputs(X)[:, 0]
        return out * self.schema_.label_scale + self.schema_.label_median


class TabularEncoder(TransformerMixin, _TabularBase):
    """Rows -> embeddings: the [CLS] state (``pooling="cls"``) or the mean of the cells' states ("mean") of a
    pretrained table transformer, no training. ``fit`` fits the schema on X's rows (y is ignored)."""

    def __init__(self, pretrained=None, column_types=None, pooling="cls", batch_size=256, max_cells=64,
                 random_init=False, device="cpu", seed=0):
        self.pretrained = pretrained
        self.column_types = column_types
        self.pooling = pooling
        self.batch_size = batch_size
        self.max_cells = max_cells
        self.random_init = random_init
        self.device = device
        self.seed = seed

    def fit(self, X, y=None):
        if self.pooling not in ("cls", "mean"):
            raise TabularInputError(f"pooling must be 'cls' or 'mean', got {self.pooling!r}")
        table = self._fit_inputs(X)
        try:
            self.schema_ = fit_schema(frame_source(table, TABLE), self._column_types(list(table)))
        except ModalzooError as err:
            raise TabularInputError(str(err)) from None
        device = self._device()
        self.stream_source_ = self._source(self.schema_, table)
        self.model_ = self.stream_source_.stream.to(device).eval()
        self._n_features_out = int(self.model_.encoder.dim)
        self._state()
        return self

    def transform(self, X) -> np.ndarray:
        """[n, D] float64 embeddings."""
        table = self._predict_inputs(X)
        rows = self._rows(table)
        return ft.embed_rows(self.model_, rows, self.pooling, int(self.batch_size), int(self.max_cells),
                             self._device())

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        check_is_fitted(self, "model_")
        return np.array([f"tabularencoder{i}" for i in range(self._n_features_out)], dtype=object)

    def _module(self) -> torch.nn.Module:
        return torch.nn.ModuleDict({"streams": torch.nn.ModuleDict({self.stream_source_.name: self.model_})})

    def _restore(self, meta: dict) -> None:
        self.model_ = self.stream_source_.stream
        self._n_features_out = int(self.model_.encoder.dim)


def load_estimator(path: str | Path):
    """Whichever estimator `save_pretrained` wrote to ``path``."""
    file = Path(path) / ft.ESTIMATOR_FILE
    if not file.exists():
        raise ModalzooError(f"{path} has no {ft.ESTIMATOR_FILE}: not a saved tabular estimator")
    name = json.loads(file.read_text()).get("class")
    classes = {c.__name__: c for c in (TabularClassifier, TabularRegressor, TabularEncoder)}
    if name not in classes:
        raise ModalzooError(f"{path} holds an unknown estimator class {name!r}")
    return classes[name].from_pretrained(path)


__all__ = ["TabularClassifier", "TabularEncoder", "TabularInputError", "TabularRegressor", "load_estimator"]
