"""Causal-LM training throughput: the zoo's GPT and Llama vs `transformers.GPT2LMHeadModel` and
`LlamaForCausalLM`, same model, same batches (CPU).

Cases (the shipped toy recipes, with positions for SEQ_LEN tokens):
  gpt    gpt_tiny: 4 layers, 256 wide, 4 heads, FFN 1024, learned positions, LayerNorm, GELU-tanh, biases,
         tied head, vocab 8000 -> GPT2LMHeadModel.
  llama  llama_tiny: 4 layers, 256 wide, 8 query / 2 key-value heads, SwiGLU FFN 704, RoPE, RMSNorm, no
         biases, tied head, vocab 8000 -> LlamaForCausalLM.

The zoo model is `build_model(recipe)`; the transformers one is built from the mapping's config
(`modalities/text/hub/{gpt2,llama}.py::hf_config_kwargs`, SDPA attention) and gets the zoo's initial weights
through `zoo_to_hf` (strict), so an eval-mode loss check on the first batch confirms they compute the same
function. Every row is SEQ_LEN real random tokens (bos first) with an all-ones attention mask, the same
batches for both; the zoo predicts the next token at every position but the last (its clm target),
transformers the same from ``labels=input_ids`` (shifted inside). One step: forward (loss), backward,
`torch.optim.AdamW` (GPT-2-style lr 6e-4, betas (0.9, 0.95), wd 0.1, one group), zero_grad, float(loss).
fp32, no dropout, no grad clipping. Alternating rounds in one process (A B, then B A, ...), memory as peak
RSS and peak live tensor bytes above the step's start: `side_by_side.py`'s runner, rounds and profiler.

    .venv/bin/python benchmarks/causal_lm_vs_transformers.py                       # both cases, ~4 min idle
    .venv/bin/python benchmarks/causal_lm_vs_transformers.py --case llama --profile --rounds 2 --out /tmp/p.json
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import side_by_side as sbs
import torch

SEQ_LEN, BATCH_SIZE = 256, 8
OPTIM = {"lr": 6e-4, "betas": (0.9, 0.95), "eps": 1e-8, "weight_decay": 0.1}
CASES = {"gpt": ("gpt_tiny", "gpt2", "GPT2Config", "GPT2LMHeadModel", 1.15),
         "llama": ("llama_tiny", "llama", "LlamaConfig", "LlamaForCausalLM", 1.1)}
NAMES = ("modalzoo", "transformers")
BOS, PAD, EOS = 0, 1, 2                      # the zoo's bytelevel_bpe specials: <s> <pad> </s>


def build_models(case: str):
    import importlib

    import transformers

    import modalzoo
    recipe, arch, config_class, model_class, _ = CASES[case]
    mapping = importlib.import_module(f"modalzoo.modalities.text.hub.{arch}")
    cfg = modalzoo.load_recipe(recipe, [f"model.streams.text.embedding.max_positions={SEQ_LEN}",
                                        f"data.seq_len={SEQ_LEN}"])
    zoo = modalzoo.build_model(cfg)
    kwargs = {**mapping.hf_config_kwargs(cfg), "pad_token_id": PAD, "bos_token_id": BOS, "eos_token_id": EOS}
    config = getattr(transformers, config_class)(**kwargs, attn_implementation="sdpa")
    hf = getattr(transformers, model_class)(config)
    hf.load_state_dict(mapping.zoo_to_hf(zoo.state_dict()), strict=True)
    return zoo, hf, kwargs, recipe


def make_batches(n: int, vocab: int, seed: int) -> list[dict]:
    out = []
    for i in range(n):
        g = torch.Generator().manual_seed(seed * 100_003 + i)
        ids = torch.randint(5, vocab, (BATCH_SIZE, SEQ_LEN), generator=g)
        ids[:, 0] = BOS
        mask = torch.ones_like(ids, dtype=torch.bool)
        out.append({"modalzoo": {"input_ids": ids, "attention_mask": mask},
                    "transformers": {"input_ids": ids, "attention_mask": mask.long(), "labels": ids}})
    return out


def run_case(case: str, args) -> dict:
    print(f"\n== case {case}: building models", file=sys.stderr, flush=True)
    torch.manual_seed(args.seed)
    zoo, hf, hf_kwargs, recipe = build_models(case)
    assert sbs.n_trainable(zoo) == sbs.n_trainable(hf), (sbs.n_trainable(zoo), sbs.n_trainable(hf))
    batches = make_batches(args.batches, hf_kwargs["vocab_size"], args.seed)
    zoo.eval(), hf.eval()
    with torch.no_grad():
        lz = float(zoo(batches[0]["modalzoo"]).loss)
        lh = float(hf(**batches[0]["transformers"]).loss)
    print(f"   same weights, eval mode: loss modalzoo {lz:.6f} transformers {lh:.6f}", file=sys.stderr)
    runners = {"modalzoo": sbs.Runner("modalzoo", zoo, lambda b: zoo(b).loss, OPTIM),
               "transformers": sbs.Runner("transformers", hf, lambda b: hf(**b).loss, OPTIM)}
    report = {"config": {"recipe": recipe, "hf_config": hf_kwargs, "trainable_params": sbs.n_trainable(zoo),
                         "transformers_attn_implementation": hf.config._attn_implementation,
                         "seq_len": SEQ_LEN, "batch_size": BATCH_SIZE, "tokens_per_step": SEQ_LEN * BATCH_SIZE,
                         "optimizer": {"name": "torch.optim.AdamW", **OPTIM, "groups": 1, "grad_clip": None},
                         "precision": "fp32", "device": "cpu", "threads": torch.get_num_threads(),
                         "steps_per_round": args.steps, "rounds": args.rounds, "warmup_steps": args.warmup,
                         "seed": args.seed, "distinct_batches": args.batches},
              "equivalence_check": {"eval_loss_modalzoo": round(lz, 6), "eval_loss_transformers": round(lh, 6),
                                    "abs_diff": abs(lz - lh)}}
    report.update(sbs.run(runners, batches, BATCH_SIZE, args, torch.device("cpu"), CASES[case][4], NAMES))
    for result in report["results"].values():       # every row is SEQ_LEN real tokens
        result["tokens_per_s"] = result["samples_per_s"] * SEQ_LEN
    report["goal"]["metric"] = "tokens_per_s (= samples_per_s x seq_len: every token is real)"
    if args.profile:
        prof = sbs.profile_runners(runners, batches)
        sbs.print_profile(prof)
        report["profile"] = prof
    return report


def markdown(report: dict) -> str:
    lines = ["| case | implementation | s/step | tokens/s | other processes (cores) | peak RSS Δ (MB) | "
             "peak tensors Δ (MB) | speed zoo/HF | memory zoo/HF: RSS (tensors) |",
             "|---|---|---:|---:|---:|---:|---:|---|---|"]
    for case, c in report["cases"].items():
        ra, goal = c["ratios"], c["goal"]
        for name, r in c["results"].items():
            speed = memory = ""
            if name == NAMES[0]:
                quiet = (f"{ra['samples_per_s_quiet_rounds']:.2f}× in {ra['quiet_rounds']} quiet rounds"
                         if ra["quiet_rounds"] else "no quiet round")
                speed = (f"**{ra['samples_per_s']:.2f}×** (goal ≥ {goal['target_ratio']}×); median round "
                         f"{ra['samples_per_s_median_of_rounds']:.2f}×, best step {ra['best_step']:.2f}×, {quiet}")
                memory = sbs.memory_ratio_cell(ra)
            lines.append(f"| {case} | {name} | {r['s_per_step']:.3f} | {r['tokens_per_s']:.0f} | "
                         f"{r['others_cores_mean']:.2f} | {sbs.peak_memory_cells(r)} | {speed} | {memory} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    import argparse
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sbs.add_arguments(p, steps=3, rounds=8)
    p.add_argument("--batches", type=int, default=8, help="distinct batches, cycled (default 8)")
    p.add_argument("--case", choices=[*CASES, "all"], default="all")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    report = sbs.header("causal_lm_vs_transformers", argv)
    report["cases"] = {}
    for case in CASES if args.case == "all" else [args.case]:
        report["cases"][case] = run_case(case, args)
    report["total_s"] = round(time.perf_counter() - started, 1)
    out = Path(args.out) if args.out else sbs.REPO / "benchmarks" / "results" / "causal_lm_vs_transformers_cpu.json"
    busy = [r["others_cores_mean"] for c in report["cases"].values() for r in c["results"].values()]
    sbs.write(report, out, markdown(report), busy)
    return report


if __name__ == "__main__":
    main()
