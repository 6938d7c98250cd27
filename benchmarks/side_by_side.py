"""Shared machinery of the two-implementation training benchmarks (`mlm_vs_transformers.py`,
`clip_vs_open_clip.py`, `mae_vs_transformers.py`): a runner per implementation, memory of one step,
other processes' CPU load, alternating timed rounds, a per-phase / per-op profile and the summary.
Not a script of its own.

Memory (CPU) is the peak resident set size above the step's starting RSS: gc and `malloc_trim(0)` first
(so memory freed by the other model goes back to the OS), then the kernel's RSS high-water mark is reset
(`echo 5 > /proc/self/clear_refs`), the step runs and VmHWM is read. A second, allocator-independent
figure is the peak of live tensor bytes above the step's start, from torch.profiler's allocation events
(`profile_memory=True`). On CUDA: max_memory_allocated minus memory_allocated at the step's start.
Other processes' CPU use during a runner's steps is /proc/stat's busy ticks minus this process's own.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import platform
import re
import statistics
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
CPU = torch.device("cpu")


# ---------------------------------------------------------------------------------------- runner

class Runner:
    """One implementation: its model, its AdamW and its loss on a batch; ``step`` is one training step
    (forward under ``autocast``, backward, ``update``, ``float(loss)``: a sync point).

    ``update`` is everything after backward: gradient clipping (``grad_clip``: the MLM benchmark), the
    AdamW step, zero_grad and ``after_step`` (open_clip's training loop clamps ``logit_scale`` there).
    ``device`` and ``precision`` serve the MLM benchmark's CUDA path: the model is moved there, AdamW is
    fused there, and ``precision="bf16"`` runs the forward under bf16 autocast.
    """

    def __init__(self, name: str, model: torch.nn.Module, loss: Callable[[dict], torch.Tensor], optim: dict,
                 after_step: Callable[[], None] | None = None, *, grad_clip: float | None = None,
                 device: torch.device = CPU, precision: str = "fp32"):
        self.name, self._loss, self.after_step, self.grad_clip = name, loss, after_step, grad_clip
        self.model, self.device, self.precision = model.to(device), device, precision
        self.params = [p for p in model.parameters() if p.requires_grad]
        fused = True if device.type == "cuda" else None          # CPU: torch's default (per-tensor loop)
        self.optimizer = torch.optim.AdamW(self.params, **optim, fused=fused)
        model.train()

    def autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def loss(self, batch: dict) -> torch.Tensor:
        return self._loss(batch)

    def update(self) -> None:
        if self.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.after_step is not None:
            self.after_step()

    def step(self, batch: dict) -> float:
        with self.autocast():
            loss = self._loss(batch)
        loss.backward()
        self.update()
        return float(loss.detach())                              # the trainer syncs on the loss too


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


def parse_pair_arguments(doc: str, argv: list[str] | None, steps: int = 5, rounds: int = 20) -> argparse.Namespace:
    """The two-model scripts' command line (the shared options plus ``--batches``), applied: torch threads set,
    working directory the repo root."""
    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    add_arguments(p, steps=steps, rounds=rounds)
    p.add_argument("--batches", type=int, default=8, help="distinct batches, cycled (default 8)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.chdir(REPO)
    return args


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


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


# ---------------------------------------------------------------------------------------- memory

_LIBC = None


def malloc_trim() -> None:
    global _LIBC
    try:
        _LIBC = _LIBC or ctypes.CDLL("libc.so.6")
        _LIBC.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        return int(re.search(rf"^{field}:\s+(\d+) kB", fh.read(), re.MULTILINE).group(1))


class PeakRSS:
    """Peak RSS above the starting RSS over a block: the kernel's high-water mark, reset at the start.

    Falls back to a thread sampling /proc/self/statm every ~1 ms where clear_refs cannot be written.
    """

    def __enter__(self):
        gc.collect()
        malloc_trim()
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            self.method = "VmHWM after clear_refs=5"
            self.sampler = None
        except OSError:
            self.method = "1 ms RSS sampler thread"
            self.sampler = _Sampler()
        self.base_kb = _status_kb("VmRSS")
        if self.sampler:
            self.sampler.start()
        return self

    def __exit__(self, *exc):
        if self.sampler:
            peak_kb = self.sampler.stop()
        else:
            peak_kb = _status_kb("VmHWM")
        self.peak_mb = max(0, peak_kb - self.base_kb) / 1024
        self.base_mb = self.base_kb / 1024


class _Sampler(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.running = 0, True
        self.page_kb = os.sysconf("SC_PAGE_SIZE") // 1024

    def run(self):
        while self.running:
            with open("/proc/self/statm") as fh:
                self.peak = max(self.peak, int(fh.read().split()[1]) * self.page_kb)
            time.sleep(0.001)

    def stop(self) -> int:
        self.running = False
        self.join()
        return self.peak


def tensor_peak_mb(runner: Runner, batch: dict) -> float:
    """Peak live tensor bytes above the step's start, from the profiler's allocation events (CPU)."""
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile
    gc.collect()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        runner.step(batch)
    allocs = []

    def walk(nodes):
        for node in nodes:
            if node.tag == _EventType.Allocation and node.extra_fields.device.type == "cpu":
                f = node.extra_fields
                allocs.append((node.start_time_ns, f.alloc_size, f.total_allocated))
            walk(node.children)

    walk(prof.profiler.kineto_results.experimental_event_tree())
    if not allocs:
        return float("nan")
    allocs.sort()
    base = allocs[0][2] - allocs[0][1]
    return (max(a[2] for a in allocs) - base) / 2**20


def cuda_peak(runner: Runner, batch: dict) -> float:
    torch.cuda.synchronize()
    gc.collect()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    runner.step(batch)
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def measure_memory(runners: dict[str, Runner], batches: list[dict], device: torch.device, tensor_memory: bool,
                   take: Callable[[], int], same_batch: bool = False, keep_step_count: bool = False) -> dict:
    """Peak memory of one step per runner (after warm-up, so AdamW's state already exists): RSS (CUDA:
    allocated bytes) in a first pass over the runners, live tensor bytes (CPU) in a second.

    The benchmarks differ in two details, kept so that their results stay comparable with the committed
    ones: the MLM benchmark measures both runners on the same batch in a pass (``same_batch``; clip and
    MAE give each runner the next batch), and it takes the second pass's step even where tensor memory
    is not measured (``keep_step_count``), so that the steps before timing do not depend on the device
    or on --no-tensor-memory.
    """
    def pass_batches() -> dict[str, dict]:
        if same_batch:
            i = take()
            return {name: batches[i][name] for name in runners}
        return {name: batches[take()][name] for name in runners}

    memory = {}
    first = pass_batches()
    for name, runner in runners.items():
        if device.type == "cuda":
            memory[name] = {"peak_mb": cuda_peak(runner, first[name]), "method": "cuda max_memory_allocated"}
        else:
            with PeakRSS() as m:
                runner.step(first[name])
            memory[name] = {"peak_rss_mb": m.peak_mb, "rss_at_start_mb": m.base_mb, "method": m.method}
    measure = device.type == "cpu" and tensor_memory
    if measure or keep_step_count:
        second = pass_batches()
        for name, runner in runners.items():
            if measure:
                memory[name]["peak_tensor_mb"] = tensor_peak_mb(runner, second[name])
            else:
                runner.step(second[name])
    return memory


# ------------------------------------------------------------------------------------ load, timing

def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def cpu_ticks() -> tuple[int, int]:
    """(busy ticks of the whole machine, ticks of this process) from /proc; (0, 0) where unavailable."""
    try:
        with open("/proc/stat") as fh:
            f = [int(x) for x in fh.readline().split()[1:9]]
        with open("/proc/self/stat") as fh:
            own = fh.read().rsplit(")", 1)[1].split()
        return f[0] + f[1] + f[2] + f[5] + f[6] + f[7], int(own[11]) + int(own[12])
    except (OSError, ValueError, IndexError):
        return 0, 0


CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
QUIET = 0.25            # a round is "quiet" when other processes used less than this many cores throughout


def loadavg() -> list[float]:
    try:
        with open("/proc/loadavg") as fh:
            return [float(x) for x in fh.read().split()[:3]]
    except OSError:
        return []


def rate_ratio(rounds: list[dict], names: tuple[str, str], key: str) -> float:
    """(ours / theirs) of ``key`` per second of wall time, over ``rounds`` together."""
    ours, theirs = (sum(r[n][key] for r in rounds) / sum(r[n]["wall_s"] for r in rounds) for n in names)
    return ours / theirs


def alternate(runners: dict[str, Runner], batches: list[dict], args, device: torch.device,
              names: tuple[str, str], work: Callable[[str, int], dict], ratio_of: str, *,
              per_step: str | None = None, budget_s: float | None = None, digits: int = 3,
              same_memory_batch: bool = False, keep_step_count: bool = False) -> dict:
    """Warm-up, memory, then ``args.rounds`` alternating rounds (A B, then B A, ...) of ``args.steps``
    steps per runner, so that drift and load from other processes hit both alike.

    ``batches[i][name]`` is batch i as runner ``name`` reads it; batches are taken in order (cycling),
    and both runners read the same indices. ``work(name, i)`` counts what batch i holds for that runner
    (samples; for MLM rows, documents, real tokens, ...): a round sums it per runner, and its ratio is
    (ours / theirs) of ``ratio_of`` per second. ``per_step`` also keeps that count per step.
    ``budget_s`` stops after an even round once the timed rounds have taken that long (at least 2 run);
    ``digits`` sets the round lines' precision. The memory options are ``measure_memory``'s.

    Returns the memory, the rounds, the load average before and after, and ``batches_used`` (the
    next batch index, for steps after these).
    """
    cursor = [0]

    def take() -> int:
        i = cursor[0]
        cursor[0] += 1
        return i % len(batches)

    load_before = loadavg()
    print(f"   warm-up ({args.warmup} step{'' if args.warmup == 1 else 's'} each)", file=sys.stderr, flush=True)
    for _ in range(args.warmup):
        i = take()
        for name, runner in runners.items():
            runner.step(batches[i][name])
    memory = measure_memory(runners, batches, device, args.tensor_memory, take, same_memory_batch, keep_step_count)
    print("   memory: " + ", ".join(f"{k} {v}" for k, v in memory.items()), file=sys.stderr, flush=True)

    rounds = []
    timed_from = time.perf_counter()
    for r in range(args.rounds):
        if budget_s is not None and r >= 2 and r % 2 == 0 and time.perf_counter() - timed_from > budget_s:
            print(f"   stopping after {r} rounds: past --budget-s {budget_s:.0f}", file=sys.stderr, flush=True)
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
                losses.append(runners[name].step(batches[i][name]))     # float(loss): a sync point
                sync(device)
                step_s.append(time.perf_counter() - t1)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            busy1, own1 = cpu_ticks()
            others = max(0.0, ((busy1 - busy0) - (own1 - own0)) / CLK_TCK / wall)
            counts = [work(name, i) for i in idx]
            entry[name] = {"wall_s": wall, "cpu_s": cpu, "others_cores": others,
                           **{k: sum(c[k] for c in counts) for k in counts[0]}, "loss": losses[-1], "step_s": step_s}
            if per_step is not None:
                entry[name][f"step_{per_step}"] = [c[per_step] for c in counts]
        ratio = rate_ratio([entry], names, ratio_of)
        entry[f"ratio_{ratio_of}_per_s"] = ratio
        rounds.append(entry)
        print(f"   round {r + 1}/{args.rounds}: " + " | ".join(
            f"{n} {entry[n]['wall_s'] / args.steps:.{digits}f} s/step loss {entry[n]['loss']:.{digits + 1}f} "
            f"(others {entry[n]['others_cores']:.2f} cores)" for n in order)
            + f" | ratio {ratio:.2f}", file=sys.stderr, flush=True)
    return {"memory": memory, "rounds": rounds, "loadavg_before": load_before, "loadavg_after": loadavg(),
            "batches_used": cursor[0]}


def closing_ratios(rounds: list[dict], results: dict, names: tuple[str, str], key: str,
                   device: torch.device) -> dict:
    """The ratios every benchmark ends with: ``key`` per second over the quiet rounds (those in which
    other processes, tests or other jobs, stayed under QUIET cores for both runners), and peak memory."""
    ours, theirs = names
    z, h = results[ours], results[theirs]
    quiet = [r for r in rounds if max(r[n]["others_cores"] for n in names) < QUIET]
    mem_key = "peak_mb" if device.type == "cuda" else "peak_rss_mb"
    ratios = {"quiet_rounds": len(quiet), "quiet_threshold_other_cores": QUIET,
              f"{key}_per_s_quiet_rounds": rate_ratio(quiet, names, key) if quiet else None,
              "peak_memory": z[mem_key] / h[mem_key] if h[mem_key] else float("nan")}
    if "peak_tensor_mb" in z:
        ratios["peak_tensor_memory"] = z["peak_tensor_mb"] / h["peak_tensor_mb"]
    return ratios


def run(runners: dict[str, Runner], batches: list[dict], batch_size: int, args, device: torch.device,
        goal: float, names: tuple[str, str]) -> dict:
    """``alternate`` with every batch ``batch_size`` samples, summed up on samples/s; ``names`` is
    (ours, theirs) for the ratios."""
    timed = alternate(runners, batches, args, device, names, lambda name, i: {"samples": batch_size}, "samples",
                      budget_s=args.budget_s)
    rounds = timed["rounds"]
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
                         **timed["memory"][name]}
    ours, theirs = names
    z, h = results[ours], results[theirs]
    per_round = [r["ratio_samples_per_s"] for r in rounds]
    ratios = {"samples_per_s": z["samples_per_s"] / h["samples_per_s"],
              "samples_per_s_per_round": per_round, "samples_per_s_median_of_rounds": statistics.median(per_round),
              "best_step": h["best_step_s"] / z["best_step_s"], "median_step": h["median_step_s"] / z["median_step_s"],
              # CPU seconds of this process per step: with --threads 1, barely affected by other processes
              "cpu_time": h["cpu_s_per_step"] / z["cpu_s_per_step"],
              **closing_ratios(rounds, results, names, "samples", device)}
    goal_info = {"metric": "samples_per_s", "target_ratio": goal, "ratio": ratios["samples_per_s"],
                 "speed_met": ratios["samples_per_s"] >= goal, "memory_met": ratios["peak_memory"] <= 1.0,
                 "tensor_memory_met": ratios.get("peak_tensor_memory", 0.0) <= 1.0}
    return {"rounds_run": len(rounds), "stopped_early": len(rounds) < args.rounds,
            "results": results, "ratios": ratios, "goal": goal_info, "loadavg_before": timed["loadavg_before"],
            "loadavg_after": timed["loadavg_after"], "rounds": rounds}


# ------------------------------------------------------------------------------------- profiling

CATEGORIES = ["optimizer (AdamW)", "linear layers (QKV, proj, MLP, heads)", "attention (SDPA)",
              "patch conv", "layernorm", "gelu", "loss (cross-entropy / MSE, targets)",
              "masking, gather, sort, index", "embeddings", "other elementwise, copies, reductions"]
PHASES = ("forward", "backward", "optimizer")


def categorize(name: str, phase: str, shapes=None) -> str:
    """CLIP's and MAE's op categories (``shapes`` is not needed here; the MLM benchmark's categorizer
    uses it to tell the vocabulary-sized matmuls apart)."""
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


def _timed_phases(runner: Runner, batch: dict, device: torch.device) -> dict[str, float]:
    sync(device)
    t0 = time.perf_counter()
    with runner.autocast():
        loss = runner.loss(batch)
    sync(device)
    t1 = time.perf_counter()
    loss.backward()
    sync(device)
    t2 = time.perf_counter()
    runner.update()
    float(loss.detach())
    sync(device)
    t3 = time.perf_counter()
    return {"forward": t1 - t0, "backward": t2 - t1, "optimizer": t3 - t2, "step": t3 - t0}


def _profiled_step(runner: Runner, batch: dict, device: torch.device, categorize: Callable,
                   categories: list[str], shape_chars: int) -> tuple[dict, dict, int]:
    from torch.profiler import ProfilerActivity, profile, record_function
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts, record_shapes=True) as prof:
        with record_function("forward"), runner.autocast():
            loss = runner.loss(batch)
        with record_function("backward"):
            loss.backward()
        with record_function("optimizer"):
            runner.update()
        sync(device)
    cats = dict.fromkeys(categories, 0.0)
    ops: dict[tuple, list] = {}
    events = 0
    for ev in prof.events():
        if ev.name in PHASES or ev.device_type.name != "CPU":
            continue
        events += 1
        phase, parent = "", ev.cpu_parent
        while parent is not None:
            if parent.name in PHASES:
                phase = parent.name
                break
            parent = parent.cpu_parent
        # CPU: the op's own time; CUDA: the GPU time of the kernels the op launched
        t = (ev.self_device_time_total if device.type == "cuda" else ev.self_cpu_time_total) / 1e6
        cat = categorize(ev.name, phase, ev.input_shapes)
        cats[cat] += t
        acc = ops.setdefault((cat, phase, ev.name, str(ev.input_shapes)[:shape_chars]), [0.0, 0])
        acc[0] += t
        acc[1] += 1
    return cats, ops, events


def profile_runners(runners: dict[str, Runner], batches: list[dict], repeats: int = 5, *, profiled: int | None = None,
                    device: torch.device = CPU, categorize: Callable = categorize, categories: list[str] = CATEGORIES,
                    shape_chars: int = 90) -> dict:
    """Per runner: wall time per phase (fastest of ``repeats`` plain steps), then ``profiled`` (default
    ``repeats``) steps under torch.profiler, of which the one with the least total op self time gives
    the op categories and top ops. The runners alternate step by step, so load from other processes
    hits both alike. ``batches[i][name]`` as in ``alternate``; step i reads batch i (cycling)."""
    names = list(runners)
    phases = {n: {"forward": [], "backward": [], "optimizer": [], "step": []} for n in names}
    best: dict[str, tuple] = {}
    for i in range(repeats):
        for n in names if i % 2 == 0 else reversed(names):
            for k, v in _timed_phases(runners[n], batches[i % len(batches)][n], device).items():
                phases[n][k].append(v)
    for i in range(repeats if profiled is None else profiled):
        for n in names if i % 2 == 0 else reversed(names):
            got = _profiled_step(runners[n], batches[i % len(batches)][n], device, categorize, categories,
                                 shape_chars)
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


PROFILE_TITLE = ("profile (seconds; phases: fastest of 5 plain steps; categories: profiler self time of ops, "
                 "fastest of 5 profiled steps)")
OP_LINE = "   {self_s:7.4f}s x{calls:<4d} {phase:9s} {op:36s} {shapes:70s} [{category}]"


def print_profile(prof: dict, title: str = PROFILE_TITLE, categories: list[str] = CATEGORIES, width: int = 42,
                  digits: int = 4, top: int = 20, op_line: str = OP_LINE) -> None:
    """The profile as a table on stderr: phases (those ``prof`` has), categories, total, the number of
    profiler events where ``prof`` has it, then each runner's ``top`` ops, formatted by ``op_line``."""
    names = list(prof)
    first = prof[names[0]]

    def row(label: str, cells: str) -> None:
        print(f"{label:{width}s}" + cells, file=sys.stderr)

    print(f"\n{title}", file=sys.stderr)
    row("", "".join(f"{n:>14s}" for n in names))
    for ph in first["phases_s"]:
        row("phase: " + ph, "".join(f"{prof[n]['phases_s'][ph]:14.{digits}f}" for n in names))
    for cat in categories:
        row(cat, "".join(f"{prof[n]['categories_self_cpu_s'][cat]:14.{digits}f}" for n in names))
    row("total (profiled step)", "".join(f"{prof[n]['profiled_total_s']:14.{digits}f}" for n in names))
    if "op_calls" in first:
        row("profiler events", "".join(f"{prof[n]['op_calls']:14d}" for n in names))
    for n in names:
        print(f"top ops, {n}:", file=sys.stderr)
        for op in prof[n]["top_ops"][:top]:
            print(op_line.format(**op), file=sys.stderr)


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
            memory = memory_ratio_cell(ra)
        lines.append(f"| {name} | {r['s_per_step']:.3f} | {r['samples_per_s']:.1f} | {r['others_cores_mean']:.2f} | "
                     f"{peak_memory_cells(r)} | {speed} | {memory} |")
    return "\n".join(lines)


def peak_memory_cells(result: dict) -> str:
    """A runner's 'peak RSS Δ | peak tensors Δ' table cells (MB)."""
    mem = result.get("peak_rss_mb", result.get("peak_mb", float("nan")))
    tensor = result.get("peak_tensor_mb")
    return f"{mem:.0f} | " + (f"{tensor:.0f}" if tensor is not None else "–")


def memory_ratio_cell(ratios: dict) -> str:
    """The 'memory zoo/ref: RSS (tensors)' table cell."""
    return f"{ratios['peak_memory']:.2f}×" + (f" ({ratios['peak_tensor_memory']:.2f}×)"
                                              if "peak_tensor_memory" in ratios else "")


def write(report: dict, out: Path, table: str, busy: list[float], affected: str = "") -> None:
    """Write the JSON, print the table, a note if other processes were busy, and where it went."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print("\n" + table)
    if busy and max(busy) > QUIET:
        print(f"\nnote: other processes used up to {max(busy):.2f} cores on average during the timed steps; "
              f"{affected}see the quiet-rounds and best-step ratios", file=sys.stderr)
    print(f"\nwrote {out.relative_to(REPO) if out.is_relative_to(REPO) else out} ({report['total_s']} s)")


def finish(report: dict, out: Path, names: tuple[str, str], started: float) -> None:
    report["total_s"] = round(time.perf_counter() - started, 1)
    write(report, out, markdown(report, names), [r["others_cores_mean"] for r in report["results"].values()])
