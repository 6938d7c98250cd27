"""Code data speed on CPU: data-flow extraction (build time) and the loader's per-sample work (training time),
against the training step that consumes them.

(a) extraction: `modalzoo.modalities.code.python.functions` over a fixed set of standard-library files (every
    top-level ``*.py`` module of this interpreter's stdlib folder, sorted; ``--files`` caps them), texts read
    before timing; functions/s (every function the front end reads: a sample or a skip) and samples/s (kept), as
    `data build code-sample` runs it (``need_docstring=True``: undocumented functions are skipped before data
    flow) and over every function (``need_docstring=False``: each one through ast walk, tokenize and data flow).
    One more pass with the stages timed (``ast.parse`` of the file; per function `dataflow.extract` and
    `python.leaves`, wrapped in this process only) says where the time goes. One process, one core.
(b) loader work per sample in one process (what one loader worker does), on ``--samples`` training samples of
    ``data/code-sample``: ``CodeSample.from_json`` (JSON -> sample, checked), `layout.lay_out` (byte-level BPE of
    the comment and of each leaf, budgets, node spans, edges) at the tiny recipe's shape (seq 128, 32 nodes,
    comment 24) and the base one (seq 512, 128 nodes, comment 128), then per batch `layout.collate` + the MLM and
    data-flow transforms (the recipe's model's). Then the dataset's own training loader end to end
    (``num_workers=0``: shards read, shuffled, decoded, laid out, collated, transformed in this process).
    Against the training steps' samples/s from `graphcodebert_vs_roberta.py`'s JSON (``--step-json``) when it
    is there.

Torch runs 1 thread (a loader worker's share). The data side uses the dataset's cached byte-level BPE (8,000, the
tiny recipe's) at both shapes.

    .venv/bin/python benchmarks/code_extraction.py     # ~2 min; writes benchmarks/results/code_extraction_cpu.json
"""

from __future__ import annotations

import argparse
import ast
import itertools
import json
import os
import statistics
import sys
import sysconfig
import time
import warnings
from collections import Counter
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
SHAPES = {"tiny": {"recipe": "graphcodebert_tiny", "seq_len": 128, "max_nodes": 32, "comment_len": 24, "batch": 32},
          "base": {"recipe": "graphcodebert_base", "seq_len": 512, "max_nodes": 128, "comment_len": 128, "batch": 4}}


def loadavg() -> list[float]:
    with open("/proc/loadavg") as fh:
        return [float(x) for x in fh.read().split()[:3]]


def cpu_model() -> str:
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return ""


# ------------------------------------------------------------------------------------------ (a)

def stdlib_files(limit: int | None) -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.glob("*.py") if p.is_file())
    return files[:limit] if limit else files


def read_texts(files: list[Path]) -> list[tuple[str, str]]:
    from modalzoo.modalities.code.corpus import read_source
    out = []
    for p in files:
        try:
            out.append((p.name, read_source(p.read_bytes())))
        except Exception:                       # an undecodable file: not part of the set
            continue
    return out


def extract_pass(texts, need_docstring: bool) -> tuple[float, Counter]:
    from modalzoo.modalities.code.python import functions
    from modalzoo.modalities.code.sample import SkippedFunction
    counts: Counter = Counter()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # SyntaxWarnings of old escape sequences
        for origin, text in texts:
            for item in functions(text, origin, need_docstring=need_docstring):
                counts["functions"] += 1
                if isinstance(item, SkippedFunction):
                    counts[f"skipped:{item.reason}"] += 1
                else:
                    counts["samples"] += 1
    return time.perf_counter() - t0, counts


def stages(texts) -> dict:
    """Seconds in ast.parse (whole files), dataflow.extract and leaves (per function), with need_docstring=False."""
    from modalzoo.modalities.code import python as front
    spent = Counter()
    original = {"extract": front.extract, "leaves": front.leaves}

    def timed(key):
        fn = original[key]

        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[key] += time.perf_counter() - t
        return wrapper

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        for _, text in texts:
            try:
                ast.parse(text)
            except (SyntaxError, ValueError, RecursionError):
                pass
        spent["ast_parse_files"] = time.perf_counter() - t0
        front.extract, front.leaves = timed("extract"), timed("leaves")
        try:
            total, _ = extract_pass(texts, need_docstring=False)
        finally:
            front.extract, front.leaves = original["extract"], original["leaves"]
    spent["total"] = total
    # the rest: the file's ast.parse (about ast_parse_files) and walk, docstring split, dedent, the sample
    spent["rest"] = total - spent["extract"] - spent["leaves"]
    return {k: round(v, 3) for k, v in spent.items()}


