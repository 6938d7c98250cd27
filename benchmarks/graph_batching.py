"""Packed vs padded graph batches on the molecule pool, and the speed of the structural encodings (CPU).

* packed: a batch's graphs (each its virtual token + its atoms) laid first-fit, largest first, into rows of
  ``pack_len`` tokens, block-diagonal attention (``segment_ids``);
* padded: one graph per row, padded to the batch's largest graph.
Same model (``graph_tiny``, same initial weights), the same graphs in the same batches (``--batch-size``
graphs per step), the same attribute/edge masking draws (the batch transforms run with one seed per batch);
batches are made before timing (loader workers make them while a step runs), so a timed step is forward,
loss, backward and AdamW. Rounds alternate the two modes so a shared CPU's noise hits both.

Preprocessing: molecules/s of the graph field's decode (JSON -> graph -> degree, shortest paths, path edge
types) over the pool's first ``--decode`` samples, and of `structure.encode` alone.

    .venv/bin/python benchmarks/graph_batching.py            # ~2 min, 2 idle cores
Writes benchmarks/results/graph_batching_cpu.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import statistics
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
GOAL = 1.5


def decoded_pool(data_path: str, count: int):
    import modalzoo
    from modalzoo.datasets.shards import ShardStream, SkipCounter
    from modalzoo.registry import DATASETS

    cfg = modalzoo.load_recipe("graph_tiny", [f"data.path={data_path}", "data.num_workers=0"])
    data = DATASETS.build(cfg.data, "data")
    data.prepare(None)
    field, state = data.fields["graph"], data.ctx.states["graph"]
    raw = []

    def take(samples, skips):
        for sample in samples:
            raw.append(sample)
            yield from ()

    list(ShardStream(data.shards("train"), take, shuffle=False, repeat=False).raw_batches(0, 1, SkipCounter()))
    order = random.Random(0).sample(range(len(raw)), len(raw))      # every source, not the first shards' only
    raw = [raw[i] for i in order[: count or None]]
    t = time.perf_counter()
    values = []
    for sample in raw:
        try:
            values.append(field.decode(sample, state))
        except ValueError:
            pass
    decode_s = time.perf_counter() - t
    from modalzoo.modalities.graph.structure import encode
    graphs = [g for g, _ in values]
    t = time.perf_counter()
    for g in graphs:
        encode(g.num_nodes, g.edges, g.edge_type, field.hops)
    encode_s = time.perf_counter() - t
    return cfg, data, values, {"decoded": len(values), "decode_molecules_per_s": len(values) / decode_s,
                               "encode_molecules_per_s": len(graphs) / encode_s,
                               "mean_atoms": statistics.mean(g.num_nodes for g in graphs)}


def make_batches(cfg, data, values, packing: str, batch_size: int, steps: int, model):
    from modalzoo.modalities.graph.fields import GraphField
    c = data.cfg                                       # the validated data config (defaults filled in)
    field = GraphField(c.max_nodes, c.oversize, c.virtual_token, c.hops, packing, c.pack_len)
    transforms = model.batch_transforms(data.ctx)
    batches = []
    for i in range(steps):
        chunk = values[(i * batch_size) % len(values):][:batch_size]
        batch = field.collate(chunk, data.ctx.states["graph"])
        g = torch.Generator().manual_seed(i)
        for fn in transforms:
            batch = fn(batch, g)
        batches.append(batch)
    return batches


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO / "data" / "molecules"))
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per mode per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--decode", type=int, default=0, help="pool molecules decoded (0: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "graph_batching_cpu.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from modalzoo.model import build_model

    cfg, data, values, prep = decoded_pool(args.data, args.decode)
    torch.manual_seed(0)
    base = build_model(cfg)
    runs = {}
    for mode in ("packed", "padded"):
        model = copy.deepcopy(base).train()
        batches = make_batches(cfg, data, values, mode, args.batch_size, args.steps, model)
        optim = torch.optim.AdamW(model.parameters(), lr=1e-4)
        runs[mode] = (model, optim, batches)
    shapes = {m: {"rows": statistics.mean(b["node_cat"].shape[0] for b in r[2]),
                  "row_len": statistics.mean(b["node_cat"].shape[1] for b in r[2]),
                  "real_tokens": statistics.mean(int((b["segment_ids"] > 0).sum()) for b in r[2])}
              for m, r in runs.items()}
    for s in shapes.values():
        s["tokens"] = s["rows"] * s["row_len"]
        s["padding_fraction"] = 1 - s["real_tokens"] / s["tokens"]
        s["attention_pairs"] = s["rows"] * s["row_len"] ** 2

    def step(model, optim, batch):
        out = model(batch)
        out.loss.backward()
        optim.step()
        optim.zero_grad(set_to_none=True)
        return float(out.loss.detach())

    # same weights, same batch: the two layouts compute the same loss (packing changes no graph's result)
    with torch.no_grad():
        losses = {m: float(copy.deepcopy(base).eval()(r[2][0]).loss) for m, r in runs.items()}
    for model, optim, batches in runs.values():
        step(model, optim, batches[0])                                # warm-up
    rates = {m: [] for m in runs}
    for _ in range(args.rounds):
        for mode, (model, optim, batches) in runs.items():
            t = time.perf_counter()
            for b in batches:
                step(model, optim, b)
            rates[mode].append(args.batch_size * len(batches) / (time.perf_counter() - t))
    ratios = [p / q for p, q in zip(rates["packed"], rates["padded"])]
    report = {"benchmark": "graph_batching", "threads": args.threads, "batch_size": args.batch_size,
              "torch": torch.__version__, "preprocessing": prep, "shapes": shapes, "eval_loss_first_batch": losses,
              "graphs_per_s": {m: statistics.median(r) for m, r in rates.items()}, "rounds": rates,
              "ratio_packed_over_padded": statistics.median(ratios), "goal": GOAL}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps({k: report[k] for k in ("preprocessing", "shapes", "eval_loss_first_batch", "graphs_per_s",
                                             "ratio_packed_over_padded")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
