"""Tabular report: does pretraining on the pool help a new small table?

For every held-out target table of the data (``targets.json`` beside the pool's shards: `data build
tables-sample` writes them, each with a fixed stratified test split), for n in `SIZES` training rows
(stratified draws from the target's train split, `SEEDS` seeds; an n the split cannot fill is left out):
  * the run's transformer fine-tuned on the n rows (`TabularClassifier(pretrained=RUN)`), and the same
    architecture and tokenizer from random init (``random_init=True``), identical rows, epochs and seed;
  * `HistGradientBoostingClassifier` and a one-hot logistic regression on the same rows (`baselines.py`).
Every arm fits its preprocessing (schema, scaling, categories) on its n rows only. AUC on the test split
(macro one-vs-rest for several classes); mean ± sd over seeds and the paired difference pretrained - random.
eval.json gets ``tabular_auc`` (target -> n -> arm -> {mean, sd}), ``auc_gain_small_n`` (pretrained minus
random-init AUC averaged over targets, n <= 128 and seeds) and per-target figures; a PNG per run shows AUC
against n for each target and arm.

Positive control (TransTab's transfer protocol, `control.py`): on the first target, pretrain a fresh copy
of the run's architecture briefly on half of its training rows with one column subset, then fine-tune on the
other half with an overlapping subset, against random init: ``control_auc_gain``.

The report runs once per run, for the first target reading a `table_cells` stream.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ...evaluation.run import LoadedRun, Report

SIZES = (32, 128, 512)
SEEDS = (0, 1, 2)
ARMS = ("pretrained", "random_init", "hgb", "logistic")


def table_stream(run: LoadedRun, target_name: str) -> str | None:
    cfg = getattr(run.model.targets[target_name], "cfg", None)
    name = getattr(cfg, "stream", None)
    if isinstance(name, str) and name in run.model.streams:
        if getattr(run.model.streams[name].embedding, "registered_name", None) == "table_cells":
            return name
    return None


def targets_of(run: LoadedRun) -> dict:
    path = Path(getattr(run.data.cfg, "path", "")) / "targets.json"
    return json.loads(path.read_text()) if path.exists() else {}


def applies(run: LoadedRun, target_name: str) -> bool:
    if table_stream(run, target_name) is None or not targets_of(run):
        return False
    first = next(n for n in run.model.targets if table_stream(run, n) is not None)
    return target_name == first


def read_split(folder: Path, split: str) -> tuple[dict[str, list], list, str]:
    """(columns -> values, raw labels, table name) of a packed single-table folder's ``split``."""
    from ...datasets.shards import ShardStream, SkipCounter, list_shards

    def decode(samples, skips):
        for sample in samples:
            try:
                yield json.loads(sample["json"])
            except (KeyError, ValueError):
                skips.skipped += 1

    rows = list(ShardStream(list_shards(folder, split), decode, shuffle=False, repeat=False)
                .raw_batches(0, 1, SkipCounter()))
    names = list(dict.fromkeys(k for r in rows for k in r["r"]))
    columns = {c: [r["r"].get(c) for r in rows] for c in names}
    return columns, [r.get("y") for r in rows], rows[0]["t"] if rows else ""


def subset(columns: dict[str, list], index) -> dict[str, list]:
    return {c: [v[i] for i in index] for c, v in columns.items()}


def draws(y: np.ndarray, n: int, seed: int) -> np.ndarray | None:
    """A stratified draw of ``n`` row indexes (None when the split cannot give every class two rows)."""
    from sklearn.model_selection import StratifiedShuffleSplit

    classes, counts = np.unique(y, return_counts=True)
    if n >= len(y) or n < 2 * len(classes) or counts.min() < 2:
        return None
    split = StratifiedShuffleSplit(n_splits=1, train_size=n, random_state=seed)
    return next(split.split(np.zeros(len(y)), y))[0]


def auc(y_true: np.ndarray, proba: np.ndarray, classes) -> float:
    from sklearn.metrics import roc_auc_score

    classes = list(classes)
    if len(classes) == 2:
        return float(roc_auc_score((y_true == classes[1]).astype(int), proba[:, 1]))
    known = np.isin(y_true, classes)
    return float(roc_auc_score(y_true[known], proba[known], multi_class="ovr", labels=classes))


