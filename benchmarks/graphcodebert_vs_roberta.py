"""GraphCodeBERT pretraining step throughput: modalzoo's `graphcodebert` recipes vs `transformers.RobertaForMaskedLM`,
same model, same weights, same batches of real laid-out functions (CPU, fp32).

The zoo model is the recipe's (`graphcodebert_tiny` / `graphcodebert_base`: a `code_dataflow` embedding, the post-LN
encoder, an `mlm` target, and `data_flow`). Three runners train side by side in one process, in alternating rounds
(`side_by_side.py`'s harness: A B C, then C B A, ...):

  modalzoo        the recipe's model with MLM only (``~model.targets.data_flow``, as the `graphcodebert_mlm_tiny`
                  arm), on MLM-masked batches: the like-for-like side of the ratio;
  transformers    `RobertaForMaskedLM(RobertaConfig(**graphcodebert.config_kwargs(recipe)), attn_implementation=
                  "sdpa")` with the zoo model's initial weights (`zoo_to_hf(arch="roberta")`, strict), fed what the
                  project's helper `modalities/code/hub/transformers_inputs.py::transformers_inputs` builds from the
                  same batch - node-averaged ``inputs_embeds``, ``position_ids`` = ``position_idx``, the graph-guided
                  mask as a 4-D float additive mask - and ``labels`` = the batch's MLM labels; the helper runs inside
                  the step (the node average is differentiable: it trains the word table);
  modalzoo_full   the recipe's whole model, MLM + data_flow (edge prediction or node alignment, alternated per
                  batch), on the same batches with `DataFlowMasking` applied on top: reported, not in the ratio
                  (``--no-full`` leaves it out).

Batches: the `code` dataset's training loader (`data/code-sample`, `modalzoo data build code-sample`; shuffled,
seeded; in this process) with the model's MLM transform (15 %, 80/10/10, code and comment tokens only), then padded
to the shape's ``seq_len`` so every step computes full rows of the same length on both sides (padding: pad id,
position 1, label -100, no attention). Built before timing; ``--batches`` distinct ones, cycled. The data side uses
the dataset's cached byte-level BPE of ``--data-vocab`` entries (8,000: the tiny recipe's), also for the base shape,
whose model keeps RoBERTa's 50,265-row vocabulary (the ids are a subset: the step's cost is the model's).

One training step, all sides: forward (loss included), backward, `clip_grad_norm_(trainer.grad_clip)`,
`torch.optim.AdamW` with the recipe's trainer settings (lr, betas, eps, weight decay; one group), zero_grad,
`float(loss)`. Dropout as the recipe has it (tiny 0, base 0.1; ``--dropout`` overrides both sides). Memory: the
peak RSS and live-tensor bytes of one step above its start, `side_by_side.measure_memory` (as every benchmark here).

    .venv/bin/python benchmarks/graphcodebert_vs_roberta.py --threads 1     # both shapes: ~16 min under a load of ~5
    .venv/bin/python benchmarks/graphcodebert_vs_roberta.py --shape tiny --rounds 10
    .venv/bin/python benchmarks/graphcodebert_vs_roberta.py --threads 1 --profile --rounds 2 --no-full
        --no-tensor-memory --out benchmarks/results/graphcodebert_vs_roberta_cpu_profile.json   # (one command)
Writes benchmarks/results/graphcodebert_vs_roberta_cpu.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import side_by_side as sbs
import torch
import torch.nn.functional as F

REPO = sbs.REPO
IGNORE = -100
GOAL = 1.3                                                  # samples/s, modalzoo (MLM) / transformers
NAMES = ("modalzoo", "transformers")
FULL = "modalzoo_full"
# batch_size: tiny = the recipe's trainer (cpu_small: 32); base: small enough for a few CPU minutes
SHAPES = {
    "tiny": {"recipe": "graphcodebert_tiny", "batch_size": 32, "seq_len": 128, "max_nodes": 32, "comment_len": 24,
             "steps": 2, "rounds": 8, "warmup": 1},
    "base": {"recipe": "graphcodebert_base", "batch_size": 4, "seq_len": 512, "max_nodes": 128, "comment_len": 128,
             "steps": 1, "rounds": 4, "warmup": 1},
}
ROW_KEYS = {"input_ids": None, "position_idx": 1, "token_role": 0, "is_identifier": False, "labels": IGNORE}
SQUARE_KEYS = ("dfg_edges", "attn_mask")


# ----------------------------------------------------------------------------------------- models

def recipe(shape: dict, args, mlm_only: bool):
    import modalzoo
    emb, enc = "model.streams.code.embedding.", "model.streams.code.encoder."
    over = [f"data.seq_len={shape['seq_len']}", f"data.max_nodes={shape['max_nodes']}",
            f"data.comment_len={shape['comment_len']}", "data.num_workers=0",
            f"data.tokenizer.vocab_size={args.data_vocab}", f"data.path={Path(args.data).resolve()}"]
    if args.dropout is not None:
        over += [f"{emb}dropout={args.dropout}", f"{enc}dropout={args.dropout}", f"{enc}attn_dropout={args.dropout}"]
    if mlm_only:
        over.append("~model.targets.data_flow")
    return modalzoo.load_recipe(shape["recipe"], overrides=over)


def build_models(shape: dict, args, tok):
    """(zoo MLM-only, transformers, zoo full, the full recipe): all three with the same initial weights."""
    import transformers

    import modalzoo
    from modalzoo.modalities.code.hub.graphcodebert import config_kwargs
    from modalzoo.modalities.text.hub.bert import zoo_to_hf
    cfg_full, cfg_mlm = recipe(shape, args, False), recipe(shape, args, True)
    torch.manual_seed(args.seed)
    full = modalzoo.build_model(cfg_full)
    mlm = modalzoo.build_model(cfg_mlm)
    mlm.load_state_dict(full.state_dict(), strict=True)     # data_flow has no weights: the same state
    kwargs = {**config_kwargs(cfg_mlm), "pad_token_id": tok.pad_id, "bos_token_id": tok.bos_id,
              "eos_token_id": tok.eos_id}
    hf = transformers.RobertaForMaskedLM(transformers.RobertaConfig(**kwargs, attn_implementation="sdpa"))
    hf.load_state_dict(zoo_to_hf(mlm.state_dict(), stream="code", target="mlm", arch="roberta"), strict=True)
    for n, m in (("modalzoo_full", full), ("transformers", hf)):
        assert sbs.n_trainable(m) == sbs.n_trainable(mlm), (n, sbs.n_trainable(m), sbs.n_trainable(mlm))
    return mlm, hf, full, cfg_full, kwargs


def hf_loss(hf):
    from modalzoo.modalities.code.hub.transformers_inputs import transformers_inputs

    def loss(b: dict) -> torch.Tensor:
        inputs = transformers_inputs(hf.get_input_embeddings(), b)
        return hf(inputs_embeds=inputs["inputs_embeds"], position_ids=inputs["position_ids"],
                  attention_mask=inputs["attention_mask"], labels=b["labels"]).loss
    return loss


# ----------------------------------------------------------------------------------------- data

def pad_to(batch: dict, length: int, pad_id: int) -> dict:
    """Right-pad the layout's [B, L] / [B, L, 2] / [B, L, L] tensors to ``length`` (as `layout.collate` pads)."""
    n = batch["input_ids"].shape[1]
    if n > length:
        raise ValueError(f"a batch of {n} positions is longer than seq_len {length}")
    extra = length - n
    out = dict(batch)
    for k, value in ROW_KEYS.items():
        if k in batch:
            v = batch[k]
            fill = pad_id if value is None else value
            out[k] = torch.cat([v, torch.full((v.shape[0], extra), fill, dtype=v.dtype)], 1)
    if "node_span" in batch:
        out["node_span"] = F.pad(batch["node_span"], (0, 0, 0, extra))
    for k in SQUARE_KEYS:
        if k in batch:
            out[k] = F.pad(batch[k], (0, extra, 0, extra))
    return out


