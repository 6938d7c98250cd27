"""Edge prediction F1 on held-out functions, next to a name-matching heuristic (research notes §2.4, item 3).

For every sample of the split (laid out as the run trained: its ``parts``, budgets and tokenizer; no MLM masking)
a ``node_fraction`` of its nodes is drawn with a fixed seed and their edges are hidden exactly as training does
(`DataFlowMasking`, edge prediction only); the model then scores EVERY candidate pair (a pair of nodes with at least
one drawn node), not the balanced sample training draws: logit = h_i . h_j / sqrt(d) (the target's own scoring), an
edge predicted at logit > 0. A pair is positive when an edge joins it in either direction; its type is that edge's
kind (computedFrom when both kinds join it).

F1 overall is over all candidate pairs. F1 of one type (comesFrom, computedFrom) is over the candidates that are
either of that type or no edge (pairs of the other type left out): the model and the heuristic predict "edge", not
a type, so a predicted non-edge is a false positive of both types and a missed edge a false negative of its own.

The heuristic ("most recent definition of the same name") may use only what the hidden graph leaves visible:
which nodes there are, in source order, and their names. Whether a node is a definition is not visible - the
natural proxies ("has an outgoing computedFrom edge", "is a parameter") read the hidden edges or the sample's
structure and would leak the answer - so it predicts, for every node, an edge to the nearest PRECEDING node with the
same name, and nothing else; a candidate pair is predicted when its earlier node is its later node's nearest
preceding namesake. A node's name is its leaf's text, read as the leaf's subword ids (every leaf but the first is
encoded as `` leaf`` on its own, so equal texts have equal ids). It cannot find computedFrom edges between different
names (``y = x``), which is the model's to learn.

eval.json: ``edge_f1``, ``edge_f1_comesFrom``, ``edge_f1_computedFrom`` and the same three ``edge_f1_heuristic*``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor

from ...errors import ModalzooError
from .layout import NODE, collate, lay_out
from .objectives import DataFlowConfig, DataFlowMasking, _draw_nodes, _pair_loss, f1
from .sample import EDGE_KINDS
from .search import code_field, eval_options, read_samples


@dataclass
class EdgeEvalConfig:
    """``modalzoo eval`` options under ``eval.edges``."""
    split: str = "test"
    node_fraction: float | None = None   # None: the run's data_flow target's (paper: 20 %)
    seed: int = 0                        # batch i draws its nodes from a generator seeded seed + i
    max_samples: int = 0                 # 0: every sample of the split
    batch_size: int = 32


def nearest_same_name(names: list) -> set[tuple[int, int]]:
    """(j, i) for every node i that has a preceding node of the same name: j the nearest such (j < i)."""
    last: dict = {}
    out = set()
    for i, name in enumerate(names):
        if name in last:
            out.add((last[name], i))
        last[name] = i
    return out


def heuristic_edges(batch: dict[str, Tensor]) -> Tensor:
    """[B, L, L] bool at (earlier node position, later node position): `nearest_same_name` over each row's
    nodes, a node named by the ids of its leaf's subwords (``node_span``)."""
    role, ids, span = batch["token_role"], batch["input_ids"], batch["node_span"]
    out = torch.zeros(role.shape + role.shape[1:], dtype=torch.bool)
    for b in range(role.shape[0]):
        positions = (role[b] == NODE).nonzero().flatten().tolist()
        names = [tuple(ids[b, s:e].tolist()) for s, e in (span[b, p].tolist() for p in positions)]
        for j, i in nearest_same_name(names):
            out[b, positions[j], positions[i]] = True
    return out


def drawn_and_masked(batch: dict[str, Tensor], cfg: DataFlowConfig, seed: int) -> tuple[Tensor, dict[str, Tensor]]:
    """The nodes `DataFlowMasking` draws with ``seed`` ([B, L] bool) and its masked batch. The masking does not
    return its draw, so the draw is replayed from the same generator state and checked against the mask."""
    g = torch.Generator().manual_seed(seed)
    state = g.get_state()
    masked = DataFlowMasking(cfg)(batch, g)
    replay = torch.Generator()
    replay.set_state(state)
    drawn = _draw_nodes(batch["token_role"], cfg.node_fraction, replay)
    if not torch.equal(masked["attn_mask"], batch["attn_mask"] & ~candidate_pairs(batch, drawn, upper=False)):
        raise RuntimeError("DataFlowMasking no longer draws its edge nodes first from the generator; "
                           "edges_report.drawn_and_masked must follow it")
    return drawn, masked


def candidate_pairs(batch: dict[str, Tensor], drawn: Tensor, upper: bool = True) -> Tensor:
    """[B, L, L] bool: node pairs with a drawn node (i != j; with ``upper``, i < j only: a pair once)."""
    nodes = batch["token_role"] == NODE
    hidden = nodes[:, :, None] & nodes[:, None, :] & (drawn[:, :, None] | drawn[:, None, :])
    hidden &= ~torch.eye(nodes.shape[1], dtype=torch.bool)[None]
    return hidden & torch.triu(torch.ones_like(hidden[0]), 1)[None] if upper else hidden


