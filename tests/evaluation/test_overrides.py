"""`modalzoo eval RUN data.KEY=V eval.REPORT.KEY=V`: data overrides go to the dataset, report options to the
reports (nested, YAML-typed), and a report refuses a key it does not have."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from modalzoo.evaluation.run import split_overrides


def test_data_and_report_overrides_are_split():
    data, options = split_overrides(["data.path=data/other", "eval.code_search.pairs=500",
                                     "eval.code_search.split=validation", "eval.edges.node_fraction=0.5"])
    assert data == ["data.path=data/other"]
    assert options == {"code_search": {"pairs": 500, "split": "validation"}, "edges": {"node_fraction": 0.5}}


def test_a_report_checks_its_options():
    from modalzoo.modalities.code.search import CodeSearchConfig, eval_options
    run = SimpleNamespace(eval_options=split_overrides(["eval.code_search.pairs=50"])[1])
    assert eval_options(run, "code_search", CodeSearchConfig).pairs == 50
    bad = SimpleNamespace(eval_options=split_overrides(["eval.code_search.pair=50"])[1])
    with pytest.raises(Exception, match="pairs"):
        eval_options(bad, "code_search", CodeSearchConfig)
    none = SimpleNamespace(eval_options=split_overrides(["eval.code_search.repeats=0"])[1])
    with pytest.raises(Exception, match="repeats must be >= 1"):
        eval_options(none, "code_search", CodeSearchConfig)
