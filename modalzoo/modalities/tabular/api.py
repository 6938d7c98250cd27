"""`modalzoo.tabular`: the tabular line's public API (`modalzoo/public.py` makes this module that name)."""

from .estimator import TabularClassifier, TabularEncoder, TabularInputError, TabularRegressor, load_estimator  # noqa: F401
from .pack import pack_dataframe  # noqa: F401
