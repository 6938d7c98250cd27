"""BERT masked-LM training throughput: modalzoo vs `transformers.BertForMaskedLM`, same model, same data.

Both models are built with the same shape (bert-small: 4 layers, 512 wide, 8 heads, FFN 2048, vocab
30522), the Hugging Face one gets modalzoo's initial weights (so the first-step losses can be compared),
both train with the same AdamW, gradient clipping and precision, and they are timed alternately in one
process (A B, then B A, ...) so that drift and load from other processes hit both alike.

Cases:
  padded  every row is 128 real (random) tokens; the same batches go to both models.
  packed  the docstring corpus (data/text-sample train shards, WordPiece vocab 30522); modalzoo packs
          several documents per 128-token row (block-diagonal mask from segment_ids), transformers
          pads one document per row to the longest in the batch. Same documents in the same order;
          documents longer than 128 tokens are chunked the same way for both.

Memory (CPU): peak resident set size above the step's starting RSS. Before a measured step the script
runs gc and `malloc_trim(0)` (so memory freed by the other model is given back to the OS), resets the
kernel's RSS high-water mark (`echo 5 > /proc/self/clear_refs`), runs the step and reads VmHWM. It
also reports the peak of live tensor bytes above the step's start, from torch.profiler's allocation
events (`profile_memory=True`), which does not depend on the C allocator. On CUDA: max_memory_allocated
minus memory_allocated at the step's start.

    .venv/bin/python benchmarks/mlm_vs_transformers.py                 # both cases, CPU, ~5.5 min idle
    .venv/bin/python benchmarks/mlm_vs_transformers.py --case padded --rounds 10
    .venv/bin/python benchmarks/mlm_vs_transformers.py --device cuda --steps 20 --rounds 5   # bf16, MFU
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import inspect
import itertools
import json
import os
import platform
import re
import statistics
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import torch

REPO = Path(__file__).resolve().parent.parent
SHAPE = {"layers": 4, "dim": 512, "heads": 8, "ffn_dim": 2048, "vocab_size": 30522, "max_positions": 512,
         "type_vocab_size": 2, "seq_len": 128, "batch_size": 32}
OPTIM = {"lr": 1e-4, "betas": (0.9, 0.999), "eps": 1e-6, "weight_decay": 0.01, "grad_clip": 1.0}
GOALS = {"padded": ("samples_per_s", 1.3), "packed": ("real_tokens_per_s", 1.5)}
IGNORE = -100
# Dense bf16 tensor-core peaks (FLOP/s) for MFU on CUDA; --peak-tflops overrides.
GPU_PEAKS = {"H200": 989e12, "H100 PCIe": 756e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12,
             "L4": 121e12, "A10": 125e12}


# ----------------------------------------------------------------------------------------- models

def zoo_overrides(dropout: float) -> list[str]:
    e, n = "model.streams.text.embedding.", "model.streams.text.encoder."
    s = SHAPE
    return [f"{e}vocab_size={s['vocab_size']}", f"{e}dim={s['dim']}", f"{e}max_positions={s['max_positions']}",
            f"{e}type_vocab_size={s['type_vocab_size']}", f"{e}dropout={dropout}",
            f"{n}layers={s['layers']}", f"{n}dim={s['dim']}", f"{n}heads={s['heads']}",
            f"{n}ffn_dim={s['ffn_dim']}", f"{n}dropout={dropout}", f"{n}attn_dropout={dropout}",
            f"data.tokenizer.vocab_size={s['vocab_size']}", f"data.path={REPO / 'data' / 'text-sample'}"]


def build_zoo(dropout: float):
    import modalzoo
    import modalzoo.datasets.text  # noqa: F401  registers the `text` dataset even if components.py does not
    cfg = modalzoo.load_recipe("bert_mlm_tiny", overrides=zoo_overrides(dropout))
    return modalzoo.build_model(cfg), cfg


def build_hf(dropout: float):
    from transformers import BertConfig, BertForMaskedLM
    s = SHAPE
    config = BertConfig(vocab_size=s["vocab_size"], hidden_size=s["dim"], num_hidden_layers=s["layers"],
                        num_attention_heads=s["heads"], intermediate_size=s["ffn_dim"], hidden_act="gelu",
                        layer_norm_eps=1e-12, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
                        max_position_embeddings=s["max_positions"], type_vocab_size=s["type_vocab_size"],
                        attn_implementation="sdpa")
    return BertForMaskedLM(config)


@torch.no_grad()
def copy_zoo_to_hf(zoo, hf) -> None:
    """Give the transformers model modalzoo's initial weights (fused QKV split into query/key/value)."""
    z = {k: v for k, v in zoo.state_dict().items()}
    emb, enc = "streams.text.embedding.", "streams.text.encoder.blocks."
    pairs = {"bert.embeddings.word_embeddings.weight": emb + "word.weight",
             "bert.embeddings.position_embeddings.weight": emb + "position.table.weight",
             "bert.embeddings.token_type_embeddings.weight": emb + "token_type.weight",
             "bert.embeddings.LayerNorm.weight": emb + "norm.weight",
             "bert.embeddings.LayerNorm.bias": emb + "norm.bias",
             "cls.predictions.transform.dense.weight": "targets.mlm.dense.weight",
             "cls.predictions.transform.dense.bias": "targets.mlm.dense.bias",
             "cls.predictions.transform.LayerNorm.weight": "targets.mlm.norm.weight",
             "cls.predictions.transform.LayerNorm.bias": "targets.mlm.norm.bias",
             "cls.predictions.bias": "targets.mlm.bias"}
    sub = {"attention.output.dense": "attn.proj", "attention.output.LayerNorm": "norm1",
           "intermediate.dense": "mlp.fc1", "output.dense": "mlp.fc2", "output.LayerNorm": "norm2"}
    for i in range(SHAPE["layers"]):
        for h, m in sub.items():
            for p in ("weight", "bias"):
                pairs[f"bert.encoder.layer.{i}.{h}.{p}"] = f"{enc}{i}.{m}.{p}"
    hf_state = hf.state_dict()
    for hk, zk in pairs.items():
        hf_state[hk].copy_(z[zk])
    for i in range(SHAPE["layers"]):
        for p in ("weight", "bias"):
            q, k, v = z[f"{enc}{i}.attn.qkv.{p}"].chunk(3, dim=0)
            for name, t in (("query", q), ("key", k), ("value", v)):
                hf_state[f"bert.encoder.layer.{i}.attention.self.{name}.{p}"].copy_(t)


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


