"""The causal LM report of `modalzoo eval`: perplexity on the same tokens as a unigram baseline, and greedy
continuations of held-out docstring openings, on a tiny GPT trained for a few steps."""

from __future__ import annotations

import json
import math

import pytest
import torch

import modalzoo
from conftest import tiny_overrides
from modalzoo.evaluation.run import LoadedRun, evaluate_run
from modalzoo.modalities.text.lm_report import docstring_openings, lm_applies, unigram_logp
from tiny_models import GPT_RECIPE


@pytest.fixture(scope="module")
def evaluated(text_sample, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpt")
    (tmp / "gpt.yaml").write_text(GPT_RECIPE)
    overrides = tiny_overrides(text_sample, tmp / "run", **{"trainer.max_steps": 20, "trainer.lr": 3e-3,
                                                             "trainer.eval_every": 20, "trainer.checkpoint_every": 20})
    run_dir = modalzoo.train(modalzoo.load_recipe(str(tmp / "gpt.yaml"), overrides))
    printed: list[str] = []
    result = evaluate_run(run_dir, batches=3, echo=printed.append)
    return run_dir, result, "\n".join(printed)


def test_unigram_logp_is_add_one_smoothed():
    logp = unigram_logp(torch.tensor([3.0, 0.0, 1.0]))
    torch.testing.assert_close(logp.exp(), torch.tensor([4 / 7, 1 / 7, 2 / 7], dtype=logp.dtype))


@pytest.mark.slow
def test_perplexity_and_the_unigram_baseline_share_the_tokens(evaluated):
    run_dir, result, printed = evaluated
    saved = json.loads((run_dir / "eval.json").read_text())
    report = saved["lm"]
    # the report's model loss is the evaluation's (the same batches, the same label positions)
    assert report["lm"]["loss"] == pytest.approx(saved["val"]["lm/loss"], rel=1e-5)
    assert saved["val_perplexity"] == pytest.approx(math.exp(saved["val"]["lm/loss"]), rel=1e-5)
    baseline = report["baseline"]["metrics"]
    assert baseline["lm/perplexity"] == pytest.approx(math.exp(baseline["lm/loss"]))
    assert saved["unigram_perplexity"] == baseline["lm/perplexity"]
    # frequencies beat a uniform guess over the 2,000-token vocabulary by far (6.1-6.7 nats vs 7.6 on the
    # 0.4 MB samples of the machines tried; which docstrings it holds depends on what is installed)
    assert baseline["lm/loss"] < math.log(2000) - 0.5
    assert "unigram baseline" in printed.splitlines()[1]             # the table's baseline column
    assert f"validation perplexity {saved['val_perplexity']:.2f}" in printed


@pytest.mark.slow
def test_greedy_continuations_of_held_out_openings(evaluated):
    run_dir, result, printed = evaluated
    examples = result["lm"]["continuations"]
    openings = docstring_openings(LoadedRun(run_dir))
    assert [e["prompt"] for e in examples] == openings and len(openings) == 5
    assert all(len(o.split()) == 8 for o in openings)
    for ex in examples:
        assert 1 <= len(ex["ids"]) <= 24
        assert f"  {ex['prompt']} >>{ex['continuation']}" in printed
    assert json.loads((run_dir / "eval.json").read_text())["lm"]["continuations"] == examples


@pytest.mark.slow
def test_the_report_applies_to_causal_targets_only(evaluated, text_sample, tmp_path):
    run_dir, _, _ = evaluated
    assert lm_applies(LoadedRun(run_dir), "lm")
    mlm_dir = modalzoo.train(modalzoo.load_recipe("bert_mlm_tiny", tiny_overrides(text_sample, tmp_path / "mlm", **{
        "trainer.max_steps": 1, "trainer.eval_every": 1, "trainer.checkpoint_every": 1})))
    assert not lm_applies(LoadedRun(mlm_dir), "mlm")
