"""Emergent cross-modal retrieval ("does it bind", ImageBind): two streams that were never shown together,
each trained against one shared anchor stream, retrieve each other's items of the same class.

Applies to a contrastive target T whose ``shares: U`` names another contrastive target U, the two reading
exactly one stream in common (the anchor, whose projection T borrows from U) and one other each (X for T, Y
for U), in a `mixture` run whose sources feeding T and U both have class names, at least two of them common.
X items (T's source) and Y items (U's source) of the held-out split are embedded by their own target's
projection, items of the common class names kept, and each side queries the other: top-1 class accuracy
(the nearest item has the query's class) and recall@5 (any of the 5 nearest has it), against their chance
levels for the gallery's class counts. eval.json: ``emergent_{X}_to_{Y}_top1``, ``..._recall@5``,
``..._recall@5_chance``, the reverse, ``emergent_chance`` (top-1 chance: the same both ways),
``emergent_queries`` / ``emergent_gallery`` (X and Y items), ``emergent_classes``, ``emergent_grid_png``.

The grid shows a query of each class with its nearest gallery items, drawn by the fields' optional
``preview(batch, row, state) -> uint8 [H, W, 3]`` (images, log-mel spectrograms). Only the rows it shows are
kept from the one encoding pass: the queries' rows, and the gallery rows while they are among some shown
query's nearest.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import ModalzooError
from .run import LoadedRun, Report
from .zero_shot import MAX_BATCHES, embed, recall_at

K = 5                    # recall@K
GRID_CLASSES = 10        # grid rows: one query of each of the first shared classes


@dataclass(frozen=True)
class Binding:
    """Who is retrieved through whom: T's stream X against U's stream Y, both bound to the anchor."""
    target: str           # T (shares U's anchor projection)
    other: str            # U
    anchor: str
    query: str            # X
    gallery: str          # Y
    query_source: object  # the mixture sources feeding T and U
    gallery_source: object
    classes: list[str]    # the class names both sources have, in X's source's order


def _contrastive(model, name: str):
    target = model.targets[name] if name in model.targets else None
    return target if getattr(target, "registered_name", None) == "contrastive" else None


def class_names(source) -> list[str]:
    ctx = getattr(getattr(source, "data", None), "ctx", None)
    try:
        return list(ctx.get("classes") or []) if ctx is not None else []
    except ModalzooError:              # two fields of one source with different class lists: not ours to pick
        return []


def binding(run: LoadedRun, target_name: str) -> Binding | None:
    """The binding a target takes part in as T, else None. Never raises."""
    run = getattr(run, "whole", run)             # `LoadedRun.for_target`'s view: the whole mixture run
    source_for = getattr(run.data, "source_for", None)
    if not isinstance(getattr(run.data, "sources", None), dict) or not callable(source_for):
        return None
    t = _contrastive(run.model, target_name)
    other = getattr(getattr(t, "cfg", None), "shares", "") if t is not None else ""
    u = _contrastive(run.model, other) if isinstance(other, str) and other and other != target_name else None
    if u is None:
        return None
    t_streams, u_streams = list(t.cfg.streams), list(u.cfg.streams)
    common = [s for s in t_streams if s in u_streams]
    if len(common) != 1 or len(set(t_streams)) != 2 or len(set(u_streams)) != 2:
        return None
    x, y = (next(s for s in streams if s != common[0]) for streams in (t_streams, u_streams))
    sx, sy = source_for(target_name), source_for(other)
    if sx is None or sy is None:
        return None
    gallery_names = set(class_names(sy))
    shared = [name for name in dict.fromkeys(class_names(sx)) if name in gallery_names]
    if len(shared) < 2:
        return None
    return Binding(target_name, other, common[0], x, y, sx, sy, shared)


def emergent_applies(run: LoadedRun, target_name: str) -> bool:
    return binding(run, target_name) is not None


# ----------------------------------------------------------------------------------------- scores

def chance_levels(query_names: list[str], gallery_names: list[str], k: int = K) -> tuple[float, float]:
    """Top-1 and recall@k of a retriever that ranks the gallery at random: the nearest item has the query's
    class with probability n_c / N (sum_c p_query(c) n_c / N); none of k distinct random items has it with
    probability C(N - n_c, k) / C(N, k)."""
    n = len(gallery_names)
    if not query_names or not n:
        raise ModalzooError("emergent retrieval needs at least one query and one gallery item")
    k = min(k, n)
    counts = {c: gallery_names.count(c) for c in set(gallery_names)}
    queries = {c: query_names.count(c) / len(query_names) for c in set(query_names)}
    top1 = sum(p * counts.get(c, 0) / n for c, p in queries.items())
    miss = sum(p * math.comb(n - counts.get(c, 0), k) / math.comb(n, k) for c, p in queries.items())
    return top1, 1 - miss


def emergent_scores(q_feat: Tensor, q_names: list[str], g_feat: Tensor, g_names: list[str], k: int = K) -> dict:
    """Top-1 class accuracy and recall@k of queries against a gallery (normalised features: the dot product
    ranks), with their chance levels: ``top1``, ``recall@k``, ``chance``, ``recall@k_chance``."""
    if len(q_feat) != len(q_names) or len(g_feat) != len(g_names):
        raise ValueError(f"{len(q_feat)} query features for {len(q_names)} names, {len(g_feat)} gallery features "
                         f"for {len(g_names)} names")
    ids = {name: i for i, name in enumerate(dict.fromkeys([*q_names, *g_names]))}
    hits = recall_at(q_feat.float(), g_feat.float(), torch.tensor([ids[n] for n in q_names]),
                     torch.tensor([ids[n] for n in g_names]), ks=(1, k))
    chance, chance_k = chance_levels(q_names, g_names, k)
    return {"top1": hits[1], f"recall@{k}": hits[k], "chance": chance, f"recall@{k}_chance": chance_k}


class Nearest:
    """The k nearest gallery items (global indices, best first) of a few queries, updated as the gallery
    streams past in batches."""

    def __init__(self, queries: Tensor, k: int):
        self.queries, self.k = queries.float(), k
        self.sims = torch.empty(len(queries), 0)
        self.index = torch.empty(len(queries), 0, dtype=torch.long)

    def add(self, start: int, features: Tensor, names=None) -> set[int]:
        """Take in gallery items ``start, start + 1, ...``; the indices now among some query's nearest (the
        signature of `encode_side`'s ``keep``: the names are not needed)."""
        sims = torch.cat([self.sims, self.queries @ features.float().T], 1)
        index = torch.cat([self.index, torch.arange(start, start + len(features)).expand(len(self.queries), -1)], 1)
        top = sims.topk(min(self.k, sims.shape[1]), dim=1)
        self.sims, self.index = top.values, index.gather(1, top.indices)
        return set(self.index.flatten().tolist())