# -------------------------------------------------------------------------------------- runners

class Runner:
    """One model, its optimizer and its way of reading a batch; ``step`` is one full training step."""

    def __init__(self, name: str, model, device: torch.device, precision: str):
        self.name, self.model, self.device, self.precision = name, model.to(device), device, precision
        fused = True if device.type == "cuda" else None          # CPU: torch's default (per-tensor loop)
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=OPTIM["lr"], betas=OPTIM["betas"],
                                           eps=OPTIM["eps"], weight_decay=OPTIM["weight_decay"], fused=fused)
        self.params = [p for p in model.parameters() if p.requires_grad]
        model.train()

    def autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def loss(self, batch: dict) -> torch.Tensor:
        raise NotImplementedError

    def step(self, batch: dict) -> float:
        with self.autocast():
            loss = self.loss(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, OPTIM["grad_clip"])
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())                              # the trainer syncs on the loss too


class ZooRunner(Runner):
    def loss(self, batch):
        return self.model(batch).loss


class HFRunner(Runner):
    def loss(self, batch):
        return self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                          labels=batch["labels"]).loss


def zoo_batch(batch: dict, device) -> dict:
    keep = ("input_ids", "attention_mask", "labels", "segment_ids", "position_ids")
    return {k: batch[k].to(device) for k in keep if k in batch}


def hf_batch(batch: dict, device) -> dict:
    return {"input_ids": batch["input_ids"].to(device), "attention_mask": batch["attention_mask"].long().to(device),
            "labels": batch["labels"].to(device)}


# ----------------------------------------------------------------------------------------- data

