"""Text tokenizers, trained and saved with Hugging Face `tokenizers`, stored as `tokenizer.json`.

`wordpiece` is BERT's ([CLS] ... [SEP], lowercased by default); `bytelevel_bpe` is RoBERTa/GPT-2's
(<s> ... </s>). Both train from an iterator of strings and reload from a `tokenizer.json` path.

`bytelevel_bpe` puts its special tokens first by default (RoBERTa: <s>=0, <pad>=1, </s>=2, <unk>=3,
<mask>=4); with ``specials_at_end: true`` they take the largest ids instead, in the order <pad>, <unk>,
<mask>, <s>, </s> (so </s> = vocab_size - 1, <s> = vocab_size - 2; the training is the same and every
other token keeps its place, shifted down by 5), CLIP's layout: open_clip pools text
at the largest id and `transformers.CLIPModel` treats ``eos_token_id == 2`` as a legacy config, so a CLIP
export wants its end-of-text token to be the largest id.

Both take ``extra_ids: N`` (T5's sentinels ``<extra_id_0>`` .. ``<extra_id_{N-1}>``, which span corruption
puts in place of the dropped spans) and ``extra_specials`` (more special tokens, e.g. UL2's mode tokens
[NLU] [NLG] [S2S]): special tokens trained right after the five roles (ids 5, 6, ...), never split or
normalised, counted in ``vocab_size``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from ...errors import ModalzooError
from ...registry import TOKENIZERS

SENTINEL = "<extra_id_{}>"           # T5's sentinel tokens: <extra_id_0>, <extra_id_1>, ...


def sentinel_tokens(n: int) -> list[str]:
    return [SENTINEL.format(i) for i in range(n)]


class TextTokenizer:
    """A trained `tokenizers.Tokenizer` plus the special-token ids the tasks need. Picklable.

    ``sentinel_ids``: the ids of <extra_id_0>, <extra_id_1>, ... that the file holds (read from it, so a
    tokenizer given by path has them too); ``extra_ids`` / ``extra_specials`` are what the config asks for,
    checked. ``special_ids`` covers every special token: roles, sentinels and extra specials."""

    def __init__(self, tokenizer: Tokenizer, specials: dict[str, str], extra_ids: int = 0,
                 extra_specials: Sequence[str] = ()):
        self.tokenizer = tokenizer
        self.specials = specials
        ids = {role: tokenizer.token_to_id(tok) for role, tok in specials.items()}
        missing = [specials[r] for r, i in ids.items() if i is None]
        if missing:
            raise ModalzooError(f"tokenizer lacks special tokens {missing}")
        self.pad_id, self.mask_id = ids["pad"], ids["mask"]
        self.bos_id, self.eos_id, self.unk_id = ids["bos"], ids["eos"], ids["unk"]
        self.sentinel_ids: list[int] = []
        while (i := tokenizer.token_to_id(SENTINEL.format(len(self.sentinel_ids)))) is not None:
            self.sentinel_ids.append(i)
        if len(self.sentinel_ids) < extra_ids:
            raise ModalzooError(f"data.tokenizer.extra_ids = {extra_ids}, but the tokenizer holds "
                                f"{len(self.sentinel_ids)} sentinel tokens (<extra_id_N>); train a new one")
        self.extra_special_ids = {t: tokenizer.token_to_id(t) for t in extra_specials}
        absent = [t for t, i in self.extra_special_ids.items() if i is None]
        if absent:
            raise ModalzooError(f"data.tokenizer.extra_specials asks for {absent}, which the tokenizer lacks; "
                                "train a new one")
        self.special_ids = sorted(set(ids.values()) | set(self.sentinel_ids) | set(self.extra_special_ids.values()))

    @property
    def added_specials(self) -> list[str]:
        """The special tokens beyond the five roles (sentinels, then extra specials), by id."""
        extra = set(self.sentinel_ids) | set(self.extra_special_ids.values())
        return [self.tokenizer.id_to_token(i) for i in sorted(extra)]

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> tuple[list[int], list[int | None]]:
        """Token ids and word ids of ``text``, without special tokens."""
        enc = self.tokenizer.encode(text, add_special_tokens=False)
        return enc.ids, enc.word_ids

    def decode(self, ids: Iterable[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def id_to_token(self, i: int) -> str:
        return self.tokenizer.id_to_token(i)

    def save(self, path: str | Path) -> None:
        """Written to a temporary name and renamed: ranks that train the same cached tokenizer at once, or
        an interrupted run, never leave a half-written file for the next run to load."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        self.tokenizer.save(str(tmp))
        os.replace(tmp, path)


