"""Fine-tuning a `table_cells` stream in process: the loop behind the scikit-learn estimators
(`estimator.py`) and the tabular report's few-shot arms.

* `load_source(PRETRAINED)`: the table stream of a run folder (config.yaml + checkpoints), of a zoo export
  (config.json + model.safetensors) or of a saved estimator (estimator.json), with the tokenizer and cell
  settings it was trained with; ``random_init=True`` keeps the architecture and tokenizer and draws fresh
  weights. `default_source(schema, columns)`: a small stream (tab_pool_tiny's shape) with a WordPiece
  vocabulary of the table's own column names and values (`table_tokenizer`).
* `table_rows`: columns -> `Row`s (cells under one schema, fitted on the training rows only: `fit_schema`).
* `TableModel`: the stream plus a fresh `table_label` head on [CLS]; `train_rows` fits it (AdamW, linear
  warmup then cosine decay, gradient clipping at 1.0, cells shuffled and capped per row and epoch by
  `CellFinisher`), `predict_rows` returns the head's outputs and `embed_rows` a stream's pooled states.

Everything random (weights, batch order, cell subsets, dropout) is drawn from ``seed`` inside a forked RNG
(`seeded`), so the same call gives the same model and the caller's global RNG is left as it was.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ...errors import ModalzooError
from ...pretrain_tasks.base import StreamOutput
from .cells import CellFinisher, Row, TableState, collate_rows, row_cells
from .columns import TableSchema, missing, text
from .dataset import TableDataConfig, tokenizer_words

# tab_pool_tiny's stream (the embedding's vocab_size follows the tokenizer)
DEFAULT_EMBEDDING = {"name": "table_cells", "dim": 128, "max_value_tokens": 16}
DEFAULT_ENCODER = {"name": "transformer", "layers": 3, "dim": 128, "heads": 8, "ffn_dim": 256, "norm": "layernorm",
                   "prenorm": True}
DEFAULT_VOCAB = 4000
ESTIMATOR_FILE = "estimator.json"
WEIGHTS_FILE = "model.safetensors"


@dataclass
class StreamSource:
    """A table stream ready to fine-tune: the module (weights loaded or fresh), its spec (``embedding`` and
    ``encoder``), the tokenizer its embedding reads and the cell settings it was trained with."""
    stream: nn.Module
    spec: dict
    tokenizer: object
    tokenizer_spec: dict
    name: str = "table"
    numbers: str = "scaled"
    max_name_tokens: int = 8
    max_value_tokens: int = 16
    origin: str = ""                  # where the weights came from ("" for fresh ones)

    def state(self, schema: TableSchema) -> TableState:
        return TableState({schema.name: schema}, self.tokenizer, self.numbers, max_name_tokens=self.max_name_tokens,
                          max_value_tokens=self.max_value_tokens)

    def settings(self) -> dict:
        """What `from_settings` needs besides the weights and the tokenizer file (JSON)."""
        return {"name": self.name, "spec": self.spec, "tokenizer": self.tokenizer_spec, "numbers": self.numbers,
                "max_name_tokens": self.max_name_tokens, "max_value_tokens": self.max_value_tokens}


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Torch's CPU RNG (and ``device``'s, when it is a GPU) seeded inside, restored after."""
    device = torch.device(device)
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.default_generator.manual_seed(seed)
        for index in devices:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)
        yield


def build_stream(spec: dict) -> nn.Module:
    """A `Stream` of ``spec`` with fresh weights, initialised as `PretrainModel` initialises its streams."""
    from ...model import Stream, import_components, init_weights
    import_components()
    stream = Stream(spec, "model.streams.table")
    stream.apply(init_weights)
    for module in stream.modules():
        if hasattr(module, "init_weights"):
            module.init_weights()
    return stream


def _table_stream(model_spec: dict, where: str) -> str:
    for name, spec in (model_spec.get("streams") or {}).items():
        if (spec.get("embedding") or {}).get("name") == "table_cells":
            return name
    raise ModalzooError(f"{where} has no stream with a `table_cells` embedding: not a table model")