def extraction(args) -> dict:
    files = stdlib_files(args.files)
    texts = read_texts(files)
    out = {"files": len(texts), "stdlib": str(Path(sysconfig.get_paths()["stdlib"])),
           "lines": sum(t.count("\n") + 1 for _, t in texts),
           "megabytes": round(sum(len(t.encode()) for _, t in texts) / 2**20, 2)}
    for label, need in (("as_built", True), ("all_functions", False)):
        times, counts = [], None
        for _ in range(args.repeats):
            s, counts = extract_pass(texts, need)
            times.append(s)
        s = statistics.median(times)
        out[label] = {"need_docstring": need, "seconds_median": round(s, 3),
                      "seconds_all": [round(x, 3) for x in times],
                      "functions": counts["functions"], "samples": counts["samples"],
                      "functions_per_s": counts["functions"] / s, "samples_per_s": counts["samples"] / s,
                      "lines_per_s": out["lines"] / s,
                      "skipped": {k.split(":", 1)[1]: v for k, v in sorted(counts.items()) if k.startswith("skipped:")}}
        print(f"   (a) extraction {label}: {counts['functions']} functions ({counts['samples']} samples) in {s:.2f} s: "
              f"{counts['functions'] / s:.0f} functions/s, {counts['samples'] / s:.0f} samples/s", file=sys.stderr,
              flush=True)
    out["stages_s"] = stages(texts)
    print(f"   (a) stages: {out['stages_s']}", file=sys.stderr, flush=True)
    return out


# ------------------------------------------------------------------------------------------ (b)

def code_data(shape: dict, data_path: str, vocab: int):
    import modalzoo
    from modalzoo.registry import DATASETS
    over = [f"data.seq_len={shape['seq_len']}", f"data.max_nodes={shape['max_nodes']}",
            f"data.comment_len={shape['comment_len']}", "data.num_workers=0", f"data.tokenizer.vocab_size={vocab}",
            f"data.path={Path(data_path).resolve()}"]
    cfg = modalzoo.load_recipe(shape["recipe"], overrides=over)
    data = DATASETS.build(cfg.data, "data")
    ctx = data.prepare(None)
    return cfg, data, ctx


def raw_samples(data, limit: int) -> list[dict]:
    from modalzoo.datasets.shards import ShardStream, SkipCounter
    out = []

    def take(samples, skips):
        out.extend(itertools.islice(samples, limit))
        yield from ()
    list(ShardStream(data.shards(data.cfg.train_split), take, shuffle=False, repeat=False)
         .raw_batches(0, 1, SkipCounter()))
    return out[:limit]


def rate(n: int, fn, repeats: int) -> tuple[float, list[float], object]:
    times, result = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return n / statistics.median(times), [round(n / x) for x in times], result


