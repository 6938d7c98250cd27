"""Token-budget batching vs crop-to-shortest (fairseq's HuBERT default, ``pad_audio: false``) on the shipped
spoken-words corpus: frames of *real* audio trained on per second, the same model (``hubert_tiny``), the same
clips, one process, rounds alternated so a shared CPU's noise hits both.

* crop-to-shortest: ``trainer.batch_size`` clips per batch, every clip cropped to the batch's shortest (no
  padding, but the rest of every longer clip is never seen in that step);
* token budget: ``data.batch_seconds`` of padded audio per batch over length buckets (clips sorted in a buffer
  of ``bucket_buffer``), crops only above ``max_seconds``.

Real frames = 20 ms frames of audio that reach the model (after crops, padding excluded). Run:
``python benchmarks/audio_batching.py --units UNITS`` (UNITS from ``modalzoo units mfcc data/spoken-words ...``).
Writes benchmarks/results/audio_batching_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
MODES = {"crop_to_shortest": {"data.crop_to_shortest": True, "data.batch_seconds": None},
         "token_budget": {"data.crop_to_shortest": False}}


def setup(mode: str, args):
    import modalzoo
    from modalzoo.model import build_model
    from modalzoo.registry import DATASETS

    values = {"data.path": args.data, "data.units": args.units, "data.num_workers": 0,
              "trainer.batch_size": args.batch_size, "data.batch_seconds": args.batch_seconds,
              "data.max_seconds": args.max_seconds, **MODES[mode]}
    overrides = [f"{k}={'null' if v is None else str(v).lower() if isinstance(v, bool) else v}"
                 for k, v in values.items()]
    cfg = modalzoo.load_recipe("hubert_tiny", overrides)
    torch.manual_seed(0)
    model = build_model(cfg)
    data = DATASETS.build(cfg.data, "data")
    ctx = data.prepare(None)
    loader = iter(data.loader("train", cfg.trainer.batch_size, model.batch_transforms(ctx), seed=0, train=True))
    optim = torch.optim.AdamW(model.parameters(), lr=1e-4)
    return model.train(), loader, optim


def step(model, optim, batch) -> tuple[int, int, int]:
    """(real frames trained on, padded frames computed, frames the batch's clips held before any crop)."""
    out = model(batch)
    out.loss.backward()
    optim.step()
    optim.zero_grad(set_to_none=True)
    held = batch.get("clip_lengths", batch["audio_lengths"])
    return (int(batch["audio_lengths"].sum()) // 320, int(batch["input_values"].numel()) // 320,
            int(held.sum()) // 320)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO / "data" / "spoken-words"))
    parser.add_argument("--units", required=True)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batch-seconds", type=float, default=24.0)
    parser.add_argument("--max-seconds", type=float, default=2.0)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per mode per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "audio_batching_cpu.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runs = {mode: setup(mode, args) for mode in MODES}
    for model, loader, optim in runs.values():          # warm-up step each
        step(model, optim, next(loader))
    stats = {mode: {"real_frames": 0, "padded_frames": 0, "clip_frames": 0, "seconds": 0.0, "rates": []}
             for mode in MODES}
    for r in range(args.rounds):
        for mode, (model, loader, optim) in runs.items():
            batches = [next(loader) for _ in range(args.steps)]      # data loading is not timed
            real = padded = held = 0
            began = time.perf_counter()
            for batch in batches:
                a, b, c = step(model, optim, batch)
                real, padded, held = real + a, padded + b, held + c
            took = time.perf_counter() - began
            s = stats[mode]
            s["real_frames"] += real
            s["padded_frames"] += padded
            s["clip_frames"] += held
            s["seconds"] += took
            s["rates"].append(real / took)
            print(f"round {r} {mode:17s} {real / took:9.1f} real frames/s  padding {1 - real / padded:.1%}",
                  file=sys.stderr)
    summary = {mode: {"real_frames_per_s": s["real_frames"] / s["seconds"],
                      "median_round_real_frames_per_s": statistics.median(s["rates"]),
                      "padding_fraction": 1 - s["real_frames"] / s["padded_frames"],
                      # of the audio the batch's clips held (max_seconds crops count as held: both modes have them)
                      "discarded_fraction": 1 - s["real_frames"] / s["clip_frames"],
                      "real_frames": s["real_frames"], "seconds": round(s["seconds"], 2)} for mode, s in stats.items()}
    ratio = summary["token_budget"]["real_frames_per_s"] / summary["crop_to_shortest"]["real_frames_per_s"]
    result = {"benchmark": "audio_batching", "ratio_real_frames_per_s": round(ratio, 3), "goal": 1.3,
              "config": vars(args), "torch": torch.__version__, "modes": summary}
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps({"ratio_real_frames_per_s": round(ratio, 3),
                      **{m: round(v["real_frames_per_s"], 1) for m, v in summary.items()},
                      **{f"{m}_discarded": round(v["discarded_fraction"], 3) for m, v in summary.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