@dataclass
class WordPieceConfig:
    vocab_size: int = 8000
    lowercase: bool = True
    min_frequency: int = 2
    path: str | None = None          # an existing tokenizer.json to use instead of training
    extra_ids: int = 0               # T5 sentinels <extra_id_0> ..; T5: 100
    extra_specials: list[str] = field(default_factory=list)   # more special tokens (UL2: [NLU] [NLG] [S2S])


def added_specials(cfg) -> list[str]:
    """The special tokens a tokenizer config adds to the five roles, in id order."""
    if cfg.extra_ids < 0:
        raise ModalzooError(f"data.tokenizer.extra_ids must be >= 0, got {cfg.extra_ids}")
    return sentinel_tokens(cfg.extra_ids) + list(cfg.extra_specials)


@TOKENIZERS.register("wordpiece")
class WordPiece:
    """BERT-style WordPiece: [PAD] [UNK] [CLS] [SEP] [MASK], lowercasing, accent stripping."""

    Config = WordPieceConfig
    specials = {"pad": "[PAD]", "unk": "[UNK]", "bos": "[CLS]", "eos": "[SEP]", "mask": "[MASK]"}

    def __init__(self, cfg: WordPieceConfig):
        self.cfg = cfg

    def train(self, texts: Iterable[str]) -> TextTokenizer:
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
        tok.normalizer = normalizers.BertNormalizer(lowercase=self.cfg.lowercase, strip_accents=self.cfg.lowercase)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece(prefix="##")
        order = ["pad", "unk", "bos", "eos", "mask"]
        trainer = trainers.WordPieceTrainer(vocab_size=self.cfg.vocab_size, min_frequency=self.cfg.min_frequency,
                                            special_tokens=[self.specials[r] for r in order]
                                            + added_specials(self.cfg), show_progress=False)
        tok.train_from_iterator(texts, trainer=trainer)
        cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.BertProcessing(("[SEP]", sep), ("[CLS]", cls))
        return self._wrap(tok)

    def load(self, path: str | Path) -> TextTokenizer:
        return self._wrap(Tokenizer.from_file(str(path)))

    def _wrap(self, tok: Tokenizer) -> TextTokenizer:
        return TextTokenizer(tok, self.specials, self.cfg.extra_ids, self.cfg.extra_specials)


@dataclass
class ByteLevelBPEConfig:
    vocab_size: int = 8000
    min_frequency: int = 2
    add_prefix_space: bool = False
    specials_at_end: bool = False    # specials get the largest ids, </s> the very largest (CLIP's layout)
    path: str | None = None
    extra_ids: int = 0               # T5 sentinels <extra_id_0> ..; T5: 100
    extra_specials: list[str] = field(default_factory=list)   # more special tokens (UL2: [NLU] [NLG] [S2S])


