"""Audio's `modalzoo eval` reports (found by `evaluation/run.py` through `components.modality_modules`): HuBERT's
word probe and unit quality (`hubert_reports.py`), CLAP's zero-shot and retrieval (`clap_reports.py`)."""

from __future__ import annotations

from .clap_reports import REPORTS as CLAP_REPORTS
from .hubert_reports import REPORTS as HUBERT_REPORTS

REPORTS = [*HUBERT_REPORTS, *CLAP_REPORTS]
