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

The runner, the alternating rounds, the memory and CPU-load measurements and the profiler are
`side_by_side.py`'s, shared with the CLIP and MAE benchmarks; this script adds the MLM data, what a
batch holds (rows, documents, real tokens, useful FLOPs), its op categories and its report.

    .venv/bin/python benchmarks/mlm_vs_transformers.py                 # both cases, CPU, ~5.5 min idle
    .venv/bin/python benchmarks/mlm_vs_transformers.py --case padded --rounds 10
    .venv/bin/python benchmarks/mlm_vs_transformers.py --device cuda --steps 20 --rounds 5   # bf16, MFU
"""

from __future__ import annotations

import argparse
import gc
import inspect
import itertools
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import side_by_side as sbs
import torch

REPO = Path(__file__).resolve().parent.parent
SHAPE = {"layers": 4, "dim": 512, "heads": 8, "ffn_dim": 2048, "vocab_size": 30522, "max_positions": 512,
         "type_vocab_size": 2, "seq_len": 128, "batch_size": 32}
OPTIM = {"lr": 1e-4, "betas": (0.9, 0.999), "eps": 1e-6, "weight_decay": 0.01, "grad_clip": 1.0}
GOALS = {"padded": ("samples_per_s", 1.3), "packed": ("real_tokens_per_s", 1.5)}
IGNORE = -100
NAMES = ("modalzoo", "transformers")                # (ours, theirs) for the ratios
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
    import modalzoo.modalities.text.dataset  # noqa: F401  registers the `text` dataset even if components.py does not
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


# -------------------------------------------------------------------------------------- runners

def make_runners(zoo, hf, device: torch.device, precision: str) -> dict[str, sbs.Runner]:
    """One training step, both sides: forward (bf16 autocast on CUDA), backward, clip_grad_norm_,
    AdamW (fused on CUDA), zero_grad, float(loss)."""
    optim = {k: v for k, v in OPTIM.items() if k != "grad_clip"}
    common = {"grad_clip": OPTIM["grad_clip"], "device": device, "precision": precision}
    return {"modalzoo": sbs.Runner("modalzoo", zoo, lambda b: zoo(b).loss, optim, **common),
            "transformers": sbs.Runner("transformers", hf, lambda b: hf(**b).loss, optim, **common)}


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
    """modalzoo's text field batching (tokenize, chunk, pack or pad); masking is applied afterwards, here."""
    try:
        from modalzoo.datasets.dataset import FieldBatcher
        from modalzoo.modalities.text.fields import TextField, TextState
    except ImportError:                                                 # before shards x fields
        from modalzoo.modalities.text.dataset import TextBatcher
        args = (tokenizer, SHAPE["seq_len"], packing, SHAPE["batch_size"])
        if "transforms" in inspect.signature(TextBatcher).parameters:  # older TextBatcher ran the transforms
            return TextBatcher(*args, [], drop_last=True)
        return TextBatcher(*args, drop_last=True)
    text = TextField({"name": "wordpiece"}, SHAPE["seq_len"], packing, train_docs=0)
    state = TextState(tokenizer, "wordpiece", SHAPE["seq_len"])
    return FieldBatcher({"text": text}, {"text": state}, SHAPE["batch_size"], drop_last=True)


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


# ------------------------------------------------------------------------------------------ run

def run_case(case: str, args, device: torch.device, precision: str) -> dict:
    from modalzoo.datasets.fields import DataContext
    print(f"\n== case {case}: building models", file=sys.stderr, flush=True)
    torch.manual_seed(args.seed)
    zoo_model, cfg = build_zoo(args.dropout)
    hf_model = build_hf(args.dropout)
    copy_zoo_to_hf(zoo_model, hf_model)
    assert sbs.n_trainable(zoo_model) == sbs.n_trainable(hf_model), \
        (sbs.n_trainable(zoo_model), sbs.n_trainable(hf_model))

    # warm-up, 2 memory steps, the timed steps, 3 for --profile: no batch is read twice
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

    runners = make_runners(zoo_model, hf_model, device, precision)
    convert = {"modalzoo": zoo_batch, "transformers": hf_batch}
    on_device = {k: [convert[k](b, device) for b in raw[k]] for k in runners}
    batches = [{k: on_device[k][i] for k in runners} for i in range(need)]     # batches[i][name]
    stats = {k: [batch_stats(b) for b in raw[k]] for k in runners}

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

    # Each side's work is counted on its own batches (in the packed case they hold different numbers of
    # documents and real tokens), and the rounds compare real tokens/s.
    timed = sbs.alternate(runners, batches, args, device, NAMES, lambda name, i: stats[name][i], "real_tokens",
                          per_step="real_tokens", digits=2, same_memory_batch=True, keep_step_count=True)
    rounds, memory = timed["rounds"], timed["memory"]
    profiled = {}
    if args.profile:
        # one runner after the other: 3 plain steps, then 2 under the profiler, on the next 3 batches
        picked = [batches[(timed["batches_used"] + k) % need] for k in range(3)]
        for name, runner in runners.items():
            profiled[name] = profile_keys(sbs.profile_runners(
                {name: runner}, picked, repeats=3, profiled=2, device=device, categorize=categorize,
                categories=CATEGORIES, shape_chars=80)[name])
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
        res["others_cores_mean"] = statistics.mean(r[name]["others_cores"] for r in rounds)
        results[name] = res
    z, h = results["modalzoo"], results["transformers"]
    per_round = [r["ratio_real_tokens_per_s"] for r in rounds]
    ratios = {"samples_per_s": z["samples_per_s"] / h["samples_per_s"],
              "real_tokens_per_s": z["real_tokens_per_s"] / h["real_tokens_per_s"],
              "real_tokens_per_s_per_round": per_round,
              "real_tokens_per_s_median_of_rounds": statistics.median(per_round),
              "real_tokens_per_s_best_step": z["best_step_real_tokens_per_s"] / h["best_step_real_tokens_per_s"],
              **sbs.closing_ratios(rounds, results, NAMES, "real_tokens", device)}
    metric, goal = GOALS[case]
    goal_info = {"metric": metric, "target_ratio": goal, "ratio": ratios[metric], "speed_met": ratios[metric] >= goal,
                 "memory_met": ratios["peak_memory"] <= 1.0}
    return {"data": data_info, "equivalence_check": check, "results": results, "ratios": ratios, "goal": goal_info,
            "loadavg_before": timed["loadavg_before"], "loadavg_after": timed["loadavg_after"], "rounds": rounds,
            **({"profile": profiled} if profiled else {})}


