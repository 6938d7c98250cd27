"""Shared machinery of the two-implementation training benchmarks (`clip_vs_open_clip.py`,
`mae_vs_transformers.py`): a runner per implementation, memory of one step, alternating timed rounds,
a per-phase / per-op profile and the summary. Not a script of its own.

The memory and CPU-load helpers are `mlm_vs_transformers.py`'s, imported from it: peak RSS above the
step's start (VmHWM after `clear_refs`, after gc and `malloc_trim`), peak live tensor bytes from
torch.profiler's allocation events, and other processes' CPU use from /proc/stat.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mlm_vs_transformers import (  # noqa: E402  (a script next to this one, not a package)
    CLK_TCK,
    QUIET,
    PeakRSS,
    cpu_model,
    cpu_ticks,
    cuda_peak,
    loadavg,
    sync,
    tensor_peak_mb,
)

REPO = Path(__file__).resolve().parent.parent


class Runner:
    """One implementation: its model, its AdamW and its loss on a batch; ``step`` is one training step
    (forward, loss, backward, AdamW step, zero_grad, ``float(loss)``: a sync point) plus ``after_step``
    (open_clip's training loop clamps ``logit_scale`` there)."""

    def __init__(self, name: str, model: torch.nn.Module, loss: Callable[[dict], torch.Tensor], optim: dict,
                 after_step: Callable[[], None] | None = None):
        self.name, self.model, self._loss, self.after_step = name, model, loss, after_step
        self.optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], **optim)
        model.train()

    def loss(self, batch: dict) -> torch.Tensor:
        return self._loss(batch)

    def step(self, batch: dict) -> float:
        loss = self._loss(batch)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.after_step is not None:
            self.after_step()
        return float(loss.detach())


def n_trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def add_arguments(p: argparse.ArgumentParser, steps: int, rounds: int) -> None:
    p.add_argument("--steps", type=int, default=steps, help=f"steps per model per round (default {steps})")
    p.add_argument("--rounds", type=int, default=rounds, help=f"alternating rounds (default {rounds})")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per model first (default 2)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--budget-s", type=float, default=400.0,
                   help="stop after the round in which timed rounds pass this many seconds (default 400; a busy "
                        "machine can slow steps 20-fold); at least 2 rounds always run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-tensor-memory", dest="tensor_memory", action="store_false",
                   help="skip the profiler step that measures live tensor bytes")
    p.add_argument("--profile", action="store_true",
                   help="after timing, profile each model (phases, op categories, top ops)")
    p.add_argument("--out", default=None, help="JSON path")


def environment() -> dict:
    import transformers
    env = {"torch": torch.__version__, "transformers": transformers.__version__,
           "python": platform.python_version(), "cpu": cpu_model(), "cpu_count": os.cpu_count()}
    try:
        import open_clip
        env["open_clip"] = open_clip.__version__
    except ImportError:
        pass
    return env


