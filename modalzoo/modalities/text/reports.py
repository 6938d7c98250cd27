"""Text reports: for MLM, the unigram-frequency baseline and masks filled in held-out sentences; for every
text objective, the docstring package probe (`probe.py`).

The MLM ones apply to an `mlm` target over a plain `token` stream (fill-mask feeds ids and a padding mask only;
GraphCodeBERT's `code_dataflow` needs its graph inputs) of a run whose data has a tokenizer and texts."""

from __future__ import annotations

import itertools
import re

import torch

from ...evaluation.run import LoadedRun, Report
from ...pretrain_tasks.base import IGNORE
from .lm_report import LM_REPORT
from .probe import probe_applies, probe_report


def unigram_counts(run: LoadedRun, batches: int) -> torch.Tensor:
    """How often each token id is a prediction target in the training stream."""
    counts = torch.zeros(run.data_ctx.tokenizer.vocab_size, dtype=torch.float64)
    loader = run.data.loader("train", run.cfg.trainer.batch_size, run.transforms, seed=run.cfg.seed, train=True)
    for batch in itertools.islice(loader, batches):
        labels = batch["labels"][batch["labels"] != IGNORE]
        counts += torch.bincount(labels, minlength=counts.numel()).double()
    return counts


def unigram_baseline(run: LoadedRun, batches: int) -> dict:
    """Predict every masked token from its training frequency alone (add-one smoothed)."""
    counts = unigram_counts(run, batches)
    logp = torch.log((counts + 1) / (counts + 1).sum())
    best = int(counts.argmax())
    hits = nll = n = 0.0
    for batch in itertools.islice(run.val_loader(), batches):
        labels = batch["labels"][batch["labels"] != IGNORE]
        hits += float((labels == best).sum())
        nll -= float(logp[labels].sum())
        n += labels.numel()
    return {"loss": nll / max(n, 1), "accuracy": hits / max(n, 1)}


def held_out_sentences(run: LoadedRun, count: int) -> list[str]:
    sentences = []
    for text in run.data.texts(run.data.cfg.val_split):
        first = re.split(r"(?<=[.!?])\s", " ".join(text.split()))[0]
        if 40 <= len(first) <= 160 and first[0].isupper() and first.endswith("."):
            sentences.append(first)
        if len(sentences) == count:
            break
    return sentences


@torch.no_grad()
def fill_masks(run: LoadedRun, target_name: str, sentences: list[str], seed: int = 0) -> list[dict]:
    tok = run.data_ctx.tokenizer
    target = run.model.targets[target_name]
    generator = torch.Generator().manual_seed(seed)
    filled = []
    for sentence in sentences:
        ids, _ = tok.encode(sentence)
        ids = [tok.bos_id, *ids, tok.eos_id]
        n_mask = max(1, round(0.15 * (len(ids) - 2)))
        positions = sorted((torch.randperm(len(ids) - 2, generator=generator)[:n_mask] + 1).tolist())
        masked = list(ids)
        for p in positions:
            masked[p] = tok.mask_id
        input_ids = torch.tensor([masked], device=run.device)
        stream = run.model.streams[target.cfg.stream]
        prefix = stream.embedding.cfg.prefix
        batch = {prefix + "input_ids": input_ids,
                 prefix + "attention_mask": torch.ones_like(input_ids, dtype=torch.bool)}
        out = stream(batch)
        logits = target.logits(out.hidden.x[0, positions], out)
        predicted = logits.argmax(-1).tolist()
        shown = [tok.id_to_token(i) for i in masked[1:-1]]
        guess = list(shown)
        for p, pred in zip(positions, predicted):
            truth = tok.id_to_token(ids[p])
            guess[p - 1] = f"[{tok.id_to_token(pred)}]" if pred == ids[p] else f"[{tok.id_to_token(pred)}≠{truth}]"
        filled.append({"text": sentence, "masked": " ".join(shown), "filled": " ".join(guess),
                       "correct": sum(p == ids[q] for q, p in zip(positions, predicted)), "masked_count": n_mask})
    return filled


def mlm_applies(run: LoadedRun, target_name: str) -> bool:
    target = run.model.targets[target_name]
    if target.registered_name != "mlm":
        return False
    stream = run.model.streams[target.cfg.stream]
    return stream.embedding.registered_name == "token" and run.data_ctx.tokenizer is not None


def mlm_report(run: LoadedRun, target_name: str, batches: int) -> dict:
    baseline = unigram_baseline(run, batches)
    examples = fill_masks(run, target_name, held_out_sentences(run, 5), seed=run.cfg.seed)
    lines = ["", "masks filled in held-out docstring sentences ([prediction] right, [prediction≠truth] wrong):"]
    for ex in examples:
        lines += [f"  text:   {ex['text']}", f"  masked: {ex['masked']}", f"  filled: {ex['filled']}", ""]
    right = sum(e["correct"] for e in examples)
    total = sum(e["masked_count"] for e in examples)
    lines.append(f"  {right}/{total} masks filled correctly")
    metric_names = {"loss": f"{target_name}/loss", "accuracy": f"{target_name}/accuracy"}
    return {"baseline": {"label": "unigram baseline",
                         "metrics": {metric_names[k]: v for k, v in baseline.items()}},
            "fill_masks": examples, "lines": lines}


REPORTS = [Report("mlm fill-mask and unigram baseline", mlm_applies, mlm_report),
           Report("docstring package probe", probe_applies, probe_report), LM_REPORT]
