"""CLIP's loss across ranks: with gather-with-grad, 2 ranks holding half a batch each compute the same
loss and the same gradients as one process holding the whole batch (gloo, 2 processes)."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from modalzoo import build_model
from tiny_models import SHAPES


def make():
    torch.manual_seed(0)
    spec, make_batch = SHAPES["clip"]
    model = build_model({"model": spec})
    batch = make_batch()
    batch = {k: torch.cat([v, v.flip(0)]) for k, v in batch.items()}   # 6 rows: the first three, reversed
    batch["pixel_values"] = batch["pixel_values"] + torch.randn_like(batch["pixel_values"]) * 0.1
    return model, batch


def worker(rank: int, init: str, local_loss: bool, out: dict):
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    model, batch = make()
    model.targets["clip"].cfg.local_loss = local_loss
    half = {k: v[rank * 3:(rank + 1) * 3] for k, v in batch.items()}
    loss = model(half).loss
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    for g in grads:                                          # what DDP does: average over ranks
        dist.all_reduce(g)
        g /= 2
    out[rank] = (float(loss), [g.numpy() for g in grads])
    dist.destroy_process_group()


def test_gather_with_grad_matches_one_process(tmp_path):
    model, batch = make()
    out_full = model(batch).loss
    out_full.backward()
    loss = out_full.detach()
    expected = [p.grad for p in model.parameters()]
    for local_loss in (False, True):
        out = mp.Manager().dict()
        mp.spawn(worker, args=(f"file://{tmp_path}/pg-{local_loss}", local_loss, out), nprocs=2, join=True)
        if not local_loss:       # every rank computes the full symmetric loss
            assert abs(out[0][0] - float(loss)) < 1e-5 and abs(out[1][0] - float(loss)) < 1e-5
        else:                    # each rank its rows against everything: the mean over ranks is the loss
            assert abs((out[0][0] + out[1][0]) / 2 - float(loss)) < 1e-5
        for g_rank, g in zip(out[0][1], expected):
            assert torch.allclose(torch.from_numpy(g_rank), g, atol=1e-5, rtol=1e-4)
