"""Helpers for tiny models and their batches, and ``SHAPES`` / ``COVERS``: every modality's tiny model specs
(tests/modalities/<name>/harness.py), merged. Used by the shape tests and by the registry-wide test (every
registered model component appears in at least one shape)."""

from __future__ import annotations

import itertools

import torch

V, D, H = 50, 32, 4


def perturbed(model: torch.nn.Module, std: float = 0.02, seed: int = 0) -> torch.nn.Module:
    """Noise on every parameter, in eval mode: fresh inits leave norms at 1/0 and biases at 0, which would
    hide a swapped norm or bias in a weight mapping."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * std)
    return model.eval()
PAD, CLS, SEP, MASK = 0, 2, 3, 4


def enc(**kw):
    return {"name": "transformer", "layers": 2, "dim": D, "heads": H, "ffn_dim": 64, **kw}


def text_batch(B=3, L=12, seed=0, with_labels=True):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, V, (B, L), generator=g)
    ids[:, 0] = CLS
    lengths = torch.tensor([L, L - 3, L - 5][:B])
    mask = torch.arange(L)[None] < lengths[:, None]
    ids[~mask] = PAD
    batch = {"input_ids": ids, "attention_mask": mask}
    if with_labels:
        labels = torch.full_like(ids, -100)
        pick = (torch.rand(B, L, generator=g) < 0.3) & mask
        pick[:, 1] = True
        labels[pick] = ids[pick]
        batch["input_ids"] = ids.masked_fill(pick, MASK)
        batch["labels"] = labels
    return batch


def image_batch(B=3, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"pixel_values": torch.randn(B, 3, size, size, generator=g)}


def patch(**kw):
    return {"name": "patch", "image_size": 16, "patch_size": 4, "dim": D, **kw}


def code_batch(B=2, code_len=8, nodes=3, pad=2, seed=0):
    """GraphCodeBERT layout: code tokens (positions 2..), data-flow nodes (position 0), padding (1)."""
    g = torch.Generator().manual_seed(seed)
    L = code_len + nodes + pad
    ids = torch.randint(5, V, (B, L), generator=g)
    position_idx = torch.cat([torch.arange(2, 2 + code_len), torch.zeros(nodes, dtype=torch.long),
                              torch.ones(pad, dtype=torch.long)]).repeat(B, 1)
    ids[position_idx == 1] = 1
    real = position_idx != 1
    graph = real[:, :, None] & real[:, None, :]
    code = position_idx >= 2
    nodes_mask = position_idx == 0
    graph &= ~(nodes_mask[:, :, None] & code[:, None, :])      # nodes see only their own code tokens...
    for b in range(B):
        for n in range(nodes):
            graph[b, code_len + n, (n + b) % code_len] = True     # ...which differ per sample
            graph[b, (n + b) % code_len, code_len + n] = True
    labels = torch.full_like(ids, -100)
    labels[:, 1] = ids[:, 1]
    return {"input_ids": ids.masked_fill(labels != -100, MASK), "position_idx": position_idx,
            "attn_mask": graph, "labels": labels}


# Texts for tokenizer and processor tests: a corpus to train on and probes that exercise the edge cases.
WORDS = ["cat", "dog", "seven", "three", "digit", "Café", "naïve", "Straße", "東京"]
CORPUS = [f"The quick brown fox number {i} jumps over the lazy {w}. A photo of a {w}, said O'Neil-{i * 7}!"
          for i, w in zip(range(300), itertools.cycle(WORDS))]
SEQ_LEN = 16
PROBES = [
    "A photo of a cat.",
    "",                                                             # empty: [CLS] [SEP] / <s> </s>
    "  leading spaces,  doubled spaces\tand a tab\nand a newline ",
    "Héllo CAFÉ naïve 東京 <mask> [MASK] </s> <s> <pad>",              # accents, CJK, special-token text
    "seven three " * 30,                                             # longer than SEQ_LEN: truncated
    "zzqqxx unseen wordpieces 🙂 e\u0301",                            # unknown characters, combining accent
]


def __getattr__(name: str):
    """``SHAPES`` and ``COVERS``: the modalities' (tests/modalities/<name>/harness.py), merged on first use.
    Lazy, because those harnesses import the helpers above."""
    if name in ("SHAPES", "COVERS"):
        from harnesses import merged
        globals()[name] = value = merged(name)
        return value
    raise AttributeError(f"module 'tiny_models' has no attribute '{name}'")


def rand(*shape, seed=1) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def padded_lm_batch(vocab: int = 100, pad_id: int = 1) -> dict[str, torch.Tensor]:
    """Two rows of token ids, the second right-padded (the causal-LM export parity batch)."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (2, 13), generator=g)
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[1, 9:] = False
    ids[1, 9:] = pad_id
    return {"input_ids": ids, "attention_mask": mask}


def lm_logits_diff(zoo, hf, batch, stream: str = "text", target: str = "lm") -> float:
    """Max |zoo - transformers| next-token logit at the real tokens (the zoo's must not be all ~0)."""
    from modalzoo.modalities.text.hub import causal_lm
    real = batch["attention_mask"]
    with torch.no_grad():
        ours = causal_lm.zoo_logits(zoo, batch, stream, target)[real]
        theirs = hf(input_ids=batch["input_ids"], attention_mask=real.long()).logits[real]
    assert ours.abs().mean() > 0.1
    return (ours - theirs).abs().max().item()


# A 2-layer causal LM recipe over the docstring data (generate and CLM-report tests).
GPT_RECIPE = ("# @package _global_\n"
              "defaults:\n  - /modalzoo_recipe\n  - /trainer: cpu_small\n  - /data: text_sample\n  - _self_\n"
              "model:\n  streams:\n    text:\n"
              "      embedding: {name: token, vocab_size: 2000, dim: 64, max_positions: 64}\n"
              "      encoder: {name: transformer, layers: 2, dim: 64, heads: 4, mask: causal, activation: gelu_tanh}\n"
              "  targets:\n    lm: {name: clm, stream: text}\n")
