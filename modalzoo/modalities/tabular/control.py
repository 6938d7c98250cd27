"""The tabular report's positive control: TransTab's own transfer protocol on one table.

The target's training rows are cut in two halves and its columns shuffled (seeded) into set A (the first
two thirds) and set B (the last two thirds: half of B is in A). A fresh copy of the run's architecture,
with the run's tokenizer, is pretrained briefly (`STEPS` steps of the run's own targets) on half 1 seen
through A, without labels, written as a zoo export (config.json, model.safetensors, tokenizer.json) and
fine-tuned few-shot on half 2 seen through B against random init; test rows are seen through B. Positive
``auc_gain`` says column-name tokens carry what was learned across schemas, whatever the pool does.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from ...evaluation.run import LoadedRun
from ...model import build_model
from ...registry import DATASETS

STEPS = 300
SIZES = (32, 128)
SEEDS = (0, 1, 2)


def _pretrain(run: LoadedRun, rows: dict[str, list], name: str, work: Path, seed: int) -> Path:
    from safetensors.torch import save_file

    from .sources import frame_source
    from .tables import pack_tables

    pack_tables([frame_source(rows, name)], work / "pack", val_fraction=0.0)
    spec = OmegaConf.to_container(run.cfg.data, resolve=True)
    tokenizer = {**spec.get("tokenizer", {}), "path": str(run.run_dir / "tokenizer.json")}
    data = DATASETS.build({**spec, "path": str(work / "pack"), "tokenizer": tokenizer, "num_workers": 0}, "data")
    data.prepare(None)
    torch.manual_seed(seed)
    model = build_model(run.cfg).to(run.device)
    transforms = data.batch_transforms(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, total_steps=STEPS, pct_start=0.1)
    model.train()
    batches = data.loader("train", 64, transforms, seed=seed, train=True)
    for _, batch in zip(range(STEPS), batches):
        batch = {k: v.to(run.device) if hasattr(v, "to") else v for k, v in batch.items()}
        loss = model(batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
    out = work / "export"
    out.mkdir()
    config = {"modalzoo": {"format": 1, "step": STEPS, "source_checkpoint": "positive control"},
              **OmegaConf.to_container(run.cfg, resolve=True)}
    (out / "config.json").write_text(json.dumps(config, indent=1))
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
    (out / "tokenizer.json").write_bytes((run.run_dir / "tokenizer.json").read_bytes())
    return out


def positive_control(run: LoadedRun, folder: Path) -> dict:
    from .estimator import TabularClassifier
    from .reports import auc, draws, epochs_for, read_split, subset

    train, y_train, name = read_split(folder, "train")
    test, y_test, _ = read_split(folder, "test")
    y_train = np.array([str(v) for v in y_train], dtype=object)
    y_test = np.array([str(v) for v in y_test], dtype=object)
    rng = np.random.default_rng(0)
    columns = [str(c) for c in rng.permutation(list(train))]
    third = max(1, len(columns) // 3)
    a, b = columns[: len(columns) - third], columns[third:]
    order = rng.permutation(len(y_train))
    first, second = order[: len(order) // 2], order[len(order) // 2:]
    half1 = {c: [train[c][i] for i in first] for c in a}
    half2 = {c: [train[c][i] for i in second] for c in b}
    y2 = y_train[second]
    test_b = {c: test[c] for c in b}
    gains, table = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        export = _pretrain(run, half1, name, Path(tmp), seed=0)
        for n in SIZES:
            scores = {"pretrained": [], "random_init": []}
            for seed in SEEDS:
                index = draws(y2, n, seed)
                if index is None:
                    break
                for arm in scores:
                    model = TabularClassifier(pretrained=str(export), random_init=arm == "random_init",
                                              epochs=epochs_for(n), batch_size=min(32, n), seed=seed,
                                              device=str(run.device))
                    model.fit(subset(half2, index), y2[index])
                    scores[arm].append(auc(y_test, model.predict_proba(test_b), model.classes_))
            if scores["pretrained"]:
                diff = np.array(scores["pretrained"]) - np.array(scores["random_init"])
                gains += diff.tolist()
                table[str(n)] = {arm: float(np.mean(v)) for arm, v in scores.items()} | {"gain": float(diff.mean())}
    gain = float(np.mean(gains)) if gains else float("nan")
    lines = [f"  positive control on {name}: pretrained {STEPS} steps on half the rows through {len(a)} columns, "
             f"fine-tuned on the other half through {len(b)} ({len(set(a) & set(b))} shared)"]
    for n, e in table.items():
        lines.append(f"    n={n:>4}: pretrained {e['pretrained']:.3f}, random init {e['random_init']:.3f}, "
                     f"gain {e['gain']:+.3f}")
    return {"summary": {"auc_gain": gain, "table": table, "table_name": name, "columns_a": a, "columns_b": b},
            "lines": lines}
