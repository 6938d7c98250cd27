"""`modalzoo units`: one command per HuBERT k-means iteration, each writing a label set a recipe reads with
``data.units=UNITS``.

    modalzoo units mfcc DATA --clusters 100 --out UNITS                           iteration 1 (MFCC, 100/s)
    modalzoo units features DATA --from RUN --layer 6 --clusters 500 --out UNITS2  iteration 2 (a run's layer)

Features are cached beside the output (``UNITS.features/``, or ``--cache``) shard by shard, so an interrupted
command continues where it stopped when run again."""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLES = ("modalzoo units mfcc data/spoken-words --clusters 100 --out data/units-mfcc-k100\n"
            "  modalzoo units features data/spoken-words --from runs/hubert_tiny --layer 2 --clusters 100 "
            "--out data/units-it2")


def add_units_parser(subparsers) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    helps = "Make HuBERT's frame-level units (k-means labels) for every split of an audio dataset."
    units = subparsers.add_parser("units", help=helps, description=helps, formatter_class=fmt,
                                  epilog="examples:\n  " + EXAMPLES)
    sub = units.add_subparsers(dest="units_command", required=True, metavar="SUBCOMMAND")
    mfcc = sub.add_parser("mfcc", formatter_class=fmt,
                          help="iteration 1: 39-dim Kaldi MFCC + deltas at 100 frames/s, k-means",
                          description="Iteration 1: 39-dim Kaldi MFCC with deltas and delta-deltas (100 frames/s), "
                                      "MiniBatchKMeans with fairseq's settings, labels for every split.")
    feats = sub.add_parser("features", formatter_class=fmt,
                           help="iteration 2+: a trained run's layer features, k-means",
                           description="Iteration 2 and later: block L of a trained run's audio encoder (frames at "
                                       "its front-end's rate, 50/s for HuBERT), k-means, labels for every split.")
    feats.add_argument("--from", dest="run_dir", type=Path, required=True, help="the run whose features to cluster")
    feats.add_argument("--layer", type=int, required=True, help="encoder block (1-based; HuBERT base iteration 2: 6)")
    feats.add_argument("--stream", default=None, help="the run's audio stream (default: its only one, or 'audio')")
    feats.add_argument("--step", type=int, default=None, help="checkpoint step (default: the newest complete one)")
    feats.add_argument("--device", default="cpu")
    feats.add_argument("--max-chunk", type=int, default=1_600_000,
                       help="clips longer than this many samples run in chunks (default 1600000, fairseq's)")
    for p in (mfcc, feats):
        p.add_argument("data", type=Path, help="the audio dataset (shards under DATA/<split>/, info.json)")
        p.add_argument("--clusters", type=int, required=True, help="k (HuBERT: 100 for MFCC, 500 for iteration 2)")
        p.add_argument("--out", type=Path, required=True, help="the label set folder to write")
        p.add_argument("--percent", type=float, default=0.1,
                       help="share of the fit split's clips k-means is fitted on (default 0.1; 1 = all)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--fit-split", default="train")
        p.add_argument("--cache", type=Path, default=None, help="feature cache folder (default: OUT.features)")
        p.add_argument("--n-init", type=int, default=20, help="k-means++ initialisations (default 20)")
        p.add_argument("--max-iter", type=int, default=100)
        p.add_argument("--batch-size", type=int, default=10000, help="MiniBatchKMeans batch (default 10000)")
        p.add_argument("--max-no-improvement", type=int, default=100)


def run_units(args) -> int:
    from ...errors import ModalzooError
    from .units import KMeansConfig, LayerFeatures, MfccFeatures, dataset_rate, make_units, run_stream

    if not Path(args.data).is_dir():
        raise ModalzooError(f"{args.data} is not a dataset folder (build one with `modalzoo data build "
                            "spoken-words` or `modalzoo data pack-audio`)")
    if not 0 < args.percent <= 1:
        raise ModalzooError(f"--percent must be in (0, 1], got {args.percent}")
    kmeans = KMeansConfig(percent=args.percent, seed=args.seed, max_iter=args.max_iter, batch_size=args.batch_size,
                          max_no_improvement=args.max_no_improvement, n_init=args.n_init)
    rate = dataset_rate(args.data)
    source_run, extra = None, {}
    if args.units_command == "mfcc":
        extractor = MfccFeatures(rate)
    else:
        stream, name, cfg, checkpoint, step = run_stream(args.run_dir, args.stream, args.step)
        run_rate = int(cfg.data.get("sample_rate", rate))
        if run_rate != rate:
            raise ModalzooError(f"run {args.run_dir} was trained on {run_rate} Hz audio, {args.data} holds {rate} Hz")
        source_run = str(args.run_dir)
        extra = {"source_checkpoint": str(checkpoint), "source_step": step, "source_stream": name}
        extractor = LayerFeatures(stream.to(args.device), args.layer, rate, bool(cfg.data.get("normalize", False)),
                                  args.max_chunk, device=args.device,
                                  source={"run": str(Path(args.run_dir).resolve()), "checkpoint": str(checkpoint),
                                          "step": step, "stream": name})
    make_units(args.data, args.out, extractor, args.clusters, kmeans, args.cache, args.fit_split, source_run, extra,
               echo=print)
    return 0
