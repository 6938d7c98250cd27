"""`table_words`: a WordPiece vocabulary for tables built, not trained, so it is the same on every machine
(``data.tokenizer.name=table_words``; the recipes keep the trained `wordpiece`, whose subwords read unseen
column names better, and whose ``tokenizer.json`` every run saves and every fine-tune reuses).

`tokenizers`' WordPiece trainer numbers tied tokens differently from process to process, and with a small
pool it even keeps another token set (measured: three builds of the tables-sample vocabulary, three
vocabularies), so a pool re-packed elsewhere would read other ids. This one takes BERT's normaliser,
pre-tokenizer and special tokens, every character seen plus a-z and 0-9 (alone and as ``##``
continuations), then whole words by frequency (ties by spelling, at least ``min_frequency`` uses) up to
``vocab_size``: column names and categories are mostly whole words, and any other word is spelled in
characters, never [UNK].
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...registry import TOKENIZERS
from ..text.tokenizers import TextTokenizer, WordPiece
from .finetune import table_tokenizer


@dataclass
class TableWordsConfig:
    vocab_size: int = 4000
    min_frequency: int = 1            # a word used fewer times is spelled in characters
    path: str | None = None           # an existing tokenizer.json (a pretrained run's) instead of building


@TOKENIZERS.register("table_words")
class TableWords:
    """Whole words by frequency plus characters: a deterministic WordPiece vocabulary for table cells."""

    Config = TableWordsConfig
    specials = WordPiece.specials

    def __init__(self, cfg: TableWordsConfig):
        self.cfg = cfg

    def train(self, texts) -> TextTokenizer:
        return table_tokenizer(texts, self.cfg.vocab_size, self.cfg.min_frequency)

    def load(self, path: str | Path) -> TextTokenizer:
        from tokenizers import Tokenizer
        return TextTokenizer(Tokenizer.from_file(str(path)), self.specials)
