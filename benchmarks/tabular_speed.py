"""Table transformer speed on CPU: pretraining and inference rows/s, the max_cells cap on a wide table, row
decoding in the loader.

Two synthetic tables are packed first (`pack_tables`, as `pack-table` does; a temporary folder):
* mixed: ``--rows`` rows of 21 columns (8 numeric with some missing, 6 categorical of 4-20 levels, 2 binary,
  2 free-text, 1 ISO date = 3 cells, an id column the schema drops, and a binary label), 21 cells a row;
* wide: ``--wide-rows`` rows of 500 columns (400 numeric, 100 categorical of 5 levels), 500 cells a row.

(a) pretraining: ``tab_pool_tiny``'s model (3 x 128 pre-norm, 8 heads; masked_cells + vpcl), 64 rows a step
    (+ 3 partition views of each row for vpcl, so 256 sequences); batches made before timing exactly as the
    loader makes them (decode, collate, the training finisher's shuffle/cap, both targets' transforms with
    one seed per batch), so a timed step is forward, loss, backward and AdamW (lr 1e-3), after one warm-up
    step; ``--rounds`` rounds of ``--steps`` steps, the median reported.
(b) inference: the same stream (fresh weights) in eval mode under ``torch.no_grad``, 256 rows a batch (the
    evaluation finisher: the first max_cells cells), ``--predict-rows`` training rows, batches made before
    timing. With the scikit-learn estimator present (`modalities/tabular/estimator.py`), also its
    ``predict_proba`` end to end (dict of columns -> schema -> cells -> batches of 256 -> class
    probabilities) on ``--predict-rows`` rows, after a one-epoch fit on 512 others (not timed).
(c) wide table, one subprocess per setting: ``data.max_cells`` = 64 (the cap: a random 64 cells of each row
    per epoch) vs 500 (every cell), 64 rows a step, the same model and tokenizer (trained once, before);
    rows/s of training steps (forward, backward, AdamW; one warm-up step) and the step's peak memory: the
    kernel's high-water mark of the process's resident set (``VmHWM``), reset to the current RSS
    (``/proc/self/clear_refs`` = 5) right before the first step, minus that RSS. So it is what the steps
    add at their high point over the weights (no optimizer state yet) and the prepared batches: activations kept
    for backward, attention workspaces, gradients, AdamW's two moments, allocator caching; CPU memory, not a
    GPU's (where the fraction differs: no allocator slack, other kernels). Without clear_refs (not Linux),
    the ``ru_maxrss`` growth over its value after setup, which a higher setup peak can hide.
(d) loader work per row in one process (one loader worker does all of it): `TableField.decode` (JSON ->
    cells, token lookups cached), then collate + training finisher + both transforms per batch of 64; the
    pipeline's rows/s against the training step's.

Threads: ``--threads 1`` by default. On this machine's 2 vCPUs, shared with other jobs (load average ~5),
2 torch threads made a pretraining step 3-7x slower than 1: spin-waiting threads on oversubscribed cores
(tests/conftest.py's ``one_thread`` has the same story for SDPA). A 1-thread run also times 3 steps at 2
threads (``a_pretraining.two_threads``); the load average before and after is in the JSON.

    .venv/bin/python benchmarks/tabular_speed.py          # ~4-8 min at 1 thread (most of it: max_cells=500)
Writes benchmarks/results/tabular_speed_cpu.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
WORDS = ("late payment account support refund upgrade cancel happy slow fast price plan network outage email call "
         "store online mobile bill charge discount offer contract renew device screen battery signal coverage "
         "family travel roaming data voice text premium basic loyal new moved complaint praise").split()


# --------------------------------------------------------------------------------------------- the tables
def mixed_table(rows: int, seed: int = 0):
    from modalzoo.modalities.tabular.tables import TableSource

    cities = [f"city {c}" for c in "abcdefghijkl"]
    regions = [f"region {i}" for i in range(20)]
    columns = ["customer_id", "age", "income", "balance", "score", "tenure", "visits", "height", "weight",
               "city", "plan", "colour", "segment", "channel", "region", "member", "smoker", "comment", "title",
               "signup", "churn"]

    def body():
        r = random.Random(seed)
        for i in range(rows):
            age, tenure = r.randint(18, 90), r.randint(0, 40)
            plan = r.choice(["basic", "plus", "pro", "family"])
            churn = (tenure < 5) + (plan == "basic") + (r.random() < 0.3) >= 2
            yield [f"C{i:07d}", age, round(r.lognormvariate(10, 0.6), 2),
                   None if r.random() < 0.05 else round(r.gauss(500, 300), 2), round(r.random(), 3), tenure,
                   int(r.expovariate(0.3)), round(r.gauss(170, 10), 1), "NA" if r.random() < 0.03 else
                   round(r.gauss(75, 12), 1), r.choice(cities), plan,
                   r.choice(["red", "green", "blue", "black", "white", "grey"]), f"seg{r.randint(1, 8)}",
                   r.choice(["web", "shop", "phone", "partner", "mail"]), r.choice(regions),
                   r.choice(["yes", "no"]), r.choice(["true", "false"]),
                   " ".join(r.choices(WORDS, k=r.randint(3, 10))), " ".join(r.choices(WORDS, k=r.randint(4, 7))),
                   f"{r.randint(2015, 2024)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}", "yes" if churn else "no"]
    return TableSource("mixed", columns, body, label="churn")


def wide_table(rows: int, numeric: int = 400, categorical: int = 100, seed: int = 1):
    from modalzoo.modalities.tabular.tables import TableSource

    columns = [f"num_{i}" for i in range(numeric)] + [f"cat_{i}" for i in range(categorical)]

    def body():
        r = random.Random(seed)
        for _ in range(rows):
            yield [round(r.gauss(0, 1), 3) for _ in range(numeric)] + \
                  [r.choice(["alpha", "beta", "gamma", "delta", "omega"]) for _ in range(categorical)]
    return TableSource("wide", columns, body)


def pack(work: Path, args) -> tuple[Path, Path, dict]:
    from modalzoo.modalities.tabular.tables import pack_tables

    mixed, wide = work / "mixed", work / "wide"
    t = time.perf_counter()
    info = pack_tables([mixed_table(args.rows)], mixed, val_fraction=0.1)
    mixed_s = time.perf_counter() - t
    t = time.perf_counter()
    pack_tables([wide_table(args.wide_rows)], wide, val_fraction=0.05)
    wide_s = time.perf_counter() - t
    t_info = info["tables"]["mixed"]
    return mixed, wide, {"mixed_rows": info["rows"], "mixed_columns_kept": t_info["columns"],
                         "mixed_types": t_info["types"], "mixed_dropped": t_info["dropped"],
                         "pack_rows_per_s": {"mixed (21 columns)": args.rows / mixed_s,
                                             "wide (500 columns)": args.wide_rows / wide_s}}


# ------------------------------------------------------------------------------------------ shared parts
def setup(data_path: Path, max_cells: int, seed: int = 0):
    """tab_pool_tiny's config, dataset (states prepared) and model, on ``data_path``."""
    import modalzoo
    from modalzoo.model import build_model
    from modalzoo.registry import DATASETS

    cfg = modalzoo.load_recipe("tab_pool_tiny", [f"data.path={data_path}", "data.num_workers=0",
                                                 f"data.max_cells={max_cells}"])
    data = DATASETS.build(cfg.data, "data")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")              # the wide table is wider than the cap: said, and meant
        data.prepare(None)
    torch.manual_seed(seed)
    return cfg, data, build_model(cfg)


