"""Tables: `pack-table` and `tables-sample` (rows -> shards, one schema per table), the `table` dataset (rows
as column-name + value cells), the `table_cells` embedding, masked-cell modelling, TransTab's vertical-partition
contrastive learning and the row-label head; the scikit-learn estimators (`estimator.py`) and `reports` load on
demand."""

from . import dataset, embedding, objectives, pack, samples, tokenizer  # noqa: F401  (registering modules)