def loader_shape(shape: dict, args) -> dict:
    import modalzoo
    from modalzoo.modalities.code.fields import sample_of
    from modalzoo.modalities.code.layout import collate, lay_out
    cfg, data, ctx = code_data(shape, args.data, args.data_vocab)
    tok = ctx.tokenizer
    raws = raw_samples(data, args.samples)
    n = len(raws)
    decode_rate, decode_rounds, samples = rate(n, lambda: [sample_of(r) for r in raws], args.repeats)
    lay_rate, lay_rounds, laid = rate(n, lambda: [lay_out(s, tok, shape["seq_len"], shape["max_nodes"],
                                                          shape["comment_len"]) for s in samples], args.repeats)
    model = modalzoo.build_model(cfg)                       # only for its targets' transforms (MLM, data_flow)
    transforms = model.batch_transforms(ctx)
    B = shape["batch"]
    chunks = [laid[i:i + B] for i in range(0, n - B + 1, B)]

    def batches():
        for i, c in enumerate(chunks):
            b = collate(c, tok.pad_id)
            g = torch.Generator().manual_seed(i)
            for fn in transforms:
                b = fn(b, g)
    batch_rate, batch_rounds, _ = rate(len(chunks) * B, batches, args.repeats)
    per_sample = 1 / decode_rate + 1 / lay_rate + 1 / batch_rate
    # the dataset's own loader, end to end in this process (shard reading and shuffling included)
    count = max(1, args.loader_samples // B)
    t = time.perf_counter()
    loader = data.loader("train", B, transforms, seed=0, train=True)
    got = sum(b["input_ids"].shape[0] for b in itertools.islice(iter(loader), count))
    loader_rate = got / (time.perf_counter() - t)
    lengths = [len(x.ids) for x in laid]
    return {"shape": shape, "samples": n, "decode_samples_per_s": decode_rate, "decode_rounds": decode_rounds,
            "lay_out_samples_per_s": lay_rate, "lay_out_rounds": lay_rounds,
            "collate_transforms_samples_per_s": batch_rate, "collate_transforms_rounds": batch_rounds,
            "pipeline_samples_per_s": 1 / per_sample,
            "shares": {"decode": 1 / decode_rate / per_sample, "lay_out": 1 / lay_rate / per_sample,
                       "collate_transforms": 1 / batch_rate / per_sample},
            "loader_end_to_end_samples_per_s": loader_rate, "loader_samples": got,
            "laid_length_mean": statistics.mean(lengths), "laid_length_median": statistics.median(lengths),
            "rows_at_seq_len": sum(x >= shape["seq_len"] for x in lengths) / n,
            "nodes_mean": statistics.mean(len(x.node_span) for x in laid)}


def loader_work(args) -> dict:
    out = {}
    for name, shape in SHAPES.items():
        r = out[name] = loader_shape(shape, args)
        print(f"   (b) {name}: decode {r['decode_samples_per_s']:.0f}/s, lay_out {r['lay_out_samples_per_s']:.0f}/s, "
              f"collate+transforms {r['collate_transforms_samples_per_s']:.0f}/s -> "
              f"{r['pipeline_samples_per_s']:.0f} samples/s; loader end to end "
              f"{r['loader_end_to_end_samples_per_s']:.0f}/s", file=sys.stderr, flush=True)
    return out


def against_step(loader: dict, step_json: Path) -> dict:
    if not step_json.exists():
        return {"note": f"{step_json} not found: run benchmarks/graphcodebert_vs_roberta.py first"}
    report = json.loads(step_json.read_text())
    out = {"step_json": str(step_json.relative_to(REPO) if step_json.is_relative_to(REPO) else step_json),
           "step_date": report.get("date")}
    for name, c in report.get("shapes", {}).items():
        if name not in loader:
            continue
        res = c["results"]
        need = max(r["samples_per_s"] for r in res.values())
        lw = loader[name]
        out[name] = {"fastest_step_samples_per_s": need,
                     "steps": {k: r["samples_per_s"] for k, r in res.items()},
                     "pipeline_over_step": lw["pipeline_samples_per_s"] / need,
                     "loader_end_to_end_over_step": lw["loader_end_to_end_samples_per_s"] / need}
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--files", type=int, default=None, help="at most this many stdlib files (default: all top-level)")
    p.add_argument("--repeats", type=int, default=3, help="timed passes, the median reported (default 3)")
    p.add_argument("--samples", type=int, default=2000, help="training samples for (b) (default 2000)")
    p.add_argument("--loader-samples", type=int, default=1024, help="samples through the loader end to end "
                                                                    "(default 1024)")
    p.add_argument("--data", default=str(REPO / "data" / "code-sample"))
    p.add_argument("--data-vocab", type=int, default=8000)
    p.add_argument("--step-json", default=str(REPO / "benchmarks" / "results" / "graphcodebert_vs_roberta_cpu.json"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip-extraction", action="store_true")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "code_extraction_cpu.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.chdir(REPO)
    import platform
    started = time.perf_counter()
    report = {"benchmark": "code_extraction",
              "command": "python benchmarks/code_extraction.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "environment": {"python": platform.python_version(), "torch": torch.__version__, "cpu": cpu_model(),
                              "nproc": os.cpu_count(), "torch_threads": torch.get_num_threads()},
              "loadavg_before": loadavg()}
    if not args.skip_extraction:
        report["a_extraction"] = extraction(args)
    if (Path(args.data) / "info.json").exists():
        report["b_loader"] = loader_work(args)
        report["b_against_step"] = against_step(report["b_loader"], Path(args.step_json))
    else:
        report["b_loader"] = {"note": f"no code dataset at {args.data}"}
    report["loadavg_after"] = loadavg()
    report["total_s"] = round(time.perf_counter() - started, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k in ("a_extraction", "b_against_step")}, indent=1)[:4000])
    print(f"\nwrote {out} ({report['total_s']} s)")
    return report


if __name__ == "__main__":
    main()
