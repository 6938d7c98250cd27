"""Text generation with a model's causal LM target: greedy or temperature + nucleus (top-p) sampling, with the
Transformer stacks' KV cache, so each new token costs one token's forward (plus attention over the cache).

Decoder-only (a `clm` target on the encoder, GPT/Llama): the prompt is the start of a document, framed as
the text field frames training documents, [bos] + tokens (no eos: the document goes on). Encoder-decoder
(`source: decoder`, T5): the encoder reads the whole input once, [bos] + tokens + [eos] as a training
document, and the decoder starts from ``decoder_start_id``, the pad id as in T5 and transformers.
`modalzoo generate RUN_DIR --prompt TEXT` is `generate_from_run`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ...encoders.blocks import KVCache
from ...encoders.transformer import Transformer
from ...errors import ModalzooError
from ...pretrain_tasks.base import StreamOutput
from ...pretrain_tasks.clm import CausalLM
from ...registry import closest


@dataclass
class GenerationResult:
    text: str                        # the new tokens decoded (up to eos); a continuation of the prompt
    ids: list[int]                   # the new token ids (ending with eos when one was generated)
    prompt_ids: list[int]            # what the model read: [bos] + the prompt's tokens (+ eos: encoder-decoder)


def causal_target(model, name: str | None = None) -> tuple[str, CausalLM]:
    """The model's one causal LM target (`clm`, or a subclass such as T5's span corruption), or ``name``."""
    causal = {n: t for n, t in model.targets.items() if isinstance(t, CausalLM)}
    if name is not None:
        if name not in model.targets:
            hint = closest(name, model.targets)
            raise ModalzooError(f"no target '{name}'" + (f"; did you mean '{hint}'?" if hint else "")
                                + f" The model's targets: {', '.join(model.targets)}")
        if name not in causal:
            raise ModalzooError(f"target '{name}' ({type(model.targets[name]).__name__}) is not a causal LM; "
                                f"generation needs a clm target")
        return name, causal[name]
    if not causal:
        kinds = ", ".join(f"{n} ({getattr(t, 'registered_name', type(t).__name__)})" for n, t in model.targets.items())
        raise ModalzooError(f"this model has no causal LM target (clm, or a target built on it) to generate "
                            f"with; its targets: {kinds}")
    if len(causal) > 1:
        raise ModalzooError(f"this model has several causal LM targets ({', '.join(causal)}); name one (target=)")
    return next(iter(causal.items()))


def max_positions(embedding) -> int | None:
    """How many positions an embedding's absolute table holds (None: no table, RoPE/ALiBi/T5 bias)."""
    if getattr(embedding, "position", None) is None:
        return None
    return embedding.cfg.max_positions


def _check_fits(embedding, tokens: int, what: str, room: int | None = None) -> None:
    limit = max_positions(embedding)
    if limit is None or tokens <= limit:
        return
    advice = (f"at most {limit - room} new tokens fit (--max-new-tokens)" if room is not None and room < limit
              else "shorten the prompt")
    raise ModalzooError(f"{what} take {tokens} positions but the model has max_positions={limit}; {advice}")