def raw_samples(data, split: str) -> list[dict]:
    from modalzoo.datasets.shards import ShardStream, SkipCounter
    out = []

    def take(samples, skips):
        out.extend(samples)
        yield from ()
    split_name = data.cfg.train_split if split == "train" else data.cfg.val_split
    list(ShardStream(data.shards(split_name), take, shuffle=False, repeat=False).raw_batches(0, 1, SkipCounter()))
    return out


def decode_all(data, samples):
    field, state = data.fields["table"], data.ctx.states["table"]
    return [field.decode(s, state) for s in samples]


def train_batches(data, model, rows, batch_size: int, count: int, seed: int = 0):
    """``count`` batches as the training loader makes them: collate, finisher (shuffle, cap), transforms."""
    field, state = data.fields["table"], data.ctx.states["table"]
    finisher = field.finisher(state, True)
    transforms = model.batch_transforms(data.ctx)
    out = []
    for i in range(count):
        chunk = [rows[(i * batch_size + j) % len(rows)] for j in range(batch_size)]
        g = torch.Generator().manual_seed(seed * 100_003 + i)
        batch = finisher(field.collate(chunk, state), g)
        for fn in transforms:
            batch = fn(batch, g)
        out.append(batch)
    return out


def make_step(model):
    optim = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step(batch):
        out = model(batch)
        out.loss.backward()
        optim.step()
        optim.zero_grad(set_to_none=True)
        return float(out.loss.detach())
    return step


