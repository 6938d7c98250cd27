"""The `code` field: ``KEY.json`` code samples (`sample.py`) laid out as GraphCodeBERT's input (`layout.py`) in
loader workers, padded to the batch's longest row.

Its tokenizer (byte-level BPE by default, as GraphCodeBERT's RoBERTa) is trained once on the training split's
comments and leaves - the text the model sees - cached beside the shards and saved as RUN/tokenizer.json; exports
write it as Hugging Face tokenizer files (kind "text", so ``{"text": "roberta"}`` styles apply).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..text.fields import restore_tokenizer, tokenizer_files
from ..text.tokenizers import TextTokenizer, load_or_train
from .layout import NODE, PAD_ROLE, Laid, collate, comment_text, lay_out
from .sample import CodeSample


@dataclass
class CodeState:
    tokenizer: TextTokenizer | None
    tokenizer_name: str | None
    seq_len: int


def sample_of(raw: dict) -> CodeSample:
    value = raw.get("json")
    if value is None:
        raise ValueError(f"sample {raw.get('__key__')} has no .json")
    return CodeSample.from_json(value)


class CodeField:
    kind, keys, unit, rows = "text", ("json",), "tokens", "functions"

    def __init__(self, tokenizer: dict, seq_len: int, max_nodes: int, comment_len: int, train_docs: int,
                 parts: tuple[str, ...] = ("comment", "code", "nodes")):
        self.tokenizer, self.seq_len, self.max_nodes = dict(tokenizer), seq_len, max_nodes
        self.comment_len, self.train_docs, self.parts = comment_len, train_docs, tuple(parts)

    def prepare(self, data, run_dir: Path | None) -> CodeState:
        cfg = data.cfg
        tok = load_or_train(dict(self.tokenizer), run_dir, Path(cfg.path) / "tokenizers",
                            ["code", self.train_docs, cfg.train_split],
                            lambda: data.texts(cfg.train_split, self.train_docs),
                            f"no code samples in {cfg.path}/{cfg.train_split}")
        return CodeState(tok, self.tokenizer["name"], self.seq_len)

    def restore(self, data, run_dir: Path) -> CodeState:
        state = restore_tokenizer(self.tokenizer, self.seq_len, run_dir)
        return CodeState(state.tokenizer, state.tokenizer_name, self.seq_len)

    def decode(self, raw: dict, state: CodeState | None) -> Laid | str:
        """The laid-out sample; without a state (training the tokenizer, `ShardDataset.texts`) the text the model
        will see: the comment, then the leaves joined by spaces."""
        sample = sample_of(raw)
        if state is None:
            return comment_text(sample.docstring) + "\n" + " ".join(sample.leaves())
        return lay_out(sample, state.tokenizer, self.seq_len, self.max_nodes, self.comment_len, self.parts)

    def collate(self, values: list[Laid], state: CodeState) -> dict[str, torch.Tensor]:
        return collate(values, state.tokenizer.pad_id)

    def count(self, batch: dict) -> int:
        role = batch["token_role"]
        return int(((role != PAD_ROLE) & (role != NODE)).sum())

    def files(self, state: CodeState, out: Path, style: str | None) -> list[Path]:
        return tokenizer_files(state, out, style)
