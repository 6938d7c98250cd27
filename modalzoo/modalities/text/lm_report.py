"""The causal LM report: validation loss and perplexity next to a unigram baseline on the same tokens, and
greedy continuations of held-out docstring openings.

It applies to a causal LM target (`clm` or a target built on it) over a `token` embedding, in a run whose data
has a tokenizer. The baseline predicts every label from its add-one smoothed frequency as a label in
training batches; model and baseline are scored on the same validation label positions (the model's figures
are the exact token-weighted loss, perplexity = exp(loss)). Continuations need a decoder-only target."""

from __future__ import annotations

import itertools
import math

import torch

from ...evaluation.run import LoadedRun, Report
from ...pretrain_tasks.base import IGNORE
from ...pretrain_tasks.clm import CausalLM
from ...training.metrics import to_device
from .generate import generate, max_positions

OPENINGS, OPENING_WORDS, NEW_TOKENS = 5, 8, 24


def lm_applies(run: LoadedRun, target_name: str) -> bool:
    target = run.model.targets[target_name]
    if not isinstance(target, CausalLM):
        return False
    stream = run.model.streams[target.cfg.stream]
    embedding = stream.embedding if target.cfg.source == "encoder" else stream.target_embedding
    return getattr(embedding, "registered_name", None) == "token" and run.data_ctx.tokenizer is not None


def unigram_logp(counts: torch.Tensor) -> torch.Tensor:
    """Log-probabilities of add-one smoothed counts."""
    return torch.log((counts + 1) / (counts + 1).sum())


def label_counts(run: LoadedRun, target: CausalLM, batches: int) -> torch.Tensor:
    """How often each id is a label (the next token; T5: a target token) in ``batches`` training batches."""
    counts = torch.zeros(run.data_ctx.tokenizer.vocab_size, dtype=torch.float64)
    loader = run.data.loader("train", run.cfg.trainer.batch_size, run.transforms, seed=run.cfg.seed, train=True)
    for batch in itertools.islice(loader, batches):
        labels = target._labels(batch)
        counts += torch.bincount(labels[labels != IGNORE], minlength=counts.numel())[:counts.numel()].double()
    return counts


@torch.no_grad()
def model_and_unigram(run: LoadedRun, target_name: str, batches: int) -> tuple[dict, dict]:
    """(model, unigram baseline) loss and perplexity over the same validation labels."""
    target = run.model.targets[target_name]
    logp = unigram_logp(label_counts(run, target, batches))
    model_nll = unigram_nll = count = 0.0
    run.model.eval()
    for batch in itertools.islice(run.val_loader(), batches):
        batch.pop("_skipped", None)
        labels = target._labels(batch)
        labels = labels[labels != IGNORE]
        out = run.model(to_device(batch, run.device))
        model_nll += float(out.metrics[f"{target_name}/loss"]) * labels.numel()
        unigram_nll -= float(logp[labels.clamp(max=logp.numel() - 1)].sum())
        count += labels.numel()
    model_loss, unigram_loss = model_nll / max(count, 1), unigram_nll / max(count, 1)
    return ({"loss": model_loss, "perplexity": math.exp(model_loss), "tokens": int(count)},
            {"loss": unigram_loss, "perplexity": math.exp(unigram_loss)})


def docstring_openings(run: LoadedRun, count: int = OPENINGS, words: int = OPENING_WORDS) -> list[str]:
    """The first ``words`` words of validation docstrings that go on for at least as many more."""
    openings = []
    for text in run.data.texts(run.data.cfg.val_split):
        split = text.split()
        if len(split) >= 2 * words:
            openings.append(" ".join(split[:words]))
        if len(openings) == count:
            break
    return openings


def continuations(run: LoadedRun, target_name: str, openings: list[str], new_tokens: int = NEW_TOKENS) -> list[dict]:
    tokenizer = run.data_ctx.tokenizer
    limit = max_positions(run.model.streams[run.model.targets[target_name].cfg.stream].embedding)
    out = []
    for opening in openings:
        room = new_tokens if limit is None else min(new_tokens, limit - 1 - len(tokenizer.encode(opening)[0]))
        if room <= 0:
            continue
        result = generate(run.model, tokenizer, opening, max_new_tokens=room, target=target_name)
        out.append({"prompt": opening, "continuation": result.text, "ids": result.ids})
    return out


def lm_report(run: LoadedRun, target_name: str, batches: int) -> dict:
    model, baseline = model_and_unigram(run, target_name, batches)
    names = {k: f"{target_name}/{k}" for k in ("loss", "perplexity")}
    report = {"summary": {"val_perplexity": model["perplexity"], "unigram_perplexity": baseline["perplexity"]},
              "lm": model,
              "baseline": {"label": "unigram baseline", "metrics": {names[k]: v for k, v in baseline.items()}}}
    lines = ["", f"{target_name}: validation perplexity {model['perplexity']:.2f} (exp of the loss over "
                 f"{model['tokens']} label tokens) vs {baseline['perplexity']:.2f} for the unigram baseline"]
    if run.model.targets[target_name].cfg.source == "encoder":
        examples = continuations(run, target_name, docstring_openings(run))
        report["continuations"] = examples
        lines += ["", f"greedy continuations of held-out docstring openings (up to {NEW_TOKENS} new tokens, "
                      f"after '>>'):"]
        lines += [f"  {ex['prompt']} >>{ex['continuation']}" for ex in examples]
    report["lines"] = lines
    return report


LM_REPORT = Report("causal LM perplexity, unigram baseline and continuations", lm_applies, lm_report)