def batch_stats(batch: dict) -> dict:
    """What a batch holds: rows, documents, real and computed tokens, masked targets, useful FLOPs."""
    mask = batch["attention_mask"].bool()
    rows, length = mask.shape
    if "segment_ids" in batch:
        seg = batch["segment_ids"]
        doc_lens = [int(n) for row in seg for n in torch.bincount(row)[1:] if n > 0]
    else:
        doc_lens = [int(n) for n in mask.sum(1)]
    real = int(mask.sum())
    predicted = int((batch["labels"] != IGNORE).sum())
    return {"rows": rows, "docs": len(doc_lens), "real_tokens": real, "slot_tokens": rows * length,
            "predicted": predicted, "useful_flops": useful_flops(real, predicted, doc_lens)}


def useful_flops(real_tokens: int, predicted: int, doc_lens: list[int]) -> float:
    """Training FLOPs (3x forward) of the work MLM needs: the encoder on real tokens, attention within
    each document, the MLM head on the masked positions only. Padding and the logits transformers
    computes for unmasked positions are not counted, so MFU compares like with like."""
    s = SHAPE
    d, f, v, layers = s["dim"], s["ffn_dim"], s["vocab_size"], s["layers"]
    linear = 2 * layers * (4 * d * d + 2 * d * f) * real_tokens
    attention = 4 * layers * d * sum(n * n for n in doc_lens)
    head = 2 * (d * d + d * v) * predicted
    return 3.0 * (linear + attention + head)


def apply_transforms(transforms: list, batch: dict, generator: torch.Generator) -> dict:
    """Run the targets' batch transforms (MLM masking); newer ones take a per-batch generator."""
    for fn in transforms:
        takes_generator = "generator" in inspect.signature(fn.__call__).parameters
        batch = fn(batch, generator) if takes_generator else fn(batch)
    return batch


def padded_batches(n: int, transforms: list, seed: int) -> list[dict]:
    """Case 1: full rows of random token ids ([CLS] ... [SEP]), masked by modalzoo's MLM transform."""
    s = SHAPE
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    out = []
    for i in range(n):
        ids = torch.randint(5, s["vocab_size"], (s["batch_size"], s["seq_len"]), generator=gen)
        ids[:, 0], ids[:, -1] = 2, 3
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids, dtype=torch.bool)}
        out.append(apply_transforms(transforms, batch, torch.Generator().manual_seed(seed * 100_003 + i)))
    return out


def make_batcher(tokenizer, packing: bool):
    """modalzoo's TextBatcher (tokenize, chunk, pack or pad); masking is applied afterwards, here."""
    from modalzoo.datasets.text import TextBatcher
    args = (tokenizer, SHAPE["seq_len"], packing, SHAPE["batch_size"])
    if "transforms" in inspect.signature(TextBatcher).parameters:      # older TextBatcher ran the transforms
        return TextBatcher(*args, [], drop_last=True)
    return TextBatcher(*args, drop_last=True)


def corpus_batches(cfg, transforms_for, n: int, seed: int) -> tuple[list[dict], list[dict], dict]:
    """Case 2: the docstring corpus, packed (modalzoo) and padded (transformers), same document order."""
    from modalzoo.datasets.shards import ShardStream
    from modalzoo.registry import DATASETS
    data = DATASETS.build(cfg.data, "data")
    ctx = data.prepare(None)                       # trains or loads the cached WordPiece (vocab 30522)
    tok = ctx.tokenizer
    transforms = transforms_for(ctx)
    out = []
    for packing in (True, False):
        torch.manual_seed(seed)
        stream = ShardStream(data.shards(data.cfg.train_split), make_batcher(tok, packing), shuffle=False,
                             repeat=False)
        batches = []
        for i, b in enumerate(itertools.islice(iter(stream), n)):
            b.pop("_skipped", None)
            batches.append(apply_transforms(transforms, b, torch.Generator().manual_seed(seed * 100_003 + i)))
        if len(batches) < n:
            raise SystemExit(f"the corpus gives only {len(batches)} batches; ask for fewer steps")
        out.append(batches)
    info = {"tokenizer_vocab": tok.vocab_size, "tokenizer": "wordpiece (modalzoo TextData.prepare, cached under "
            "data/text-sample/tokenizers)", "shards": len(data.shards(data.cfg.train_split))}
    return out[0], out[1], info


# --------------------------------------------------------------------------------------- memory

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


# ---------------------------------------------------------------------------------------- timing