def make_batches(data, ctx, mlm, full, shape: dict, n: int, seed: int) -> tuple[list[dict], dict]:
    """``n`` batches from the training loader with the MLM transform, padded to seq_len; for the full model the
    same batches with the data-flow masking on top (its own per-batch generator)."""
    import itertools
    t0 = time.perf_counter()
    loader = data.loader("train", shape["batch_size"], mlm.batch_transforms(ctx), seed=seed, train=True)
    raw = list(itertools.islice(iter(loader), n))
    load_s = time.perf_counter() - t0
    (flow,) = full.batch_transforms(ctx, targets=["data_flow"])
    out, stats = [], {"text_tokens": 0, "nodes": 0, "pad": 0, "masked": 0, "edge_pairs": 0, "align_pairs": 0}
    for i, b in enumerate(raw):
        b.pop("_skipped", None)
        b = pad_to(b, shape["seq_len"], ctx.tokenizer.pad_id)
        f = flow(b, torch.Generator().manual_seed(seed * 100_003 + i))
        out.append({"modalzoo": b, "transformers": b, FULL: f})
        pos = b["position_idx"]
        stats["text_tokens"] += int(pos.ge(2).sum())
        stats["nodes"] += int(pos.eq(0).sum())
        stats["pad"] += int(pos.eq(1).sum())
        stats["masked"] += int(b["labels"].ne(IGNORE).sum())
        for k in ("edge", "align"):
            stats[f"{k}_pairs"] += len(f[f"{k}_pairs"]) if f"{k}_pairs" in f else 0
    slots = n * shape["batch_size"] * shape["seq_len"]
    info = {"batches": n, "rows_per_batch": shape["batch_size"], "seq_len": shape["seq_len"],
            "loader_s": round(load_s, 2),
            "per_batch": {k: v / n for k, v in stats.items()},
            "fractions": {k: stats[k] / slots for k in ("text_tokens", "nodes", "pad")}}
    return out, info


