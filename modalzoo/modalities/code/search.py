"""Code search, CodeSearchNet's protocol (Husain et al. 2019, Table 8; research notes `code-graph.md` §2.4): each
held-out docstring is ranked against its own function among the other functions of one pool (1,000 pairs: the
function and 999 distractors); MRR and recall@1/5/10.

Queries are the docstring alone (``parts=("comment",)``: ``<s> comment </s>``), candidates the code side (``("code",
"nodes")``: ``<s> code </s> nodes``; the docstring is already removed from the code in the samples). Both go
through the SAME stream (a bi-encoder with shared weights): its final states mean-pooled over the real text tokens
(``<s>``, ``</s>``, comment or code subwords; not the data-flow nodes, not padding), L2-normalised, scored by
cosine similarity. Mean, not ``<s>``: no pretraining objective here trains the ``<s>`` state (there is no
next-sentence or contrastive task), so zero-shot it carries nothing, and the mean is what the project's other
probes pool (text/probe.py); nodes are left out of the mean so that the no-nodes arm pools over the same tokens
and differs only in what the nodes contributed through attention.

An MLM-style encoder is near useless for retrieval zero-shot, so every arm gets the same short contrastive
fine-tune before ranking: symmetric InfoNCE with in-batch negatives and a learned temperature (the `contrastive`
target's loss, `pretrain_tasks/contrastive.py`, on the two pooled sides), the run's optimizer (AdamW) with a
linear schedule, a fixed seed, budget and batch order, on the first ``finetune_pairs`` train-split pairs (shard
order; docstrings deduplicated, so no in-batch negative shares its query). The arms:
  * ``code_search_mrr_random_init``: fine-tuned from a random init of the same shape;
  * ``code_search_mrr``: fine-tuned from the run (for the MLM-only arm evaluate that run: ``modalzoo eval
    runs/graphcodebert_mlm_tiny``);
  * ``code_search_mrr_no_nodes``: the run's fine-tuned model, tested with no data-flow nodes (``("code",)``, the
    same code tokens as its code+nodes row: the freed node slots are not handed to more code);
  * ``code_search_mrr_zero_shot`` and ``code_search_mrr_random_init_zero_shot``: both inits without any fine-tune
    (references). The random init is not at chance: its mean of random token vectors matches docstring words to
    the identifiers that share their subwords (a lexical-overlap baseline), which a short fine-tune keeps.
Both fine-tuned arms are repeated ``repeats`` times (fine-tune seed ``seed``, ``seed + 1``, ...; the random
init's weights change with it): the batch order of a 60-step fine-tune alone moves MRR by a standard deviation of
about 0.003-0.004 (graphcodebert_tiny, 2,400 steps), the size of the differences the report is read for. The
arms' figures are the means over the repeats, with their standard deviations, and the run - random init
difference is given per repeat (the same batches on both sides).
The pool is a seeded draw (``draw_seed``) of distinct-docstring pairs from the split, kept in key order. The default
budget (3 repeats of 60 steps x 32 pairs, matmuls in bf16 where the CPU has it) takes about 35 s per fine-tune on 2
idle CPU cores for graphcodebert_tiny (several times that on shared ones), the whole report 4-5 minutes;
``eval.code_search.*`` changes it.
The chance level of a pool of N is H_N / N (0.0075 for 1,000). Ties (a constant scorer) count at their expected
rank under a random tie-break, so a scorer that cannot tell the candidates apart scores exactly chance.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import random
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...datasets.shards import ShardStream, SkipCounter
from ...errors import ModalzooError
from ...model import PretrainModel
from ...pretrain_tasks.base import StreamOutput
from ...pretrain_tasks.contrastive import Contrastive, ContrastiveConfig, pool
from ...registry import OPTIMIZERS, SCHEDULERS, dataclass_from_dict
from ...tokens import Tokens
from .fields import CodeField
from .layout import NODE, PAD_ROLE, Laid, collate, lay_out
from .sample import CodeSample

QUERY, CODE_SIDE, CODE_ONLY = ("comment",), ("code", "nodes"), ("code",)
KS = (1, 5, 10)


@dataclass
class CodeSearchConfig:
    """``modalzoo eval`` options under ``eval.code_search`` (`eval_options`)."""
    split: str = "test"              # held-out pairs (code-sample: standard-library functions)
    pairs: int = 1000                # one pool: each query against its function and pairs - 1 distractors
    draw_seed: int | None = 0        # the pool: a seeded draw from the split; None: the first `pairs` in key order
    finetune_pairs: int = 2000       # train-split pairs the fine-tune cycles through
    finetune_steps: int = 60         # the same for every arm
    batch_size: int = 32             # in-batch negatives: batch_size - 1 per query
    lr: float = 3.0e-4
    warmup_steps: int = 6
    temperature: float = 0.05        # initial; learned (the contrastive target's logit scale, clamped at 100)
    seed: int = 0                    # the fine-tune's batch order (and the random init's weights: run seed + this)
    repeats: int = 3                 # fine-tunes per arm, seeds seed, seed + 1, ...: figures are their means
    encode_batch: int = 64
    # Matmuls in bf16 (autocast; weights, pooling and scores stay fp32) where the device has bf16 kernels (CUDA,
    # CPUs with AVX-512 BF16 / AMX): "auto"; or always "fp32". The same for every arm.
    precision: str = "auto"

    def __post_init__(self):
        if self.pairs < 2 or self.finetune_pairs < self.batch_size or self.batch_size < 2:
            raise ValueError("code search needs pairs >= 2 and finetune_pairs >= batch_size >= 2")
        if self.finetune_steps < 0 or self.warmup_steps < 0:
            raise ValueError("finetune_steps and warmup_steps must be >= 0")
        if self.repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {self.repeats}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be auto, fp32 or bf16; got {self.precision}")


def autocast(device, precision: str = "auto"):
    """The matmul precision context of `CodeSearchConfig.precision` on ``device``."""
    kind = torch.device(device).type
    if precision == "auto":
        if kind == "cuda":
            bf16 = torch.cuda.is_bf16_supported()
        else:
            bf16 = kind == "cpu" and bool(getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)())
    else:
        bf16 = precision == "bf16"
    return torch.autocast(kind, dtype=torch.bfloat16, enabled=bf16 and kind in ("cpu", "cuda"))


def eval_options(run, key: str, config_type: type):
    """The report's options: ``run.eval_options[key]`` (a mapping, e.g. from ``eval.code_search.pairs=500``)
    validated against ``config_type``, else its defaults."""
    options = (getattr(run, "eval_options", None) or {}).get(key) or {}
    return dataclass_from_dict(config_type, dict(options), f"eval.{key}")


# ----------------------------------------------------------------------------------------------- metric

def _harmonic(n: Tensor) -> Tensor:
    """H_n = sum_{r <= n} 1 / r for integer n >= 0 (digamma(n + 1) + Euler's gamma)."""
    return torch.special.digamma(n.double() + 1) + 0.5772156649015329


def ranking_metrics(scores: Tensor, ks: tuple[int, ...] = KS) -> dict[str, float]:
    """``scores`` [N, N]: query i against candidate j, the right candidate on the diagonal. MRR and recall@k,
    ties at their expectation under a random tie-break: with g candidates above the right one and t tied with it,
    its rank is uniform on g+1 .. g+t+1, so E[1/rank] = (H_{g+t+1} - H_g) / (t+1) and
    P(rank <= k) = clamp((k - g) / (t+1), 0, 1)."""
    scores = scores.double()
    true = scores.diagonal()[:, None]
    greater = (scores > true).sum(1).double()
    tied = (scores == true).sum(1).double() - 1
    reciprocal = (_harmonic(greater + tied + 1) - _harmonic(greater)) / (tied + 1)
    out = {"mrr": float(reciprocal.mean())}
    for k in ks:
        out[f"recall@{k}"] = float(((k - greater) / (tied + 1)).clamp(0, 1).mean())
    out["mean_rank"] = float((greater + tied / 2 + 1).mean())
    return out


def chance_mrr(n: int) -> float:
    return float(_harmonic(torch.tensor(n))) / n


# ------------------------------------------------------------------------------------------------- data

def code_field(data) -> tuple[str, CodeField]:
    for name, f in data.fields.items():
        if isinstance(f, CodeField):
            return name, f
    raise ValueError(f"the run's data has no code field (its fields: {list(data.fields)})")


def read_samples(data, split: str, limit: int | None = None) -> list[tuple[str, CodeSample]]:
    """(key, sample) of ``split`` in shard order (= key order: the builder writes keys in sequence); samples
    that are not valid code samples are skipped."""
    from .fields import sample_of

    def decode(samples, skips):
        for raw in samples:
            try:
                yield raw.get("__key__", ""), sample_of(raw)
            except ValueError:
                skips.skipped += 1

    stream = ShardStream(data.shards(split), decode, shuffle=False, repeat=False)
    out = []
    for item in stream.raw_batches(0, 1, SkipCounter()):
        out.append(item)
        if limit is not None and len(out) >= limit:
            break
    return out


def draw_pool(samples: list[tuple[str, CodeSample]], n: int, seed: int | None) -> list[CodeSample]:
    """The pool: ``n`` samples with distinct docstrings (a query must have one right answer), by a seeded draw
    (kept in key order) or the first ``n``."""
    usable = distinct_docstrings(samples, len(samples))
    if seed is None or n >= len(usable):
        return usable[:n]
    picked = sorted(random.Random(seed).sample(range(len(usable)), n))
    return [usable[i] for i in picked]


def distinct_docstrings(samples: list[tuple[str, CodeSample]], n: int) -> list[CodeSample]:
    """The first ``n`` samples whose docstring (lower case, single spaces) no earlier one has."""
    seen, out = set(), []
    for _, s in samples:
        key = " ".join(s.docstring.lower().split())
        if key and key not in seen:
            seen.add(key)
            out.append(s)
            if len(out) == n:
                break
    return out


@dataclass
class Encoded:
    """Laid-out rows of the pool (and of the fine-tune set): queries, code with nodes, code without."""
    queries: list[Laid]
    codes: list[Laid]
    codes_no_nodes: list[Laid] | None = None


def lay_out_pairs(samples: list[CodeSample], field: CodeField, tokenizer, no_nodes: bool = False) -> Encoded:
    """The run's layout (``field``'s budgets). The no-nodes rows keep exactly the code the code+nodes rows keep:
    their length budget is cut by the node slots the other row used, which `lay_out` would otherwise hand to
    more code, so that arm differs in the nodes alone."""
    def rows(parts, cut=lambda s: 0):
        return [lay_out(s, tokenizer, field.seq_len - cut(s), field.max_nodes, field.comment_len, parts)
                for s in samples]
    bare = rows(CODE_ONLY, lambda s: min(len(s.nodes), field.max_nodes)) if no_nodes else None
    return Encoded(rows(QUERY), rows(CODE_SIDE), bare)


def to_batch(rows: list[Laid], pad_id: int, prefix: str, device) -> dict[str, Tensor]:
    return {prefix + k: v.to(device) for k, v in collate(rows, pad_id).items()}


def text_mask(batch: dict[str, Tensor], prefix: str = "") -> Tensor:
    """[B, L] bool: the real text tokens (specials, comment, code): neither nodes nor padding."""
    role = batch[prefix + "token_role"]
    return (role != PAD_ROLE) & (role != NODE)


def pooled(stream: nn.Module, batch: dict[str, Tensor], prefix: str = "") -> Tensor:
    """[B, D]: the stream's final states mean-pooled over the text tokens, L2-normalised."""
    hidden = stream(batch).hidden
    return F.normalize(pool(Tokens(x=hidden.x, pad_mask=text_mask(batch, prefix)), "mean").float(), dim=-1)


@torch.no_grad()
def encode(stream: nn.Module, rows: list[Laid], pad_id: int, device, batch_size: int = 64, desc: str = "",
           precision: str = "auto") -> Tensor:
    """[N, D] pooled, normalised embeddings in input order (batched by length: less padding)."""
    from tqdm import tqdm

    prefix = getattr(stream.embedding.cfg, "prefix", "")
    was_training = stream.training
    stream.eval()
    order = sorted(range(len(rows)), key=lambda i: len(rows[i].ids))
    out: list[Tensor | None] = [None] * len(rows)
    try:
        for start in tqdm(range(0, len(order), batch_size), desc=desc or "encode", unit=" batches", disable=None,
                          leave=False):
            idx = order[start:start + batch_size]
            with autocast(device, precision):
                emb = pooled(stream, to_batch([rows[i] for i in idx], pad_id, prefix, device), prefix).cpu()
            for i, e in zip(idx, emb):
                out[i] = e
    finally:
        stream.train(was_training)
    return torch.stack(out)


# -------------------------------------------------------------------------------------------- fine-tune

class BiEncoder(nn.Module):
    """One stream for both sides and the `contrastive` target's symmetric InfoNCE (its learned logit scale) on
    the two pooled, normalised sides. The target's projections are dropped: the score is the pooled features'
    cosine, the same as at test time."""

    no_weight_decay = PretrainModel.no_weight_decay   # AdamW's groups: no decay on norms, biases, the temperature

    def __init__(self, stream: nn.Module, temperature: float):
        super().__init__()
        self.stream = stream
        cfg = ContrastiveConfig(streams=["query", "code"], pooling=["mean", "mean"], embed_dim=1,
                                init_temperature=temperature, gather="none")
        self.loss = Contrastive(cfg, nn.ModuleDict({"query": stream, "code": stream}))
        self.loss.projections = nn.ModuleDict()
        self.prefix = getattr(stream.embedding.cfg, "prefix", "")

    def forward(self, queries: dict[str, Tensor], codes: dict[str, Tensor]):
        q, c = pooled(self.stream, queries, self.prefix), pooled(self.stream, codes, self.prefix)
        outputs = {"query": StreamOutput(self.stream, hidden=None, heads={self.loss: q}),
                   "code": StreamOutput(self.stream, hidden=None, heads={self.loss: c})}
        with torch.autocast(q.device.type, enabled=False):          # the similarity logits in fp32
            return self.loss(outputs, {})


def finetune(stream: nn.Module, train: Encoded, cfg: CodeSearchConfig, optimizer, pad_id: int, device,
             desc: str = "fine-tune") -> tuple[nn.Module, dict]:
    """A fine-tuned copy of ``stream`` (eval mode) and its loss/accuracy at the start and the end. The batch order
    depends on ``cfg.seed`` alone, so every arm sees the same batches."""
    from tqdm import tqdm

    model = BiEncoder(copy.deepcopy(stream), cfg.temperature).to(device)
    model.train()
    opt = OPTIMIZERS.build(optimizer, "trainer.optimizer").build(model, cfg.lr)
    sched = SCHEDULERS.build({"name": "linear"}, "scheduler").build(opt, cfg.warmup_steps, max(cfg.finetune_steps, 1))
    rng = np.random.default_rng(cfg.seed)
    n, b = len(train.queries), cfg.batch_size
    order, at = rng.permutation(n), 0
    log: dict[str, list[float]] = {"loss": [], "accuracy": []}
    began = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        for _ in tqdm(range(cfg.finetune_steps), desc=desc, unit="step", disable=None, leave=False):
            if at + b > n:
                order, at = rng.permutation(n), 0
            idx = order[at:at + b]
            at += b
            with autocast(device, cfg.precision):
                out = model(to_batch([train.queries[i] for i in idx], pad_id, model.prefix, device),
                            to_batch([train.codes[i] for i in idx], pad_id, model.prefix, device))
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            log["loss"].append(float(out.loss.detach()))
            log["accuracy"].append(float(out.metrics["accuracy"].detach()))
    model.eval()
    k = max(1, min(10, len(log["loss"]) // 5))
    info = {"steps": cfg.finetune_steps, "seconds": time.perf_counter() - began,
            "temperature": float(1 / model.loss.logit_scale.detach().clamp(max=math.log(100)).exp())}
    if log["loss"]:
        info.update({"loss_first": float(np.mean(log["loss"][:k])), "loss_last": float(np.mean(log["loss"][-k:])),
                     "accuracy_last": float(np.mean(log["accuracy"][-k:]))})
    return model.stream, info


# ----------------------------------------------------------------------------------------------- report

def code_search(run, stream_name: str, cfg: CodeSearchConfig | None = None) -> dict:
    """All arms on the run, or ``{"skipped": why}`` (no such split, too few pairs)."""
    from ..text.probe import random_init_model

    cfg = cfg or eval_options(run, "code_search", CodeSearchConfig)
    began = time.perf_counter()
    field_name, field = code_field(run.data)
    tokenizer = run.data_ctx.states[field_name].tokenizer
    try:
        held_out = read_samples(run.data, cfg.split)
    except ModalzooError as err:                   # no such split (a dataset without `test`): say so
        return {"skipped": f"no '{cfg.split}' split to search in ({err})"}
    pool_samples = draw_pool(held_out, cfg.pairs, cfg.draw_seed)
    if len(pool_samples) < 2:
        return {"skipped": f"'{cfg.split}' has {len(pool_samples)} pairs with a docstring"}
    train_samples = distinct_docstrings(read_samples(run.data, run.data.cfg.train_split, 4 * cfg.finetune_pairs),
                                        cfg.finetune_pairs)
    if len(train_samples) < cfg.batch_size:
        return {"skipped": f"the train split has {len(train_samples)} distinct pairs, fewer than a batch"}
    test = lay_out_pairs(pool_samples, field, tokenizer, no_nodes=True)
    train = lay_out_pairs(train_samples, field, tokenizer)
    pad, device = tokenizer.pad_id, run.device
    optimizer = run.cfg.trainer.optimizer                # the run's own (AdamW, its betas and weight decay)

    def embed(model, rows, desc):
        return encode(model, rows, pad, device, cfg.encode_batch, desc, cfg.precision)

    stream = run.model.streams[stream_name]
    zero_shot = ranking_metrics(embed(stream, test.queries, "zero-shot: queries") @ embed(stream, test.codes, "code").T)
    per_repeat: dict[str, list[dict]] = {arm: [] for arm in ("run", "no_nodes", "random_init", "random_init_zero_shot")}
    finetunes: dict[str, list[dict]] = {"run": [], "random_init": []}
    for i in range(cfg.repeats):
        seed_cfg = dataclasses.replace(cfg, seed=cfg.seed + i)
        tag = f" ({i + 1}/{cfg.repeats})" if cfg.repeats > 1 else ""
        tuned, info = finetune(stream, train, seed_cfg, optimizer, pad, device, "fine-tune from the run" + tag)
        queries = embed(tuned, test.queries, "fine-tuned: queries")
        per_repeat["run"].append(ranking_metrics(queries @ embed(tuned, test.codes, "code").T))
        per_repeat["no_nodes"].append(ranking_metrics(queries @ embed(tuned, test.codes_no_nodes, "code, no nodes").T))
        finetunes["run"].append(info)
        del tuned
        random_stream = random_init_model(run, run.cfg.seed + 1000 + seed_cfg.seed).streams[stream_name]
        per_repeat["random_init_zero_shot"].append(ranking_metrics(
            embed(random_stream, test.queries, "random init, zero-shot: queries")
            @ embed(random_stream, test.codes, "code").T))
        random_tuned, random_info = finetune(random_stream, train, seed_cfg, optimizer, pad, device,
                                             "fine-tune from random init" + tag)
        per_repeat["random_init"].append(ranking_metrics(
            embed(random_tuned, test.queries, "random init: queries") @ embed(random_tuned, test.codes, "code").T))
        finetunes["random_init"].append(random_info)
        del random_tuned, random_stream
    metrics = {"zero_shot": {**zero_shot, "mrr_std": 0.0}, **{arm: mean_metrics(ms) for arm, ms in per_repeat.items()}}
    suffix = {"run": "", "random_init": "_random_init", "no_nodes": "_no_nodes", "zero_shot": "_zero_shot",
              "random_init_zero_shot": "_random_init_zero_shot"}
    summary: dict = {}
    for arm, m in metrics.items():
        summary[f"code_search_mrr{suffix[arm]}"] = m["mrr"]
        for k in KS:
            summary[f"code_search_recall@{k}{suffix[arm]}"] = m[f"recall@{k}"]
    for arm in ("run", "random_init"):
        summary[f"code_search_mrr{suffix[arm]}_std"] = metrics[arm]["mrr_std"]
    gains = [r["mrr"] - b["mrr"] for r, b in zip(per_repeat["run"], per_repeat["random_init"])]
    summary["code_search_mrr_gain_over_random_init"] = float(np.mean(gains))
    summary["code_search_repeats"] = cfg.repeats
    summary["code_search_chance_mrr"] = chance_mrr(len(pool_samples))
    summary["code_search_pairs"] = len(pool_samples)
    nodes = [len(x.node_span) for x in test.codes]
    return {"summary": summary, "metrics": metrics, "config": dataclasses.asdict(cfg),
            "per_repeat": {arm: [m["mrr"] for m in ms] for arm, ms in per_repeat.items()}, "gains": gains,
            "finetune": {arm: mean_info(infos) for arm, infos in finetunes.items()}, "train_pairs": len(train_samples),
            "mean_nodes": float(np.mean(nodes)), "stream": stream_name, "seconds": time.perf_counter() - began}


def mean_metrics(repeats: list[dict[str, float]]) -> dict[str, float]:
    """The repeats' metrics averaged, with the MRR's standard deviation (0 for one repeat)."""
    out = {k: float(np.mean([m[k] for m in repeats])) for k in repeats[0]}
    out["mrr_std"] = float(np.std([m["mrr"] for m in repeats], ddof=1)) if len(repeats) > 1 else 0.0
    return out


def mean_info(infos: list[dict]) -> dict:
    """Fine-tune logs averaged over the repeats (keys every repeat has)."""
    keys = [k for k in infos[0] if all(k in i for i in infos)]
    return {k: float(np.mean([i[k] for i in infos])) for k in keys}


ARMS = (("random_init_zero_shot", "random init, zero-shot"), ("random_init", "random init, fine-tuned"),
        ("zero_shot", "run, zero-shot"), ("run", "run, fine-tuned"), ("no_nodes", "run, fine-tuned, no nodes at test"))


def search_lines(result: dict) -> list[str]:
    cfg, metrics = result["config"], result["metrics"]
    n = result["summary"]["code_search_pairs"]
    lines = ["", f"code search ({n} held-out '{cfg['split']}' pairs, one pool: each docstring against its function "
                 f"and {n - 1} others; bi-encoder, mean-pooled text tokens, cosine; fine-tune {cfg['finetune_steps']} "
                 f"steps x {cfg['batch_size']} of {result['train_pairs']} train pairs, symmetric InfoNCE, "
                 f"mean of {cfg['repeats']} fine-tune seed(s); {result['seconds']:.0f} s):",
             f"  {'arm':<36}{'MRR':>8}{'+-sd':>8}{'R@1':>8}{'R@5':>8}{'R@10':>8}"]
    for arm, label in ARMS:
        m = metrics[arm]
        lines.append(f"  {label:<36}{m['mrr']:>8.4f}{m['mrr_std']:>8.4f}{m['recall@1']:>8.3f}{m['recall@5']:>8.3f}"
                     f"{m['recall@10']:>8.3f}")
    lines.append(f"  {'chance':<36}{result['summary']['code_search_chance_mrr']:>8.4f}")
    gains = result.get("gains", [])
    if gains:
        lines.append(f"  run - random init, per fine-tune seed: {', '.join(f'{g:+.4f}' for g in gains)} "
                     f"(mean {np.mean(gains):+.4f})")
    ft = result["finetune"]
    lines.append(f"  fine-tune loss first -> last: run {ft['run'].get('loss_first', float('nan')):.3f} -> "
                 f"{ft['run'].get('loss_last', float('nan')):.3f}, random init "
                 f"{ft['random_init'].get('loss_first', float('nan')):.3f} -> "
                 f"{ft['random_init'].get('loss_last', float('nan')):.3f} (ln {cfg['batch_size']} = "
                 f"{math.log(cfg['batch_size']):.3f} is chance); {result['mean_nodes']:.1f} nodes per candidate")
    return lines


def search_png(run, result: dict) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics, summary = result["metrics"], result["summary"]
    labels = [label.replace(", ", ",\n", 1) for _, label in ARMS]
    values = [metrics[arm]["mrr"] for arm, _ in ARMS]
    fig, ax = plt.subplots(figsize=(7.2, 3.4))
    errors = [metrics[arm].get("mrr_std", 0.0) for arm, _ in ARMS]
    bars = ax.bar(range(len(values)), values, yerr=errors, capsize=3,
                  color=["#d9d9d9", "#9e9e9e", "#c6dbef", "#1f77b4", "#6baed6"])
    for bar, v, e in zip(bars, values, errors):
        ax.text(bar.get_x() + bar.get_width() / 2, v + e, f"{v:.3f}", ha="center", va="bottom", fontsize=8)
    ax.axhline(summary["code_search_chance_mrr"], color="red", lw=0.8, ls="--", label="chance")
    ax.set_xticks(range(len(values)), labels, fontsize=7)
    ax.set_ylabel("MRR")
    ax.set_ylim(0, max(max(v + e for v, e in zip(values, errors)) * 1.2, 0.05))
    ax.legend(fontsize=7)
    repeats = summary.get("code_search_repeats", 1)
    ax.set_title(f"code search, {summary['code_search_pairs']} held-out pairs, step {run.step}"
                 + (f" (mean +- sd of {repeats} fine-tune seeds)" if repeats > 1 else ""), fontsize=9)
    fig.tight_layout()
    path = run.artifact("code_search.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)
