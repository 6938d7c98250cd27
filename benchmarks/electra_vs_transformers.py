"""ELECTRA training throughput: modalzoo's `electra` target vs the transformers pair (`ElectraForMaskedLM` generator +
`ElectraForPreTraining` discriminator with tied embeddings), same model, same batches (CPU).

The shape is ELECTRA-Small (the `electra_small` recipe: a 14M discriminator, 12 layers, 256 wide, 128-wide
embeddings; a generator of 1/4 its width), at batch 32 x 128 so that a step fits 2 CPU cores. The zoo model is
`build_model(electra_small)`; the transformers pair is built from `modalities.text.hub.electra.hf_config_kwargs`
(attn_implementation="sdpa"), gets the zoo's initial weights through `zoo_to_hf` (strict), and is tied the way
ELECTRA ties: the generator uses the discriminator's `ElectraEmbeddings` module (word, position, type tables and
LayerNorm) and its decoder is the word table; each keeps its own `embeddings_project`.

One training step, both sides: the batch is masked by the zoo's ELECTRA masking (15%: 85% [MASK], 15% kept) in
advance, identically for both; then generator forward and MLM loss, Gumbel-max samples from the generator's
logits at the masked positions (the same `pretrain_tasks.electra.sample`, no gradient), the discriminator on the
corrupted ids and its BCE loss over real tokens, loss = MLM + 50 x BCE, backward, gradient clipping at 1.0,
`torch.optim.AdamW` (ELECTRA's lr 5e-4, wd 0.01, eps 1e-6), zero_grad, `float(loss)`. transformers computes
its losses the way its classes do when given ``labels`` (the generator's head and cross-entropy over every
position, the discriminator's BCE over the attention mask); the zoo's generator head runs on the masked
positions only. fp32, dropout 0.1 (ELECTRA's). Every row holds 128 real tokens, so samples/s and tokens/s
give the same ratio. Alternating rounds in one process, see `mlm_vs_transformers.py` for the method; the
runner, rounds and memory helpers are `side_by_side.py`'s.

    .venv/bin/python benchmarks/electra_vs_transformers.py                     # ~4 minutes on 2 idle cores
    .venv/bin/python benchmarks/electra_vs_transformers.py --profile --rounds 2 --out /tmp/electra_profile.json
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from types import SimpleNamespace

import side_by_side as sbs
import torch

SHAPE = {"recipe": "electra_small", "batch_size": 32, "seq_len": 128, "dropout": 0.1}
OPTIM = {"lr": 5e-4, "betas": (0.9, 0.999), "eps": 1e-6, "weight_decay": 0.01}
GRAD_CLIP = 1.0
DISC_WEIGHT = 50.0
GOAL = 1.3
NAMES = ("modalzoo", "transformers")
IGNORE = -100


class TransformersPair(torch.nn.Module):
    """The generator and the discriminator as one module (shared tensors counted once by AdamW)."""

    def __init__(self, generator, discriminator):
        super().__init__()
        self.generator, self.discriminator = generator, discriminator
        generator.electra.embeddings = discriminator.electra.embeddings       # ELECTRA's tie
        generator.generator_lm_head.weight = discriminator.electra.embeddings.word_embeddings.weight

    def forward(self, b: dict) -> torch.Tensor:
        from modalzoo.pretrain_tasks.electra import sample
        gen = self.generator(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["labels"])
        selected = b["labels"] != IGNORE
        original = torch.where(selected, b["labels"], b["input_ids"])
        with torch.no_grad():
            corrupted = original.masked_scatter(selected, sample(gen.logits[selected].detach()))
        replaced = (corrupted != original).long()
        disc = self.discriminator(input_ids=corrupted, attention_mask=b["attention_mask"], labels=replaced)
        return gen.loss + DISC_WEIGHT * disc.loss


def build_models():
    import transformers

    import modalzoo
    from modalzoo.modalities.text.hub.electra import hf_config_kwargs, zoo_to_hf
    d = SHAPE["dropout"]
    overrides = [f"model.streams.{s}.{slot}.{k}={d}" for s in ("discriminator", "generator")
                 for slot, keys in (("embedding", ["dropout"]), ("encoder", ["dropout", "attn_dropout"]))
                 for k in keys]
    cfg = modalzoo.load_recipe(SHAPE["recipe"], overrides)
    zoo = modalzoo.build_model(cfg)
    state = zoo.state_dict()
    models = {}
    for role, cls in (("generator", transformers.ElectraForMaskedLM),
                      ("discriminator", transformers.ElectraForPreTraining)):
        kwargs = hf_config_kwargs(cfg, role)
        models[role] = cls(transformers.ElectraConfig(**kwargs, attn_implementation="sdpa"))
        models[role].load_state_dict(zoo_to_hf(state, role, tables="streams.discriminator.embedding"), strict=True)
    return zoo, TransformersPair(models["generator"], models["discriminator"]), cfg


def make_batches(zoo, cfg, n: int, seed: int) -> list[dict]:
    """Full rows of random ids ([CLS] ... [SEP]), masked by the zoo's ELECTRA transform; the same for both."""
    from modalzoo.datasets.fields import DataContext
    vocab = cfg.model.streams.discriminator.embedding.vocab_size
    tok = SimpleNamespace(mask_id=4, vocab_size=vocab, special_ids=[0, 1, 2, 3, 4])
    (mask,) = zoo.batch_transforms(DataContext(tokenizer=tok))
    out = []
    for i in range(n):
        g = torch.Generator().manual_seed(seed * 100_003 + i)
        ids = torch.randint(5, vocab, (SHAPE["batch_size"], SHAPE["seq_len"]), generator=g)
        ids[:, 0], ids[:, -1] = 2, 3
        batch = mask({"input_ids": ids, "attention_mask": torch.ones_like(ids)}, g)
        b = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "labels": batch["labels"]}
        out.append({"modalzoo": b, "transformers": b})
    return out


