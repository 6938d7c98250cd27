"""Does the objective matter? Text recipes trained for the same wall time, then the docstring probe.

Each recipe (default: MLM, ELECTRA, causal LM, T5) is first timed on this machine: two short runs of
``--calib-steps`` and 2x that many steps, the difference giving seconds per step without start-up. It then
trains for ``--minutes`` of steps (max_steps = minutes * 60 / seconds per step, the recipe's own warmup
and cosine schedule scaled into it) and `modalzoo eval` reports validation loss and the frozen-feature
probe (`docstring_probe_top1`: logistic regression on mean-pooled features, held-out files), the same
probe on a random-init model of the same shape, and the majority-class rate. The table goes to stdout and
``benchmarks/results/text_objectives_probe.json``.

    .venv/bin/modalzoo data build text-sample          # once
    .venv/bin/python benchmarks/text_objectives_probe.py --minutes 4      # ~25 min on 2 idle cores
    .venv/bin/python benchmarks/text_objectives_probe.py --recipes bert_mlm_tiny gpt_tiny --minutes 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODALZOO = [sys.executable, "-m", "modalzoo"]
DEFAULT = ["bert_mlm_tiny", "electra_tiny", "gpt_tiny", "t5_tiny"]
QUIET = ["trainer.progress=false", "trainer.eval_every=1000000", "trainer.checkpoint_every=1000000"]


def train(recipe: str, run_dir: Path, steps: int, extra: list[str]) -> float:
    """Wall seconds of one training run (its final eval and checkpoint included, as in every run)."""
    t0 = time.perf_counter()
    subprocess.run([*MODALZOO, "train", recipe, f"run_dir={run_dir}", f"trainer.max_steps={steps}",
                    *QUIET, *extra], check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def seconds_per_step(recipe: str, work: Path, calib: int) -> float:
    short = train(recipe, work / f"{recipe}-calib1", calib, ["trainer.warmup_steps=0"])
    long = train(recipe, work / f"{recipe}-calib2", 2 * calib, ["trainer.warmup_steps=0"])
    return max(long - short, 1e-3) / calib


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipes", nargs="+", default=DEFAULT)
    p.add_argument("--minutes", type=float, default=4.0, help="training wall time per recipe (default 4)")
    p.add_argument("--calib-steps", type=int, default=10)
    p.add_argument("--work", type=Path, default=REPO / "runs" / "objectives")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "text_objectives_probe.json")
    args = p.parse_args()
    rows = []
    for recipe in args.recipes:
        per_step = seconds_per_step(recipe, args.work, args.calib_steps)
        steps = max(1, int(args.minutes * 60 / per_step))
        run_dir = args.work / recipe
        wall = train(recipe, run_dir, steps, [f"trainer.warmup_steps={max(1, steps // 10)}"])
        subprocess.run([*MODALZOO, "eval", str(run_dir)], check=True, cwd=REPO, stdout=subprocess.DEVNULL)
        ev = json.loads((run_dir / "eval.json").read_text())
        first_train = next(json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()
                           if json.loads(line)["split"] == "train")
        rows.append({"recipe": recipe, "steps": steps, "seconds_per_step": round(per_step, 3),
                     "train_wall_s": round(wall, 1), "first_train_loss": first_train["loss"],
                     "val_loss": ev["val"]["loss"],
                     **{k: ev.get(k) for k in ("docstring_probe_top1", "docstring_probe_top1_random_init",
                                               "docstring_probe_majority")}})
        print(json.dumps(rows[-1]), flush=True)
    header = "| recipe | steps in the budget | val loss (first train loss) | probe top-1 | random init | majority |"
    print(f"\n{args.minutes:g} min of training each, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores\n\n{header}\n|---|---|---|---|---|---|")
    for r in rows:
        pct = {k: "-" if r[k] is None else f"{100 * r[k]:.1f}%" for k in
               ("docstring_probe_top1", "docstring_probe_top1_random_init", "docstring_probe_majority")}
        print(f"| {r['recipe']} | {r['steps']} | {r['val_loss']:.3f} ({r['first_train_loss']:.3f}) | "
              f"{pct['docstring_probe_top1']} | {pct['docstring_probe_top1_random_init']} | "
              f"{pct['docstring_probe_majority']} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"date": datetime.now(UTC).isoformat(timespec="seconds"),
                                    "minutes": args.minutes, "cpu_count": os.cpu_count(),
                                    "command": " ".join(sys.argv), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
