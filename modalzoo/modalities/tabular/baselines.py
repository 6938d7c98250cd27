"""The classical baselines of the tabular report, on exactly the rows the transformer sees.

Both fit their preprocessing on the few-shot training rows only, typed by the same schema inference:
* `HistGradientBoostingClassifier` with defaults, numeric columns as numbers (NaN = missing, handled
  natively), categorical / binary columns as categories (codes from the training rows; an unseen value is
  missing), a date as its year and month; text columns left out; ``early_stopping`` off (small n).
* `LogisticRegression` on median-imputed, standardised numbers and one-hot categories
  (``handle_unknown='ignore'``), ``max_iter=2000``.
"""

from __future__ import annotations

import numpy as np

from .cells import parse_date
from .columns import TableSchema, missing, number, text


def _matrices(schema: TableSchema, columns: dict[str, list]) -> tuple[np.ndarray, np.ndarray]:
    """(numbers [n, a] float with NaN, categories [n, b] object with None) for the schema's kept columns."""
    n = len(next(iter(columns.values()))) if columns else 0
    nums, cats = [], []
    for col in schema.kept:
        values = columns.get(col.name, [None] * n)
        if col.type == "numeric":
            nums.append([np.nan if missing(v) or number(v) is None else number(v) for v in values])
        elif col.type == "date":
            days = [_day(v) for v in values]
            nums.append([np.nan if d is None else d.year for d in days])
            nums.append([np.nan if d is None else d.month for d in days])
        elif col.type in ("categorical", "binary"):
            cats.append([None if missing(v) else text(v) for v in values])
    num = np.array(nums, dtype=np.float64).T if nums else np.zeros((n, 0))
    cat = np.array(cats, dtype=object).T if cats else np.zeros((n, 0), dtype=object)
    return num.reshape(n, -1), cat.reshape(n, -1)


def _day(value):
    return None if missing(value) else parse_date(value)


def hgb_proba(schema: TableSchema, train: dict[str, list], y: np.ndarray, test: dict[str, list], seed: int):
    from sklearn.ensemble import HistGradientBoostingClassifier

    num_tr, cat_tr = _matrices(schema, train)
    num_te, cat_te = _matrices(schema, test)
    codes_tr, codes_te = np.zeros(cat_tr.shape), np.zeros(cat_te.shape)
    for j in range(cat_tr.shape[1]):
        levels = {v: i for i, v in enumerate(sorted({v for v in cat_tr[:, j] if v is not None}))}
        codes_tr[:, j] = [levels.get(v, np.nan) if v is not None else np.nan for v in cat_tr[:, j]]
        codes_te[:, j] = [levels.get(v, np.nan) if v is not None else np.nan for v in cat_te[:, j]]
    X_tr, X_te = np.hstack([num_tr, codes_tr]), np.hstack([num_te, codes_te])
    mask = [False] * num_tr.shape[1] + [True] * cat_tr.shape[1]
    model = HistGradientBoostingClassifier(categorical_features=mask if any(mask) else None, early_stopping=False,
                                           random_state=seed)
    model.fit(X_tr, y)
    return model.predict_proba(X_te), model.classes_


def logistic_proba(schema: TableSchema, train: dict[str, list], y: np.ndarray, test: dict[str, list], seed: int):
    from scipy import sparse
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    num_tr, cat_tr = _matrices(schema, train)
    num_te, cat_te = _matrices(schema, test)
    blocks_tr, blocks_te = [], []
    if num_tr.shape[1]:
        scale = make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler())
        blocks_tr.append(sparse.csr_matrix(scale.fit_transform(num_tr)))
        blocks_te.append(sparse.csr_matrix(scale.transform(num_te)))
    if cat_tr.shape[1]:
        onehot = OneHotEncoder(handle_unknown="ignore")
        fill = np.vectorize(lambda v: "<missing>" if v is None else v, otypes=[object])
        blocks_tr.append(onehot.fit_transform(fill(cat_tr)))
        blocks_te.append(onehot.transform(fill(cat_te)))
    if not blocks_tr:
        blocks_tr, blocks_te = [sparse.csr_matrix((len(y), 1))], [sparse.csr_matrix((num_te.shape[0], 1))]
    model = LogisticRegression(max_iter=2000, random_state=seed)
    model.fit(sparse.hstack(blocks_tr).tocsr(), y)
    return model.predict_proba(sparse.hstack(blocks_te).tocsr()), model.classes_