# ------------------------------------------------------------------------------------- profiling

CATEGORIES = ["optimizer (AdamW + grad clip)", "MLM decoder matmuls (vocab)", "cross-entropy over vocab",
              "linear layers (encoder, head dense)", "attention (SDPA)", "dropout", "layernorm", "gelu",
              "embeddings, node average", "mask building, indexing", "accuracy metric (argmax)",
              "other elementwise, copies"]


def categorizer(vocab: int, batch_size: int):
    def categorize(name: str, phase: str, shapes) -> str:
        dims = {d for shape in (shapes or []) if isinstance(shape, list) for d in shape if isinstance(d, int)}
        first = next((s for s in (shapes or []) if isinstance(s, list) and s), [])
        if phase == "optimizer":
            return CATEGORIES[0]
        if name in ("aten::mm", "aten::addmm", "aten::matmul", "aten::linear") and vocab in dims:
            return CATEGORIES[1]
        if "log_softmax" in name or "nll_loss" in name or "cross_entropy" in name:
            return CATEGORIES[2]
        if name in ("aten::mm", "aten::addmm"):
            return CATEGORIES[3]
        if name in ("aten::bmm", "aten::einsum") and first and first[0] == batch_size:
            return CATEGORIES[8]                       # the node average: [B, L, L] x [B, L, D]
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
        if any(k in name for k in ("index", "nonzero", "masked", "where", "aten::eq", "aten::ne", "aten::ge",
                                   "aten::gt", "aten::lt", "eye", "aten::ones", "aten::zeros", "logical",
                                   "bitwise", "isin", "aten::__and__", "aten::__or__")):
            return CATEGORIES[9]
        return CATEGORIES[11]
    return categorize


# ------------------------------------------------------------------------------------------ run