class _Decoder:
    """The causal stack of a target: its embedding and stack, and (encoder-decoder) the encoded input."""

    def __init__(self, model, target: CausalLM, input_ids: Tensor, max_new_tokens: int,
                 decoder_start_id: int | None):
        self.target = target
        self.stream = model.streams[target.cfg.stream]
        B, L = input_ids.shape
        self.memory = None
        if target.cfg.source == "decoder":
            if decoder_start_id is None:
                raise ModalzooError("an encoder-decoder target needs decoder_start_id (the tokenizer's pad id)")
            emb = self.stream.embedding
            _check_fits(emb, L, f"the input's {L} tokens")
            self.embedding, self.stack = self.stream.target_embedding, self.stream.decoder
            _check_fits(self.embedding, 1 + max_new_tokens, f"the decoder start and {max_new_tokens} new tokens",
                        room=1)
            with torch.no_grad():
                self.memory = self.stream.encoder(emb({emb.cfg.prefix + "input_ids": input_ids}))
            self.first = torch.full((B, 1), decoder_start_id, dtype=torch.long, device=input_ids.device)
        else:
            self.embedding, self.stack = self.stream.embedding, self.stream.encoder
            _check_fits(self.embedding, L + max_new_tokens,
                        f"the prompt's {L} tokens and {max_new_tokens} new tokens", room=L)
            self.first = input_ids
        # A prefix-LM stack (UL2's S-denoiser on a decoder-only stream) reads the prompt both ways.
        self.prefix_len = L if getattr(getattr(self.stack, "cfg", None), "mask", None) == "prefix" else None

    def logits(self, ids: Tensor, start: int, cache: KVCache | None) -> Tensor:
        """Next-token logits [B, V] after ``ids`` [B, L], which sit at positions ``start`` .. of the sequence."""
        B, L = ids.shape
        p = self.embedding.cfg.prefix
        batch = {p + "input_ids": ids,
                 p + "position_ids": torch.arange(start, start + L, device=ids.device).expand(B, L)}
        if self.prefix_len is not None and start == 0:
            batch[p + "prefix_len"] = torch.full((B,), self.prefix_len, device=ids.device)
        if self.memory is None:
            hidden = self.stack(self.embedding(batch), cache=cache) if cache is not None else \
                self.stack(self.embedding(batch))
            out = StreamOutput(stream=self.stream, hidden=hidden)
        else:
            tokens = self.embedding(batch, self.memory)
            hidden = self.stack(tokens, memory=self.memory, cache=cache) if cache is not None else \
                self.stack(tokens, memory=self.memory)
            out = StreamOutput(stream=self.stream, hidden=self.memory, decoded=hidden)
        return self.target.lm_logits(hidden.x[:, -1], out)


def sample_next(logits: Tensor, temperature: float, top_p: float, generator: torch.Generator | None) -> Tensor:
    """[B, V] logits -> [B] ids: argmax at temperature 0; else softmax(logits / T) cut to the smallest set of
    tokens whose probability reaches ``top_p`` (nucleus sampling), drawn from ``generator``."""
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        outside = sorted_p.cumsum(-1) - sorted_p >= top_p          # the tokens before these reach top_p already
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p.masked_fill(outside, 0.0))
    device = generator.device if generator is not None else probs.device
    return torch.multinomial(probs.to(device), 1, generator=generator).squeeze(-1).to(logits.device)


def check_options(max_new_tokens: int, temperature: float, top_p: float) -> None:
    if max_new_tokens <= 0:
        raise ModalzooError(f"max_new_tokens must be positive, got {max_new_tokens}")
    if not 0 < top_p <= 1:
        raise ModalzooError(f"top_p must be in (0, 1], got {top_p}")
    if temperature < 0:
        raise ModalzooError(f"temperature must be >= 0 (0: greedy), got {temperature}")


@torch.no_grad()
def generate_ids(model, input_ids: Tensor, max_new_tokens: int = 32, temperature: float = 0.0, top_p: float = 1.0,
                 generator: torch.Generator | None = None, use_cache: bool = True, eos_id: int | None = None,
                 target: str | None = None, decoder_start_id: int | None = None) -> Tensor:
    """The new tokens [B, N] (N <= ``max_new_tokens``) after ``input_ids`` [B, L] (every row real tokens).

    Temperature 0 is greedy. With ``eos_id`` a row stops at eos (later columns repeat eos) and generation ends
    once every row has. ``use_cache`` reuses keys and values (the zoo's Transformer stacks; other stacks
    recompute); without it each step runs the whole sequence again, with the same result. Encoder-decoder
    targets: ``input_ids`` feed the encoder and the decoder starts from ``decoder_start_id``.
    """
    check_options(max_new_tokens, temperature, top_p)
    if input_ids.dim() != 2 or input_ids.shape[1] == 0:
        raise ModalzooError(f"input_ids must be [batch, length] with at least one token, got {list(input_ids.shape)}")
    _, lm = causal_target(model, target)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        dec = _Decoder(model, lm, input_ids.to(device), max_new_tokens, decoder_start_id)
        cache = KVCache(capacity=dec.first.shape[1] + max_new_tokens) if use_cache and isinstance(
            dec.stack, Transformer) else None
        sequence, feed, start = dec.first, dec.first, 0
        done = torch.zeros(sequence.shape[0], dtype=torch.bool, device=device)
        new: list[Tensor] = []
        for _ in range(max_new_tokens):
            if cache is None:
                logits = dec.logits(sequence, 0, None)
            else:
                logits = dec.logits(feed, start, cache)
                start += feed.shape[1]
            token = sample_next(logits, temperature, top_p, generator)
            if eos_id is not None:
                token = token.masked_fill(done, eos_id)
                done |= token == eos_id
            new.append(token)
            feed = token[:, None]
            sequence = torch.cat([sequence, feed], dim=1)
            if eos_id is not None and bool(done.all()):
                break
        return torch.stack(new, dim=1)
    finally:
        model.train(was_training)