def same_function(zoo, pair, batch: dict) -> dict:
    """Eval mode, the same RNG state for the sampler: the two sides compute the same loss."""
    zoo.eval(), pair.eval()
    with torch.no_grad():
        torch.manual_seed(7)
        lz = float(zoo(batch).loss)
        torch.manual_seed(7)
        lh = float(pair(batch))
    zoo.train(), pair.train()
    print(f"   same weights, eval mode: loss modalzoo {lz:.6f} transformers {lh:.6f}", file=sys.stderr)
    return {"eval_loss_modalzoo": round(lz, 6), "eval_loss_transformers": round(lh, 6), "abs_diff": abs(lz - lh)}


def main(argv=None) -> dict:
    args = sbs.parse_pair_arguments(__doc__, argv, steps=2, rounds=6)
    started = time.perf_counter()
    torch.manual_seed(args.seed)
    zoo, pair, cfg = build_models()
    assert sbs.n_trainable(zoo) == sbs.n_trainable(pair), (sbs.n_trainable(zoo), sbs.n_trainable(pair))
    batches = make_batches(zoo, cfg, args.batches, args.seed)
    check = same_function(zoo, pair, batches[0]["modalzoo"])

    runners = {"modalzoo": sbs.Runner("modalzoo", zoo, lambda b: zoo(b).loss, OPTIM, grad_clip=GRAD_CLIP),
               "transformers": sbs.Runner("transformers", pair, pair, OPTIM, grad_clip=GRAD_CLIP)}
    report = sbs.header("electra_vs_transformers", argv)
    masked = sum(int((b["modalzoo"]["labels"] != IGNORE).sum()) for b in batches) / len(batches)
    report["config"] = {
        "shape": SHAPE, "trainable_params": sbs.n_trainable(zoo),
        "discriminator": dict(pair.discriminator.config.to_diff_dict()),
        "generator": dict(pair.generator.config.to_diff_dict()),
        "masked_positions_per_batch": masked, "discriminator_weight": DISC_WEIGHT,
        "optimizer": {"name": "torch.optim.AdamW", **OPTIM, "groups": 1, "grad_clip": GRAD_CLIP},
        "precision": "fp32", "device": "cpu", "threads": torch.get_num_threads(), "steps_per_round": args.steps,
        "rounds": args.rounds, "warmup_steps": args.warmup, "seed": args.seed, "distinct_batches": args.batches,
        "order": "round r: modalzoo then transformers if r is even, else the reverse; same batches in a round"}
    report["equivalence_check"] = check
    report.update(sbs.run(runners, batches, SHAPE["batch_size"], args, torch.device("cpu"), GOAL, NAMES))
    for r in report["results"].values():
        r["tokens_per_s"] = r["samples_per_s"] * SHAPE["seq_len"]
    report["ratios"]["tokens_per_s"] = report["ratios"]["samples_per_s"]       # every row: seq_len real tokens
    if args.profile:
        prof = sbs.profile_runners(runners, batches)
        sbs.print_profile(prof)
        report["profile"] = prof
    out = Path(args.out) if args.out else sbs.REPO / "benchmarks" / "results" / "electra_vs_transformers_cpu.json"
    sbs.finish(report, out, NAMES, started)
    return report


if __name__ == "__main__":
    main()
