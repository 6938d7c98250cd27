"""Greedy generation speed: modalzoo's `generate_ids` (KV cache in the shared block) vs transformers'
`GPT2LMHeadModel.generate()` (its own cache), same GPT-2 shape, same prompts, one process.

Both models have the same shape (default: 4 layers, 256 wide, 4 heads, FFN 1024, vocab 8000, 512 positions;
learned positions, LayerNorm, GELU-tanh, tied head) and their own random weights: the speed does not depend
on the weights, and neither stops early (no eos; transformers gets min_new_tokens). Each case (batch 1 and
8 by default) generates --new-tokens tokens after a --prompt-len token prompt; the two implementations are
timed in alternating rounds (A B, then B A, ...) by `side_by_side.py`'s machinery, which also measures one
generation's peak RSS and other processes' CPU load. The figure is new tokens per second, ours / theirs.

Then the cost per new token with the cache at two context lengths (default 32 and 256 cached tokens):
(time of prompt + 33 tokens - time of prompt + 1 token) / 32, for modalzoo with and without its cache and for
transformers. With a cache a token's cost grows only by its attention over the cache (linear total cost);
without one each token reruns the whole sequence.

    .venv/bin/python benchmarks/generate_vs_transformers.py                  # ~3 min on 2 idle cores
    .venv/bin/python benchmarks/generate_vs_transformers.py --layers 2 --dim 128 --rounds 4
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import side_by_side as sbs
import torch

REPO = Path(__file__).resolve().parent.parent
NAMES = ("modalzoo", "transformers")
GOAL = 1.0


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sbs.add_arguments(p, steps=1, rounds=6)
    p.set_defaults(threads=1, warmup=1, tensor_memory=False)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--vocab", type=int, default=8000)
    p.add_argument("--positions", type=int, default=512)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--prompt-len", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--contexts", type=int, nargs="+", default=[32, 256],
                   help="cached tokens at which to time one new token (default 32 256)")
    p.add_argument("--no-scaling", dest="scaling", action="store_false", help="skip the cost-per-token check")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.chdir(REPO)
    return args


def zoo_model(args) -> torch.nn.Module:
    from modalzoo.model import build_model
    spec = {"streams": {"text": {
        "embedding": {"name": "token", "vocab_size": args.vocab, "dim": args.dim, "max_positions": args.positions},
        "encoder": {"name": "transformer", "layers": args.layers, "dim": args.dim, "heads": args.heads,
                    "ffn_dim": 4 * args.dim, "mask": "causal", "activation": "gelu_tanh", "prenorm": True,
                    "final_norm": True, "norm_eps": 1e-5}}},
        "targets": {"lm": {"name": "clm", "stream": "text"}}}
    return build_model({"model": spec}).eval()


def hf_model(args) -> torch.nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel
    cfg = GPT2Config(vocab_size=args.vocab, n_positions=args.positions, n_embd=args.dim, n_layer=args.layers,
                     n_head=args.heads, n_inner=4 * args.dim, activation_function="gelu_new", resid_pdrop=0.0,
                     embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5, tie_word_embeddings=True)
    return GPT2LMHeadModel(cfg).eval()


class Generator:
    """A `side_by_side` runner whose step is one greedy generation of ``new_tokens`` tokens."""

    def __init__(self, name: str, generate):
        self.name, self.generate = name, generate

    def step(self, prompt: torch.Tensor) -> float:
        out = self.generate(prompt)
        return float(out[0, -1])                      # a value from the output: the work is done


def runners(zoo, hf, new_tokens: int) -> dict[str, Generator]:
    from modalzoo.modalities.text.generate import generate_ids

    def theirs(prompt, n=new_tokens):
        with torch.no_grad():
            return hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n, min_new_tokens=n,
                               do_sample=False, use_cache=True, pad_token_id=0)[:, prompt.shape[1]:]

    return {"modalzoo": Generator("modalzoo", lambda prompt: generate_ids(zoo, prompt, new_tokens)),
            "transformers": Generator("transformers", theirs)}


def case(zoo, hf, args, batch: int) -> dict:
    g = torch.Generator().manual_seed(args.seed + batch)
    prompts = [torch.randint(5, args.vocab, (batch, args.prompt_len), generator=g) for _ in range(2)]
    gens = runners(zoo, hf, args.new_tokens)
    assert gens["modalzoo"].generate(prompts[0]).shape == gens["transformers"].generate(prompts[0]).shape
    tokens = batch * args.new_tokens
    timed = sbs.alternate(gens, [{n: p for n in NAMES} for p in prompts], args, sbs.CPU, NAMES,
                          lambda name, i: {"tokens": tokens}, "tokens", budget_s=args.budget_s)
    rounds, results = timed["rounds"], {}
    for name in NAMES:
        wall = sum(r[name]["wall_s"] for r in rounds)
        results[name] = {"tokens_per_s": sum(r[name]["tokens"] for r in rounds) / wall,
                         "s_per_generation": wall / (len(rounds) * args.steps),
                         "best_generation_s": min(t for r in rounds for t in r[name]["step_s"]),
                         "others_cores_mean": statistics.mean(r[name]["others_cores"] for r in rounds),
                         **timed["memory"][name]}
    ratio = results["modalzoo"]["tokens_per_s"] / results["transformers"]["tokens_per_s"]
    per_round = [r["ratio_tokens_per_s"] for r in rounds]
    ratios = {"tokens_per_s": ratio, "tokens_per_s_median_of_rounds": statistics.median(per_round),
              "tokens_per_s_per_round": per_round,
              "best_generation": (results["transformers"]["best_generation_s"]
                                  / results["modalzoo"]["best_generation_s"]),
              **sbs.closing_ratios(rounds, results, NAMES, "tokens", sbs.CPU)}
    print(f"batch {batch}: modalzoo {results['modalzoo']['tokens_per_s']:.0f} tokens/s, transformers "
          f"{results['transformers']['tokens_per_s']:.0f} tokens/s: {ratio:.2f}x", file=sys.stderr, flush=True)
    return {"batch": batch, "new_tokens": args.new_tokens, "prompt_len": args.prompt_len, "results": results,
            "ratios": ratios, "goal": {"target_ratio": GOAL, "met": ratio >= GOAL}, "rounds": rounds}


def time_per_token(generate, context: int, vocab: int, repeats: int = 3, steps: int = 32) -> float:
    """Seconds per new token after ``context`` tokens: generate 1 + steps tokens minus generating 1 (best of
    ``repeats`` each), over ``steps``."""
    prompt = torch.randint(5, vocab, (1, context), generator=torch.Generator().manual_seed(context))

    def best(n: int) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            generate(prompt, n)
            times.append(time.perf_counter() - t0)
        return min(times)

    return (best(1 + steps) - best(1)) / steps


def scaling(zoo, hf, args) -> dict:
    from modalzoo.modalities.text.generate import generate_ids

    def hf_generate(prompt, n):
        with torch.no_grad():
            return hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n, min_new_tokens=n,
                               do_sample=False, pad_token_id=0)

    impls = {"modalzoo": lambda p, n: generate_ids(zoo, p, n),
             "modalzoo_no_cache": lambda p, n: generate_ids(zoo, p, n, use_cache=False),
             "transformers": hf_generate}
    out = {}
    for name, fn in impls.items():
        ms = {c: 1e3 * time_per_token(fn, c, args.vocab) for c in args.contexts}
        lo, hi = args.contexts[0], args.contexts[-1]
        out[name] = {"ms_per_token": ms, "growth": ms[hi] / ms[lo]}
        print(f"per new token, {name}: " + ", ".join(f"{v:.2f} ms after {c}" for c, v in ms.items())
              + f" ({out[name]['growth']:.2f}x from {lo} to {hi} cached tokens)", file=sys.stderr, flush=True)
    return out


def markdown(report: dict) -> str:
    lines = ["| batch | modalzoo tokens/s | transformers tokens/s | ratio (goal ≥ 1.0×) | quiet rounds | "
             "peak RSS Δ MB zoo / ref |", "|---:|---:|---:|---|---|---|"]
    for c in report["cases"]:
        z, h, r = c["results"]["modalzoo"], c["results"]["transformers"], c["ratios"]
        quiet = (f"{r['tokens_per_s_quiet_rounds']:.2f}× in {r['quiet_rounds']}" if r["quiet_rounds"] else "none")
        lines.append(f"| {c['batch']} | {z['tokens_per_s']:.0f} | {h['tokens_per_s']:.0f} | "
                     f"**{r['tokens_per_s']:.2f}×** (median round {r['tokens_per_s_median_of_rounds']:.2f}×) | "
                     f"{quiet} | "
                     f"{z['peak_rss_mb']:.0f} / {h['peak_rss_mb']:.0f} |")
    if "scaling" in report:
        contexts = list(next(iter(report["scaling"].values()))["ms_per_token"])
        lines += ["", "| ms per new token (batch 1) | " + " | ".join(f"after {c}" for c in contexts) + " | growth |",
                  "|---|" + "---:|" * (len(contexts) + 1)]
        for name, s in report["scaling"].items():
            lines.append(f"| {name} | " + " | ".join(f"{s['ms_per_token'][c]:.2f}" for c in contexts)
                         + f" | {s['growth']:.2f}× |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    started = time.perf_counter()
    args = parse(argv)
    torch.manual_seed(args.seed)
    zoo, hf = zoo_model(args), hf_model(args)
    report = sbs.header("generate_vs_transformers", argv)
    report["shape"] = {k: getattr(args, k) for k in ("layers", "dim", "heads", "vocab", "positions")}
    report["threads"] = args.threads
    report["cases"] = [case(zoo, hf, args, batch) for batch in args.batch_sizes]
    if args.scaling:
        report["scaling"] = scaling(zoo, hf, args)
    report["total_s"] = round(time.perf_counter() - started, 1)
    out = Path(args.out) if args.out else REPO / "benchmarks" / "results" / "generate_vs_transformers_cpu.json"
    busy = [c["results"][n]["others_cores_mean"] for c in report["cases"] for n in NAMES]
    sbs.write(report, out, markdown(report), busy)


if __name__ == "__main__":
    main()