def sync(device):
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


def run_case(case: str, args, device: torch.device, precision: str) -> dict:
    from modalzoo.pretrain_tasks.base import DataContext
    print(f"\n== case {case}: building models", file=sys.stderr, flush=True)
    torch.manual_seed(args.seed)
    zoo_model, cfg = build_zoo(args.dropout)
    hf_model = build_hf(args.dropout)
    copy_zoo_to_hf(zoo_model, hf_model)
    assert n_params(zoo_model) == n_params(hf_model), (n_params(zoo_model), n_params(hf_model))

    need = args.warmup + 2 + args.rounds * args.steps + 3
    t0 = time.perf_counter()
    if case == "padded":
        tok = SimpleNamespace(mask_id=4, vocab_size=SHAPE["vocab_size"], special_ids=[0, 1, 2, 3, 4])
        shared = padded_batches(need, zoo_model.batch_transforms(DataContext(tokenizer=tok)), args.seed)
        raw = {"modalzoo": shared, "transformers": shared}
        data_info = {"data": "random token ids, every row 128 real tokens ([CLS] ... [SEP]), same batches "
                             "for both", "masking": "modalzoo MLMMasking (15%, 80/10/10)"}
    else:
        packed, padded, data_info = corpus_batches(cfg, zoo_model.batch_transforms, need, args.seed)
        raw = {"modalzoo": packed, "transformers": padded}
        data_info.update(data="data/text-sample train shards in shard order (no shuffle); modalzoo packed "
                              "(TextBatcher packing=True), transformers padded (packing=False)",
                         masking="modalzoo MLMMasking (15% of real tokens, 80/10/10) on each side's batches")
    data_info["build_s"] = round(time.perf_counter() - t0, 1)

    runners = {"modalzoo": ZooRunner("modalzoo", zoo_model, device, precision),
               "transformers": HFRunner("transformers", hf_model, device, precision)}
    convert = {"modalzoo": zoo_batch, "transformers": hf_batch}
    batches = {k: [convert[k](b, device) for b in raw[k]] for k in runners}
    stats = {k: [batch_stats(b) for b in raw[k]] for k in runners}
    cursor = {k: 0 for k in runners}

    def take(name: str) -> int:
        i = cursor[name]
        cursor[name] += 1
        return i % len(batches[name])

    # Equivalence check on a full 128-token batch, before any training: dropout off, same weights.
    check = {}
    if case == "padded":
        b = raw["modalzoo"][0]
        small = {k: v[:4] for k, v in b.items()}
        zoo_model.eval(), hf_model.eval()
        with torch.no_grad(), runners["modalzoo"].autocast():
            lz = float(runners["modalzoo"].loss(zoo_batch(small, device)))
            lh = float(runners["transformers"].loss(hf_batch(small, device)))
        zoo_model.train(), hf_model.train()
        check = {"eval_loss_modalzoo": round(lz, 6), "eval_loss_transformers": round(lh, 6),
                 "abs_diff": abs(lz - lh)}
        print(f"   same weights, eval mode: loss modalzoo {lz:.6f} transformers {lh:.6f}", file=sys.stderr)

    load_before = loadavg()
    print(f"   warm-up ({args.warmup} step each)", file=sys.stderr, flush=True)
    for _ in range(args.warmup):
        for name, runner in runners.items():
            runner.step(batches[name][take(name)])

    memory = {}
    for name, runner in runners.items():
        i = take(name)
        if device.type == "cuda":
            memory[name] = {"peak_mb": cuda_peak(runner, batches[name][i]), "method": "cuda max_memory_allocated"}
        else:
            with PeakRSS() as m:
                runner.step(batches[name][i])
            memory[name] = {"peak_rss_mb": m.peak_mb, "rss_at_start_mb": m.base_mb, "method": m.method}
    for name, runner in runners.items():
        i = take(name)
        if device.type == "cpu" and args.tensor_memory:
            memory[name]["peak_tensor_mb"] = tensor_peak_mb(runner, batches[name][i])
        else:
            runner.step(batches[name][i])
    print("   memory: " + ", ".join(f"{k} {v}" for k, v in memory.items()), file=sys.stderr, flush=True)

    rounds = []
    for r in range(args.rounds):
        order = list(runners) if r % 2 == 0 else list(reversed(runners))
        entry = {}
        for name in order:
            idx = [take(name) for _ in range(args.steps)]
            sync(device)
            busy0, own0 = cpu_ticks()
            c0, t0 = time.process_time(), time.perf_counter()
            losses, step_s = [], []
            for i in idx:
                t1 = time.perf_counter()
                losses.append(runners[name].step(batches[name][i]))     # float(loss): a sync point
                sync(device)
                step_s.append(time.perf_counter() - t1)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            busy1, own1 = cpu_ticks()
            others = max(0.0, ((busy1 - busy0) - (own1 - own0)) / CLK_TCK / wall)
            work = {k: sum(stats[name][i][k] for i in idx) for k in stats[name][0]}
            entry[name] = {"wall_s": wall, "cpu_s": cpu, "others_cores": others, "loss": losses[-1], **work,
                           "step_s": step_s,
                           "step_real_tokens": [stats[name][i]["real_tokens"] for i in idx]}
        ratio = (entry["modalzoo"]["real_tokens"] / entry["modalzoo"]["wall_s"]) / \
                (entry["transformers"]["real_tokens"] / entry["transformers"]["wall_s"])
        entry["ratio_real_tokens_per_s"] = ratio
        rounds.append(entry)
        print(f"   round {r + 1}/{args.rounds}: " + " | ".join(
            f"{n} {entry[n]['wall_s'] / args.steps:.2f} s/step loss {entry[n]['loss']:.3f} "
            f"(others {entry[n]['others_cores']:.2f} cores)" for n in order)
            + f" | ratio {ratio:.2f}", file=sys.stderr, flush=True)
    load_after = loadavg()
    profiled = {}
    if args.profile:
        for name in runners:
            profiled[name] = profile_runner(runners[name], [batches[name][take(name)] for _ in range(3)], device)
        print_profile(case, profiled)

    peak_flops = args.peak_tflops * 1e12 if args.peak_tflops else gpu_peak(device)
    results = {}
    for name in runners:
        tot = {k: sum(r[name][k] for r in rounds) for k in ("wall_s", "cpu_s", "rows", "docs", "real_tokens",
                                                           "slot_tokens", "predicted", "useful_flops")}
        steps = args.rounds * args.steps
        res = {"steps_timed": steps, "s_per_step": tot["wall_s"] / steps, "cpu_s_per_step": tot["cpu_s"] / steps,
               "samples_per_s": (tot["rows"] if case == "padded" else tot["docs"]) / tot["wall_s"],
               "rows_per_s": tot["rows"] / tot["wall_s"], "docs_per_s": tot["docs"] / tot["wall_s"],
               "real_tokens_per_s": tot["real_tokens"] / tot["wall_s"],
               "slot_tokens_per_s": tot["slot_tokens"] / tot["wall_s"],
               "real_tokens_per_step": tot["real_tokens"] / steps, "docs_per_step": tot["docs"] / steps,
               "pad_fraction": 1 - tot["real_tokens"] / tot["slot_tokens"],
               "useful_tflops_per_s": tot["useful_flops"] / tot["wall_s"] / 1e12,
               # the fastest step's time with the average step's tokens: robust to preemption, and
               # not biased towards the fullest batch (every step computes 32 x 128 positions)
               "best_step_real_tokens_per_s": tot["real_tokens"] / steps / min(t for r in rounds
                                                                              for t in r[name]["step_s"]),
               "cores_busy": tot["cpu_s"] / tot["wall_s"],
               "final_loss": rounds[-1][name]["loss"], **memory[name]}
        if peak_flops:
            res["mfu"] = tot["useful_flops"] / tot["wall_s"] / peak_flops
        results[name] = res
    z, h = results["modalzoo"], results["transformers"]
    per_round = [r["ratio_real_tokens_per_s"] for r in rounds]
    # Rounds in which other processes (tests, other jobs) stayed under QUIET cores for both models.
    quiet = [r for r in rounds if max(r[n]["others_cores"] for n in runners) < QUIET]
    quiet_ratio = None
    if quiet:
        rate = {n: sum(r[n]["real_tokens"] for r in quiet) / sum(r[n]["wall_s"] for r in quiet) for n in runners}
        quiet_ratio = rate["modalzoo"] / rate["transformers"]
    for name in runners:
        results[name]["others_cores_mean"] = statistics.mean(r[name]["others_cores"] for r in rounds)
    mem_key = "peak_mb" if device.type == "cuda" else "peak_rss_mb"
    ratios = {"samples_per_s": z["samples_per_s"] / h["samples_per_s"],
              "real_tokens_per_s": z["real_tokens_per_s"] / h["real_tokens_per_s"],
              "real_tokens_per_s_per_round": per_round,
              "real_tokens_per_s_median_of_rounds": statistics.median(per_round),
              "real_tokens_per_s_best_step": z["best_step_real_tokens_per_s"] / h["best_step_real_tokens_per_s"],
              "quiet_rounds": len(quiet), "quiet_threshold_other_cores": QUIET,
              "real_tokens_per_s_quiet_rounds": quiet_ratio,
              "peak_memory": z[mem_key] / h[mem_key] if h[mem_key] else float("nan")}
    if "peak_tensor_mb" in z:
        ratios["peak_tensor_memory"] = z["peak_tensor_mb"] / h["peak_tensor_mb"]
    metric, goal = GOALS[case]
    goal_info = {"metric": metric, "target_ratio": goal, "ratio": ratios[metric], "speed_met": ratios[metric] >= goal,
                 "memory_met": ratios["peak_memory"] <= 1.0}
    return {"data": data_info, "equivalence_check": check, "results": results, "ratios": ratios, "goal": goal_info,
            "loadavg_before": load_before, "loadavg_after": load_after, "rounds": rounds,
            **({"profile": profiled} if profiled else {})}