def _table_data(data_spec: dict | None, where: str) -> TableDataConfig:
    """The run's `table` data config (in a `mixture`, that of its first table source)."""
    from ...registry import DATASETS, to_plain
    data_spec = to_plain(data_spec) if data_spec is not None else None
    if isinstance(data_spec, dict) and data_spec.get("name") == "mixture":
        tables = [s["data"] for s in (data_spec.get("sources") or {}).values()
                  if isinstance(s, dict) and (s.get("data") or {}).get("name") == "table"]
        data_spec = tables[0] if tables else None
    if not isinstance(data_spec, dict) or data_spec.get("name") != "table":
        raise ModalzooError(f"{where}: its data is not the `table` dataset, so its cell settings are unknown")
    return DATASETS.make_config(data_spec, "data")


def _load_tokenizer(spec: dict, file: Path):
    from ...registry import TOKENIZERS
    if not file.exists():
        raise ModalzooError(f"{file} is missing: a table model keeps the tokenizer its embedding reads")
    spec = {k: v for k, v in spec.items() if k != "path"}
    return TOKENIZERS.build(spec, "data.tokenizer").load(file)


# Loaded weights of recent sources (a grid search refits from the same run many times): path -> entry
_CACHE: OrderedDict[tuple, dict] = OrderedDict()
_CACHE_SIZE = 2


def _read_source(path: Path) -> dict:
    """{name, spec, state (stream tensors, CPU), tokenizer, data settings} of a run, export or saved estimator."""
    from safetensors.torch import load_file

    from ...registry import to_plain
    if (path / ESTIMATOR_FILE).exists():                          # a saved estimator: its stream, not its head
        saved = json.loads((path / ESTIMATOR_FILE).read_text())["stream"]
        state = load_file(str(path / WEIGHTS_FILE))
        lead = f"streams.{saved['name']}."
        return {"name": saved["name"], "spec": saved["spec"], "tokenizer_spec": saved["tokenizer"],
                "numbers": saved["numbers"], "max_name_tokens": saved["max_name_tokens"],
                "max_value_tokens": saved["max_value_tokens"],
                "state": {k[len(lead):]: v for k, v in state.items() if k.startswith(lead)}}
    if (path / "config.yaml").exists():                           # a run folder: its newest checkpoint
        from ...training.runs import find_checkpoint, load_run_model, run_config
        recipe = to_plain(run_config(path))
        checkpoint = find_checkpoint(path)
        file = checkpoint / WEIGHTS_FILE if checkpoint.is_dir() else checkpoint
        if file.exists():
            state = load_file(str(file))
        else:                                                     # sharded (DCP): the whole model reads it
            state = load_run_model(path, checkpoint=checkpoint)[1].state_dict()
    elif (path / "config.json").exists():                         # a zoo export
        recipe = json.loads((path / "config.json").read_text())
        if "modalzoo" not in recipe:
            raise ModalzooError(f"{path} is a transformers export, not a modalzoo one (no table stream to read)")
        if not (path / WEIGHTS_FILE).exists():
            raise ModalzooError(f"{path / WEIGHTS_FILE} is missing: the export is incomplete")
        state = load_file(str(path / WEIGHTS_FILE))
    else:
        raise ModalzooError(f"{path} is neither a run folder (config.yaml), a modalzoo export (config.json) nor a "
                            f"saved estimator ({ESTIMATOR_FILE})")
    name = _table_stream(recipe.get("model") or {}, str(path))
    data = _table_data(recipe.get("data"), str(path))
    lead = f"streams.{name}."                      # the stream alone: the pretraining heads are not needed
    return {"name": name, "spec": recipe["model"]["streams"][name], "tokenizer_spec": dict(data.tokenizer),
            "numbers": data.numbers, "max_name_tokens": data.max_name_tokens,
            "max_value_tokens": data.max_value_tokens,
            "state": {k[len(lead):]: v.detach().cpu() for k, v in state.items() if k.startswith(lead)}}


