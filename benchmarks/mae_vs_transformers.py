"""MAE training throughput: modalzoo's MAE vs `transformers.ViTMAEForPreTraining`, same model, same data (CPU).

Both are the MAE layout (ViT encoder on the visible 25 % of patches plus a class token, fixed 2D sin-cos
positions, a light decoder over all patches with mask tokens, per-patch normalised pixel loss on the
hidden patches) scaled down to fit 2 CPU cores; see SHAPE. The zoo model is `build_model(spec)`; the
transformers one is `ViTMAEForPreTraining(ViTMAEConfig(**modalzoo.modalities.vision.hub.vit_mae.hf_config_kwargs(spec),
attn_implementation="sdpa"))` with the zoo's initial weights (and the fixed sin-cos tables) loaded through
`zoo_to_hf` (strict). Both get the same images and the same masking noise (zoo: `batch["mae_noise"]`,
transformers: `noise=`), so they hide the same patches; an eval-mode loss check on the first batch
confirms they compute the same function.

One training step, both sides: forward (loss included), backward, `torch.optim.AdamW` step (MAE's
pretraining recipe: betas (0.9, 0.95), wd 0.05, lr 1.5e-4; one group), zero_grad, `float(loss)`.
fp32, no dropout, no grad clipping. Alternating rounds in one process, see `mlm_vs_transformers.py` for
the method; the runner, rounds and memory helpers are `side_by_side.py`'s.

    .venv/bin/python benchmarks/mae_vs_transformers.py                  # ~3 minutes on 2 idle cores
    .venv/bin/python benchmarks/mae_vs_transformers.py --profile --rounds 2 --out /tmp/mae_profile.json
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import side_by_side as sbs
import torch

SHAPE = {"image_size": 64, "patch_size": 8, "encoder_width": 192, "encoder_layers": 4, "encoder_heads": 3,
         "decoder_width": 128, "decoder_layers": 2, "decoder_heads": 4, "mlp_ratio": 4, "mask_ratio": 0.75,
         "norm_pix_loss": True, "batch_size": 64}
OPTIM = {"lr": 1.5e-4, "betas": (0.9, 0.95), "eps": 1e-8, "weight_decay": 0.05}
GOAL = 1.1
NAMES = ("modalzoo", "transformers")


def zoo_spec() -> dict:
    s = SHAPE
    grid = s["image_size"] // s["patch_size"]
    return {"streams": {"image": {
        "embedding": {"name": "patch", "image_size": s["image_size"], "patch_size": s["patch_size"],
                      "dim": s["encoder_width"], "positions": "sincos2d", "cls_token": True,
                      "mask_ratio": s["mask_ratio"]},
        "encoder": {"name": "transformer", "layers": s["encoder_layers"], "dim": s["encoder_width"],
                    "heads": s["encoder_heads"], "ffn_dim": s["mlp_ratio"] * s["encoder_width"], "prenorm": True,
                    "final_norm": True, "norm_eps": 1e-12, "activation": "gelu"},
        "target_embedding": {"name": "mae", "encoder_dim": s["encoder_width"], "dim": s["decoder_width"],
                             "grid": grid},
        "decoder": {"name": "transformer", "layers": s["decoder_layers"], "dim": s["decoder_width"],
                    "heads": s["decoder_heads"], "ffn_dim": s["mlp_ratio"] * s["decoder_width"], "norm_eps": 1e-12,
                    "activation": "gelu", "cross_attention": False, "mask": "bidirectional"}}},
        "targets": {"mae": {"name": "mae", "stream": "image", "norm_pix_loss": s["norm_pix_loss"]}}}


def build_models():
    import transformers

    import modalzoo
    from modalzoo.modalities.vision.hub.vit_mae import hf_config_kwargs, zoo_to_hf
    spec = zoo_spec()
    zoo = modalzoo.build_model(spec)
    kwargs = hf_config_kwargs(spec)
    hf = transformers.ViTMAEForPreTraining(transformers.ViTMAEConfig(**kwargs, attn_implementation="sdpa"))
    hf.load_state_dict(zoo_to_hf(zoo.state_dict(), image_size=SHAPE["image_size"]), strict=True)
    return zoo, hf, kwargs


def make_batches(n: int, seed: int) -> list[dict]:
    s = SHAPE
    patches = (s["image_size"] // s["patch_size"]) ** 2
    out = []
    for i in range(n):
        g = torch.Generator().manual_seed(seed * 100_003 + i)
        pixels = torch.randn(s["batch_size"], 3, s["image_size"], s["image_size"], generator=g)
        noise = torch.rand(s["batch_size"], patches, generator=g)
        out.append({"modalzoo": {"pixel_values": pixels, "mae_noise": noise},
                    "transformers": {"pixel_values": pixels, "noise": noise}})
    return out


def main(argv=None) -> dict:
    args = sbs.parse_pair_arguments(__doc__, argv)
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
    report = sbs.header("mae_vs_transformers", argv)
    patches = (SHAPE["image_size"] // SHAPE["patch_size"]) ** 2
    report["config"] = {
        "shape": SHAPE, "vit_mae_config": hf_kwargs, "trainable_params": sbs.n_trainable(zoo),
        "transformers_attn_implementation": hf.config._attn_implementation,
        "patches": patches, "encoder_tokens": int(patches * (1 - SHAPE["mask_ratio"])) + 1,
        "decoder_tokens": patches + 1,
        "optimizer": {"name": "torch.optim.AdamW", **OPTIM, "groups": 1, "grad_clip": None},
        "precision": "fp32", "device": "cpu", "threads": torch.get_num_threads(), "steps_per_round": args.steps,
        "rounds": args.rounds, "warmup_steps": args.warmup, "seed": args.seed, "distinct_batches": args.batches,
        "order": "round r: modalzoo then transformers if r is even, else the reverse; same batches in a round"}
    report["equivalence_check"] = check
    report.update(sbs.run(runners, batches, SHAPE["batch_size"], args, torch.device("cpu"), GOAL, NAMES))
    if args.profile:
        prof = sbs.profile_runners(runners, batches)
        sbs.print_profile(prof)
        report["profile"] = prof
    out = Path(args.out) if args.out else sbs.REPO / "benchmarks" / "results" / "mae_vs_transformers_cpu.json"
    sbs.finish(report, out, NAMES, started)
    return report


if __name__ == "__main__":
    main()
