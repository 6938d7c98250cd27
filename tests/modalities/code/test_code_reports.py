"""The code reports: code search MRR (`search.py`) and edge-prediction F1 against the nearest-same-name heuristic
(`edges_report.py`). The metric is checked on scorers whose answer is known (perfect: 1, constant: chance), the
heuristic and the edge replay on hand-made samples, the no-nodes arm on its batch, and the whole report on a tiny
run trained here on standard-library functions (a few steps, a tiny fine-tune budget, a pool of 40 pairs)."""

from __future__ import annotations

import json
import math
import sysconfig
from pathlib import Path

import pytest
import torch

import modalzoo
from modalzoo.datasets.shards import ShardWriter
from modalzoo.evaluation.run import LoadedRun, evaluate_run, reports_for
from modalzoo.modalities.code import edges_report, reports, search
from modalzoo.modalities.code.layout import CODE, COMMENT, NODE, NODE_POS, collate, lay_out
from modalzoo.modalities.code.objectives import DataFlowConfig
from modalzoo.modalities.code.python import functions, sample_from_code
from modalzoo.modalities.code.sample import CodeSample

pytestmark = pytest.mark.timeout(300)

POOL = 40
TINY_SEARCH = {"pairs": POOL, "finetune_pairs": 16, "finetune_steps": 3, "batch_size": 8, "warmup_steps": 1,
               "encode_batch": 32, "repeats": 2}
SHRINK = {"trainer.max_steps": 4, "trainer.batch_size": 8, "trainer.log_every": 2, "trainer.eval_every": 4,
          "trainer.eval_batches": 1, "trainer.checkpoint_every": 4, "trainer.warmup_steps": 1,
          "trainer.progress": False, "data.num_workers": 0, "data.seq_len": 96, "data.max_nodes": 24,
          "data.comment_len": 16, "data.tokenizer.vocab_size": 400, "data.tokenizer.min_frequency": 1,
          "model.streams.code.embedding.vocab_size": 400, "model.streams.code.embedding.dim": 32,
          "model.streams.code.embedding.max_positions": 98, "model.streams.code.encoder.dim": 32,
          "model.streams.code.encoder.heads": 2, "model.streams.code.encoder.ffn_dim": 64,
          "model.streams.code.encoder.layers": 2}


def stdlib_samples(name: str) -> list[CodeSample]:
    text = (Path(sysconfig.get_paths()["stdlib"]) / name).read_text()
    return [s for s in functions(text, name, need_docstring=True) if isinstance(s, CodeSample)]


@pytest.fixture(scope="module")
def code_data(tmp_path_factory) -> Path:
    """train: calendar, ftplib, configparser functions; validation: a few of them; test: pathlib's (held out)."""
    root = tmp_path_factory.mktemp("code-reports")
    train = [s for f in ("calendar.py", "ftplib.py", "configparser.py") for s in stdlib_samples(f)]
    test = stdlib_samples("pathlib.py")
    assert len(train) >= 60 and len(test) >= POOL
    for split, items in (("train", train), ("validation", train[:8]), ("test", test)):
        with ShardWriter(root, split, max_count=40) as w:
            for i, s in enumerate(items):
                w.write({"__key__": f"{split}-{i:06d}", "json": s.to_json()})
    return root


