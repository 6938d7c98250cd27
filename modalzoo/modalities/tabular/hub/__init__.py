"""Table models and the Hub: transformers 5 has no class that classifies rows of a table, so `--format hf`
refuses a `table_cells` model with the reason, and its modalzoo-format export gets the tabular task's Hub
metadata and a usage snippet. The export itself needs nothing from here: the `table` field writes the run's
schemas (``table_schemas/``) and ``tokenizer.json`` beside the weights (`TableField.files`).

Two architectures with disjoint `matches`, so the card's ``pipeline_tag`` says the task: a model with a
`table_label` regression head is ``tabular-regression``; any other table model (pretrained on masked cells
and column partitions, or fine-tuned to classify) is ``tabular-classification``.

`results_table` renders eval.json's few-shot AUC table (``tabular_auc``: target -> n -> arm) as markdown
rows for the card; the card itself only copies eval.json's top-level numbers (``auc_gain_small_n``,
``control_auc_gain``).
"""

from __future__ import annotations

from ....errors import ModalzooError
from ....hub.architecture import Architecture, register

REFUSAL = ("transformers has no class for row-level tabular classification or regression: TAPAS "
           "(TapasForSequenceClassification, TapasForQuestionAnswering) reads a table flattened into text to "
           "answer a question about it or verify a statement (TabFact), Table Transformer detects tables in "
           "images, and the time-series models (PatchTST, PatchTSMixer, TimeSeriesTransformer, Informer, "
           "Autoformer) classify or forecast series along time; none takes one row of typed cells (column-name "
           "tokens plus a scaled number, category or missing value) and predicts its label. Export with --format "
           "modalzoo: modalzoo.from_pretrained loads it, and the folder carries the table schemas and the tokenizer")

ZOO_USAGE = '''import modalzoo
from modalzoo.tabular import TabularClassifier

model = modalzoo.from_pretrained("{model_id}")      # a PretrainModel in eval mode; its recipe: model.recipe
print(sum(p.numel() for p in model.parameters()), "parameters;", list(model.streams), "->", list(model.targets))

# fine-tune its table stream on a table of your own (a pandas DataFrame, a dict of columns or a 2-D array):
# the schema is fitted on X's rows, the folder's tokenizer.json is reused, a fresh label head is trained
X = {{"age": [23, 61, 35, 58, 42, 29, 66, 51], "plan": ["basic", "pro", "basic", "pro", "pro", "basic", "pro", "basic"],
     "monthly_fee": [9.5, 30.0, 12.0, 28.5, 31.0, 8.0, 29.0, 14.5]}}
y = ["stay", "leave", "stay", "leave", "leave", "stay", "leave", "stay"]
clf = TabularClassifier(pretrained="{model_id}", epochs=5).fit(X, y)
print(clf.classes_, clf.predict_proba(X)[:2])'''

ARMS = (("pretrained", "pretrained"), ("random_init", "random init"), ("hgb", "HistGradientBoosting"),
        ("logistic", "logistic (one-hot)"))


def _table_streams(model: dict) -> set[str]:
    streams = model.get("streams") or {}
    return {n for n, s in streams.items() if ((s or {}).get("embedding") or {}).get("name") == "table_cells"}


def _regresses(model: dict) -> bool:
    return any((t or {}).get("name") == "table_label" and (t or {}).get("task") == "regression"
               for t in (model.get("targets") or {}).values())


def _matches_classification(model: dict) -> bool:
    return bool(_table_streams(model)) and not _regresses(model)


def _matches_regression(model: dict) -> bool:
    return bool(_table_streams(model)) and _regresses(model)


def _refuse(*_args, **_kwargs):
    raise ModalzooError(REFUSAL)


def results_table(evals: dict) -> list[str]:
    """eval.json's ``tabular_auc`` (target -> n -> arm -> {mean, sd}, and ``gain``) as markdown lines: one
    row per target and n, test AUC mean ± sd over seeds; [] when eval.json has none."""
    tables = evals.get("tabular_auc")
    if not isinstance(tables, dict) or not tables:
        return []
    lines = ["| target | n | " + " | ".join(label for _, label in ARMS) + " | pretrained − random |",
             "|---|---:|" + "---:|" * (len(ARMS) + 1)]
    for target, by_n in tables.items():
        for n, entry in by_n.items():
            cells = [f"{entry[arm]['mean']:.3f} ± {entry[arm]['sd']:.3f}" if arm in entry else "–" for arm, _ in ARMS]
            gain = entry.get("gain")
            cells.append(f"{gain['mean']:+.3f} ± {gain['sd']:.3f}" if gain else "–")
            lines.append(f"| {target} | {n} | " + " | ".join(cells) + " |")
    return lines


_COMMON = dict(model_type="tapas", auto_class="AutoModelForSequenceClassification", config_class="TapasConfig",
               hf_config=_refuse, to_hf=_refuse, to_zoo=_refuse, compare=_refuse, usage=ZOO_USAGE,
               zoo_usage=ZOO_USAGE, card_results=results_table)

register(
    Architecture(
        name="tabular", model_class="TapasForSequenceClassification", matches=_matches_classification,
        needs="nothing in transformers 5 (a `table_cells` model is refused with the reason; --format modalzoo "
              "exports any table model)",
        pipeline_tag="tabular-classification", tags=("tabular", "tabular-classification", "transtab"), **_COMMON),
    Architecture(
        name="tabular_regression", model_class="TapasForSequenceClassification",
        matches=_matches_regression,
        needs="nothing in transformers 5 (a `table_cells` model with a table_label regression head; refused with "
              "the reason)",
        pipeline_tag="tabular-regression", tags=("tabular", "tabular-regression", "transtab"), **_COMMON),
)