def _weights_file(path: Path) -> Path | None:
    for candidate in (path / WEIGHTS_FILE, path / "checkpoints"):
        if candidate.exists():
            return candidate
    return None


def load_source(pretrained: str | Path, random_init: bool = False, seed: int = 0) -> StreamSource:
    """The table stream of a run folder, a zoo export (a folder or ``hf-hub:REPO``) or a saved estimator, with
    its tokenizer and cell settings; ``random_init``: the same architecture and tokenizer, fresh weights
    (drawn from ``seed``)."""
    from ...hub.pretrained import resolve
    path = resolve(str(pretrained)).resolve()
    weights = _weights_file(path)
    stamp = max((p.stat().st_mtime_ns for p in weights.rglob("*") if p.is_file()), default=0) \
        if weights is not None and weights.is_dir() else (weights.stat().st_mtime_ns if weights else 0)
    key = (str(path), stamp)
    entry = _CACHE.get(key)
    if entry is None:
        entry = _read_source(path)
        entry["tokenizer"] = _load_tokenizer(entry["tokenizer_spec"], path / "tokenizer.json")
        _CACHE[key] = entry
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    _CACHE.move_to_end(key)
    with seeded(seed):
        stream = build_stream(entry["spec"])
    if not random_init:
        result = stream.load_state_dict(entry["state"], strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise ModalzooError(f"{path}: the weights of stream '{entry['name']}' do not fit its config: missing "
                                f"{result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}")
    return StreamSource(stream, copy.deepcopy(entry["spec"]), entry["tokenizer"], dict(entry["tokenizer_spec"]),
                        entry["name"], entry["numbers"], entry["max_name_tokens"], entry["max_value_tokens"],
                        origin="" if random_init else str(path))


def from_settings(settings: dict, tokenizer_file: Path) -> StreamSource:
    """A stream (fresh weights: load them next) and its tokenizer from `StreamSource.settings`."""
    stream = build_stream(settings["spec"])
    tokenizer = _load_tokenizer(settings["tokenizer"], tokenizer_file)
    return StreamSource(stream, settings["spec"], tokenizer, settings["tokenizer"], settings["name"],
                        settings["numbers"], settings["max_name_tokens"], settings["max_value_tokens"])


def table_words(schema: TableSchema, columns: dict[str, list], limit: int = 20000) -> Iterator[str]:
    """What a table's own tokenizer learns from: column names, categories, date parts and digits, then the
    values of its text columns (of up to ``limit`` rows)."""
    yield from tokenizer_words({schema.name: schema})
    for col in schema.kept:
        if col.type == "text":
            for value in columns.get(col.name, [])[:limit]:
                if value is not None and not missing(value):
                    yield text(value)


def table_tokenizer(words, vocab_size: int = DEFAULT_VOCAB, min_frequency: int = 1):
    """A WordPiece tokenizer (the `wordpiece` tokenizer's normaliser, pre-tokenizer and special tokens) whose
    vocabulary is built, not trained: the five specials, every character seen and a-z 0-9 (alone and as a
    ``##`` continuation), then whole words by frequency (ties by spelling) up to ``vocab_size``. A word outside it is
    spelled in characters, never [UNK]. Built this way because `tokenizers`' trainer numbers tied tokens
    differently from process to process, and a fit must be reproducible from its seed."""
    import string
    from collections import Counter

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    from ..text.tokenizers import TextTokenizer, WordPiece
    normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    pre = pre_tokenizers.BertPreTokenizer()
    counts: Counter = Counter()
    for item in words:
        counts.update(w for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(item)))
    specials = [WordPiece.specials[r] for r in ("pad", "unk", "bos", "eos", "mask")]
    chars = sorted({c for w in counts for c in w} | set(string.ascii_lowercase + string.digits))
    vocab = dict.fromkeys([*specials, *chars, *(f"##{c}" for c in chars)])
    for word, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if len(vocab) >= vocab_size or count < min_frequency:
            break
        vocab.setdefault(word)
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]",
                                     max_input_chars_per_word=100))
    tok.normalizer, tok.pre_tokenizer, tok.decoder = normalizer, pre, decoders.WordPiece(prefix="##")
    tok.add_special_tokens(specials)
    tok.post_processor = processors.BertProcessing(("[SEP]", vocab_index(vocab, "[SEP]")),
                                                   ("[CLS]", vocab_index(vocab, "[CLS]")))
    return TextTokenizer(tok, WordPiece.specials)


