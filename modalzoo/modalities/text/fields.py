"""The text modality's fields: `TextField` (``KEY.txt`` documents: tokenized, chunked to ``seq_len``, packed
with block-diagonal segments or padded) and `CaptionField` (a ``KEY.txt`` caption per sample: bos + tokens +
eos, right-padded to ``seq_len``). Both train or load their tokenizer once (cached beside the shards, saved
as RUN/tokenizer.json) and export it as Hugging Face tokenizer files."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ...datasets.dataset import chunks
from ...errors import ModalzooError
from ...registry import TOKENIZERS
from .packing import SpecialIds, chunk_document, pack, pad_batch, stack
from .tokenizers import TextTokenizer, load_or_train


@dataclass
class TextState:
    tokenizer: TextTokenizer | None
    tokenizer_name: str | None       # registered name: wordpiece | bytelevel_bpe
    seq_len: int


def text_of(sample: dict) -> str | None:
    """The sample's ``txt`` as a string (shards hold bytes, grouped shards strings); None if it has none."""
    raw = sample.get("txt")
    if raw is None:
        return None
    return raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)


def encode_texts(tokenizer: TextTokenizer, texts: Sequence[str], seq_len: int) -> dict[str, torch.Tensor]:
    """Captions or zero-shot prompts -> ``input_ids`` [N, seq_len] and ``attention_mask`` [N, seq_len].

    Each row is bos + the text's tokens + eos, the tokens truncated so eos always fits, right-padded
    with the pad id. Captions in batches are encoded by this same function.
    """
    if seq_len < 2:
        raise ValueError(f"seq_len must leave room for bos and eos, got {seq_len}")
    ids = torch.full((len(texts), seq_len), tokenizer.pad_id, dtype=torch.long)
    mask = torch.zeros(len(texts), seq_len, dtype=torch.bool)
    for row, text in enumerate(texts):
        body = tokenizer.encode(text)[0][:seq_len - 2] if text else []
        tokens = [tokenizer.bos_id, *body, tokenizer.eos_id]
        ids[row, :len(tokens)] = torch.tensor(tokens)
        mask[row, :len(tokens)] = True
    return {"input_ids": ids, "attention_mask": mask}


def restore_tokenizer(spec: dict, seq_len: int, run_dir: Path) -> TextState:
    """A finished run's text state: its RUN/tokenizer.json (None if the run has none) and the config."""
    saved = Path(run_dir) / "tokenizer.json"
    if not saved.exists():
        return TextState(None, None, seq_len)
    return TextState(TOKENIZERS.build(dict(spec), "data.tokenizer").load(saved), spec["name"], seq_len)


def _one_spec(pairs: list) -> dict:
    """The tokenizer config every text field of a mixture uses; they must agree (one text vocabulary)."""
    (first, _, where), *rest = pairs
    for f, _, other_where in rest:
        if f.tokenizer != first.tokenizer:
            keys = sorted(k for k in {*f.tokenizer, *first.tokenizer} if f.tokenizer.get(k) != first.tokenizer.get(k))
            raise ModalzooError(f"the text fields of a mixture share one tokenizer, but {where}.tokenizer and "
                                f"{other_where}.tokenizer differ in {keys}: give them the same tokenizer section")
    return dict(first.tokenizer)


def prepare_together(pairs: list, run_dir: Path | None) -> list[TextState]:
    """One tokenizer for the text fields of several datasets (``pairs``: (field, dataset, where)), trained on
    their training texts interleaved and cached beside the first dataset's shards; a state per field."""
    from ...datasets.mixture import round_robin
    spec = _one_spec(pairs)
    datasets = [(f, data) for f, data, _ in pairs]
    key = ["shared"] + [[str(data.cfg.path), data.cfg.train_split, f.train_docs] for f, data in datasets]
    limit = max(f.train_docs for f, _ in datasets)
    first_path = Path(datasets[0][1].cfg.path)
    tok = load_or_train(spec, run_dir, first_path / "tokenizers", key,
                        lambda: itertools.islice(round_robin(data.texts(data.cfg.train_split, f.train_docs)
                                                              for f, data in datasets), limit),
                        f"no texts in {[str(data.cfg.path) for _, data in datasets]} to train the shared tokenizer on")
    return [TextState(tok, spec["name"], f.seq_len) for f, _ in datasets]


def restore_together(pairs: list, run_dir: Path) -> list[TextState]:
    """A finished mixture run's text states: its one RUN/tokenizer.json, loaded once."""
    spec = _one_spec(pairs)
    state = restore_tokenizer(spec, 0, run_dir)
    return [TextState(state.tokenizer, state.tokenizer_name, f.seq_len) for f, _, _ in pairs]