def f1_scores(predicted: Tensor, kind: Tensor) -> dict[str, float]:
    """Overall F1 and one per edge type (over that type's edges and the non-edges); ``kind`` 0 = no edge."""
    truth = kind > 0
    out = {"": float(f1(predicted, truth))}
    for k, name in enumerate(EDGE_KINDS, start=1):
        keep = (kind == k) | ~truth
        out[f"_{name}"] = float(f1(predicted[keep], truth[keep]))
    return out


def precision_recall(predicted: Tensor, truth: Tensor) -> tuple[float, float]:
    tp = float((predicted & truth).sum())
    return tp / max(float(predicted.sum()), 1.0), tp / max(float(truth.sum()), 1.0)


@torch.no_grad()
def edge_f1(run, target_name: str, cfg: EdgeEvalConfig | None = None) -> dict:
    from tqdm import tqdm

    cfg = cfg or eval_options(run, "edges", EdgeEvalConfig)
    target = run.model.targets[target_name]
    masking_cfg = DataFlowConfig(stream=target.cfg.stream, edge_prediction=True, node_alignment=False,
                                 combine="sum", node_fraction=cfg.node_fraction or target.cfg.node_fraction)
    stream = run.model.streams[target.cfg.stream]
    prefix = getattr(stream.embedding.cfg, "prefix", "")
    field_name, field = code_field(run.data)
    tokenizer = run.data_ctx.states[field_name].tokenizer
    began = time.perf_counter()
    try:
        samples = [s for _, s in read_samples(run.data, cfg.split, cfg.max_samples or None)]
    except ModalzooError as err:                   # no such split
        return {"skipped": f"no '{cfg.split}' split ({err})"}
    rows = [lay_out(s, tokenizer, field.seq_len, field.max_nodes, field.comment_len, field.parts) for s in samples]
    rows = [r for r in rows if len(r.edges)]
    order = sorted(range(len(rows)), key=lambda i: len(rows[i].ids))        # less padding
    kinds, model_pred, rule_pred = [], [], []
    was_training = stream.training
    stream.eval()
    try:
        for n, start in enumerate(tqdm(range(0, len(order), cfg.batch_size), desc="edge prediction",
                                       unit=" batches", disable=None, leave=False)):
            batch = collate([rows[i] for i in order[start:start + cfg.batch_size]], tokenizer.pad_id)
            drawn, masked = drawn_and_masked(batch, masking_cfg, cfg.seed + n)
            pairs = candidate_pairs(batch, drawn).nonzero()
            if not len(pairs):
                continue
            kind = torch.maximum(batch["dfg_edges"], batch["dfg_edges"].transpose(1, 2)).long()
            b, i, j = pairs.unbind(1)
            labels = (kind[b, i, j] > 0).float()
            x = stream({prefix + k: v.to(run.device) for k, v in masked.items() if isinstance(v, Tensor)
                        and k in batch}).hidden.x.cpu()
            _, logits, _ = _pair_loss(x, pairs, labels)
            kinds.append(kind[b, i, j])
            model_pred.append(logits > 0)
            rule_pred.append(heuristic_edges(batch)[b, i, j])
    finally:
        stream.train(was_training)
    if not kinds:
        return {"skipped": f"no candidate pairs in '{cfg.split}'"}
    kind, model_p, rule_p = torch.cat(kinds), torch.cat(model_pred), torch.cat(rule_pred)
    summary = {f"edge_f1{k}": v for k, v in f1_scores(model_p, kind).items()}
    summary.update({f"edge_f1_heuristic{k}": v for k, v in f1_scores(rule_p, kind).items()})
    counts = {"candidates": int(len(kind)), "edges": int((kind > 0).sum()),
              **{name: int((kind == k).sum()) for k, name in enumerate(EDGE_KINDS, start=1)}}
    pr = {"model": precision_recall(model_p, kind > 0), "heuristic": precision_recall(rule_p, kind > 0)}
    return {"summary": summary, "counts": counts, "precision_recall": pr, "samples": len(rows),
            "node_fraction": masking_cfg.node_fraction, "split": cfg.split, "seconds": time.perf_counter() - began}


def edge_lines(result: dict) -> list[str]:
    s, c, pr = result["summary"], result["counts"], result["precision_recall"]
    lines = ["", f"edge prediction on '{result['split']}' ({result['samples']} functions, "
                 f"{result['node_fraction']:.0%} of nodes drawn, all {c['candidates']} candidate pairs, "
                 f"{c['edges']} edges: {c['comesFrom']} comesFrom, {c['computedFrom']} computedFrom; "
                 f"logit > 0; {result['seconds']:.0f} s):",
             f"  {'':<34}{'F1':>8}{'comesFrom':>11}{'computedFrom':>14}{'precision':>11}{'recall':>8}"]
    for label, key, who in (("model", "edge_f1", "model"),
                            ("heuristic (nearest same name)", "edge_f1_heuristic", "heuristic")):
        lines.append(f"  {label:<34}{s[key]:>8.4f}{s[key + '_comesFrom']:>11.4f}{s[key + '_computedFrom']:>14.4f}"
                     f"{pr[who][0]:>11.4f}{pr[who][1]:>8.4f}")
    lines.append(f"  all-positive: F1 {2 * c['edges'] / (c['candidates'] + c['edges']):.4f}")
    return lines