def vocab_index(vocab: dict, token: str) -> int:
    return list(vocab).index(token)


def default_source(schema: TableSchema, columns: dict[str, list], seed: int = 0,
                   vocab_size: int = DEFAULT_VOCAB) -> StreamSource:
    """A fresh stream of tab_pool_tiny's shape and a tokenizer of this table's own words (`table_tokenizer`)."""
    tokenizer = table_tokenizer(table_words(schema, columns), vocab_size)
    stream_spec = {"embedding": {**DEFAULT_EMBEDDING, "vocab_size": tokenizer.vocab_size},
                   "encoder": dict(DEFAULT_ENCODER)}
    with seeded(seed):
        stream = build_stream(stream_spec)
    return StreamSource(stream, stream_spec, tokenizer, {"name": "wordpiece", "vocab_size": tokenizer.vocab_size})


# ------------------------------------------------------------------------------------------------ rows

def table_rows(columns: dict[str, list], schema: TableSchema, state: TableState, labels: Sequence[int] | None = None,
               values: Sequence[float] | None = None) -> list[Row]:
    """One `Row` per row of ``columns`` (column -> raw values; a column the schema lacks is ignored, one it has
    but ``columns`` lacks is a missing cell), with class indexes ``labels`` or scaled regression ``values``."""
    known = [c.name for c in schema.kept if c.name in columns]
    n = len(next(iter(columns.values()))) if columns else 0
    rows = []
    for i in range(n):
        cells = row_cells({c: columns[c][i] for c in known}, schema, state)
        rows.append(Row(cells, int(labels[i]) if labels is not None else -100,
                        float(values[i]) if values is not None else float("nan"), 0))
    return rows


def batches(rows: Sequence[Row], batch_size: int, finisher: CellFinisher, generator: torch.Generator,
            order: Sequence[int] | None = None) -> Iterator[dict[str, torch.Tensor]]:
    order = range(len(rows)) if order is None else order
    order = list(order)
    for start in range(0, len(order), batch_size):
        chunk = [rows[i] for i in order[start:start + batch_size]]
        yield finisher(collate_rows(chunk), generator)


# ------------------------------------------------------------------------------------------------ model