class TogetherMixin:
    """A mixture prepares every text field together: one tokenizer (``together_key`` groups them)."""

    together_key = "tokenizer"
    prepare_together = staticmethod(prepare_together)
    restore_together = staticmethod(restore_together)


def tokenizer_files(state: TextState, out: Path, style: str | None) -> list[Path]:
    from .hub.tokenizer_files import default_style, write_tokenizer_files
    if state.tokenizer is None:
        return []
    return write_tokenizer_files(state.tokenizer, out, model_max_length=state.seq_len,
                                 style=style or default_style(state.tokenizer, state.tokenizer_name))


class TextField(TogetherMixin):
    """Text documents: tokenized, chunked to ``seq_len`` (each chunk wrapped in bos/eos), then packed several
    per row (``segment_ids``, per-document ``position_ids``) or padded one per row."""

    kind, keys, unit, rows = "text", ("txt",), "tokens", "rows"

    def __init__(self, tokenizer: dict, seq_len: int, packing: bool, train_docs: int):
        self.tokenizer, self.seq_len, self.packing, self.train_docs = dict(tokenizer), seq_len, packing, train_docs

    def prepare(self, data, run_dir: Path | None) -> TextState:
        cfg = data.cfg
        # The split is part of the cache key (another split, another tokenizer); left out for the default
        # split so that tokenizers cached before it was added are still found.
        key = [self.train_docs] + ([cfg.train_split] if cfg.train_split != "train" else [])
        tok = load_or_train(dict(self.tokenizer), run_dir, Path(cfg.path) / "tokenizers", key,
                            lambda: data.texts(cfg.train_split, self.train_docs),
                            f"no text documents in {cfg.path}/{cfg.train_split}")
        return TextState(tok, self.tokenizer["name"], self.seq_len)

    def restore(self, data, run_dir: Path) -> TextState:
        return restore_tokenizer(self.tokenizer, self.seq_len, run_dir)

    def decode(self, sample: dict, state: TextState | None) -> str:
        text = text_of(sample)
        if text is None:
            raise ValueError(f"sample {sample.get('__key__')} has no .txt")
        return text

    def batches(self, texts: Iterable[str], state: TextState, batch_size: int, drop_last: bool) -> Iterator[dict]:
        tok = state.tokenizer
        special = SpecialIds(tok.pad_id, tok.bos_id, tok.eos_id)
        docs = (piece for text in texts for piece in chunk_document(*tok.encode(text), self.seq_len, special))
        if self.packing:
            yield from (stack(rows) for rows in chunks(pack(docs, self.seq_len, tok.pad_id), batch_size, drop_last))
        else:
            yield from (pad_batch(group, tok.pad_id) for group in chunks(docs, batch_size, drop_last))

    def count(self, batch: dict) -> int:
        return int(batch["attention_mask"].sum())

    def files(self, state: TextState, out: Path, style: str | None) -> list[Path]:
        return tokenizer_files(state, out, style)


class CaptionField(TogetherMixin):
    """A caption per sample (optional: a sample without one gets bos + eos): ``input_ids`` and
    ``attention_mask`` [B, seq_len], as `encode_texts`."""

    kind, keys, unit, rows = "text", ("txt",), "captions", "captions"

    def __init__(self, tokenizer: dict, seq_len: int, train_docs: int):
        self.tokenizer, self.seq_len, self.train_docs = dict(tokenizer), seq_len, train_docs

    def prepare(self, data, run_dir: Path | None) -> TextState:
        cfg = data.cfg
        key = ["captions", self.train_docs, cfg.train_split]
        tok = load_or_train(
            dict(self.tokenizer), run_dir, Path(cfg.path) / "tokenizers", key,
            lambda: data.texts(cfg.train_split, self.train_docs),
            f"no captions (.txt) in {cfg.path}/{cfg.train_split} to train the tokenizer on; "
            "set data.captions=false for images only")
        return TextState(tok, self.tokenizer["name"], self.seq_len)

    def restore(self, data, run_dir: Path) -> TextState:
        return restore_tokenizer(self.tokenizer, self.seq_len, run_dir)

    def decode(self, sample: dict, state: TextState | None) -> str | None:
        text = text_of(sample)
        return None if text is None else text.strip()

    def collate(self, captions: list[str | None], state: TextState) -> dict[str, torch.Tensor]:
        return encode_texts(state.tokenizer, [c or "" for c in captions], self.seq_len)

    def count(self, batch: dict) -> int:
        return int(batch["input_ids"].shape[0])

    def files(self, state: TextState, out: Path, style: str | None) -> list[Path]:
        return tokenizer_files(state, out, style)
