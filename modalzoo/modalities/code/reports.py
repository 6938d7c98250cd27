"""Code reports, for runs whose streams read the `code_dataflow` embedding (GraphCodeBERT-style):

* code search (`search.py`): docstring -> function MRR on held-out pairs after the same short contrastive
  fine-tune from the run and from a random init, the run without nodes at test time, and zero-shot; a PNG of the
  arms. Once per run: for the first target that reads a `code_dataflow` stream.
* edge prediction F1 (`edges_report.py`) per edge type, next to the nearest-same-name heuristic: for a
  `data_flow` target with edge prediction. A run without one (the MLM-only arm) gets a note, not numbers.

The text modality's reports do not apply to these runs (their field is of kind "text", but they ask for a `token`
embedding: fill-mask, the LM report and the docstring probe all check ``embedding.registered_name == "token"``).
"""

from __future__ import annotations

from ...evaluation.run import LoadedRun, Report
from .edges_report import edge_f1, edge_lines
from .search import code_search, search_lines, search_png


def code_stream(run: LoadedRun, target_name: str) -> str | None:
    """The stream a target reads when it has a `code_dataflow` embedding, else None."""
    name = getattr(getattr(run.model.targets[target_name], "cfg", None), "stream", None)
    if isinstance(name, str) and name in run.model.streams:
        if getattr(run.model.streams[name].embedding, "registered_name", None) == "code_dataflow":
            return name
    return None


def has_edge_prediction(run: LoadedRun, target_name: str) -> bool:
    target = run.model.targets[target_name]
    return (getattr(target, "registered_name", None) == "data_flow" and bool(target.cfg.edge_prediction)
            and code_stream(run, target_name) is not None)


def search_applies(run: LoadedRun, target_name: str) -> bool:
    if code_stream(run, target_name) is None:
        return False
    return target_name == next(n for n in run.model.targets if code_stream(run, n) is not None)


def search_report(run: LoadedRun, target_name: str, batches: int) -> dict:
    result = code_search(run, code_stream(run, target_name))
    if "skipped" in result:
        lines = ["", f"code search skipped: {result['skipped']}"]
    else:
        result["summary"]["code_search_png"] = search_png(run, result)
        lines = search_lines(result)
    if not any(has_edge_prediction(run, n) for n in run.model.targets):
        lines += ["", "edge prediction F1: not computed (the run has no data_flow target with edge prediction)"]
    return {**result, "lines": lines}


def edges_report(run: LoadedRun, target_name: str, batches: int) -> dict:
    result = edge_f1(run, target_name)
    if "skipped" in result:
        return {**result, "lines": ["", f"edge prediction F1 skipped: {result['skipped']}"]}
    return {**result, "lines": edge_lines(result)}


REPORTS = [Report("code search MRR (contrastive fine-tune from the run and from random init)", search_applies,
                  search_report),
           Report("data-flow edge prediction F1 vs nearest-same-name heuristic", has_edge_prediction, edges_report)]
