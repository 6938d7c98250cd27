"""A tiny tab_pool_tiny run exported in modalzoo format: the folder carries config, weights, tokenizer and the
table schemas, its card has the tabular Hub metadata and the eval numbers, `from_pretrained` and the
estimator's loader give the run's stream outputs on a batch built from the folder alone, the card's usage
snippet (from_pretrained, then `TabularClassifier(pretrained=FOLDER).fit`) runs as written, and
`--format hf` is refused with the reason (no transformers class classifies table rows)."""

from __future__ import annotations

import json
import random
import re

import pytest
import torch

import modalzoo
from modalzoo import ModalzooError
from modalzoo.cli import main
from modalzoo.hub import architecture
from modalzoo.hub.export import export_run
from modalzoo.modalities.tabular.finetune import load_source
from modalzoo.modalities.tabular.hub import REFUSAL, results_table
from modalzoo.modalities.tabular.tables import TableSource, pack_tables
from modalzoo.registry import DATASETS
from modalzoo.training.runs import load_run_model

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.timeout(300)]

TINY = {"model.streams.table.embedding.dim": 32, "model.streams.table.embedding.vocab_size": 300,
        "model.streams.table.encoder.dim": 32, "model.streams.table.encoder.heads": 2,
        "model.streams.table.encoder.ffn_dim": 64, "model.streams.table.encoder.layers": 1,
        "model.targets.partitions.projection": 16, "data.tokenizer.vocab_size": 300, "data.num_workers": 0,
        "trainer.batch_size": 16, "trainer.max_steps": 3, "trainer.log_every": 3, "trainer.eval_every": 3,
        "trainer.eval_batches": 1, "trainer.checkpoint_every": 3, "trainer.warmup_steps": 1,
        "trainer.progress": False}

AUC = {"pretrained": {"mean": 0.61, "sd": 0.02}, "random_init": {"mean": 0.6, "sd": 0.03},
       "hgb": {"mean": 0.58, "sd": 0.04}, "logistic": {"mean": 0.63, "sd": 0.01}, "gain": {"mean": 0.01, "sd": 0.02}}
EVAL = {"step": 3, "auc_gain_small_n": 0.0125, "control_auc_gain": 0.031, "tabular_png": "tabular_auc.png",
        "tabular_auc": {"mroz": {"32": AUC}}}


def _rows():
    r = random.Random(0)
    for i in range(160):
        age = r.randint(18, 80)
        yield [str(age), r.choice(["red", "green", "blue"]), "NA" if i % 11 == 0 else f"{r.random() * 100:.2f}",
               f"2020-0{r.randint(1, 9)}-1{r.randint(0, 9)}", r.choice(["a b c d", "some words here", "x"]),
               "yes" if age > 45 else "no"]


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("tables")
    pack_tables([TableSource("people", ["age", "colour", "income", "visit", "note", "old"], _rows, label="old")],
                root / "data", val_fraction=0.2)
    overrides = [f"{k}={v}" for k, v in {**TINY, "run_dir": root / "run", "data.path": root / "data"}.items()]
    torch.manual_seed(0)
    run_dir = modalzoo.train(modalzoo.load_recipe("tab_pool_tiny", overrides))
    (run_dir / "eval.json").write_text(json.dumps(EVAL))        # the shape `modalzoo eval` writes (tabular report)
    return run_dir


def test_export_carries_schemas_card_and_loads(table_run, tmp_path):
    out = export_run(table_run, tmp_path / "export", format="modalzoo", echo=lambda *_: None)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "table_schemas/people.json"):
        assert (out / name).is_file(), name
    card = (out / "README.md").read_text()
    assert "library_name: modalzoo" in card and "pipeline_tag: tabular-classification" in card
    assert "| auc_gain_small_n (eval at step 3) | 0.0125 |" in card and "control_auc_gain" in card

    # the folder alone (its schemas and tokenizer) builds the batch; the export's model gives the run's outputs
    cfg, run_model, _, _ = load_run_model(table_run)
    data = DATASETS.build(cfg.data, "data")
    data.ctx = data.context(out)
    batch = next(iter(data.loader("val", 8, [], seed=0, train=False)))
    model = modalzoo.from_pretrained(out)
    assert not model.training and set(model.targets) == {"cells", "partitions"}
    with torch.no_grad():
        mine, theirs = model.streams["table"](batch).hidden.x, run_model.streams["table"](batch).hidden.x
    assert mine.shape[:2] == (8, batch["cell_kind"].shape[1] + 1)       # [CLS] + one position per cell
    torch.testing.assert_close(mine, theirs, rtol=0, atol=0)
    source = load_source(out)                                # what TabularClassifier(pretrained=out) fine-tunes
    assert source.tokenizer.tokenizer.get_vocab() == data.ctx.states["table"].tokenizer.tokenizer.get_vocab()
    with torch.no_grad():
        torch.testing.assert_close(source.stream.eval()(batch).hidden.x, theirs, rtol=0, atol=0)

    snippet = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    assert snippet.count(f'"{out.resolve()}"') == 2 and "TabularClassifier(pretrained=" in snippet
    exec(compile(snippet, "card-usage", "exec"), {})


def test_hf_format_is_refused_with_the_reason(table_run, tmp_path, capsys):
    with pytest.raises(ModalzooError, match="no class for row-level tabular"):
        export_run(table_run, tmp_path / "hf", format="hf", echo=lambda *_: None)
    assert not (tmp_path / "hf").exists()
    assert main(["export", str(table_run), "--format", "hf", "--out", str(tmp_path / "hf")]) == 2
    err = capsys.readouterr().err
    assert "TAPAS" in err and "--format modalzoo" in err and "Traceback" not in err
    assert not (tmp_path / "hf").exists()


def test_pipeline_tag_follows_the_head_and_the_eval_table_renders():
    table = {"embedding": {"name": "table_cells"}, "encoder": {"name": "transformer"}}
    label = {"name": "table_label", "stream": "t"}
    assert architecture.find({"streams": {"t": table}, "targets": {"y": {**label, "task": "binary"}}}
                             ).pipeline_tag == "tabular-classification"
    assert architecture.find({"streams": {"t": table}, "targets": {"y": {**label, "task": "regression"}}}
                             ).pipeline_tag == "tabular-regression"
    assert "TabFact" in REFUSAL
    lines = results_table(EVAL)
    assert lines[0].startswith("| target | n | pretrained | random init |")
    assert lines[2] == "| mroz | 32 | 0.610 ± 0.020 | 0.600 ± 0.030 | 0.580 ± 0.040 | 0.630 ± 0.010 | +0.010 ± 0.020 |"
    assert results_table({"auc_gain_small_n": 0.1}) == []
