"""HuBERT training throughput: modalzoo's HuBERT vs `torchaudio.models.hubert_pretrain_model`, same model, same
batches, same span masks (CPU).

Both are HuBERT Base's layout (group-norm conv front-end with feature_grad_mult 0.1, feature LayerNorm and
projection, learned mask embedding, weight-normed convolutional positions, post-norm Transformer, final_proj +
cosine logits over cluster embeddings / 0.1, masked-frame cross-entropy + 10 x feature penalty) scaled down to
fit 2 CPU cores; see SHAPES (--shape, --classes). The zoo model is `build_model(spec)`; the torchaudio one is
`hubert_pretrain_model(**modalzoo.modalities.audio.hub.hubert.torchaudio_kwargs(spec))` with the zoo's initial
weights loaded through `zoo_to_torchaudio` (strict). Each batch's span mask is drawn once by the zoo's batch
transform (the work loader workers do); the zoo reads it as ``mask_frames``, torchaudio gets the same mask
through its `_compute_mask_indices` (replaced by a lookup), so both hide the same frames and neither pays for
drawing it in the timed step. An eval-mode loss check on the first batch confirms they compute the same
function.

One training step, both sides: forward, loss (zoo: its `hubert` target; torchaudio: pytorch/audio's
examples/hubert `hubert_loss`, i.e. cross-entropy of ``logit_m`` against the positive + 10 x features_pen, over
the masked frames), backward, `torch.optim.AdamW` (fairseq's HuBERT: lr 5e-4, betas (0.9, 0.98), eps 1e-6,
wd 0.01; one group), zero_grad, `float(loss)`. fp32, no dropout, no grad clipping. torchaudio runs with
``skip_nomask=True`` by default (the unmasked logits have loss weight 0 in both, so neither computes them);
``--ta-nomask`` gives it hubert_pretrain_base's ``skip_nomask=False`` (its published configuration, which computes
them). Clips have random lengths in [min_seconds, max_seconds] (zero-padded: both build their padding masks).
Alternating rounds in one process; the runner, rounds and memory helpers are `side_by_side.py`'s.

    flock /tmp/modalzoo-cpu.lock .venv/bin/python benchmarks/hubert_vs_torchaudio.py      # ~1 min, 2 idle cores
    .venv/bin/python benchmarks/hubert_vs_torchaudio.py --shape small --classes 500 --out /tmp/hubert_small_500.json
    .venv/bin/python benchmarks/hubert_vs_torchaudio.py --profile --rounds 2 --out /tmp/hubert_profile.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import side_by_side as sbs
import torch
import torch.nn.functional as F

# tiny: the hubert_tiny recipe's model (64-channel front-end, 4 x 128 encoder); small: twice the front-end
# channels and a wider encoder. --classes 100 is iteration 1 (MFCC units), 500 iteration 2 (fairseq's).
SHAPES = {
    "tiny": {"conv_dim": 64, "dim": 128, "layers": 4, "heads": 4, "ffn_dim": 512, "pos_conv_kernel": 32,
             "pos_conv_groups": 16, "final_dim": 64, "batch_size": 12},
    "small": {"conv_dim": 128, "dim": 192, "layers": 4, "heads": 3, "ffn_dim": 768, "pos_conv_kernel": 64,
              "pos_conv_groups": 16, "final_dim": 64, "batch_size": 8},
}
SHAPE = {**SHAPES["tiny"], "num_classes": 100, "min_seconds": 1.2, "max_seconds": 2.0, "sample_rate": 16000}
OPTIM = {"lr": 5e-4, "betas": (0.9, 0.98), "eps": 1e-6, "weight_decay": 0.01}
GOAL = 1.2
NAMES = ("modalzoo", "torchaudio")


def zoo_spec() -> dict:
    s = SHAPE
    return {"streams": {"audio": {
        "embedding": {"name": "waveform_conv", "dim": s["dim"], "conv_dim": [s["conv_dim"]] * 7,
                      "extractor_mode": "group", "conv_bias": False, "feature_grad_mult": 0.1,
                      "pos_conv_kernel": s["pos_conv_kernel"], "pos_conv_groups": s["pos_conv_groups"],
                      "norm": "layernorm"},
        "encoder": {"name": "transformer", "layers": s["layers"], "dim": s["dim"], "heads": s["heads"],
                    "ffn_dim": s["ffn_dim"], "prenorm": False, "final_norm": False, "activation": "gelu"}}},
        "targets": {"hubert": {"name": "hubert", "stream": "audio", "num_classes": s["num_classes"],
                               "final_dim": s["final_dim"]}}}


class MaskLookup:
    """Stands in for torchaudio's `_compute_mask_indices`: returns the mask of the batch being run."""

    def __init__(self):
        self.mask = None

    def __call__(self, *_args, **_kwargs):
        return self.mask.clone()


def build_models(ta_nomask: bool):
    from torchaudio.models import hubert_pretrain_model

    import modalzoo
    import modalzoo.modalities.audio.hubert  # noqa: F401  (registers the target)
    import modalzoo.modalities.audio.waveform  # noqa: F401  (registers the embedding)
    from modalzoo.modalities.audio.hub.hubert import torchaudio_kwargs, zoo_to_torchaudio
    spec = zoo_spec()
    zoo = modalzoo.build_model(spec)
    kwargs = {**torchaudio_kwargs(spec), "skip_nomask": not ta_nomask}
    ta = hubert_pretrain_model(**kwargs)
    ta.load_state_dict(zoo_to_torchaudio(zoo.state_dict(), spec), strict=True)
    return zoo, ta, kwargs


