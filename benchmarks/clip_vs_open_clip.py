"""CLIP training throughput: modalzoo's two-stream CLIP vs open_clip's `CLIP`, same model, same data (CPU).

Both are the ViT-B/32 CLIP layout (pre-norm towers, ln_pre, class-token image pooling, causal text tower
pooled at EOS, bias-free projections, learnable logit scale, exact GELU as open_clip's ViT-B-32) scaled
down to fit 2 CPU cores; see SHAPE. The zoo model is `build_model(spec)`, the open_clip one is
`open_clip.model.CLIP(**modalzoo.modalities.vision.hub.clip.open_clip_config(spec))` with the zoo's
initial weights loaded through `zoo_to_open_clip` (strict), so both start from the same point; an eval-mode
loss check on the first batch confirms they compute the same function.

One training step, both sides: forward, symmetric contrastive loss (zoo: its `contrastive` target;
open_clip: `open_clip.loss.ClipLoss`, as open_clip_train uses it), backward, `torch.optim.AdamW` step
(open_clip_train's defaults for ViT: lr 5e-4, betas (0.9, 0.98), eps 1e-6, wd 0.2; one group),
zero_grad, `float(loss)`. open_clip_train clamps `logit_scale` to [0, ln 100] after every step, and the
open_clip runner does too; the zoo clamps the scale inside its forward. fp32, no grad clipping.

Data: random images and random token ids; every text row is right-padded to the context with 0 after
its only EOS (id vocab-1, the largest, so open_clip's argmax pooling finds it), real length uniform in
[8, context]. The zoo gets `attention_mask` (its `last` pooling needs it), open_clip only the ids
(causal attention makes the padding after EOS inert). Alternating rounds in one process, see
`mlm_vs_transformers.py` for the method; the runner, rounds and memory helpers are `side_by_side.py`'s.

    .venv/bin/python benchmarks/clip_vs_open_clip.py                    # ~3 minutes on 2 idle cores
    .venv/bin/python benchmarks/clip_vs_open_clip.py --profile --rounds 2 --out /tmp/clip_profile.json
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import side_by_side as sbs
import torch

SHAPE = {"image_size": 64, "patch_size": 16, "vision_width": 256, "vision_layers": 4, "vision_heads": 4,
         "text_width": 256, "text_layers": 4, "text_heads": 4, "mlp_ratio": 4, "context": 32, "vocab_size": 1000,
         "embed_dim": 256, "batch_size": 32, "min_text_length": 8}
OPTIM = {"lr": 5e-4, "betas": (0.9, 0.98), "eps": 1e-6, "weight_decay": 0.2}
GOAL = 1.0
NAMES = ("modalzoo", "open_clip")


def zoo_spec() -> dict:
    s = SHAPE

    def enc(width: int, heads: int, layers: int, **kw) -> dict:
        return {"name": "transformer", "layers": layers, "dim": width, "heads": heads,
                "ffn_dim": s["mlp_ratio"] * width, "prenorm": True, "final_norm": True, "norm_eps": 1e-5,
                "activation": "gelu", **kw}
    return {"streams": {
        "image": {"embedding": {"name": "patch", "image_size": s["image_size"], "patch_size": s["patch_size"],
                                "dim": s["vision_width"], "positions": "learned", "cls_token": True,
                                "norm": "layernorm", "norm_eps": 1e-5, "patch_bias": False},
                  "encoder": enc(s["vision_width"], s["vision_heads"], s["vision_layers"])},
        "text": {"embedding": {"name": "token", "vocab_size": s["vocab_size"], "dim": s["text_width"],
                               "max_positions": s["context"], "positions": "learned"},
                 "encoder": enc(s["text_width"], s["text_heads"], s["text_layers"], mask="causal")}},
        "targets": {"clip": {"name": "contrastive", "streams": ["image", "text"], "pooling": ["cls", "last"],
                             "embed_dim": s["embed_dim"]}}}


def build_models():
    import open_clip

    import modalzoo
    from modalzoo.modalities.vision.hub.clip import open_clip_config, zoo_to_open_clip
    spec = zoo_spec()
    zoo = modalzoo.build_model(spec)
    oc_kwargs = open_clip_config(spec)
    oc = open_clip.model.CLIP(**oc_kwargs)
    oc.load_state_dict(zoo_to_open_clip(zoo.state_dict()), strict=True)
    return zoo, oc, oc_kwargs


def make_batches(n: int, seed: int) -> list[dict]:
    s = SHAPE
    B, C, eos = s["batch_size"], s["context"], s["vocab_size"] - 1
    out = []
    for i in range(n):
        g = torch.Generator().manual_seed(seed * 100_003 + i)
        lengths = torch.randint(s["min_text_length"], C + 1, (B,), generator=g)
        ids = torch.randint(1, eos, (B, C), generator=g)
        mask = torch.arange(C)[None] < lengths[:, None]
        ids[torch.arange(B), lengths - 1] = eos
        ids[~mask] = 0
        pixels = torch.randn(B, 3, s["image_size"], s["image_size"], generator=g)
        out.append({"modalzoo": {"pixel_values": pixels, "input_ids": ids, "attention_mask": mask.long()},
                    "open_clip": {"image": pixels, "text": ids}})
    return out


def main(argv=None) -> dict:
    args = sbs.parse_pair_arguments(__doc__, argv)
    import open_clip
    started = time.perf_counter()

    torch.manual_seed(args.seed)
    zoo, oc, oc_kwargs = build_models()
    assert sbs.n_trainable(zoo) == sbs.n_trainable(oc), (sbs.n_trainable(zoo), sbs.n_trainable(oc))
    batches = make_batches(args.batches, args.seed)
    clip_loss = open_clip.loss.ClipLoss()

    def oc_loss(b):
        image, text, scale = oc(b["image"], b["text"])
        return clip_loss(image, text, scale)

    def oc_clamp():
        with torch.no_grad():
            oc.logit_scale.clamp_(0, math.log(100))

    zoo.eval(), oc.eval()
    with torch.no_grad():
        lz, lo = float(zoo(batches[0]["modalzoo"]).loss), float(oc_loss(batches[0]["open_clip"]))
    check = {"eval_loss_modalzoo": round(lz, 6), "eval_loss_open_clip": round(lo, 6), "abs_diff": abs(lz - lo)}
    print(f"   same weights, eval mode: loss modalzoo {lz:.6f} open_clip {lo:.6f}", file=sys.stderr)

    runners = {"modalzoo": sbs.Runner("modalzoo", zoo, lambda b: zoo(b).loss, OPTIM),
               "open_clip": sbs.Runner("open_clip", oc, oc_loss, OPTIM, after_step=oc_clamp)}
    report = sbs.header("clip_vs_open_clip", argv)
    tokens = sum(int(b["modalzoo"]["attention_mask"].sum()) for b in batches)
    report["config"] = {
        "shape": SHAPE, "open_clip_kwargs": oc_kwargs, "trainable_params": sbs.n_trainable(zoo),
        "optimizer": {"name": "torch.optim.AdamW", **OPTIM, "groups": 1, "grad_clip": None},
        "precision": "fp32", "device": "cpu", "threads": torch.get_num_threads(), "steps_per_round": args.steps,
        "rounds": args.rounds, "warmup_steps": args.warmup, "seed": args.seed, "distinct_batches": args.batches,
        "mean_text_length": tokens / (len(batches) * SHAPE["batch_size"]),
        "image_tokens": (SHAPE["image_size"] // SHAPE["patch_size"]) ** 2 + 1,
        "order": "round r: modalzoo then open_clip if r is even, else the reverse; same batches in a round"}
    report["equivalence_check"] = check
    report.update(sbs.run(runners, batches, SHAPE["batch_size"], args, torch.device("cpu"), GOAL, NAMES))
    if args.profile:
        prof = sbs.profile_runners(runners, batches)
        sbs.print_profile(prof)
        report["profile"] = prof
    out = Path(args.out) if args.out else sbs.REPO / "benchmarks" / "results" / "clip_vs_open_clip_cpu.json"
    sbs.finish(report, out, NAMES, started)
    return report


if __name__ == "__main__":
    main()
