"""UL2's mixture of denoisers (Tay et al. 2022): every row draws one denoiser by the configured rates and starts
its input with that denoiser's mode token, so the model learns three paradigms and can be told which one a
task wants:

    R  regular span corruption (mean span 3, density 0.15), T5's                      [NLU]
    X  extreme span corruption: long spans (mean 32) or a high density (0.5)          [NLG]
    S  prefix LM: the document split at a uniform point, the suffix predicted          [S2S]

The span denoisers are `span_corruption`'s (T5's noise mask, sentinels + spans + eos as targets), S's
targets are the suffix + eos. Both layouts of `span_corruption` (the target's ``source``): ``decoder``
(encoder-decoder: the input to the encoder, the targets to the decoder, which starts from the pad id) and
``encoder`` (decoder-only: [mode, input..., targets...] in one row under a prefix-LM mask over the input,
the loss on the targets only). One document per row (``data.packing: false``): a row is one draw, and the
prefix mask has one prefix per row. The mode tokens must be special tokens of the tokenizer
(``data.tokenizer.extra_specials``), the sentinels too (``data.tokenizer.extra_ids``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from ..datasets.fields import DataContext
from ..errors import ConfigError, ModalzooError
from ..registry import TARGETS, dataclass_from_dict
from .clm import CausalLM, CLMConfig
from .span_corruption import (
    Example,
    Layout,
    check_noise,
    check_sentinels,
    check_source,
    check_tokenizer,
    corrupt_document,
    row_documents,
    split_frame,
)


@dataclass
class Denoiser:
    kind: Literal["span", "prefix"] = "span"   # span corruption, or prefix LM (S)
    mean_span: float = 3.0           # span: mean noise span length
    density: float = 0.15            # span: fraction of the tokens dropped
    rate: float = 1.0                # relative share of the rows (normalised over the denoisers)
    mode: str = ""                   # mode token put first in the input ("" for none)


# The paper's three paradigms; X as its two extremes. Rates: half R, a quarter X, a quarter S.
DEFAULT_DENOISERS = {
    "R": {"kind": "span", "mean_span": 3.0, "density": 0.15, "rate": 0.5, "mode": "[NLU]"},
    "X_long": {"kind": "span", "mean_span": 32.0, "density": 0.15, "rate": 0.125, "mode": "[NLG]"},
    "X_dense": {"kind": "span", "mean_span": 3.0, "density": 0.5, "rate": 0.125, "mode": "[NLG]"},
    "S": {"kind": "prefix", "rate": 0.25, "mode": "[S2S]"},
}


@dataclass
class UL2Config(CLMConfig):
    source: Literal["encoder", "decoder"] = "decoder"   # decoder: encoder-decoder; encoder: decoder-only
    denoisers: dict = field(default_factory=lambda: copy.deepcopy(DEFAULT_DENOISERS))
    random_roll: bool = False        # span denoisers: T5's random roll of the mask (short documents want it)

    def __post_init__(self):
        parse_denoisers(self.denoisers)


def parse_denoisers(specs: dict) -> dict[str, Denoiser]:
    if not specs:
        raise ConfigError("'denoisers' must name at least one denoiser")
    parsed = {}
    for name, spec in specs.items():
        where = f"denoisers.{name}"
        if not isinstance(spec, dict):
            raise ConfigError(f"'{where}' must be a mapping (kind, mean_span, density, rate, mode), got {spec!r}")
        den = dataclass_from_dict(Denoiser, spec, where)
        if den.kind == "span":
            check_noise(den.density, den.mean_span, where + ".")
        if den.rate < 0:
            raise ConfigError(f"'{where}.rate' must be >= 0, got {den.rate}")
        parsed[name] = den
    if sum(d.rate for d in parsed.values()) <= 0:
        raise ConfigError("the denoisers' rates sum to 0; give at least one a positive rate")
    return parsed


def prefix_split(doc: list[int], bos: int | None, eos: int | None,
                 generator: torch.Generator | None) -> tuple[list[int], list[int]]:
    """(input, targets without eos): the body split at a uniform point, at least one token on each side
    (a one-token body is all target)."""
    head, body, _ = split_frame(doc, bos, eos)
    cut = int(torch.randint(1, len(body), (1,), generator=generator)) if len(body) >= 2 else 0
    return head + body[:cut], body[cut:]


class UL2Denoising:
    """The batch transform (picklable; every draw from the per-batch generator)."""

    def __init__(self, denoisers: list[Denoiser], mode_ids: list[int | None], sentinel_ids: list[int],
                 pad_id: int, bos_id: int | None, eos_id: int | None, layout: Layout, random_roll: bool = False):
        self.denoisers, self.mode_ids, self.sentinel_ids = denoisers, mode_ids, list(sentinel_ids)
        self.pad_id, self.bos_id, self.eos_id, self.layout = pad_id, bos_id, eos_id, layout
        self.random_roll = random_roll
        self.rates = torch.tensor([d.rate for d in denoisers], dtype=torch.float)

    def __call__(self, batch: dict[str, Tensor], generator: torch.Generator | None = None) -> dict[str, Tensor]:
        if self.layout.in_prefix + "segment_ids" in batch:
            raise ModalzooError("ul2 takes one document per row, not packed rows (each row draws one denoiser, "
                                "and a prefix mask has one prefix per row); set data.packing=false")
        rows = row_documents(batch, self.layout.in_prefix)
        draws = torch.multinomial(self.rates, len(rows), replacement=True, generator=generator).tolist()
        eos = [self.eos_id] if self.eos_id is not None else []
        examples = []
        for docs, k in zip(rows, draws):
            doc = docs[0] if docs else []
            den = self.denoisers[k]
            if den.kind == "prefix":
                inputs, targets = prefix_split(doc, self.bos_id, self.eos_id, generator)
            else:
                inputs, targets = corrupt_document(doc, den.density, den.mean_span, iter(self.sentinel_ids),
                                                   generator, self.bos_id, self.eos_id, self.random_roll)
            mode = [self.mode_ids[k]] if self.mode_ids[k] is not None else []
            examples.append(Example([mode + inputs], targets + eos))
        return self.layout.build(batch, examples, self.pad_id, packed=False)


@TARGETS.register("ul2")
class UL2LM(CausalLM):
    """UL2's mixture of denoisers (R, X span corruption and S prefix LM, with mode tokens), per-row draws."""

    Config = UL2Config
    pipeline_tag = "text2text-generation"

    def __init__(self, cfg: UL2Config, streams: nn.ModuleDict):
        super().__init__(cfg, streams)
        self.layout = check_source(cfg, streams, "ul2")
        self.denoisers = parse_denoisers(cfg.denoisers)

    def batch_transform(self, data: DataContext) -> UL2Denoising:
        packed = [f.packing for f in data.fields.values() if hasattr(f, "packing")]
        if any(packed):
            raise ModalzooError("ul2 takes one document per row (each row draws one denoiser, and a prefix mask "
                                "has one prefix per row); set data.packing=false")
        spans = [(d.density, d.mean_span) for d in self.denoisers.values() if d.kind == "span"]
        tok = check_tokenizer(data, "ul2") if spans else data.tokenizer
        if tok is None:
            raise ModalzooError("ul2 needs the data's tokenizer (its mode, pad and eos ids)")
        if spans:
            check_sentinels(data, tok, spans, "ul2", self.cfg.random_roll)
        specials = getattr(tok, "extra_special_ids", {})
        mode_ids = []
        for name, den in self.denoisers.items():
            if den.mode and den.mode not in specials:
                modes = sorted({d.mode for d in self.denoisers.values() if d.mode})
                raise ModalzooError(f"ul2 denoiser '{name}' starts its input with the mode token '{den.mode}', "
                                    f"which is not a special token of the tokenizer: set data.tokenizer."
                                    f"extra_specials to {modes}")
            mode_ids.append(specials[den.mode] if den.mode else None)
        return UL2Denoising(list(self.denoisers.values()), mode_ids, getattr(tok, "sentinel_ids", []), tok.pad_id,
                            tok.bos_id, tok.eos_id, self.layout, self.cfg.random_roll)
