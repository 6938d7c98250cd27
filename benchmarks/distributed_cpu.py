"""Distributed training on CPU (gloo), measured: per-rank memory of DDP vs FSDP, and 1 -> 2 process
throughput. Run from the repository root:

    .venv/bin/python benchmarks/distributed_cpu.py            # both parts, writes benchmarks/results/
    .venv/bin/python benchmarks/distributed_cpu.py --part memory

memory: bert_base_mlm (110M parameters) on 2 ranks, one AdamW step; per rank, the bytes of the local
parameters + gradients + optimizer state (FSDP: the local shards), counted from the tensors themselves,
and the process's peak RSS.
scaling: bert_mlm_tiny for a fixed number of steps with the same global batch, one process (2 threads)
vs torchrun with 2 processes (1 thread each, DDP), reporting tokens/s from metrics.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def local_bytes(t) -> int:
    t = t.to_local() if hasattr(t, "to_local") else t
    return t.numel() * t.element_size()


def memory_worker(strategy: str, out: str) -> None:
    """Runs under torchrun: one step of bert_base_mlm, then count this rank's training state."""
    import torch
    import torch.distributed as dist

    import modalzoo
    from modalzoo.training import distributed as pdist
    from modalzoo.training.optim import AdamW, AdamWConfig

    torch.set_num_threads(1)
    env = pdist.init("cpu", 600)
    torch.manual_seed(0)
    cfg = modalzoo.load_recipe("bert_base_mlm")
    model = modalzoo.build_model(cfg)
    wrapped = pdist.wrap(model, strategy, env, "fp32")
    opt = AdamW(AdamWConfig()).build(model, lr=1e-4)
    ids = torch.randint(5, 30522, (2, 32))
    labels = torch.full_like(ids, -100)
    labels[:, 3:8] = ids[:, 3:8]
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids, dtype=torch.bool), "labels": labels}
    wrapped(batch).loss.backward()
    opt.step()
    params = sum(local_bytes(p) for p in model.parameters())
    grads = sum(local_bytes(p.grad) for p in model.parameters() if p.grad is not None)
    state = sum(local_bytes(v) for s in opt.state.values() for v in s.values() if torch.is_tensor(v) and v.dim() > 0)
    row = {"rank": env.rank, "params_bytes": params, "grads_bytes": grads, "optimizer_bytes": state,
           "total_bytes": params + grads + state, "n_params": sum(p.numel() for p in model.parameters())
           if strategy != "fsdp" else None,
           "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    rows = [None] * env.world_size
    dist.all_gather_object(rows, row)
    if env.rank == 0:
        Path(out).write_text(json.dumps(rows))
    pdist.shutdown()


def torchrun(nproc: int, args: list[str], threads: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if result.returncode:
        sys.exit(result.stderr[-4000:])
    return result


def measure_memory() -> dict:
    out = {}
    for strategy in ("ddp", "fsdp"):
        with tempfile.NamedTemporaryFile(suffix=".json") as f:
            torchrun(2, [__file__, "--worker", strategy, "--out", f.name], threads=1)
            out[strategy] = json.loads(Path(f.name).read_text())
    ddp = max(r["total_bytes"] for r in out["ddp"])
    fsdp = max(r["total_bytes"] for r in out["fsdp"])
    return {"model": "bert_base_mlm", "n_params": out["ddp"][0]["n_params"], "ranks": 2, "per_rank": out,
            "ddp_state_bytes_per_rank": ddp, "fsdp_state_bytes_per_rank": fsdp, "fsdp_over_ddp": fsdp / ddp}


def throughput(run_dir: Path) -> float:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rates = [r["tokens_per_s"] for r in rows if r["split"] == "train"][1:]   # the first window includes start-up
    return sum(rates) / len(rates)


def measure_scaling(steps: int) -> dict:
    common = ["data.num_workers=1", f"trainer.max_steps={steps}", "trainer.log_every=5",
              f"trainer.eval_every={steps * 10}", f"trainer.checkpoint_every={steps * 10}", "trainer.progress=false",
              "trainer.eval_batches=1"]
    with tempfile.TemporaryDirectory() as tmp:
        single = Path(tmp) / "single"
        env = {**os.environ, "OMP_NUM_THREADS": "2"}
        subprocess.run([sys.executable, "-m", "modalzoo", "train", "bert_mlm_tiny", f"run_dir={single}",
                        "trainer.batch_size=32", *common], check=True, capture_output=True, env=env)
        ddp = Path(tmp) / "ddp"
        torchrun(2, ["-m", "modalzoo", "train", "bert_mlm_tiny", f"run_dir={ddp}", "trainer.strategy=ddp",
                     "trainer.batch_size=16", *common], threads=1)
        one, two = throughput(single), throughput(ddp)
    return {"recipe": "bert_mlm_tiny", "global_batch": 32, "steps": steps, "tokens_per_s_1proc_2threads": one,
            "tokens_per_s_2proc_1thread_ddp": two, "speedup": two / one}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["memory", "scaling", "all"], default="all")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return memory_worker(args.worker, args.out)
    import torch
    result = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "torch": torch.__version__,
              "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    if args.part in ("memory", "all"):
        result["memory"] = measure_memory()
        m = result["memory"]
        print(f"per-rank params+grads+AdamW state, {m['model']} ({m['n_params'] / 1e6:.0f}M), 2 ranks: "
              f"DDP {m['ddp_state_bytes_per_rank'] / 2**20:.0f} MiB, FSDP {m['fsdp_state_bytes_per_rank'] / 2**20:.0f} "
              f"MiB -> FSDP/DDP = {m['fsdp_over_ddp']:.3f}")
    if args.part in ("scaling", "all"):
        result["scaling"] = s = measure_scaling(args.steps)
        print(f"bert_mlm_tiny tokens/s: 1 process x 2 threads {s['tokens_per_s_1proc_2threads']:.0f}, "
              f"2 processes x 1 thread (DDP) {s['tokens_per_s_2proc_1thread_ddp']:.0f} -> {s['speedup']:.2f}x")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "distributed_cpu.json"
    previous = json.loads(path.read_text()) if path.exists() else {}   # keep the part not rerun
    path.write_text(json.dumps({**previous, **result}, indent=2))


if __name__ == "__main__":
    main()