def make_batches(zoo, n: int, seed: int) -> list[dict]:
    from modalzoo.datasets.fields import DataContext
    s = SHAPE
    rate = s["sample_rate"]
    transform = zoo.batch_transforms(DataContext(label_rate=50.0, sample_rate=rate))[0]
    embedding = zoo.streams.audio.embedding
    out = []
    for i in range(n):
        g = torch.Generator().manual_seed(seed * 100_003 + i)
        seconds = s["min_seconds"] + torch.rand(s["batch_size"], generator=g) * (s["max_seconds"] - s["min_seconds"])
        lengths = (seconds * rate).long()
        lengths[0] = int(s["max_seconds"] * rate)                # the longest row sets the padded size
        waves = torch.randn(s["batch_size"], int(lengths.max()), generator=g) * 0.1
        waves[torch.arange(waves.shape[1])[None] >= lengths[:, None]] = 0.0
        frames = embedding.frame_lengths(lengths)
        units = torch.randint(s["num_classes"], (s["batch_size"], int(frames.max())), generator=g)
        units[torch.arange(units.shape[1])[None] >= frames[:, None]] = -100
        batch = transform({"input_values": waves, "audio_lengths": lengths, "units": units,
                           "unit_lengths": frames}, g)
        out.append({"modalzoo": batch,
                    "torchaudio": {"waveforms": waves, "labels": batch["frame_units"].clamp(min=0),
                                   "audio_lengths": lengths, "mask": batch["mask_frames"]}})
    return out


def torchaudio_loss(ta, lookup: MaskLookup):
    def loss(batch: dict) -> torch.Tensor:
        lookup.mask = batch["mask"]
        logit_m, _, pen = ta(batch["waveforms"], batch["labels"], batch["audio_lengths"])
        target = torch.zeros(logit_m.shape[0], dtype=torch.long)
        # pytorch/audio examples/hubert/loss: sum CE (masked) + 10 x pen x masked frames, here per masked frame
        return F.cross_entropy(logit_m, target, reduction="sum") / logit_m.shape[0] + 10.0 * pen
    return loss


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sbs.add_arguments(p, steps=3, rounds=12)
    p.add_argument("--batches", type=int, default=6, help="distinct batches, cycled (default 6)")
    p.add_argument("--shape", choices=sorted(SHAPES), default="tiny", help="model shape (default tiny)")
    p.add_argument("--classes", type=int, default=100, help="clusters (default 100: iteration 1; 500: iteration 2)")
    p.add_argument("--ta-nomask", action="store_true",
                   help="torchaudio computes the unmasked logits too (hubert_pretrain_base's skip_nomask=False)")
    args = p.parse_args(argv)
    SHAPE.update(SHAPES[args.shape], num_classes=args.classes)
    torch.set_num_threads(args.threads)
    import os
    os.chdir(sbs.REPO)
    started = time.perf_counter()

    import torchaudio
    import torchaudio.models.wav2vec2.components as ta_components
    lookup = MaskLookup()
    ta_components._compute_mask_indices = lookup          # this process only: same masks on both sides

    torch.manual_seed(args.seed)
    zoo, ta, ta_kwargs = build_models(args.ta_nomask)
    assert sbs.n_trainable(zoo) == sbs.n_trainable(ta), (sbs.n_trainable(zoo), sbs.n_trainable(ta))
    batches = make_batches(zoo, args.batches, args.seed)
    ta_loss = torchaudio_loss(ta, lookup)

    zoo.eval(), ta.eval()
    with torch.no_grad():
        lz = float(zoo(batches[0]["modalzoo"]).loss)
        lt = float(ta_loss(batches[0]["torchaudio"]))
    check = {"eval_loss_modalzoo": round(lz, 6), "eval_loss_torchaudio": round(lt, 6), "abs_diff": abs(lz - lt)}
    print(f"   same weights, eval mode: loss modalzoo {lz:.6f} torchaudio {lt:.6f}", file=sys.stderr)
    assert abs(lz - lt) <= 1e-4, check

    runners = {"modalzoo": sbs.Runner("modalzoo", zoo, lambda b: zoo(b).loss, OPTIM),
               "torchaudio": sbs.Runner("torchaudio", ta, ta_loss, OPTIM)}
    report = sbs.header("hubert_vs_torchaudio", argv)
    report["environment"]["torchaudio"] = torchaudio.__version__
    frames = [int(zoo.streams.audio.embedding.frame_lengths(b["modalzoo"]["audio_lengths"]).sum()) for b in batches]
    masked = [int(b["modalzoo"]["mask_frames"].sum()) for b in batches]
    report["config"] = {
        "shape_name": args.shape, "shape": SHAPE, "torchaudio_kwargs": ta_kwargs,
        "trainable_params": sbs.n_trainable(zoo),
        "real_frames_per_batch": frames, "masked_frames_per_batch": masked,
        "optimizer": {"name": "torch.optim.AdamW", **OPTIM, "groups": 1, "grad_clip": None},
        "precision": "fp32", "device": "cpu", "threads": torch.get_num_threads(), "steps_per_round": args.steps,
        "rounds": args.rounds, "warmup_steps": args.warmup, "seed": args.seed, "distinct_batches": args.batches,
        "order": "round r: modalzoo then torchaudio if r is even, else the reverse; same batches in a round"}
    report["equivalence_check"] = check
    report.update(sbs.run(runners, batches, SHAPE["batch_size"], args, torch.device("cpu"), GOAL, NAMES))
    if args.profile:
        prof = sbs.profile_runners(runners, batches)
        sbs.print_profile(prof)
        report["profile"] = prof
    out = Path(args.out) if args.out else sbs.REPO / "benchmarks" / "results" / "hubert_vs_torchaudio.json"
    sbs.finish(report, out, NAMES, started)
    return report


if __name__ == "__main__":
    main()