# ----------------------------------------------------------------------------------------- encoding

def one_row(batch: dict, row: int) -> dict:
    """Row ``row`` of every per-row tensor, copied (a view would keep the whole batch alive)."""
    size = next(len(v) for k, v in batch.items() if isinstance(v, Tensor) and v.dim() and not k.startswith("_"))
    return {k: v[row:row + 1].clone() for k, v in batch.items() if isinstance(v, Tensor) and v.dim() and len(v) == size}


@torch.no_grad()
def encode_side(run: LoadedRun, target_name: str, stream: str, source, classes: list[str], keep,
                max_batches: int = MAX_BATCHES) -> dict:
    """One unshuffled pass over ``source``'s held-out split, as `zero_shot.encode_split` makes it: the target's
    embeddings of the items whose class name is in ``classes`` (``features``, ``names``), and ``rows``: index ->
    one-row batch for the indices ``keep(start, features, names)`` wants after each batch."""
    names_of = class_names(source)
    wanted = set(classes)
    run.model.eval()
    feats: list[Tensor] = []
    names: list[str] = []
    rows: dict[int, dict] = {}
    loader = source.data.loader("val", 128, [], seed=run.cfg.seed, train=False)
    for batch in itertools.islice(loader, max_batches):
        ids = batch.get("class_id")
        if ids is None:
            raise ModalzooError(f"source '{source.name}' has no class ids (KEY.cls) for emergent retrieval")
        batch_names = [names_of[i] if 0 <= i < len(names_of) else None for i in ids.tolist()]
        kept = [i for i, name in enumerate(batch_names) if name in wanted]
        if not kept:
            continue
        f = embed(run.model, target_name, stream, batch, run.device).float().cpu()[kept]
        start = len(names)
        feats.append(f)
        names.extend(batch_names[i] for i in kept)
        chosen = keep(start, f, names[start:])
        rows = {g: rows[g] if g in rows else one_row(batch, kept[g - start]) for g in chosen}
    if not names:
        raise ModalzooError(f"the held-out split of source '{source.name}' has no item of the shared classes "
                            f"{classes}")
    return {"features": torch.cat(feats), "names": names, "rows": rows}


def previewer(source):
    """(field, state) of the source's first field with a ``preview`` method, or None."""
    for name, field_ in source.data.fields.items():
        if callable(getattr(field_, "preview", None)):
            return field_, source.data.ctx.states[name]
    return None


def caption(source, row: dict) -> str:
    """The row's caption text, when the source has captions and a tokenizer; else ''."""
    tokenizer = getattr(source.data.ctx, "tokenizer", None)
    if tokenizer is None or "input_ids" not in row:
        return ""
    mask = row.get("attention_mask", torch.ones_like(row["input_ids"], dtype=torch.bool))[0].bool()
    special = set(getattr(tokenizer, "special_ids", []))
    return tokenizer.decode([i for i in row["input_ids"][0][mask].tolist() if i not in special]).strip()