# ------------------------------------------------------------------------------------- profiling

CATEGORIES = ["optimizer (AdamW + grad clip)", "MLM decoder matmuls (vocab)", "cross-entropy over vocab",
              "linear layers (encoder, head dense)", "attention (SDPA)", "dropout", "layernorm", "gelu",
              "embeddings", "mask building, indexing", "accuracy metric (argmax)", "other elementwise, copies"]


def categorize(name: str, phase: str, shapes) -> str:
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


def profile_keys(prof: dict) -> dict:
    """side_by_side's profile of one runner with this script's JSON keys, as they were before the code was
    shared: no "step" phase, no call counts."""
    return {"phases_s": {k: prof["phases_s"][k] for k in sbs.PHASES},
            "phases_all_s": {k: prof["phases_all_s"][k] for k in sbs.PHASES},
            "categories_self_cpu_s": prof["categories_self_cpu_s"], "profiled_total_s": prof["profiled_total_s"],
            "top_ops": [{k: v for k, v in op.items() if k != "calls"} for op in prof["top_ops"]]}


def print_profile(case: str, prof: dict) -> None:
    sbs.print_profile(prof, f"profile, case {case} (seconds; phases: fastest of 3 plain steps; categories: "
                      "profiler self time of ops, GPU time of their kernels on CUDA)", CATEGORIES, width=40,
                      digits=3, top=25, op_line="   {self_s:7.3f}s  {phase:9s} {op:32s} {shapes:60s} [{category}]")


def gpu_peak(device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, value in GPU_PEAKS.items():
        if key in name:
            return value
    return None


# ---------------------------------------------------------------------------------------- report

def markdown(report: dict) -> str:
    lines = [("| case | implementation | s/step | samples/s | real tokens/s | pad % | other processes (cores) "
              "| peak RSS Δ (MB) | peak tensors Δ (MB) | speed zoo/HF | memory zoo/HF: RSS (tensors) |"),
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for case, c in report["cases"].items():
        metric, ra = c["goal"]["metric"], c["ratios"]
        for name, r in c["results"].items():
            speed = memory = ""
            if name == "modalzoo":
                quiet = (f"{ra['real_tokens_per_s_quiet_rounds']:.2f}× in {ra['quiet_rounds']} quiet rounds"
                         if ra["quiet_rounds"] else "no quiet round")
                speed = (f"**{ra[metric]:.2f}×** {metric.replace('_per_s', '/s').replace('_', ' ')} "
                         f"(goal ≥ {c['goal']['target_ratio']}×); median round "
                         f"{ra['real_tokens_per_s_median_of_rounds']:.2f}×, best step "
                         f"{ra['real_tokens_per_s_best_step']:.2f}×, {quiet}")
                memory = sbs.memory_ratio_cell(ra)
            lines.append(f"| {case} | {name} | {r['s_per_step']:.2f} | {r['samples_per_s']:.1f} | "
                         f"{r['real_tokens_per_s']:.0f} | {100 * r['pad_fraction']:.0f} | "
                         f"{r['others_cores_mean']:.2f} | {sbs.peak_memory_cells(r)} | {speed} | {memory} |")
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
                        "python": platform.python_version(), "cpu": sbs.cpu_model(), "cpu_count": os.cpu_count(),
                        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None},
        "cases": {},
    }
    for case in cases:
        report["cases"][case] = run_case(case, args, device, precision)
        gc.collect()
    report["total_s"] = round(time.perf_counter() - started, 1)
    out = Path(args.out) if args.out else REPO / "benchmarks" / "results" / f"mlm_vs_transformers_{device.type}.json"
    busy = [r["others_cores_mean"] for c in report["cases"].values() for r in c["results"].values()]
    sbs.write(report, out, markdown(report), busy, affected="the all-steps figures are affected, ")
    return report


if __name__ == "__main__":
    main()