class TableModel(nn.Module):
    """A table stream plus a fresh `table_label` head on its [CLS] state."""

    def __init__(self, stream: nn.Module, task: str, classes: int = 2, dropout: float = 0.1, name: str = "table"):
        super().__init__()
        from ...model import init_weights
        from .objectives import TableLabelConfig, TableLabelTarget
        self.name = name
        self.streams = nn.ModuleDict({name: stream})
        cfg = TableLabelConfig(stream=name, task=task, classes=classes if task != "regression" else 1,
                               dropout=dropout)
        self.head = TableLabelTarget(cfg, self.streams)
        self.head.apply(init_weights)

    @property
    def stream(self) -> nn.Module:
        return self.streams[self.name]

    def run(self, batch: dict[str, torch.Tensor]) -> dict[str, StreamOutput]:
        stream = self.stream
        return {self.name: StreamOutput(stream=stream, hidden=stream.encoder(stream.embedding(batch)))}

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.run(batch), batch).loss

    def outputs(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """[R, classes] logits, or [R, 1] scaled regression values."""
        return self.head.logits(self.run(batch)[self.name].hidden.x)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: matrices decay; biases, norms, embedding tables and vectors (CLS, missing) do not."""
    tables = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, rest = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 and id(p) not in tables else rest).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@dataclass
class TrainSettings:
    epochs: int = 30
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = 0.01
    max_cells: int = 64
    warmup: float = 0.1               # share of the steps with a linear warmup; then cosine decay to 0
    clip: float = 1.0
    seed: int = 0
    verbose: bool = False


def train_rows(model: TableModel, rows: Sequence[Row], settings: TrainSettings,
               device: torch.device | str = "cpu") -> list[float]:
    """Fit ``model`` (its head and stream) on ``rows``; returns the mean training loss of every epoch. The model
    is left in eval mode on ``device``."""
    if not rows:
        raise ModalzooError("no training rows")
    s = settings
    if s.epochs < 1 or s.batch_size < 1 or s.lr <= 0 or s.max_cells < 1:
        raise ValueError("epochs, batch_size, lr and max_cells must be positive")
    device = torch.device(device)
    history: list[float] = []
    with seeded(s.seed, device):
        generator = torch.Generator().manual_seed(s.seed)
        model.to(device).train()
        opt = torch.optim.AdamW(param_groups(model, s.weight_decay), lr=s.lr)
        per_epoch = math.ceil(len(rows) / s.batch_size)
        total = s.epochs * per_epoch
        warm = max(1, round(s.warmup * total)) if s.warmup > 0 else 0

        def factor(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        finisher = CellFinisher(s.max_cells, train=True)
        for epoch in range(s.epochs):
            order = torch.randperm(len(rows), generator=generator).tolist()
            losses, seen = 0.0, 0
            for batch in batches(rows, s.batch_size, finisher, generator, order):
                loss = model.loss(_to(batch, device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if s.clip:
                    nn.utils.clip_grad_norm_(model.parameters(), s.clip)
                opt.step()
                sched.step()
                count = int(batch["cell_kind"].shape[0])
                losses += float(loss.detach()) * count
                seen += count
            history.append(losses / max(seen, 1))
            if s.verbose:
                print(f"epoch {epoch + 1}/{s.epochs}: loss {history[-1]:.4f}")
    model.eval()
    return history


@torch.no_grad()
def predict_rows(model: TableModel, rows: Sequence[Row], batch_size: int = 256, max_cells: int = 64,
                 device: torch.device | str = "cpu") -> np.ndarray:
    """[n, classes] logits (or [n, 1] scaled regression values), float64, in eval mode."""
    device = torch.device(device)
    model.to(device).eval()
    finisher = CellFinisher(max_cells, train=False)
    out = [model.outputs(_to(b, device)).float().cpu() for b in batches(rows, batch_size, finisher, torch.Generator())]
    width = model.head.head[-1].out_features
    return torch.cat(out).numpy().astype(np.float64) if out else np.zeros((0, width))


@torch.no_grad()
def embed_rows(stream: nn.Module, rows: Sequence[Row], pooling: str = "cls", batch_size: int = 256,
               max_cells: int = 64, device: torch.device | str = "cpu") -> np.ndarray:
    """[n, D] float64: each row's [CLS] state (``pooling="cls"``) or the mean over its cells' states ("mean")."""
    if pooling not in ("cls", "mean"):
        raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}")
    device = torch.device(device)
    stream.to(device).eval()
    finisher = CellFinisher(max_cells, train=False)
    out = []
    for batch in batches(rows, batch_size, finisher, torch.Generator()):
        hidden = stream.encoder(stream.embedding(_to(batch, device)))
        x = hidden.x.float()
        if pooling == "cls":
            out.append(x[:, 0].cpu())
            continue
        real = hidden.pad_mask.clone() if hidden.pad_mask is not None else torch.ones(x.shape[:2], dtype=torch.bool,
                                                                                       device=x.device)
        cells = real[:, 1:]
        empty = ~cells.any(1)                      # a row without cells: its [CLS] state
        mask = torch.cat([empty[:, None], cells], 1).unsqueeze(-1).to(x.dtype)
        out.append(((x * mask).sum(1) / mask.sum(1).clamp(min=1)).cpu())
    dim = stream.encoder.dim
    return torch.cat(out).numpy().astype(np.float64) if out else np.zeros((0, dim))