# ----------------------------------------------------------------------------------------- the report

def emergent_report(run: LoadedRun, target_name: str, batches: int) -> dict:
    run = getattr(run, "whole", run)
    b = binding(run, target_name)
    shown = b.classes[:GRID_CLASSES]
    firsts: dict[str, int] = {}

    def first_of_each_class(start, features, names):
        for i, name in enumerate(names):
            if name in shown and name not in firsts:
                firsts[name] = start + i
        return set(firsts.values())

    queries = encode_side(run, b.target, b.query, b.query_source, b.classes, first_of_each_class, batches)
    order = [firsts[c] for c in shown if c in firsts]
    nearest = Nearest(queries["features"][order], K)
    gallery = encode_side(run, b.other, b.gallery, b.gallery_source, b.classes, nearest.add, batches)

    x, y = b.query, b.gallery
    forward = emergent_scores(queries["features"], queries["names"], gallery["features"], gallery["names"])
    backward = emergent_scores(gallery["features"], gallery["names"], queries["features"], queries["names"])
    png = grid_png(run, b, queries, gallery, order, nearest.index.tolist(), forward)
    summary: dict = {}
    for (a, c), s in (((x, y), forward), ((y, x), backward)):
        summary.update({f"emergent_{a}_to_{c}_top1": s["top1"], f"emergent_{a}_to_{c}_recall@{K}": s[f"recall@{K}"],
                        f"emergent_{a}_to_{c}_recall@{K}_chance": s[f"recall@{K}_chance"]})
    summary.update(emergent_chance=forward["chance"], emergent_queries=len(queries["names"]),
                   emergent_gallery=len(gallery["names"]), emergent_classes=list(b.classes),
                   emergent_grid_png=str(png))
    lines = ["", f"  emergent retrieval, never paired: {x} ({b.target}) <-> {y} ({b.other}) through {b.anchor}; "
                 f"{len(b.classes)} shared classes, {len(queries['names'])} {x} / {len(gallery['names'])} {y} "
                 "held-out items",
             f"  {'direction':<24}{'top-1':>8}{'chance':>8}{f'recall@{K}':>10}{'chance':>8}"]
    for (a, c), s in (((x, y), forward), ((y, x), backward)):
        lines.append(f"  {f'{a} -> {c}':<24}{s['top1']:>8.4f}{s['chance']:>8.4f}{s[f'recall@{K}']:>10.4f}"
                     f"{s[f'recall@{K}_chance']:>8.4f}")
    lines.append(f"  {'emergent_grid_png':<24}{png}")
    return {"summary": summary, "lines": lines}


def grid_png(run: LoadedRun, b: Binding, queries: dict, gallery: dict, order: list[int], neighbours: list[list[int]],
             scores: dict):
    """One row per shown query: its preview and class (and caption), then its nearest gallery items, framed
    green where the class is the query's and red where not."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    draw_q, draw_g = previewer(b.query_source), previewer(b.gallery_source)

    def picture(draw, row):
        return draw[0].preview(row, 0, draw[1]) if draw else np.full((8, 8, 3), 200, np.uint8)

    fig, axes = plt.subplots(len(order), 1 + K, figsize=(1.5 * (2 + K), 1.55 * len(order) + 0.7), squeeze=False,
                             gridspec_kw={"width_ratios": [2] + [1] * K}, layout="constrained")
    for r, (q, near) in enumerate(zip(order, neighbours)):
        name = queries["names"][q]
        ax = axes[r][0]
        ax.imshow(picture(draw_q, queries["rows"][q]), aspect="auto", interpolation="nearest")
        text = caption(b.query_source, queries["rows"][q])
        ax.set_title(f"{b.query}: {name}", fontsize=8, loc="left")
        ax.set_xlabel(text[:40], fontsize=7)
        for c, g in enumerate(near, start=1):
            ax = axes[r][c]
            same = gallery["names"][g] == name
            ax.imshow(picture(draw_g, gallery["rows"][g]), interpolation="nearest")
            ax.set_xlabel(gallery["names"][g], fontsize=7, color="green" if same else "red")
            for spine in ax.spines.values():
                spine.set_color("limegreen" if same else "red")
                spine.set_linewidth(3)
        for c in range(1 + len(near), 1 + K):
            axes[r][c].axis("off")
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"{b.query} -> {b.gallery}, never paired in training (step {run.step}): nearest held-out "
                 f"{b.gallery} items; top-1 {scores['top1']:.1%} (chance {scores['chance']:.1%}), "
                 f"recall@{K} {scores[f'recall@{K}']:.1%} (chance {scores[f'recall@{K}_chance']:.1%})", fontsize=9)
    path = run.artifact(f"emergent_{b.query}_to_{b.gallery}.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


REPORTS = [Report("emergent retrieval between streams bound to one anchor", emergent_applies, emergent_report)]
