"""Graph reports: property transfer of a pretrained graph encoder.

For every labelled task of the data (``tasks.json`` beside the pool's shards: `data build molecules` writes
solubility and FreeSolv), on the task's own train/test split:
  * a ridge probe (standardised features, ridge strength chosen by leave-one-out on train) on frozen mean-pooled
    node features of the pretrained encoder, and of randomly initialised encoders of the same shape (3 seeds);
  * a short fine-tune (encoder + `graph_property` head, AdamW, a fixed number of epochs) from the pretrained
    weights and from the random inits, 3 seeds each (the seed draws the head, the batches and the random init);
  * the descriptor baseline: the same ridge on the RDKit descriptors stored with every task molecule.
RMSE and R² on the test split (means over seeds, and their sd); eval.json gets ``{task}_probe_rmse``,
``{task}_probe_rmse_random_init``, ``{task}_descriptor_rmse``, ``{task}_finetune_rmse`` (+ ``_random_init``)
and the R² of each; a PNG per task shows test predictions against the truth for each arm.

The report runs once per run, for the first target reading a `graph` stream.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ...evaluation.run import LoadedRun, Report
from ...model import build_model
from ...pretrain_tasks.base import StreamOutput
from ...registry import DATASETS
from .batches import pool_graphs
from .objectives import GraphPropertyConfig, GraphPropertyTarget

SEEDS = (0, 1, 2)
FINETUNE_EPOCHS = 20
FINETUNE_BATCH = 64
FINETUNE_LR = 5e-4


def graph_stream(run: LoadedRun, target_name: str) -> str | None:
    cfg = getattr(run.model.targets[target_name], "cfg", None)
    name = getattr(cfg, "stream", None)
    if isinstance(name, str) and name in run.model.streams:
        if getattr(run.model.streams[name].embedding, "registered_name", None) == "graph":
            return name
    return None


def tasks_of(run: LoadedRun) -> dict:
    path = Path(getattr(run.data.cfg, "path", "")) / "tasks.json"
    return json.loads(path.read_text()) if path.exists() else {}


def applies(run: LoadedRun, target_name: str) -> bool:
    if graph_stream(run, target_name) is None or not tasks_of(run):
        return False
    first = next(n for n in run.model.targets if graph_stream(run, n) is not None)
    return target_name == first


class TaskData:
    """A task's graphs decoded once (structure included) by the run's own graph field settings; batches are
    collated from them (shuffled per epoch for fine-tuning)."""

    def __init__(self, run: LoadedRun, folder: Path):
        cfg = copy.deepcopy(run.data.cfg)
        cfg.path, cfg.train_split, cfg.val_split, cfg.num_workers = str(folder), "train", "test", 0
        self.data = DATASETS.build({"name": "graph", **vars(cfg)}, "data")
        self.data.prepare(None)
        self.field = self.data.fields["graph"]
        self.state = self.data.ctx.states["graph"]
        self.values = {split: self._decode(split) for split in ("train", "val")}

    def _decode(self, split: str) -> list:
        from ...datasets.shards import ShardStream, SkipCounter

        def decode(samples, skips):
            for sample in samples:
                try:
                    yield self.field.decode(sample, self.state)
                except ValueError:
                    skips.skipped += 1

        shards = self.data.shards(self.data.cfg.train_split if split == "train" else self.data.cfg.val_split)
        return list(ShardStream(shards, decode, shuffle=False, repeat=False).raw_batches(0, 1, SkipCounter()))

    def batches(self, split: str, size: int = 256, order: np.ndarray | None = None):
        values = self.values[split]
        order = np.arange(len(values)) if order is None else order
        for start in range(0, len(values), size):
            yield self.field.collate([values[i] for i in order[start:start + size]], self.state)

    def labels(self, split: str) -> np.ndarray:
        return np.array([g.labels.get(self.state.label_names[0], np.nan) for g, _ in self.values[split]])

    def descriptors(self, split: str) -> np.ndarray | None:
        rows = [g.descriptors for g, _ in self.values[split]]
        return np.array(rows, dtype=np.float64) if all(rows) else None


@torch.no_grad()
def features(stream: nn.Module, task: TaskData, split: str, device) -> np.ndarray:
    stream.eval()
    out = []
    for batch in task.batches(split):
        batch = {k: v.to(device) for k, v in batch.items()}
        out.append(pool_graphs(stream(batch).hidden.x, batch).float().cpu())
    return torch.cat(out).numpy().astype(np.float64)


def ridge(train_x, train_y, test_x) -> np.ndarray:
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 4, 15)))
    return model.fit(train_x, train_y).predict(test_x)


def scores(pred: np.ndarray, truth: np.ndarray) -> dict:
    rmse = float(np.sqrt(np.mean((pred - truth) ** 2)))
    r2 = float(1 - np.sum((pred - truth) ** 2) / np.sum((truth - truth.mean()) ** 2))
    return {"rmse": rmse, "r2": r2}


def finetune(stream: nn.Module, name: str, task: TaskData, seed: int, device) -> np.ndarray:
    """Fine-tune a copy of ``stream`` with a regression head; the test predictions."""
    torch.manual_seed(seed)
    y = task.labels("train")
    cfg = GraphPropertyConfig(stream=name, labels=[0], label_mean=[float(np.nanmean(y))],
                              label_std=[float(np.nanstd(y) or 1.0)])
    streams = nn.ModuleDict({name: copy.deepcopy(stream)})
    head = GraphPropertyTarget(cfg, streams)
    model = nn.ModuleDict({"streams": streams, "head": head}).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=FINETUNE_LR, weight_decay=0.01)
    rng = np.random.default_rng(seed)
    total = FINETUNE_EPOCHS * -(-len(task.values["train"]) // FINETUNE_BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, FINETUNE_LR, total_steps=total, pct_start=0.1)
    model.train()
    for _ in range(FINETUNE_EPOCHS):
        for batch in task.batches("train", FINETUNE_BATCH, rng.permutation(len(task.values["train"]))):
            batch = {k: v.to(device) for k, v in batch.items()}
            out = head({name: StreamOutput(streams[name], streams[name].encoder(streams[name].embedding(batch)))},
                       batch)
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
    model.eval()
    preds = []
    with torch.no_grad():
        for batch in task.batches("val"):
            batch = {k: v.to(device) for k, v in batch.items()}
            preds.append(head.predict(streams[name](batch).hidden.x, batch)[:, 0].cpu())
    return torch.cat(preds).numpy().astype(np.float64)


def _mean_sd(runs: list[dict], key: str) -> tuple[float, float]:
    values = np.array([r[key] for r in runs])
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def property_transfer(run: LoadedRun, target_name: str) -> dict:
    name = graph_stream(run, target_name)
    summary: dict = {}
    lines = [""]
    random_streams = []
    for seed in SEEDS:
        torch.manual_seed(run.cfg.seed + 1000 + seed)
        random_streams.append(build_model(run.cfg).streams[name].to(run.device))
    pretrained = run.model.streams[name]
    for task_name, info in tasks_of(run).items():
        task = TaskData(run, Path(run.data.cfg.path) / info["path"])
        ytr, yte = task.labels("train"), task.labels("val")
        arms: dict[str, list[dict]] = {}
        preds: dict[str, np.ndarray] = {}
        xtr, xte = features(pretrained, task, "train", run.device), features(pretrained, task, "val", run.device)
        preds["probe, pretrained"] = ridge(xtr, ytr, xte)
        arms["probe"] = [scores(preds["probe, pretrained"], yte)]
        arms["probe_random_init"] = []
        for i, stream in enumerate(random_streams):
            p = ridge(features(stream, task, "train", run.device), ytr, features(stream, task, "val", run.device))
            arms["probe_random_init"].append(scores(p, yte))
            if i == 0:
                preds["probe, random init"] = p
        dtr, dte = task.descriptors("train"), task.descriptors("val")
        if dtr is not None:
            preds["descriptors (ridge)"] = ridge(dtr, ytr, dte)
            arms["descriptor"] = [scores(preds["descriptors (ridge)"], yte)]
        arms["finetune"], arms["finetune_random_init"] = [], []
        for i, seed in enumerate(SEEDS):
            p = finetune(pretrained, name, task, run.cfg.seed + seed, run.device)
            arms["finetune"].append(scores(p, yte))
            q = finetune(random_streams[i], name, task, run.cfg.seed + seed, run.device)
            arms["finetune_random_init"].append(scores(q, yte))
            if i == 0:
                preds["fine-tuned, pretrained"], preds["fine-tuned, random init"] = p, q
        mean_rmse = float(np.sqrt(np.mean((yte - ytr.mean()) ** 2)))
        lines.append(f"  {task_name} ({info.get('description', info['label'])}; {len(ytr)} train / {len(yte)} test, "
                     f"{info.get('split', '')}); predict-the-mean RMSE {mean_rmse:.3f}")
        lines.append(f"    {'arm':<28}{'RMSE':>16}{'R2':>16}")
        for arm, runs in arms.items():
            rmse, rmse_sd = _mean_sd(runs, "rmse")
            r2, r2_sd = _mean_sd(runs, "r2")
            base, suffix = (arm[: -len('_random_init')], "_random_init") if arm.endswith("_random_init") else (arm, "")
            summary[f"{task_name}_{base}_rmse{suffix}"] = rmse
            summary[f"{task_name}_{base}_r2{suffix}"] = r2
            if len(runs) > 1:
                summary[f"{task_name}_{base}_rmse{suffix}_sd"] = rmse_sd
            spread = f" ± {rmse_sd:.3f}" if len(runs) > 1 else ""
            lines.append(f"    {arm:<28}{f'{rmse:.3f}{spread}':>16}{f'{r2:.3f}':>16}")
        summary[f"{task_name}_mean_baseline_rmse"] = mean_rmse
        summary[f"{task_name}_png"] = str(scatter_png(run, task_name, info, preds, yte))
    return {"summary": summary, "lines": lines}


def scatter_png(run: LoadedRun, task_name: str, info: dict, preds: dict, truth: np.ndarray) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(preds), figsize=(3.0 * len(preds), 3.2), sharex=True, sharey=True)
    lo, hi = float(min(truth.min(), *(p.min() for p in preds.values()))), float(max(truth.max(),
                                                                                   *(p.max() for p in preds.values())))
    for ax, (label, p) in zip(np.atleast_1d(axes), preds.items()):
        s = scores(p, truth)
        ax.scatter(truth, p, s=6, alpha=0.6)
        ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8)
        ax.set_title(f"{label}\nRMSE {s['rmse']:.3f}  R² {s['r2']:.2f}", fontsize=8)
        ax.set_xlabel(f"true {info['label']}", fontsize=8)
    np.atleast_1d(axes)[0].set_ylabel("predicted", fontsize=8)
    fig.suptitle(f"{task_name}: held-out test molecules, step {run.step} (first seed of each arm)", fontsize=9)
    fig.tight_layout()
    path = run.artifact(f"property_{task_name}.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def property_report(run: LoadedRun, target_name: str, batches: int) -> dict:
    return property_transfer(run, target_name)


REPORTS = [Report("graph property transfer (probe, fine-tune, descriptor baseline)", applies, property_report)]