@TOKENIZERS.register("bytelevel_bpe")
class ByteLevelBPE:
    """RoBERTa/GPT-2-style byte-level BPE: <s> <pad> </s> <unk> <mask>; never produces <unk>."""

    Config = ByteLevelBPEConfig
    specials = {"bos": "<s>", "pad": "<pad>", "eos": "</s>", "unk": "<unk>", "mask": "<mask>"}

    def __init__(self, cfg: ByteLevelBPEConfig):
        self.cfg = cfg

    def train(self, texts: Iterable[str]) -> TextTokenizer:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=self.cfg.add_prefix_space)
        tok.decoder = decoders.ByteLevel()
        order = ["bos", "pad", "eos", "unk", "mask"]
        trainer = trainers.BpeTrainer(vocab_size=self.cfg.vocab_size, min_frequency=self.cfg.min_frequency,
                                      special_tokens=[self.specials[r] for r in order] + added_specials(self.cfg),
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        tok.train_from_iterator(texts, trainer=trainer)
        if self.cfg.specials_at_end:          # the same training, then the specials renumbered to the end
            tok = _specials_to_end(tok, added_specials(self.cfg)
                                   + [self.specials[r] for r in ["pad", "unk", "mask", "bos", "eos"]])
        tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")),
                                                          ("<s>", tok.token_to_id("<s>")),
                                                          add_prefix_space=self.cfg.add_prefix_space)
        return self._wrap(tok)

    def load(self, path: str | Path) -> TextTokenizer:
        return self._wrap(Tokenizer.from_file(str(path)))

    def _wrap(self, tok: Tokenizer) -> TextTokenizer:
        return TextTokenizer(tok, self.specials, self.cfg.extra_ids, self.cfg.extra_specials)


def _specials_to_end(tok: Tokenizer, specials: list[str]) -> Tokenizer:
    """``tok`` (trained with ``specials`` as its first ids) with ``specials`` moved to the last ids, in the given
    order, and every other id shifted down by ``len(specials)``. Merges are kept by token, so every text
    encodes to the same tokens as before."""
    data = json.loads(tok.to_str())
    vocab: dict[str, int] = data["model"]["vocab"]
    n, size = len(specials), len(vocab)
    if sorted(vocab.get(t, -1) for t in specials) != list(range(n)):
        raise ModalzooError(f"expected the special tokens {specials} to hold the first {n} ids")
    renumbered = {t: i - n for t, i in vocab.items() if t not in specials}
    renumbered.update({t: size - n + k for k, t in enumerate(specials)})
    data["model"]["vocab"] = dict(sorted(renumbered.items(), key=lambda item: item[1]))
    for added in data["added_tokens"]:
        added["id"] = renumbered[added["content"]]
    data["added_tokens"].sort(key=lambda added: added["id"])
    return Tokenizer.from_str(json.dumps(data))


def load_or_train(spec: dict, run_dir: Path | None, cache_dir: Path, cache_key: list,
                  texts: Callable[[], Iterator[str]], empty_message: str = "no text to train the tokenizer on"
                  ) -> TextTokenizer:
    """The run's tokenizer: run_dir/tokenizer.json if it exists (a resumed run), else ``spec['path']``,
    else one trained on ``texts()`` and cached in ``cache_dir`` under a digest of spec + ``cache_key``.
    Always saved as run_dir/tokenizer.json."""
    kind = TOKENIZERS.build(spec, "data.tokenizer")
    saved = Path(run_dir) / "tokenizer.json" if run_dir else None
    if saved is not None and saved.exists():
        tok = kind.load(saved)
    elif kind.cfg.path:
        if not Path(kind.cfg.path).exists():
            raise ModalzooError(f"data.tokenizer.path: {kind.cfg.path} does not exist")
        tok = kind.load(kind.cfg.path)
    else:
        digest = hashlib.sha1(json.dumps([spec, *cache_key], sort_keys=True).encode()).hexdigest()[:10]
        cached = Path(cache_dir) / f"{spec['name']}-{digest}.json"
        if cached.exists():
            tok = kind.load(cached)
        else:
            stream = texts()
            first = next(stream, None)
            if first is None:
                raise ModalzooError(empty_message)
            tok = kind.train(itertools.chain([first], stream))
            try:
                cached.parent.mkdir(parents=True, exist_ok=True)
                tok.save(cached)
            except OSError:
                pass                                   # read-only data folder: train again next time
    if saved is not None:
        tok.save(saved)
    return tok