EMPTY_PROMPT = "the prompt is empty: give some text to continue (--prompt TEXT)"


def encode_prompt(tokenizer, prompt: str, encoder_decoder: bool) -> list[int]:
    body = tokenizer.encode(prompt)[0] if prompt and prompt.strip() else []
    if not body:
        raise ModalzooError(EMPTY_PROMPT)
    return [tokenizer.bos_id, *body] + ([tokenizer.eos_id] if encoder_decoder else [])


def continuation_text(tokenizer, prompt_body: list[int], new: list[int]) -> str:
    """The new tokens as text that follows the prompt: decoded together with it, the prompt's own text cut
    off, so a word piece that continues the prompt's last word and the spacing come out right."""
    both, before = tokenizer.decode([*prompt_body, *new]), tokenizer.decode(prompt_body)
    return both[len(before):] if both.startswith(before) else tokenizer.decode(new)


def generate(run_or_model, tokenizer=None, prompt: str = "", **options) -> GenerationResult:
    """Continue ``prompt`` (decoder-only) or answer it (encoder-decoder: fill T5's sentinels).

    ``run_or_model``: a run directory, a `LoadedRun` or a model; the tokenizer defaults to the run's.
    ``options`` are `generate_ids`'s; ``eos_id`` defaults to the tokenizer's eos, ``decoder_start_id``
    to its pad id.
    """
    model = run_or_model
    if isinstance(run_or_model, (str, Path)):
        model, run_tokenizer = load_for_generation(Path(run_or_model))
        tokenizer = tokenizer or run_tokenizer
    elif hasattr(run_or_model, "model"):                 # a LoadedRun (modalzoo eval)
        model, tokenizer = run_or_model.model, tokenizer or run_or_model.data_ctx.tokenizer
    if tokenizer is None:
        raise ModalzooError("generation needs the run's tokenizer (RUN_DIR/tokenizer.json) or a tokenizer")
    _, lm = causal_target(model, options.get("target"))
    encoder_decoder = lm.cfg.source == "decoder"
    prompt_ids = encode_prompt(tokenizer, prompt, encoder_decoder)
    options.setdefault("eos_id", tokenizer.eos_id)
    options.setdefault("decoder_start_id", tokenizer.pad_id)
    ids = generate_ids(model, torch.tensor([prompt_ids]), **options)[0].tolist()
    shown = ids[:ids.index(tokenizer.eos_id)] if tokenizer.eos_id in ids else ids
    text = tokenizer.decode(shown) if encoder_decoder else continuation_text(tokenizer, prompt_ids[1:], shown)
    return GenerationResult(text=text, ids=ids, prompt_ids=prompt_ids)


def load_for_generation(run_dir: Path, step: int | None = None, device: str = "cpu"):
    """A run's model (newest checkpoint, or ``step``) on ``device`` and its tokenizer, without its shards."""
    from ...registry import DATASETS
    from ...training.runs import load_run_model, resolve_device
    cfg, model, _, _ = load_run_model(run_dir, step=step)
    tokenizer = DATASETS.build(cfg.data, "data").context(run_dir).tokenizer if cfg.get("data") else None
    return model.to(resolve_device(device)), tokenizer


def generate_from_run(run_dir: Path, prompt: str, max_new_tokens: int = 32, temperature: float = 0.0,
                      top_p: float = 1.0, seed: int = 0, device: str = "cpu", step: int | None = None) -> str:
    """`modalzoo generate`: the text to print, the prompt and its continuation (encoder-decoder: the output)."""
    check_options(max_new_tokens, temperature, top_p)            # before loading anything
    if not prompt.strip():
        raise ModalzooError(EMPTY_PROMPT)
    model, tokenizer = load_for_generation(Path(run_dir), step, device)
    generator = torch.Generator(next(model.parameters()).device).manual_seed(seed) if temperature > 0 else None
    result = generate(model, tokenizer, prompt, max_new_tokens=max_new_tokens, temperature=temperature,
                      top_p=top_p, generator=generator)
    encoder_decoder = causal_target(model)[1].cfg.source == "decoder"
    return result.text if encoder_decoder else prompt + result.text