def header(name: str, argv: list[str] | None) -> dict:
    return {"benchmark": name,
            "command": f"python benchmarks/{name}.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "date": datetime.now(UTC).isoformat(timespec="seconds"), "environment": environment()}


# ------------------------------------------------------------------------------------------ run

def measure_memory(runners: dict[str, Runner], batches: list[dict], device: torch.device, tensor_memory: bool,
                   take: Callable[[], int]) -> dict:
    """Peak memory of one step per runner (after warm-up, so AdamW's state already exists)."""
    memory = {}
    for name, runner in runners.items():
        b = batches[take()][name]
        if device.type == "cuda":
            memory[name] = {"peak_mb": cuda_peak(runner, b), "method": "cuda max_memory_allocated"}
        else:
            with PeakRSS() as m:
                runner.step(b)
            memory[name] = {"peak_rss_mb": m.peak_mb, "rss_at_start_mb": m.base_mb, "method": m.method}
    if device.type == "cpu" and tensor_memory:
        for name, runner in runners.items():
            memory[name]["peak_tensor_mb"] = tensor_peak_mb(runner, batches[take()][name])
    return memory


def run(runners: dict[str, Runner], batches: list[dict], batch_size: int, args, device: torch.device,
        goal: float, names: tuple[str, str]) -> dict:
    """Warm-up, memory, then ``args.rounds`` alternating rounds of ``args.steps`` steps per runner.

    ``batches[i][name]`` is batch i as runner ``name`` reads it (same data for both); ``names`` is
    (ours, theirs) for the ratio.
    """
    cursor = [0]

    def take() -> int:
        i = cursor[0]
        cursor[0] += 1
        return i % len(batches)

    load_before = loadavg()
    print(f"   warm-up ({args.warmup} steps each)", file=sys.stderr, flush=True)
    for _ in range(args.warmup):
        i = take()
        for name, runner in runners.items():
            runner.step(batches[i][name])
    memory = measure_memory(runners, batches, device, args.tensor_memory, take)
    print("   memory: " + ", ".join(f"{k} {v}" for k, v in memory.items()), file=sys.stderr, flush=True)

    rounds = []
    timed_from = time.perf_counter()
    for r in range(args.rounds):
        if r >= 2 and r % 2 == 0 and time.perf_counter() - timed_from > args.budget_s:
            print(f"   stopping after {r} rounds: past --budget-s {args.budget_s:.0f}", file=sys.stderr, flush=True)
            break
        order = list(runners) if r % 2 == 0 else list(reversed(runners))
        idx = [take() for _ in range(args.steps)]          # the same batches for both, within a round
        entry = {}
        for name in order:
            sync(device)
            busy0, own0 = cpu_ticks()
            c0, t0 = time.process_time(), time.perf_counter()
            losses, step_s = [], []
            for i in idx:
                t1 = time.perf_counter()
                losses.append(runners[name].step(batches[i][name]))
                sync(device)
                step_s.append(time.perf_counter() - t1)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            busy1, own1 = cpu_ticks()
            others = max(0.0, ((busy1 - busy0) - (own1 - own0)) / CLK_TCK / wall)
            entry[name] = {"wall_s": wall, "cpu_s": cpu, "others_cores": others, "samples": batch_size * len(idx),
                           "loss": losses[-1], "step_s": step_s}
        ours, theirs = names
        entry["ratio_samples_per_s"] = entry[theirs]["wall_s"] / entry[ours]["wall_s"]
        rounds.append(entry)
        print(f"   round {r + 1}/{args.rounds}: " + " | ".join(
            f"{n} {entry[n]['wall_s'] / args.steps:.3f} s/step loss {entry[n]['loss']:.4f} "
            f"(others {entry[n]['others_cores']:.2f} cores)" for n in order)
            + f" | ratio {entry['ratio_samples_per_s']:.2f}", file=sys.stderr, flush=True)
    load_after = loadavg()

    results = {}
    for name in runners:
        wall = sum(r[name]["wall_s"] for r in rounds)
        cpu = sum(r[name]["cpu_s"] for r in rounds)
        samples = sum(r[name]["samples"] for r in rounds)
        steps = len(rounds) * args.steps
        results[name] = {"steps_timed": steps, "s_per_step": wall / steps, "samples_per_s": samples / wall,
                         "cpu_s_per_step": cpu / steps,
                         "best_step_s": min(t for r in rounds for t in r[name]["step_s"]),
                         "median_step_s": statistics.median(t for r in rounds for t in r[name]["step_s"]),
                         "cores_busy": cpu / wall, "final_loss": rounds[-1][name]["loss"],
                         "others_cores_mean": statistics.mean(r[name]["others_cores"] for r in rounds),
                         **memory[name]}
    ours, theirs = names
    z, h = results[ours], results[theirs]
    per_round = [r["ratio_samples_per_s"] for r in rounds]
    quiet = [r for r in rounds if max(r[n]["others_cores"] for n in runners) < QUIET]
    quiet_ratio = (sum(r[theirs]["wall_s"] for r in quiet) / sum(r[ours]["wall_s"] for r in quiet)) if quiet else None
    mem_key = "peak_mb" if device.type == "cuda" else "peak_rss_mb"
    ratios = {"samples_per_s": z["samples_per_s"] / h["samples_per_s"],
              "samples_per_s_per_round": per_round, "samples_per_s_median_of_rounds": statistics.median(per_round),
              "best_step": h["best_step_s"] / z["best_step_s"], "median_step": h["median_step_s"] / z["median_step_s"],
              # CPU seconds of this process per step: with --threads 1, barely affected by other processes
              "cpu_time": h["cpu_s_per_step"] / z["cpu_s_per_step"],
              "quiet_rounds": len(quiet), "quiet_threshold_other_cores": QUIET,
              "samples_per_s_quiet_rounds": quiet_ratio,
              "peak_memory": z[mem_key] / h[mem_key] if h[mem_key] else float("nan")}
    if "peak_tensor_mb" in z:
        ratios["peak_tensor_memory"] = z["peak_tensor_mb"] / h["peak_tensor_mb"]
    goal_info = {"metric": "samples_per_s", "target_ratio": goal, "ratio": ratios["samples_per_s"],
                 "speed_met": ratios["samples_per_s"] >= goal, "memory_met": ratios["peak_memory"] <= 1.0,
                 "tensor_memory_met": ratios.get("peak_tensor_memory", 0.0) <= 1.0}
    return {"rounds_run": len(rounds), "stopped_early": len(rounds) < args.rounds,
            "results": results, "ratios": ratios, "goal": goal_info, "loadavg_before": load_before,
            "loadavg_after": load_after, "rounds": rounds}


# ------------------------------------------------------------------------------------- profiling

CATEGORIES = ["optimizer (AdamW)", "linear layers (QKV, proj, MLP, heads)", "attention (SDPA)",
              "patch conv", "layernorm", "gelu", "loss (cross-entropy / MSE, targets)",
              "masking, gather, sort, index", "embeddings", "other elementwise, copies, reductions"]


def categorize(name: str, phase: str) -> str:
    if phase == "optimizer":
        return CATEGORIES[0]
    if name in ("aten::mm", "aten::addmm", "aten::linear", "aten::matmul"):
        return CATEGORIES[1]
    if "scaled_dot_product" in name or "flash_attention" in name or name in ("aten::bmm", "aten::baddbmm") \
            or "softmax" in name and "log_softmax" not in name:
        return CATEGORIES[2]
    if "convolution" in name or "conv2d" in name or "im2col" in name or "col2im" in name:
        return CATEGORIES[3]
    if "layer_norm" in name:
        return CATEGORIES[4]
    if "gelu" in name:
        return CATEGORIES[5]
    if any(k in name for k in ("log_softmax", "nll_loss", "cross_entropy", "mse_loss", "aten::var", "aten::std")):
        return CATEGORIES[6]
    if any(k in name for k in ("gather", "scatter", "sort", "index", "nonzero", "masked", "where", "eye", "tril",
                               "aten::ones", "logical", "bitwise", "aten::eq", "aten::ne", "argmax")):
        return CATEGORIES[7]
    if "embedding" in name:
        return CATEGORIES[8]
    return CATEGORIES[9]


def _timed_phases(runner: Runner, batch: dict) -> dict[str, float]:
    t0 = time.perf_counter()
    loss = runner.loss(batch)
    t1 = time.perf_counter()
    loss.backward()
    t2 = time.perf_counter()
    runner.optimizer.step()
    runner.optimizer.zero_grad(set_to_none=True)
    if runner.after_step is not None:
        runner.after_step()
    float(loss.detach())
    t3 = time.perf_counter()
    return {"forward": t1 - t0, "backward": t2 - t1, "optimizer": t3 - t2, "step": t3 - t0}


def _profiled_step(runner: Runner, batch: dict) -> tuple[dict, dict, int]:
    from torch.profiler import ProfilerActivity, profile, record_function
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        with record_function("forward"):
            loss = runner.loss(batch)
        with record_function("backward"):
            loss.backward()
        with record_function("optimizer"):
            runner.optimizer.step()
            runner.optimizer.zero_grad(set_to_none=True)
            if runner.after_step is not None:
                runner.after_step()
    cats = dict.fromkeys(CATEGORIES, 0.0)
    ops: dict[tuple, list] = {}
    events = 0
    for ev in prof.events():
        if ev.name in ("forward", "backward", "optimizer"):
            continue
        events += 1
        phase, parent = "", ev.cpu_parent
        while parent is not None:
            if parent.name in ("forward", "backward", "optimizer"):
                phase = parent.name
                break
            parent = parent.cpu_parent
        t = ev.self_cpu_time_total / 1e6
        cat = categorize(ev.name, phase)
        cats[cat] += t
        acc = ops.setdefault((cat, phase, ev.name, str(ev.input_shapes)[:90]), [0.0, 0])
        acc[0] += t
        acc[1] += 1
    return cats, ops, events


def profile_runners(runners: dict[str, Runner], batches: list[dict], repeats: int = 5) -> dict:
    """Per runner: wall time per phase (fastest of ``repeats`` plain steps), then ``repeats`` steps under
    torch.profiler, of which the one with the least total op self time gives the op categories and top
    ops. The runners alternate step by step, so load from other processes hits both alike."""
    names = list(runners)
    phases = {n: {"forward": [], "backward": [], "optimizer": [], "step": []} for n in names}
    best: dict[str, tuple] = {}
    for i in range(repeats):
        for n in names if i % 2 == 0 else reversed(names):
            for k, v in _timed_phases(runners[n], batches[i % len(batches)][n]).items():
                phases[n][k].append(v)
    for i in range(repeats):
        for n in names if i % 2 == 0 else reversed(names):
            got = _profiled_step(runners[n], batches[i % len(batches)][n])
            if n not in best or sum(got[0].values()) < sum(best[n][0].values()):
                best[n] = got
    out = {}
    for n in names:
        cats, ops, events = best[n]
        top = sorted(ops.items(), key=lambda kv: -kv[1][0])
        out[n] = {"phases_s": {k: min(v) for k, v in phases[n].items()}, "phases_all_s": phases[n],
                  "categories_self_cpu_s": cats, "profiled_total_s": sum(cats.values()), "op_calls": events,
                  "top_ops": [{"category": k[0], "phase": k[1], "op": k[2], "shapes": k[3], "self_s": v[0],
                               "calls": v[1]} for k, v in top[:40]]}
    return out


def print_profile(prof: dict) -> None:
    names = list(prof)
    print("\nprofile (seconds; phases: fastest of 5 plain steps; categories: profiler self time of ops, "
          "fastest of 5 profiled steps)",
          file=sys.stderr)
    print(f"{'':42s}" + "".join(f"{n:>14s}" for n in names), file=sys.stderr)
    for ph in ("forward", "backward", "optimizer", "step"):
        print(f"{'phase: ' + ph:42s}" + "".join(f"{prof[n]['phases_s'][ph]:14.4f}" for n in names), file=sys.stderr)
    for cat in CATEGORIES:
        print(f"{cat:42s}" + "".join(f"{prof[n]['categories_self_cpu_s'][cat]:14.4f}" for n in names),
              file=sys.stderr)
    print(f"{'total (profiled step)':42s}" + "".join(f"{prof[n]['profiled_total_s']:14.4f}" for n in names),
          file=sys.stderr)
    print(f"{'profiler events':42s}" + "".join(f"{prof[n]['op_calls']:14d}" for n in names), file=sys.stderr)
    for n in names:
        print(f"top ops, {n}:", file=sys.stderr)
        for op in prof[n]["top_ops"][:20]:
            print(f"   {op['self_s']:7.4f}s x{op['calls']:<4d} {op['phase']:9s} {op['op']:36s} {op['shapes']:70s} "
                  f"[{op['category']}]", file=sys.stderr)


# ---------------------------------------------------------------------------------------- report

def markdown(report: dict, names: tuple[str, str]) -> str:
    ours, theirs = names
    ra, goal = report["ratios"], report["goal"]
    lines = ["| implementation | s/step | samples/s | other processes (cores) | peak RSS Δ (MB) | "
             "peak tensors Δ (MB) | speed zoo/ref | memory zoo/ref: RSS (tensors) |",
             "|---|---:|---:|---:|---:|---:|---|---|"]
    for name, r in report["results"].items():
        speed = memory = ""
        if name == ours:
            quiet = (f"{ra['samples_per_s_quiet_rounds']:.2f}× in {ra['quiet_rounds']} quiet rounds"
                     if ra["quiet_rounds"] else "no quiet round")
            speed = (f"**{ra['samples_per_s']:.2f}×** (goal ≥ {goal['target_ratio']}×); median round "
                     f"{ra['samples_per_s_median_of_rounds']:.2f}×, best step {ra['best_step']:.2f}×, "
                     f"CPU time {ra['cpu_time']:.2f}×, {quiet}")
            memory = f"{ra['peak_memory']:.2f}×" + (f" ({ra['peak_tensor_memory']:.2f}×)"
                                                    if "peak_tensor_memory" in ra else "")
        mem = r.get("peak_rss_mb", r.get("peak_mb", float("nan")))
        tensor = r.get("peak_tensor_mb")
        lines.append(f"| {name} | {r['s_per_step']:.3f} | {r['samples_per_s']:.1f} | {r['others_cores_mean']:.2f} | "
                     f"{mem:.0f} | " + (f"{tensor:.0f}" if tensor is not None else "–") + f" | {speed} | {memory} |")
    return "\n".join(lines)


def finish(report: dict, out: Path, names: tuple[str, str], started: float) -> None:
    report["total_s"] = round(time.perf_counter() - started, 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print("\n" + markdown(report, names))
    busy = [r["others_cores_mean"] for r in report["results"].values()]
    if max(busy) > QUIET:
        print(f"\nnote: other processes used up to {max(busy):.2f} cores on average during the timed steps; "
              "see the quiet-rounds and best-step ratios", file=sys.stderr)
    print(f"\nwrote {out.relative_to(REPO) if out.is_relative_to(REPO) else out} ({report['total_s']} s)")