# ------------------------------------------------------------------------------------- profiling

CATEGORIES = ["optimizer (AdamW + grad clip)", "MLM decoder matmuls (vocab)", "cross-entropy over vocab",
              "linear layers (encoder, head dense)", "attention (SDPA)", "dropout", "layernorm", "gelu",
              "embeddings", "mask building, indexing", "accuracy metric (argmax)", "other elementwise, copies"]


def categorize(name: str, shapes, phase: str) -> str:
    dims = {d for shape in (shapes or []) if isinstance(shape, list) for d in shape if isinstance(d, int)}
    if phase == "optimizer":
        return CATEGORIES[0]
    if name in ("aten::mm", "aten::addmm", "aten::matmul", "aten::linear") and SHAPE["vocab_size"] in dims:
        return CATEGORIES[1]
    if "log_softmax" in name or "nll_loss" in name or "cross_entropy" in name:
        return CATEGORIES[2]
    if name in ("aten::mm", "aten::addmm"):
        return CATEGORIES[3]
    if name in ("aten::bmm", "aten::baddbmm") or "softmax" in name or "scaled_dot_product" in name \
            or "flash_attention" in name:
        return CATEGORIES[4]
    if "bernoulli" in name or "dropout" in name:
        return CATEGORIES[5]
    if "layer_norm" in name:
        return CATEGORIES[6]
    if "gelu" in name:
        return CATEGORIES[7]
    if "embedding" in name:
        return CATEGORIES[8]
    if name == "aten::argmax":
        return CATEGORIES[10]
    if any(k in name for k in ("index", "nonzero", "masked", "where", "aten::eq", "aten::ne", "eye", "aten::ones",
                               "logical", "bitwise", "isin", "aten::__and__", "aten::__or__")):
        return CATEGORIES[9]
    return CATEGORIES[11]