def run_shape(name: str, args) -> dict:
    from modalzoo.registry import DATASETS
    shape = dict(SHAPES[name])
    for k in ("steps", "rounds", "warmup"):
        if getattr(args, k) is not None:
            shape[k] = getattr(args, k)
    print(f"\n== shape {name}: {shape}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    cfg_data = recipe(shape, args, True).data
    data = DATASETS.build(cfg_data, "data")
    ctx = data.prepare(None)                        # loads the cached tokenizer (trains it once if absent)
    mlm, hf, full, cfg, hf_kwargs = build_models(shape, args, ctx.tokenizer)
    batches, data_info = make_batches(data, ctx, mlm, full, shape, args.batches, args.seed)
    print(f"   data: {data_info}", file=sys.stderr, flush=True)

    # Same function: eval mode, the first batch, MLM loss on both sides.
    b0 = batches[0]["modalzoo"]
    mlm.eval(), hf.eval()
    with torch.no_grad():
        lz, lh = float(mlm(b0).loss), float(hf_loss(hf)(b0))
    mlm.train(), hf.train()
    check = {"eval_loss_modalzoo": round(lz, 6), "eval_loss_transformers": round(lh, 6), "abs_diff": abs(lz - lh)}
    print(f"   same weights, eval mode: MLM loss modalzoo {lz:.6f} transformers {lh:.6f}", file=sys.stderr)

    t = cfg.trainer
    optim = {"lr": float(t.lr), "betas": tuple(float(x) for x in t.optimizer.betas), "eps": float(t.optimizer.eps),
             "weight_decay": float(t.optimizer.weight_decay)}
    clip = float(t.grad_clip) if t.get("grad_clip") else None
    runners = {"modalzoo": sbs.Runner("modalzoo", mlm, lambda b: mlm(b).loss, optim, grad_clip=clip),
               "transformers": sbs.Runner("transformers", hf, hf_loss(hf), optim, grad_clip=clip)}
    if not args.no_full:
        runners[FULL] = sbs.Runner(FULL, full, lambda b: full(b).loss, optim, grad_clip=clip)
    else:
        del full
    timing = SimpleNamespace(steps=shape["steps"], rounds=shape["rounds"], warmup=shape["warmup"],
                             tensor_memory=args.tensor_memory, budget_s=args.budget_s)
    out = sbs.run(runners, batches, shape["batch_size"], timing, sbs.CPU, GOAL, NAMES)
    for r in out["results"].values():
        r["real_tokens_per_s"] = r["samples_per_s"] * data_info["per_batch"]["text_tokens"] / shape["batch_size"]
    if FULL in out["results"]:
        out["ratios"]["full_vs_mlm_only_samples_per_s"] = (out["results"][FULL]["samples_per_s"]
                                                           / out["results"]["modalzoo"]["samples_per_s"])
        out["ratios"]["full_vs_transformers_samples_per_s"] = (out["results"][FULL]["samples_per_s"]
                                                               / out["results"]["transformers"]["samples_per_s"])
    report = {"shape": shape, "config": {
        "recipe": shape["recipe"], "trainable_params": sbs.n_trainable(mlm), "roberta_config": hf_kwargs,
        "transformers_attn_implementation": hf.config._attn_implementation,
        "model": {"embedding": dict(cfg.model.streams.code.embedding), "encoder": dict(cfg.model.streams.code.encoder),
                  "targets": {k: dict(v) for k, v in cfg.model.targets.items() if v}},
        "data": {"path": str(cfg_data.path), "tokenizer": dict(cfg_data.tokenizer), "split": data.cfg.train_split,
                 **data_info},
        "optimizer": {"name": "torch.optim.AdamW", **optim, "groups": 1, "grad_clip": clip},
        "precision": "fp32", "device": "cpu", "threads": torch.get_num_threads(),
        "order": "round r: modalzoo, transformers, modalzoo_full if r is even, else the reverse; same batches "
                 "in a round"}, "equivalence_check": check, **out}
    if args.profile:
        pair = {k: runners[k] for k in NAMES}
        repeats = 3 if name == "tiny" else 2
        prof = sbs.profile_runners(pair, batches, repeats=repeats, profiled=2,
                                   categorize=categorizer(hf_kwargs["vocab_size"], shape["batch_size"]),
                                   categories=CATEGORIES, shape_chars=80)
        sbs.print_profile(prof, f"profile, shape {name} (seconds; phases: fastest of {repeats} plain steps; "
                          "categories: profiler self time of ops, fastest of 2 profiled steps)", CATEGORIES,
                          width=40, digits=3, top=25)
        report["profile"] = prof
    report["total_s"] = round(time.perf_counter() - started, 1)
    return report


# ---------------------------------------------------------------------------------------- report

def markdown(report: dict) -> str:
    lines = ["| shape | implementation | s/step | samples/s | other processes (cores) | peak RSS Δ (MB) | "
             "peak tensors Δ (MB) | speed zoo/HF (MLM) | memory zoo/HF: RSS (tensors) |",
             "|---|---|---:|---:|---:|---:|---:|---|---|"]
    for shape, c in report["shapes"].items():
        ra, goal = c["ratios"], c["goal"]
        for name, r in c["results"].items():
            speed = memory = ""
            if name == "modalzoo":
                quiet = (f"{ra['samples_per_s_quiet_rounds']:.2f}× in {ra['quiet_rounds']} quiet rounds"
                         if ra["quiet_rounds"] else "no quiet round")
                speed = (f"**{ra['samples_per_s']:.2f}×** (goal ≥ {goal['target_ratio']}×); median round "
                         f"{ra['samples_per_s_median_of_rounds']:.2f}×, best step {ra['best_step']:.2f}×, {quiet}")
                memory = sbs.memory_ratio_cell(ra)
            elif name == FULL:
                speed = f"MLM + data_flow: {ra['full_vs_mlm_only_samples_per_s']:.2f}× the MLM-only step"
            lines.append(f"| {shape} | {name} | {r['s_per_step']:.3f} | {r['samples_per_s']:.2f} | "
                         f"{r['others_cores_mean']:.2f} | {sbs.peak_memory_cells(r)} | {speed} | {memory} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shape", choices=["tiny", "base", "all"], default="all")
    p.add_argument("--steps", type=int, default=None, help="steps per model per round (default: tiny 2, base 1)")
    p.add_argument("--rounds", type=int, default=None, help="alternating rounds (default: tiny 8, base 4)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps per model first (default 1)")
    p.add_argument("--batches", type=int, default=8, help="distinct batches, cycled (default 8)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--budget-s", type=float, default=600.0, help="per shape: stop after the round in which timed "
                   "rounds pass this many seconds (default 600); at least 2 rounds always run")
    p.add_argument("--dropout", type=float, default=None, help="dropout everywhere, all sides (default: the recipe's)")
    p.add_argument("--data", default=str(REPO / "data" / "code-sample"), help="the code dataset (default "
                   "data/code-sample)")
    p.add_argument("--data-vocab", type=int, default=8000, help="the data side's byte-level BPE size (default 8000, "
                   "the tiny recipe's cached tokenizer; the model keeps its recipe's vocabulary)")
    p.add_argument("--no-full", action="store_true", help="leave out the MLM + data_flow runner")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-tensor-memory", dest="tensor_memory", action="store_false",
                   help="skip the profiler step that measures live tensor bytes")
    p.add_argument("--profile", action="store_true", help="after timing, profile the MLM pair (op categories)")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/graphcodebert_vs_roberta_cpu"
                                               ".json)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.chdir(REPO)
    if not (Path(args.data) / "info.json").exists():
        raise SystemExit(f"no code dataset at {args.data}: run `modalzoo data build code-sample` (or pass --data)")
    started = time.perf_counter()
    report = sbs.header("graphcodebert_vs_roberta", argv)
    report["environment"]["nproc"] = os.cpu_count()
    report["loadavg_at_start"] = sbs.loadavg()
    shapes = ["tiny", "base"] if args.shape == "all" else [args.shape]
    report["shapes"] = {}
    for name in shapes:
        report["shapes"][name] = run_shape(name, args)
        import gc
        gc.collect()
        sbs.malloc_trim()
    report["loadavg_at_end"] = sbs.loadavg()
    report["total_s"] = round(time.perf_counter() - started, 1)
    out = Path(args.out) if args.out else REPO / "benchmarks" / "results" / "graphcodebert_vs_roberta_cpu.json"
    busy = [r["others_cores_mean"] for c in report["shapes"].values() for r in c["results"].values()]
    sbs.write(report, out, markdown(report), busy, affected="the all-steps figures are affected, ")
    return report


if __name__ == "__main__":
    main()