@pytest.fixture(scope="module")
def tiny_run(code_data, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "graphcodebert"
    overrides = [f"{k}={v}" for k, v in {**SHRINK, "run_dir": run_dir, "data.path": code_data}.items()]
    torch.manual_seed(0)
    return modalzoo.train(modalzoo.load_recipe("graphcodebert_tiny", overrides))


# ------------------------------------------------------------------------------------------------- metric

def test_mrr_of_a_perfect_scorer_is_one_and_of_a_constant_scorer_chance():
    n = 1000
    perfect = search.ranking_metrics(torch.eye(n))
    assert perfect["mrr"] == pytest.approx(1.0) and perfect["recall@1"] == pytest.approx(1.0)
    constant = search.ranking_metrics(torch.zeros(n, n))
    chance = sum(1 / r for r in range(1, n + 1)) / n
    assert search.chance_mrr(n) == pytest.approx(chance, rel=1e-9) and chance == pytest.approx(0.00749, abs=1e-4)
    assert constant["mrr"] == pytest.approx(chance, rel=1e-9)
    assert constant["recall@1"] == pytest.approx(1 / n) and constant["recall@10"] == pytest.approx(10 / n)
    noise = search.ranking_metrics(torch.randn(n, n, generator=torch.Generator().manual_seed(0)))
    assert abs(noise["mrr"] - chance) < 0.004                    # a random scorer is near chance, not above
    # the right candidate second of three everywhere: rank 2
    second = torch.tensor([[0.5, 0.9, 0.1], [0.1, 0.5, 0.9], [0.9, 0.1, 0.5]])
    assert search.ranking_metrics(second)["mrr"] == pytest.approx(0.5)
    assert search.ranking_metrics(second)["recall@1"] == 0 and search.ranking_metrics(second)["recall@5"] == 1
    # one tie with the right candidate (the rest below): expected 1/rank = (1 + 1/2) / 2
    tied = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert search.ranking_metrics(tied)["mrr"] == pytest.approx((0.75 + 1 + 1) / 3)


# ------------------------------------------------------------------------------------------------- search

def test_the_three_sides_lay_out_as_the_arms_need():
    tok = search_tokenizer([s for s in stdlib_samples("pathlib.py")])
    samples = stdlib_samples("pathlib.py")[:6]
    field = type("F", (), {"seq_len": 96, "max_nodes": 24, "comment_len": 16})()
    pairs = search.lay_out_pairs(samples, field, tok, no_nodes=True)
    queries = collate(pairs.queries, tok.pad_id)
    assert (queries["token_role"] == COMMENT).any() and not (queries["token_role"] == CODE).any()
    assert not (queries["token_role"] == NODE).any()
    with_nodes = collate(pairs.codes, tok.pad_id)
    assert not (with_nodes["token_role"] == COMMENT).any()          # the docstring is not on the code side
    assert (with_nodes["token_role"] == NODE).sum() > 0 and with_nodes["dfg_edges"].any()
    bare = collate(pairs.codes_no_nodes, tok.pad_id)
    assert not (bare["token_role"] == NODE).any() and not bare["dfg_edges"].any()
    assert not ((bare["position_idx"] == NODE_POS) & (bare["token_role"] != 0)).any()
    assert not bare["node_span"].any()
    for a, b in zip(pairs.codes, pairs.codes_no_nodes):             # the same code, only the nodes gone
        assert list(a.ids[:a.first_node]) == list(b.ids) and len(b.ids) == b.first_node
    assert search.text_mask(with_nodes).sum() == search.text_mask(bare).sum()   # pooled over the same tokens


def search_tokenizer(samples):
    from modalzoo.registry import TOKENIZERS
    texts = [s.docstring + "\n" + " ".join(s.leaves()) for s in samples]
    return TOKENIZERS.build({"name": "bytelevel_bpe", "vocab_size": 400, "min_frequency": 1}).train(texts)


# -------------------------------------------------------------------------------------------------- edges

HAND = "def f(a, b):\n    c = a + b\n    a = c\n    return a * b\n"


def test_heuristic_on_a_hand_made_sample():
    sample = sample_from_code(HAND, "Combine two numbers.")
    names = [sample.token_text(t) for t in sample.nodes]
    assert names == ["a", "b", "c", "a", "b", "a", "c", "a", "b"]
    predicted = edges_report.nearest_same_name(names)
    assert predicted == {(0, 3), (1, 4), (3, 5), (2, 6), (5, 7), (4, 8)}
    truth = {tuple(sorted((a, b))) for a, b, _ in sample.edges}
    # right: the uses of the parameters and of c, the returned a from its assignment; wrong: a's new definition
    # "from" its earlier use (3, 5), and the returned b from its use (4, 8) instead of the parameter (1, 8)
    assert predicted & truth == {(0, 3), (1, 4), (2, 6), (5, 7)}
    assert truth - predicted == {(2, 3), (2, 4), (5, 6), (1, 8)}
    # on the laid-out batch the names come from the leaves' subword ids: the same pairs
    tok = search_tokenizer([sample] * 5)
    laid = lay_out(sample, tok, 96, 24, 16)
    batch = collate([laid], tok.pad_id)
    grid = edges_report.heuristic_edges(batch)[0]
    t = laid.first_node
    assert {(j - t, i - t) for j, i in grid.nonzero().tolist()} == predicted


def test_edge_replay_matches_the_training_masking():
    tok = search_tokenizer(stdlib_samples("pathlib.py"))
    rows = [lay_out(s, tok, 96, 24, 16) for s in stdlib_samples("pathlib.py")[:12]]
    batch = collate(rows, tok.pad_id)
    cfg = DataFlowConfig(edge_prediction=True, node_alignment=False, combine="sum", node_fraction=0.2)
    drawn, masked = edges_report.drawn_and_masked(batch, cfg, seed=3)
    candidates = edges_report.candidate_pairs(batch, drawn)
    pairs, labels = masked["edge_pairs"], masked["edge_labels"]
    assert candidates[pairs[:, 0], pairs[:, 1], pairs[:, 2]].all()      # training's pairs are candidates ...
    kind = torch.maximum(batch["dfg_edges"], batch["dfg_edges"].transpose(1, 2))
    assert int(labels.sum()) == int((candidates & (kind > 0)).sum())    # ... and all its positives are ours
    assert int((candidates & (kind == 0)).sum()) > int(labels.sum())    # we score all negatives, not a sample
    assert (drawn.sum(1) >= 1).all()


def test_edge_f1_per_type():
    kind = torch.tensor([1, 1, 2, 0, 0, 0])
    assert edges_report.f1_scores(kind > 0, kind) == {"": 1.0, "_comesFrom": 1.0, "_computedFrom": 1.0}
    everything = edges_report.f1_scores(torch.ones(6, dtype=torch.bool), kind)
    assert everything[""] == pytest.approx(2 * 3 / (6 + 3))
    assert everything["_comesFrom"] == pytest.approx(2 * 2 / (5 + 2))     # 2 comesFrom among 2 + 3 non-edges
    assert everything["_computedFrom"] == pytest.approx(2 * 1 / (4 + 1))


# ---------------------------------------------------------------------------------------------- the report

def test_reports_on_a_tiny_run(tiny_run, monkeypatch):
    monkeypatch.setattr(LoadedRun, "eval_options", {"code_search": TINY_SEARCH}, raising=False)
    run = LoadedRun(tiny_run)
    # only the code reports apply: not the text ones (fill-mask, LM, docstring probe), though the field is "text"
    assert [r.name for r in reports_for(run, "mlm")] == [reports.REPORTS[0].name]
    assert [r.name for r in reports_for(run, "data_flow")] == [reports.REPORTS[1].name]
    lines = []
    result = evaluate_run(tiny_run, batches=1, echo=lines.append)
    assert json.loads((tiny_run / "eval.json").read_text())["code_search_mrr"] == result["code_search_mrr"]
    chance = search.chance_mrr(POOL)
    assert result["code_search_pairs"] == POOL and result["code_search_chance_mrr"] == pytest.approx(chance)
    for arm in ("", "_random_init", "_no_nodes", "_zero_shot", "_random_init_zero_shot"):
        assert 1 / POOL <= result[f"code_search_mrr{arm}"] <= 1, arm
        recalls = [result[f"code_search_recall@{k}{arm}"] for k in (1, 5, 10)]
        assert 0 <= recalls[0] <= recalls[1] <= recalls[2] <= 1
    for who in ("", "_heuristic"):
        for kind in ("", "_comesFrom", "_computedFrom"):
            assert 0 <= result[f"edge_f1{who}{kind}"] <= 1, who + kind
    assert result["edge_f1_heuristic_comesFrom"] > 0.2                     # it finds many uses' definitions
    assert Path(result["code_search_png"]).stat().st_size > 5000
    printed = "\n".join(lines)
    assert "code search" in printed and "heuristic (nearest same name)" in printed and "chance" in printed
    assert not math.isnan(result["mlm"]["finetune"]["run"]["loss_last"])
    # two fine-tune seeds per arm: the figures are their means, the gain is per seed on the same batches
    per_repeat, gains = result["mlm"]["per_repeat"], result["mlm"]["gains"]
    assert result["code_search_repeats"] == 2 and len(per_repeat["run"]) == len(per_repeat["random_init"]) == 2
    assert result["code_search_mrr"] == pytest.approx(sum(per_repeat["run"]) / 2)
    assert result["code_search_mrr_random_init"] == pytest.approx(sum(per_repeat["random_init"]) / 2)
    assert gains == pytest.approx([r - b for r, b in zip(per_repeat["run"], per_repeat["random_init"])])
    assert result["code_search_mrr_gain_over_random_init"] == pytest.approx(sum(gains) / 2)
    assert result["code_search_mrr_std"] >= 0 and "per fine-tune seed" in printed


def test_an_mlm_only_run_gets_no_edge_numbers(tiny_run, monkeypatch):
    run = LoadedRun(tiny_run)
    del run.model.targets["data_flow"]
    assert [r.name for r in reports_for(run, "mlm")] == [reports.REPORTS[0].name]
    monkeypatch.setattr(reports, "code_search", lambda *_: {"skipped": "not run here"})
    out = reports.search_report(run, "mlm", 1)
    assert any("edge prediction F1: not computed" in line for line in out["lines"]) and "summary" not in out