def profile_runner(runner: Runner, batches: list[dict], device, repeats: int = 3) -> dict:
    """Wall time per phase (the minimum over ``repeats`` plain steps, robust to preemption by other
    processes), then ``repeats - 1`` steps under torch.profiler; the one with the least total self
    time gives the op categories."""
    from torch.profiler import ProfilerActivity, profile, record_function
    phases = {"forward": [], "backward": [], "optimizer": []}
    for i in range(repeats):
        batch = batches[i % len(batches)]
        sync(device)
        t0 = time.perf_counter()
        with runner.autocast():
            loss = runner.loss(batch)
        sync(device)
        phases["forward"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        loss.backward()
        sync(device)
        phases["backward"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(runner.params, OPTIM["grad_clip"])
        runner.optimizer.step()
        runner.optimizer.zero_grad(set_to_none=True)
        sync(device)
        phases["optimizer"].append(time.perf_counter() - t0)

    best = None
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    for i in range(max(1, repeats - 1)):
        batch = batches[i % len(batches)]
        with profile(activities=acts, record_shapes=True) as prof:
            with record_function("forward"), runner.autocast():
                loss = runner.loss(batch)
            with record_function("backward"):
                loss.backward()
            with record_function("optimizer"):
                torch.nn.utils.clip_grad_norm_(runner.params, OPTIM["grad_clip"])
                runner.optimizer.step()
                runner.optimizer.zero_grad(set_to_none=True)
            sync(device)
        cats = dict.fromkeys(CATEGORIES, 0.0)
        ops: dict[tuple, float] = {}
        for ev in prof.events():
            if ev.name in ("forward", "backward", "optimizer") or ev.device_type.name != "CPU":
                continue
            phase, parent = "", ev.cpu_parent
            while parent is not None:
                if parent.name in ("forward", "backward", "optimizer"):
                    phase = parent.name
                    break
                parent = parent.cpu_parent
            # CPU: the op's own time; CUDA: the GPU time of the kernels the op launched
            t = (ev.self_device_time_total if device.type == "cuda" else ev.self_cpu_time_total) / 1e6
            cat = categorize(ev.name, ev.input_shapes, phase)
            cats[cat] += t
            key = (cat, phase, ev.name, str(ev.input_shapes)[:80])
            ops[key] = ops.get(key, 0.0) + t
        if best is None or sum(cats.values()) < sum(best[0].values()):
            best = (cats, ops)
    cats, ops = best
    top = sorted(ops.items(), key=lambda kv: -kv[1])
    return {"phases_s": {k: min(v) for k, v in phases.items()}, "phases_all_s": phases,
            "categories_self_cpu_s": cats, "profiled_total_s": sum(cats.values()),
            "top_ops": [{"category": k[0], "phase": k[1], "op": k[2], "shapes": k[3], "self_s": v}
                        for k, v in top[:40]]}


def print_profile(case: str, prof: dict) -> None:
    names = list(prof)
    print(f"\nprofile, case {case} (seconds; phases: fastest of 3 plain steps; categories: profiler self time "
          "of ops, GPU time of their kernels on CUDA)",
          file=sys.stderr)
    print(f"{'':40s}" + "".join(f"{n:>14s}" for n in names), file=sys.stderr)
    for ph in ("forward", "backward", "optimizer"):
        print(f"{'phase: ' + ph:40s}" + "".join(f"{prof[n]['phases_s'][ph]:14.3f}" for n in names), file=sys.stderr)
    for cat in CATEGORIES:
        print(f"{cat:40s}" + "".join(f"{prof[n]['categories_self_cpu_s'][cat]:14.3f}" for n in names),
              file=sys.stderr)
    print(f"{'total (profiled step)':40s}" + "".join(f"{prof[n]['profiled_total_s']:14.3f}" for n in names),
          file=sys.stderr)
    for n in names:
        print(f"top ops, {n}:", file=sys.stderr)
        for op in prof[n]["top_ops"][:25]:
            print(f"   {op['self_s']:7.3f}s  {op['phase']:9s} {op['op']:32s} {op['shapes']:60s} [{op['category']}]",
                  file=sys.stderr)


def gpu_peak(device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, value in GPU_PEAKS.items():
        if key in name:
            return value
    return None


# ---------------------------------------------------------------------------------------- report

def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def markdown(report: dict) -> str:
    lines = [("| case | implementation | s/step | samples/s | real tokens/s | pad % | other processes (cores) "
              "| peak RSS Δ (MB) | peak tensors Δ (MB) | speed zoo/HF | memory zoo/HF: RSS (tensors) |"),
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for case, c in report["cases"].items():
        metric, ra = c["goal"]["metric"], c["ratios"]
        for name, r in c["results"].items():
            mem = r.get("peak_rss_mb", r.get("peak_mb", float("nan")))
            tensor = r.get("peak_tensor_mb")
            speed = memory = ""
            if name == "modalzoo":
                quiet = (f"{ra['real_tokens_per_s_quiet_rounds']:.2f}× in {ra['quiet_rounds']} quiet rounds"
                         if ra["quiet_rounds"] else "no quiet round")
                speed = (f"**{ra[metric]:.2f}×** {metric.replace('_per_s', '/s').replace('_', ' ')} "
                         f"(goal ≥ {c['goal']['target_ratio']}×); median round "
                         f"{ra['real_tokens_per_s_median_of_rounds']:.2f}×, best step "
                         f"{ra['real_tokens_per_s_best_step']:.2f}×, {quiet}")
                memory = f"{ra['peak_memory']:.2f}×" + (f" ({ra['peak_tensor_memory']:.2f}×)"
                                                        if "peak_tensor_memory" in ra else "")
            lines.append(f"| {case} | {name} | {r['s_per_step']:.2f} | {r['samples_per_s']:.1f} | "
                         f"{r['real_tokens_per_s']:.0f} | {100 * r['pad_fraction']:.0f} | "
                         f"{r['others_cores_mean']:.2f} | {mem:.0f} | "
                         + (f"{tensor:.0f}" if tensor is not None else "–") + f" | {speed} | {memory} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--case", choices=["padded", "packed", "all"], default="all")
    p.add_argument("--steps", type=int, default=2, help="steps per model per round (default 2)")
    p.add_argument("--rounds", type=int, default=8, help="alternating rounds (default 8)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per model first (default 1)")
    p.add_argument("--device", default="cpu", help="cpu (fp32) or cuda (bf16 autocast, MFU)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--dropout", type=float, default=0.1, help="dropout everywhere, both models (default 0.1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--peak-tflops", type=float, default=None, help="peak FLOP/s for MFU (default: GPU table)")
    p.add_argument("--no-tensor-memory", dest="tensor_memory", action="store_false",
                   help="skip the profiler step that measures live tensor bytes (CPU)")
    p.add_argument("--profile", action="store_true",
                   help="after timing, profile one step of each model (phases, op categories)")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/mlm_vs_transformers_"
                                               "<device>.json)")
    args = p.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but no CUDA device is visible")
    precision = "bf16" if device.type == "cuda" else "fp32"
    torch.set_num_threads(args.threads)
    os.chdir(REPO)
    import transformers

    started = time.perf_counter()
    cases = ["padded", "packed"] if args.case == "all" else [args.case]
    report = {
        "benchmark": "mlm_vs_transformers",
        "command": "python benchmarks/mlm_vs_transformers.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": {"shape": SHAPE, "optimizer": {"name": "torch.optim.AdamW", **OPTIM,
                                                 "fused": device.type == "cuda"},
                   "dropout": args.dropout, "precision": precision, "device": str(device),
                   "threads": torch.get_num_threads(), "steps_per_round": args.steps, "rounds": args.rounds,
                   "warmup_steps": args.warmup, "seed": args.seed, "transformers_attn_implementation": "sdpa",
                   "hidden_act": "gelu", "layer_norm_eps": 1e-12, "mask_prob": 0.15,
                   "order": "round r: modalzoo then transformers if r is even, else the reverse"},
        "environment": {"torch": torch.__version__, "transformers": transformers.__version__,
                        "python": platform.python_version(), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
                        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None},
        "cases": {},
    }
    for case in cases:
        report["cases"][case] = run_case(case, args, device, precision)
        gc.collect()
    report["total_s"] = round(time.perf_counter() - started, 1)
    out = Path(args.out) if args.out else REPO / "benchmarks" / "results" / f"mlm_vs_transformers_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print("\n" + markdown(report))
    busy = [r["others_cores_mean"] for c in report["cases"].values() for r in c["results"].values()]
    if busy and max(busy) > QUIET:
        print(f"\nnote: other processes used up to {max(busy):.2f} cores on average during the timed steps; "
              "the all-steps figures are affected, see the quiet-rounds and best-step ratios", file=sys.stderr)
    print(f"\nwrote {out.relative_to(REPO) if out.is_relative_to(REPO) else out} ({report['total_s']} s)")
    return report


if __name__ == "__main__":
    main()
