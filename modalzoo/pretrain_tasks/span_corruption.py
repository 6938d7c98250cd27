"""T5's span corruption (Raffel et al. 2020): random spans of each document are dropped from the input, each
replaced by one sentinel (<extra_id_0>, <extra_id_1>, ...); the targets are every sentinel followed by the
span it replaced, then eos:

    input   [bos] The <extra_id_0> walks in <extra_id_1> park [eos]
    target  <extra_id_0> cute dog <extra_id_1> the [eos]

The spans come from T5's ``random_spans_noise_mask`` exactly (number of noise tokens and spans fixed by the
length, the two span-length sequences drawn by random segmentation, spans alternating non-noise / noise,
non-noise first), drawn from the per-batch generator, with its ``random_roll`` option: without it a body
short enough for one span (< 27 tokens at 0.15 and 3) always loses its last tokens, which on short
documents (docstrings) makes the task suffix prediction; the roll shifts the mask by a uniform offset
(the sentinel still precedes its own span in the targets). Only a document's body is corrupted: its bos and
eos stay in place. Packed rows are corrupted document by document (``segment_ids``): spans never cross a
boundary, each document keeps its own block of the encoder's mask and positions, the sentinels count on
across the row and the row has one target sequence.

Two layouts (the target's ``source``): ``decoder`` (T5: the encoder reads the input, the decoder starts from
the pad id, as T5 and transformers do, and predicts the targets) and ``encoder`` (decoder-only: one row
input + targets under a prefix-LM mask, the loss on the targets only; one document per row). UL2
(``ul2.py``) mixes this with a prefix LM and extreme settings.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from ..datasets.fields import DataContext
from ..errors import ConfigError, ModalzooError
from ..registry import TARGETS
from .base import IGNORE
from .clm import CausalLM, CLMConfig


@dataclass
class SpanCorruptionConfig(CLMConfig):
    # decoder: encoder-decoder (T5); encoder: decoder-only, input + targets under a prefix-LM mask
    source: Literal["encoder", "decoder"] = "decoder"
    noise_density: float = 0.15      # the fraction of a document's tokens that are dropped
    mean_noise_span_length: float = 3.0
    random_roll: bool = False        # T5's option: roll the mask by a random offset (short documents want it)

    def __post_init__(self):
        check_noise(self.noise_density, self.mean_noise_span_length, "")


def check_noise(density: float, mean_span: float, where: str) -> None:
    if not 0 < density < 1:
        raise ConfigError(f"'{where}noise_density' must be in (0, 1), got {density}")
    if mean_span < 1:
        raise ConfigError(f"'{where}mean_noise_span_length' must be >= 1, got {mean_span}")


# ------------------------------------------------------------------------------------ T5's noise mask

def noise_counts(length: int, density: float, mean_span: float) -> tuple[int, int, int]:
    """(noise tokens, noise spans, padded length) of a ``length``-token sequence, as T5 computes them:
    the length raised to 2, ``round(length * density)`` noise tokens kept in [1, length - 1],
    ``round(noise / mean_span)`` spans, at least 1. One addition: at most as many spans as there are
    noise or non-noise tokens (T5's segmentation would break there; at 0.15 x 512 tokens it never does).
    Python's round, like tf.round, rounds halves to even."""
    length = max(length, 2)
    noise = min(max(round(length * density), 1), length - 1)
    spans = max(round(noise / mean_span), 1)
    return noise, min(spans, noise, length - noise), length


def random_segmentation(items: int, segments: int, generator: torch.Generator | None) -> Tensor:
    """``items`` split into ``segments`` non-empty runs, all splits equally likely: [segments] lengths."""
    starts = (torch.arange(items - 1) < segments - 1)[torch.randperm(items - 1, generator=generator)]
    segment_id = torch.cat([torch.zeros(1, dtype=torch.long), starts.long().cumsum(0)])
    return torch.bincount(segment_id, minlength=segments)


def random_spans_noise_mask(length: int, density: float, mean_span: float,
                            generator: torch.Generator | None = None, random_roll: bool = False) -> Tensor:
    """T5's noise mask [length] (True = dropped): spans alternate non-noise / noise, starting with non-noise,
    with the counts of `noise_counts` and random segmentations of both kinds' tokens; ``random_roll``: then
    rolled by an offset uniform in [0, length) (a span cut by the end becomes two)."""
    noise, spans, padded = noise_counts(length, density, mean_span)
    noise_lengths = random_segmentation(noise, spans, generator)
    kept_lengths = random_segmentation(padded - noise, spans, generator)
    span_starts = torch.stack([kept_lengths, noise_lengths], dim=1).reshape(-1).cumsum(0)[:-1]
    span_num = torch.zeros(padded, dtype=torch.long).index_add_(0, span_starts, torch.ones_like(span_starts))
    mask = (span_num.cumsum(0) % 2 == 1)[:length]
    if random_roll:
        mask = mask.roll(int(torch.randint(padded, (1,), generator=generator)))
    return mask


def max_spans(length: int, density: float, mean_span: float, random_roll: bool = False) -> int:
    """How many spans a ``length``-token body can have (0 if the mask drops nothing: a 1-token body)."""
    if length < 2:
        return 0
    noise, spans, _ = noise_counts(length, density, mean_span)
    return spans + (random_roll and noise > spans)      # the roll may cut one span of 2+ tokens in two


def sentinels_needed(seq_len: int, density: float, mean_span: float, packed: bool, random_roll: bool = False,
                     framing: int = 2) -> int:
    """The most sentinels one row of ``seq_len`` tokens can need: a single document, or (packed) the worst mix
    of documents of ``framing`` special tokens (bos, eos) plus a body each."""
    if not packed:
        return max_spans(seq_len - framing, density, mean_span, random_roll)
    spans = [max_spans(body, density, mean_span, random_roll) for body in range(seq_len + 1)]
    best = [0] * (seq_len + 1)
    for room in range(seq_len + 1):
        for body in range(1, room - framing + 1):
            best[room] = max(best[room], spans[body] + best[room - body - framing])
    return best[seq_len]


# --------------------------------------------------------------------------------- documents and rows

@dataclass
class Example:
    """One row after corruption: its documents' inputs (one list per document) and the row's targets."""
    inputs: list[list[int]]
    targets: list[int]


def row_documents(batch: dict[str, Tensor], prefix: str = "") -> list[list[list[int]]]:
    """Every row's documents as lists of ids: the real tokens, split by ``segment_ids`` when packed."""
    ids = batch[prefix + "input_ids"]
    real = batch.get(prefix + "attention_mask")
    real = torch.ones_like(ids, dtype=torch.bool) if real is None else real.bool()
    segments = batch.get(prefix + "segment_ids")
    rows = []
    for r in range(ids.shape[0]):
        row_ids = ids[r][real[r]].tolist()
        if segments is None:
            rows.append([row_ids] if row_ids else [])
            continue
        _, sizes = torch.unique_consecutive(segments[r][real[r]], return_counts=True)
        starts = [0, *torch.cumsum(sizes, 0).tolist()]
        rows.append([row_ids[a:b] for a, b in zip(starts, starts[1:])])
    return rows


def split_frame(doc: list[int], bos: int | None, eos: int | None) -> tuple[list[int], list[int], list[int]]:
    """(head, body, tail): a document's leading bos and trailing eos, kept out of the noise, and the rest."""
    start = 1 if doc and doc[0] == bos else 0
    end = len(doc) - 1 if len(doc) > start and doc[-1] == eos else len(doc)
    return doc[:start], doc[start:end], doc[end:]


def corrupt(body: list[int], mask: Tensor, sentinels: Iterator[int]) -> tuple[list[int], list[int]]:
    """(input, targets) of a body under a noise mask: each noise span -> the next sentinel in the input, and
    sentinel + span in the targets."""
    inputs: list[int] = []
    targets: list[int] = []
    previous = False
    for token, noisy in zip(body, mask.tolist()):
        if noisy:
            if not previous:
                try:
                    sentinel = next(sentinels)
                except StopIteration:
                    raise ModalzooError("a row needs more sentinel tokens than the tokenizer has; raise "
                                        "data.tokenizer.extra_ids or lower data.seq_len") from None
                inputs.append(sentinel)
                targets.append(sentinel)
            targets.append(token)
        else:
            inputs.append(token)
        previous = noisy
    return inputs, targets


def corrupt_document(doc: list[int], density: float, mean_span: float, sentinels: Iterator[int],
                     generator: torch.Generator | None, bos: int | None, eos: int | None,
                     random_roll: bool = False) -> tuple[list[int], list[int]]:
    """(input, targets without eos) of one document: its body under T5's noise mask, its bos/eos kept."""
    head, body, tail = split_frame(doc, bos, eos)
    if not body:
        return doc, []
    mask = random_spans_noise_mask(len(body), density, mean_span, generator, random_roll)
    inputs, targets = corrupt(body, mask, sentinels)
    return head + inputs + tail, targets


def encoder_decoder_rows(examples: list[Example], pad: int, packed: bool, in_prefix: str = "",
                         out_prefix: str = "decoder_") -> dict[str, Tensor]:
    """Right-padded encoder inputs (with per-document ``segment_ids`` and ``position_ids`` when packed) and
    decoder rows: ``decoder_input_ids`` = [pad (decoder start)] + targets[:-1], ``decoder_labels`` = targets."""
    B = len(examples)
    L = max(1, max(sum(len(d) for d in e.inputs) for e in examples))
    T = max(1, max(len(e.targets) for e in examples))
    ids = torch.full((B, L), pad)
    seg, pos = torch.zeros(B, L, dtype=torch.long), torch.zeros(B, L, dtype=torch.long)
    dec_in, labels = torch.full((B, T), pad), torch.full((B, T), IGNORE)
    dec_mask = torch.zeros(B, T, dtype=torch.bool)
    for r, e in enumerate(examples):
        at = 0
        for d, doc in enumerate(e.inputs):
            ids[r, at:at + len(doc)] = torch.tensor(doc, dtype=torch.long)
            seg[r, at:at + len(doc)] = d + 1
            pos[r, at:at + len(doc)] = torch.arange(len(doc))
            at += len(doc)
        n = len(e.targets)
        labels[r, :n] = torch.tensor(e.targets, dtype=torch.long)
        dec_in[r, 1:n] = labels[r, :n - 1]
        dec_mask[r, :n] = True
    out = {in_prefix + "input_ids": ids, in_prefix + "attention_mask": seg > 0,
           out_prefix + "input_ids": dec_in, out_prefix + "attention_mask": dec_mask, "decoder_labels": labels}
    if packed:
        out.update({in_prefix + "segment_ids": seg, in_prefix + "position_ids": pos})
    return out


def decoder_only_rows(examples: list[Example], pad: int, prefix: str = "") -> dict[str, Tensor]:
    """One row [input + targets] per example, right-padded; ``prefix_len`` covers the input (bidirectional
    under a prefix-LM mask) and ``lm_labels`` (what each position predicts) the targets only."""
    B = len(examples)
    L = max(1, max(len(e.inputs[0]) + len(e.targets) for e in examples))
    ids, labels = torch.full((B, L), pad), torch.full((B, L), IGNORE)
    mask = torch.zeros(B, L, dtype=torch.bool)
    prefix_len = torch.zeros(B, dtype=torch.long)
    for r, e in enumerate(examples):
        (inp,) = e.inputs
        row = torch.tensor(inp + e.targets, dtype=torch.long)
        n, p = len(row), len(inp)
        ids[r, :n], mask[r, :n], prefix_len[r] = row, True, p
        labels[r, max(p - 1, 0):n - 1] = row[max(p, 1):]
    return {prefix + "input_ids": ids, prefix + "attention_mask": mask, prefix + "prefix_len": prefix_len,
            "lm_labels": labels}


# Keys of the raw batch that corruption invalidates (rebuilt or dropped).
REBUILT = ("input_ids", "attention_mask", "segment_ids", "position_ids", "word_ids", "token_type_ids",
           "prefix_len", "labels")


@dataclass
class Layout:
    """Where the corrupted rows go: the stream's key prefixes and which rows to build."""
    decoder_only: bool
    in_prefix: str = ""
    out_prefix: str = "decoder_"

    def build(self, batch: dict, examples: list[Example], pad: int, packed: bool) -> dict[str, Tensor]:
        kept = {k: v for k, v in batch.items() if k.removeprefix(self.in_prefix) not in REBUILT}
        if self.decoder_only:
            return {**kept, **decoder_only_rows(examples, pad, self.in_prefix)}
        return {**kept, **encoder_decoder_rows(examples, pad, packed, self.in_prefix, self.out_prefix)}


class SpanCorruption:
    """The batch transform (picklable, run in loader workers; every draw from the per-batch generator)."""

    def __init__(self, density: float, mean_span: float, sentinel_ids: list[int], pad_id: int,
                 bos_id: int | None, eos_id: int | None, layout: Layout, random_roll: bool = False):
        self.density, self.mean_span, self.sentinel_ids = density, mean_span, list(sentinel_ids)
        self.pad_id, self.bos_id, self.eos_id, self.layout = pad_id, bos_id, eos_id, layout
        self.random_roll = random_roll

    def __call__(self, batch: dict[str, Tensor], generator: torch.Generator | None = None) -> dict[str, Tensor]:
        packed = self.layout.in_prefix + "segment_ids" in batch
        if packed and self.layout.decoder_only:
            raise ModalzooError("span corruption on a decoder-only stream (source: encoder) takes one document "
                                "per row, not packed rows (its prefix mask has one prefix per row); set "
                                "data.packing=false")
        examples = []
        for docs in row_documents(batch, self.layout.in_prefix):
            sentinels = iter(self.sentinel_ids)          # counted on across the row's documents
            inputs, targets = [], []
            for doc in docs:
                doc_input, doc_targets = corrupt_document(doc, self.density, self.mean_span, sentinels, generator,
                                                          self.bos_id, self.eos_id, self.random_roll)
                inputs.append(doc_input)
                targets += doc_targets
            examples.append(Example(inputs or [[]], targets + ([self.eos_id] if self.eos_id is not None else [])))
        return self.layout.build(batch, examples, self.pad_id, packed)


# ---------------------------------------------------------------------------------------------- target

def check_source(cfg: CLMConfig, streams: nn.ModuleDict, kind: str) -> Layout:
    """The layout of ``cfg.source`` on its stream, checked: decoder-only needs a prefix-LM encoder."""
    stream = streams[cfg.stream]
    if cfg.source == "encoder":
        mask = getattr(getattr(stream.encoder, "cfg", None), "mask", None)
        if mask != "prefix":
            raise ConfigError(f"{kind} with source=encoder (decoder-only) needs 'model.streams.{cfg.stream}.encoder"
                              f".mask' = prefix (the input bidirectional, the targets causal), not {mask!r}")
    prefix = lambda module: getattr(getattr(module, "cfg", None), "prefix", "")  # noqa: E731
    return Layout(cfg.source == "encoder", prefix(stream.embedding),
                  prefix(stream.target_embedding) if stream.target_embedding is not None else "decoder_")


def check_tokenizer(data: DataContext, kind: str):
    tok = data.tokenizer
    if tok is None:
        raise ModalzooError(f"{kind} needs the data's tokenizer (its sentinel, pad and eos ids)")
    if not getattr(tok, "sentinel_ids", None):
        raise ModalzooError(f"{kind} needs sentinel tokens in the tokenizer, which has none: set "
                            f"data.tokenizer.extra_ids (T5: 100)")
    return tok


def packed_data(data: DataContext) -> bool:
    """Whether the data may pack several documents per row (True when it cannot say: the worst case)."""
    flags = [f.packing for f in data.fields.values() if hasattr(f, "packing")]
    return any(flags) or not flags


def check_sentinels(data: DataContext, tok, spans: list[tuple[float, float]], kind: str,
                    random_roll: bool = False) -> None:
    """Enough sentinels for the worst row of ``data.seq_len`` tokens under every (density, mean span)."""
    seq_len = data.get("seq_len")
    if seq_len is None:
        return
    need = max(sentinels_needed(int(seq_len), d, m, packed_data(data), random_roll) for d, m in spans)
    if need > len(tok.sentinel_ids):
        raise ModalzooError(f"{kind} can need {need} sentinels in a row of {seq_len} tokens, the tokenizer has "
                            f"{len(tok.sentinel_ids)}: raise data.tokenizer.extra_ids to {need} (or lower "
                            "data.seq_len, or set data.packing=false)")


@TARGETS.register("span_corruption")
class SpanCorruptionLM(CausalLM):
    """T5's span corruption: sentinels in the input, sentinels + dropped spans as the decoder's targets."""

    Config = SpanCorruptionConfig
    pipeline_tag = "text2text-generation"

    def __init__(self, cfg: SpanCorruptionConfig, streams: nn.ModuleDict):
        super().__init__(cfg, streams)
        self.layout = check_source(cfg, streams, "span_corruption")

    def batch_transform(self, data: DataContext) -> SpanCorruption:
        tok = check_tokenizer(data, "span_corruption")
        cfg = self.cfg
        check_sentinels(data, tok, [(cfg.noise_density, cfg.mean_noise_span_length)], "span_corruption",
                        cfg.random_roll)
        return SpanCorruption(cfg.noise_density, cfg.mean_noise_span_length, tok.sentinel_ids, tok.pad_id,
                              tok.bos_id, tok.eos_id, self.layout, cfg.random_roll)