def epochs_for(n: int) -> int:
    """About the same number of optimizer steps for every n (at least 20 epochs)."""
    return int(min(80, max(20, 2000 // n)))


def few_shot(run: LoadedRun, folder: Path, seeds=None, sizes=None) -> dict:
    from .baselines import hgb_proba, logistic_proba
    from .estimator import TabularClassifier
    from .sources import frame_source
    from .tables import fit_schema

    train, y_train, name = read_split(folder, "train")
    test, y_test, _ = read_split(folder, "test")
    y_train = np.array([str(v) for v in y_train], dtype=object)
    y_test = np.array([str(v) for v in y_test], dtype=object)
    table: dict = {}
    seeds, sizes = seeds or SEEDS, sizes or SIZES
    for n in sizes:
        scores: dict[str, list[float]] = {arm: [] for arm in ARMS}
        for seed in seeds:
            index = draws(y_train, n, seed)
            if index is None:
                break
            X, y = subset(train, index), y_train[index]
            for arm in ("pretrained", "random_init"):
                model = TabularClassifier(pretrained=str(run.run_dir), random_init=arm == "random_init",
                                          epochs=epochs_for(n), batch_size=min(32, n), seed=seed,
                                          device=str(run.device))
                model.fit(X, y)
                scores[arm].append(auc(y_test, model.predict_proba(test), model.classes_))
            schema = fit_schema(frame_source(X, name, "label", list(y)))
            for arm, fn in (("hgb", hgb_proba), ("logistic", logistic_proba)):
                proba, classes = fn(schema, X, y, test, seed)
                scores[arm].append(auc(y_test, proba, classes))
        if not scores["pretrained"]:
            continue
        entry = {arm: {"mean": float(np.mean(v)), "sd": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0,
                       "runs": [round(x, 4) for x in v]} for arm, v in scores.items()}
        gain = np.array(scores["pretrained"]) - np.array(scores["random_init"])
        entry["gain"] = {"mean": float(gain.mean()), "sd": float(gain.std(ddof=1)) if len(gain) > 1 else 0.0}
        table[str(n)] = entry
    return {"table": table, "train_rows": len(y_train), "test_rows": len(y_test)}


def curve_png(run: LoadedRun, results: dict) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), squeeze=False)
    styles = {"pretrained": ("C0", "o", "pretrained, fine-tuned"), "random_init": ("C1", "s", "random init"),
              "hgb": ("C2", "^", "HistGradientBoosting"), "logistic": ("C3", "v", "logistic (one-hot)")}
    for ax, name in zip(axes[0], names):
        table = results[name]["table"]
        ns = [int(n) for n in table]
        for arm, (color, marker, label) in styles.items():
            mean = np.array([table[str(n)][arm]["mean"] for n in ns])
            sd = np.array([table[str(n)][arm]["sd"] for n in ns])
            ax.errorbar(ns, mean, yerr=sd, color=color, marker=marker, capsize=3, label=label)
        ax.set_xscale("log", base=2)
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.set_xlabel("training rows (n)")
        ax.set_ylabel("test AUC")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"few-shot fine-tuning from {run.run_dir.name} vs random init and classical baselines "
                 f"({len(SEEDS)} seeds)", fontsize=10)
    fig.tight_layout()
    path = run.artifact("tabular_auc.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def tabular_report(run: LoadedRun, target_name: str, batches: int) -> dict:
    from .control import positive_control

    targets = targets_of(run)
    root = Path(run.data.cfg.path)
    results, lines = {}, [""]
    for name, info in targets.items():
        results[name] = few_shot(run, root / info["path"])
        r = results[name]
        lines.append(f"  {name} ({info.get('description', '')}; {r['train_rows']} train / {r['test_rows']} test rows): "
                     f"test AUC, mean ± sd over {len(SEEDS)} seeds")
        lines.append(f"    {'n':>5}" + "".join(f"{arm:>20}" for arm in ARMS) + f"{'pre - random':>20}")
        for n, e in r["table"].items():
            lines.append(f"    {n:>5}" + "".join(f"{e[a]['mean']:>13.3f} ± {e[a]['sd']:.3f}" for a in ARMS)
                         + f"{e['gain']['mean']:>+13.3f} ± {e['gain']['sd']:.3f}")
    small = [g for r in results.values() for n, e in r["table"].items() if int(n) <= 128
             for g in np.array(e["pretrained"]["runs"]) - np.array(e["random_init"]["runs"])]
    summary = {"tabular_auc": {k: v["table"] for k, v in results.items()},
               "auc_gain_small_n": float(np.mean(small)) if small else float("nan"),
               "tabular_png": str(curve_png(run, results)) if results else ""}
    lines.append(f"  auc_gain_small_n (pretrained - random init, n <= 128, all targets and seeds): "
                 f"{summary['auc_gain_small_n']:+.4f}")
    first = next(iter(targets.items()), None)
    if first is not None:
        control = positive_control(run, root / first[1]["path"])
        summary.update({f"control_{k}": v for k, v in control["summary"].items()})
        lines += control["lines"]
    return {"summary": summary, "lines": lines}


REPORTS = [Report("tabular few-shot transfer (pretrained vs random init, HGB, logistic)", applies, tabular_report)]
