"""T5 training throughput: modalzoo's span-corruption T5 vs `transformers.T5ForConditionalGeneration`, same model,
same batches (CPU).

The model is t5_tiny's layout (T5 v1.0: pre-norm RMSNorm, no biases, ReLU, bucketed relative position bias,
unscaled attention, one token table for encoder, decoder and the tied, output-scaled LM head) at SHAPE.
The zoo model is `build_model(t5_tiny + SHAPE)`; the transformers one is
`T5ForConditionalGeneration(T5Config(**modalzoo.modalities.text.hub.t5.hf_config_kwargs(recipe)))` with the
zoo's initial weights loaded through `zoo_to_hf` (strict), so the first losses agree; an eval-mode loss check
on the first batch confirms they compute the same function.

Batches: span-corrupted rows at fixed lengths, as T5 pretrains: ``encoder_len`` input tokens (sentinels
included) and ``decoder_len`` target tokens per row, every position real; the decoder input is the targets
shifted right behind the pad id. Both sides get the same ids (the zoo's ``decoder_input_ids`` /
``decoder_labels``, transformers' ``decoder_input_ids`` / ``labels``). One training step, both sides:
forward (loss included), backward, `torch.optim.AdamW` (one group), zero_grad, `float(loss)`; fp32, no
dropout (T5 drops out in more places than the zoo's block: after the feed-forward activation and after each
stack's final norm; without dropout both sides run the same ops). Alternating rounds in one process, see
`mlm_vs_transformers.py` for the method; the runner, rounds, memory helpers and profiler are
`side_by_side.py`'s. Tokens/s counts encoder + decoder tokens.

    .venv/bin/python benchmarks/t5_vs_transformers.py                  # a few minutes on 2 idle cores
    .venv/bin/python benchmarks/t5_vs_transformers.py --profile --rounds 2 --out /tmp/t5_profile.json
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import side_by_side as sbs
import torch

SHAPE = {"vocab_size": 8000, "dim": 256, "heads": 4, "ffn_dim": 1024, "encoder_layers": 4, "decoder_layers": 4,
         "encoder_len": 128, "decoder_len": 32, "batch_size": 32, "dropout": 0.0}
OPTIM = {"lr": 1e-3, "betas": (0.9, 0.98), "eps": 1e-6, "weight_decay": 0.01}
GOAL = 1.2
NAMES = ("modalzoo", "transformers")
PAD, BOS, EOS, SENTINEL0 = 1, 0, 2, 5                  # the byte-level BPE's layout, sentinels from id 5


def overrides() -> list[str]:
    s, p = SHAPE, "model.streams.text."
    out = [f"{p}{slot}.vocab_size={s['vocab_size']}" for slot in ("embedding", "target_embedding")]
    out += [f"{p}{slot}.dim={s['dim']}" for slot in ("embedding", "target_embedding")]
    out += [f"{p}embedding.dropout={s['dropout']}", f"{p}target_embedding.dropout={s['dropout']}"]
    for stack in ("encoder", "decoder"):
        out += [f"{p}{stack}.{k}={v}" for k, v in (("dim", s["dim"]), ("heads", s["heads"]),
                                                   ("ffn_dim", s["ffn_dim"]), ("layers", s[f"{stack}_layers"]),
                                                   ("dropout", s["dropout"]), ("attn_dropout", s["dropout"]))]
    return out


def build_models():
    import transformers

    import modalzoo
    from modalzoo.modalities.text.hub.t5 import hf_config_kwargs, zoo_to_hf
    cfg = modalzoo.load_recipe("t5_tiny", overrides())
    zoo = modalzoo.build_model(cfg)
    kwargs = {**hf_config_kwargs(cfg), "pad_token_id": PAD, "eos_token_id": EOS, "decoder_start_token_id": PAD}
    hf = transformers.T5ForConditionalGeneration(transformers.T5Config(**kwargs, attn_implementation="sdpa"))
    hf.load_state_dict(zoo_to_hf(zoo.state_dict()), strict=True)
    return zoo, hf, kwargs


def make_batches(n: int, seed: int) -> list[dict]:
    """Rows shaped like span corruption's: ordinary tokens with sentinels among them, bos ... eos; targets
    sentinel + span ... eos. Random ids: throughput does not depend on which tokens they are."""
    s = SHAPE
    g = torch.Generator().manual_seed(seed)
    B, L, T = s["batch_size"], s["encoder_len"], s["decoder_len"]
    out = []
    for _ in range(n):
        ids = torch.randint(200, s["vocab_size"], (B, L), generator=g)
        ids[:, 0], ids[:, -1] = BOS, EOS
        ids[:, 10:L - 1:20] = SENTINEL0 + torch.arange(len(range(10, L - 1, 20)))
        labels = torch.randint(200, s["vocab_size"], (B, T), generator=g)
        labels[:, 0:T - 1:5] = SENTINEL0 + torch.arange(len(range(0, T - 1, 5)))
        labels[:, -1] = EOS
        dec_in = torch.cat([torch.full((B, 1), PAD), labels[:, :-1]], dim=1)
        enc_mask, dec_mask = torch.ones(B, L, dtype=torch.bool), torch.ones(B, T, dtype=torch.bool)
        out.append({"modalzoo": {"input_ids": ids, "attention_mask": enc_mask, "decoder_input_ids": dec_in,
                                 "decoder_attention_mask": dec_mask, "decoder_labels": labels},
                    "transformers": {"input_ids": ids, "attention_mask": enc_mask.long(), "decoder_input_ids": dec_in,
                                     "decoder_attention_mask": dec_mask.long(), "labels": labels}})
    return out


def main(argv=None) -> dict:
    args = sbs.parse_pair_arguments(__doc__, argv, steps=3, rounds=8)
    started = time.perf_counter()

    torch.manual_seed(args.seed)
    zoo, hf, hf_kwargs = build_models()
    assert sbs.n_trainable(zoo) == sbs.n_trainable(hf), (sbs.n_trainable(zoo), sbs.n_trainable(hf))
    batches = make_batches(args.batches, args.seed)

    zoo.eval(), hf.eval()
    with torch.no_grad():
        lz = float(zoo(batches[0]["modalzoo"]).loss)
        lh = float(hf(**batches[0]["transformers"]).loss)
    check = {"eval_loss_modalzoo": round(lz, 6), "eval_loss_transformers": round(lh, 6), "abs_diff": abs(lz - lh)}
    print(f"   same weights, eval mode: loss modalzoo {lz:.6f} transformers {lh:.6f}", file=sys.stderr)

    runners = {"modalzoo": sbs.Runner("modalzoo", zoo, lambda b: zoo(b).loss, OPTIM),
               "transformers": sbs.Runner("transformers", hf, lambda b: hf(**b).loss, OPTIM)}
    report = sbs.header("t5_vs_transformers", argv)
    tokens = SHAPE["encoder_len"] + SHAPE["decoder_len"]
    report["config"] = {
        "shape": SHAPE, "t5_config": hf_kwargs, "trainable_params": sbs.n_trainable(zoo),
        "transformers_attn_implementation": hf.config._attn_implementation, "tokens_per_sample": tokens,
        "optimizer": {"name": "torch.optim.AdamW", **OPTIM, "groups": 1, "grad_clip": None},
        "precision": "fp32", "device": "cpu", "threads": torch.get_num_threads(), "steps_per_round": args.steps,
        "rounds": args.rounds, "warmup_steps": args.warmup, "seed": args.seed, "distinct_batches": args.batches,
        "order": "round r: modalzoo then transformers if r is even, else the reverse; same batches in a round"}
    report["equivalence_check"] = check
    report.update(sbs.run(runners, batches, SHAPE["batch_size"], args, torch.device("cpu"), GOAL, NAMES))
    for result in report["results"].values():           # samples are fixed-length rows: tokens/s follows
        result["tokens_per_s"] = result["samples_per_s"] * tokens
    if args.profile:
        prof = sbs.profile_runners(runners, batches)
        sbs.print_profile(prof)
        report["profile"] = prof
    out = Path(args.out) if args.out else sbs.REPO / "benchmarks" / "results" / "t5_vs_transformers_cpu.json"
    sbs.finish(report, out, NAMES, started)
    return report


if __name__ == "__main__":
    main()