def shape_of(batches) -> dict:
    b = batches[0]
    kind = b["cell_kind"]
    return {"sequences": int(kind.shape[0]), "data_rows": int((b["view_of"] < 0).sum()),
            "cells_per_sequence": int(kind.shape[1]), "tokens_per_sequence": int(kind.shape[1]) + 1,
            "padding_fraction": round(1 - float((kind > 0).float().mean()), 3)}


# ------------------------------------------------------------------------------------------ (a) (b) (d)
def pretraining(data, model, rows, args) -> dict:
    batches = train_batches(data, model, rows, 64, args.steps)
    model.train()
    step = make_step(model)
    step(batches[0])                                                    # warm-up
    rates = []
    for _ in range(args.rounds):
        t = time.perf_counter()
        for b in batches:
            step(b)
        rates.append(64 * len(batches) / (time.perf_counter() - t))
    return {"rows_per_s": statistics.median(rates), "rounds": [round(r, 1) for r in rates], "shape": shape_of(batches),
            "parameters": sum(p.numel() for p in model.parameters())}


def inference(data, model, rows, args) -> dict:
    field, state = data.fields["table"], data.ctx.states["table"]
    finisher = field.finisher(state, False)
    g = torch.Generator()
    n = max(256, min(len(rows), args.predict_rows) // 256 * 256)
    batches = [finisher(field.collate([rows[j % len(rows)] for j in range(i, i + 256)], state), g)
               for i in range(0, n, 256)]
    stream = model.streams["table"].eval()
    with torch.no_grad():
        stream(batches[0])                                              # warm-up
        rates = []
        for _ in range(args.rounds):
            t = time.perf_counter()
            for b in batches:
                stream(b).hidden.x[:, 0]
            rates.append(256 * len(batches) / (time.perf_counter() - t))
    out = {"stream_forward_rows_per_s": statistics.median(rates), "rounds": [round(r, 1) for r in rates],
           "rows": n, "batch": 256, "cells_per_row": int(batches[0]["cell_kind"].shape[1])}
    model.train()
    return out


def estimator_inference(mixed: Path, args) -> dict:
    """``TabularClassifier.predict_proba`` end to end, when the estimator exists."""
    import importlib.util
    if importlib.util.find_spec("modalzoo.modalities.tabular.estimator") is None:
        return {"measured": False, "why": "modalzoo/modalities/tabular/estimator.py does not exist yet: (b) is the "
                                          "raw stream forward only"}
    from modalzoo.modalities.tabular.estimator import TabularClassifier
    source = mixed_table(args.rows)
    names = [c for c in source.columns if c != "churn"]
    rows = list(source.rows())
    X = {c: [r[i] for r in rows] for i, c in enumerate(source.columns) if c != "churn"}
    y = [r[source.columns.index("churn")] for r in rows]
    fit = {c: v[:512] for c, v in X.items()}
    test = {c: v[512:512 + args.predict_rows] for c, v in X.items()}
    clf = TabularClassifier(epochs=1, batch_size=64, seed=0).fit(fit, y[:512])
    clf.predict_proba({c: v[:256] for c, v in test.items()})             # warm-up
    rates = []
    for _ in range(max(1, args.rounds // 2)):
        t = time.perf_counter()
        proba = clf.predict_proba(test)
        rates.append(len(test[names[0]]) / (time.perf_counter() - t))
    return {"measured": True, "predict_proba_rows_per_s": statistics.median(rates),
            "rounds": [round(r, 1) for r in rates], "rows": len(test[names[0]]),
            "proba_shape": list(getattr(proba, "shape", ()))}


def loader_work(data, model, samples, train_rate: float, repeats: int = 3) -> dict:
    """Rows/s of decode (token cache warm: names and categories repeat over a run) and of the per-batch work."""
    decode, batch = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        rows = decode_all(data, samples)
        decode.append(len(rows) / (time.perf_counter() - t))
        count = len(rows) // 64
        t = time.perf_counter()
        train_batches(data, model, rows, 64, count)
        batch.append(count * 64 / (time.perf_counter() - t))
    d, b = statistics.median(decode), statistics.median(batch)
    pipeline = 1 / (1 / d + 1 / b)
    return {"rows": len(rows), "decode_rows_per_s": d, "collate_finish_transforms_rows_per_s": b,
            "pipeline_rows_per_s": pipeline, "pipeline_over_training_step": pipeline / train_rate,
            "decode_rounds": [round(x) for x in decode], "batch_rounds": [round(x) for x in batch]}


# ---------------------------------------------------------------------------------------------------- (c)
def _status_mb(key: str) -> float | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    line = next((ln for ln in text.splitlines() if ln.startswith(key + ":")), None)
    return int(line.split()[1]) / 1024 if line else None                         # kB


def _reset_peak() -> bool:
    """Reset the kernel's resident-set high-water mark to the current RSS (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def wide_child(data_path: Path, max_cells: int, steps: int) -> dict:
    """One setting of (c), in its own process: RSS before the first step, its high-water mark after the steps."""
    cfg, data, model = setup(data_path, max_cells)
    rows = decode_all(data, raw_samples(data, "train"))
    t = time.perf_counter()
    batches = train_batches(data, model, rows, 64, steps + 1)
    make_s = time.perf_counter() - t
    model.train()
    step = make_step(model)
    max_rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024      # KiB on Linux
    method = "VmHWM reset" if _reset_peak() and _status_mb("VmHWM") is not None else "ru_maxrss growth"
    before = _status_mb("VmRSS") if method == "VmHWM reset" else max_rss_before
    step(batches[0])
    t = time.perf_counter()
    for b in batches[1:]:
        step(b)
    elapsed = time.perf_counter() - t
    peak = _status_mb("VmHWM") if method == "VmHWM reset" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"max_cells": max_cells, "shape": shape_of(batches), "rows_per_s": 64 * steps / elapsed,
            "step_s": elapsed / steps, "collate_finish_transforms_rows_per_s": 64 * (steps + 1) / make_s,
            "memory_method": method,
            "rss_before_steps_mb": round(before), "peak_during_steps_mb": round(peak),
            "step_peak_growth_mb": round(peak - before), "max_rss_of_setup_mb": round(max_rss_before)}


def wide(wide_path: Path, args) -> dict:
    setup(wide_path, 64)                            # trains and caches the tokenizer: each child only loads it
    out = {}
    for cap in (64, 500):
        done = subprocess.run([sys.executable, __file__, "--wide-child", str(cap), "--wide-data", str(wide_path),
                               "--wide-steps", str(args.wide_steps), "--threads", str(args.threads)],
                              capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            raise RuntimeError(f"wide child max_cells={cap} failed:\n{done.stderr[-3000:]}")
        out[str(cap)] = json.loads(done.stdout.strip().splitlines()[-1])
    out["rows_per_s_ratio_cap64_over_all500"] = out["64"]["rows_per_s"] / out["500"]["rows_per_s"]
    out["peak_growth_ratio_all500_over_cap64"] = (out["500"]["step_peak_growth_mb"]
                                                  / max(out["64"]["step_peak_growth_mb"], 1))
    return out


# ----------------------------------------------------------------------------------------------------- main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000, help="rows of the mixed table")
    parser.add_argument("--wide-rows", type=int, default=420, help="rows of the 500-column table")
    parser.add_argument("--steps", type=int, default=5, help="timed pretraining steps per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--wide-steps", type=int, default=3, help="timed steps per wide setting (+1 warm-up)")
    parser.add_argument("--predict-rows", type=int, default=2048, help="rows the estimator predicts (b)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", default="", help="folder for the packed tables (default: a temporary one)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "tabular_speed_cpu.json"))
    parser.add_argument("--wide-child", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--wide-data", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.wide_child:
        print(json.dumps(wide_child(Path(args.wide_data), args.wide_child, args.wide_steps)))
        return 0
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(dir=args.work or None) as tmp:
        mixed, wide_path, tables = pack(Path(tmp), args)
        cfg, data, model = setup(mixed, 64)
        base = copy.deepcopy(model)
        train_samples = raw_samples(data, "train")
        rows = decode_all(data, train_samples)
        a = pretraining(data, model, rows, args)
        if args.threads == 1:                          # the same steps at 2 threads, for the record (see above)
            torch.set_num_threads(2)
            a["two_threads"] = pretraining(data, copy.deepcopy(base), rows, argparse.Namespace(steps=3, rounds=1))
            torch.set_num_threads(args.threads)
        b = inference(data, copy.deepcopy(base), rows, args)
        b_est = estimator_inference(mixed, args)
        d = loader_work(data, base, train_samples, a["rows_per_s"])
        c = wide(wide_path, args)
    report = {"benchmark": "tabular_speed", "threads": args.threads, "torch": torch.__version__,
              "cpus": os.cpu_count(), "load_average_1min": {"before": load_before[0], "after": os.getloadavg()[0]},
              "model": "tab_pool_tiny (3 x 128 pre-norm, 8 heads, FFN 256; masked_cells 15% + vpcl 3 parts, "
                       "overlap 0.5)", "tables": tables,
              "a_pretraining": a, "b_inference": {**b, "estimator": b_est}, "c_wide_500_columns": c,
              "d_loader": d}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"{'measurement':<58}{'result':>22}")
    print(f"{'(a) pretraining, 64 rows/step (+192 views), 21 cells':<58}{a['rows_per_s']:>15.0f} rows/s")
    print(f"{'(b) inference, stream forward, batch 256, no grad':<58}{b['stream_forward_rows_per_s']:>15.0f} rows/s")
    if b_est["measured"]:
        rate = b_est["predict_proba_rows_per_s"]
        print(f"{'(b) TabularClassifier.predict_proba end to end':<58}{rate:>15.0f} rows/s")
    for cap in ("64", "500"):
        s = c[cap]
        print(f"{f'(c) 500 columns, max_cells={cap}: train':<58}{s['rows_per_s']:>15.1f} rows/s"
              f"   step peak +{s['step_peak_growth_mb']} MB over {s['rss_before_steps_mb']} MB")
    print(f"{'(c) cap 64 over all 500: rows/s':<58}{c['rows_per_s_ratio_cap64_over_all500']:>17.1f} x")
    print(f"{'(d) TableField.decode, one process':<58}{d['decode_rows_per_s']:>15.0f} rows/s")
    print(f"{'(d) decode + collate + finisher + transforms':<58}{d['pipeline_rows_per_s']:>15.0f} rows/s"
          f"   ({d['pipeline_over_training_step']:.1f} x the step)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
