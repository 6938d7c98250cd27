"""Tiny model specs, one per architecture shape, with batches that fit them. Used by the shape tests
and by the registry-wide test (every registered model component appears in at least one shape)."""

from __future__ import annotations

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


SHAPES = {
    "bert": (  # encoder-only
        {"streams": {"text": {"embedding": {"name": "token", "vocab_size": V, "dim": D, "max_positions": 32,
                                            "type_vocab_size": 2, "norm": "layernorm"},
                              "encoder": enc(prenorm=False, final_norm=False)}},
         "targets": {"mlm": {"name": "mlm", "stream": "text"}}},
        lambda: text_batch()),
    "gpt": (  # decoder-only: causal mask, RoPE, next-token target
        {"streams": {"text": {"embedding": {"name": "token", "vocab_size": V, "dim": D, "positions": "none"},
                              "encoder": enc(mask="causal", positions="rope", norm="rmsnorm",
                                             activation="swiglu")}},
         "targets": {"lm": {"name": "clm", "stream": "text"}}},
        lambda: text_batch(with_labels=False)),
    "t5": (  # encoder-decoder: target embedding + cross-attending decoder
        {"streams": {"text": {"embedding": {"name": "token", "vocab_size": V, "dim": D, "positions": "none"},
                              "encoder": enc(positions="alibi"),
                              "target_embedding": {"name": "token", "vocab_size": V, "dim": D},
                              "decoder": {"name": "transformer", "layers": 2, "dim": D, "heads": H,
                                          "ffn_dim": 64}}},
         "targets": {"seq2seq": {"name": "clm", "stream": "text", "source": "decoder"}}},
        lambda: {**text_batch(with_labels=False),
                 **{f"decoder_{k}": v for k, v in text_batch(L=7, seed=1, with_labels=False).items()},
                 "decoder_labels": text_batch(L=7, seed=2, with_labels=False)["input_ids"]}),
    "clip": (  # two towers and a loss across them
        {"streams": {"image": {"embedding": patch(norm="layernorm"), "encoder": enc()},
                     "text": {"embedding": {"name": "token", "vocab_size": V, "dim": D},
                              "encoder": enc(mask="causal")}},
         "targets": {"clip": {"name": "contrastive", "streams": ["image", "text"], "pooling": ["cls", "last"],
                              "embed_dim": 16}}},
        lambda: {**image_batch(), **text_batch(with_labels=False)}),
    "mae": (  # decoder over a different token set than the encoder
        {"streams": {"image": {"embedding": patch(positions="sincos2d", mask_ratio=0.75),
                               "encoder": enc(),
                               "target_embedding": {"name": "mae", "encoder_dim": D, "dim": 16, "grid": 4},
                               "decoder": {"name": "transformer", "layers": 1, "dim": 16, "heads": 2,
                                           "cross_attention": False, "mask": "bidirectional"}}},
         "targets": {"mae": {"name": "mae", "stream": "image"}}},
        lambda: image_batch()),
    "graphcodebert": (  # an embedding with several inputs and a per-sample graph mask
        {"streams": {"code": {"embedding": {"name": "code_dataflow", "vocab_size": V, "dim": D,
                                            "max_positions": 32},
                              "encoder": enc(prenorm=False, final_norm=False)}},
         "targets": {"mlm": {"name": "mlm", "stream": "code"}}},
        lambda: code_batch()),
}


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


SHAPES["clip_timm"] = (  # a timm tower as the image encoder
    {"streams": {"image": {"embedding": {"name": "pixels"},
                           "encoder": {"name": "timm", "model_name": "test_vit", "image_size": 16,
                                       "options": {"patch_size": 4}}},
                 "text": {"embedding": {"name": "token", "vocab_size": V, "dim": D},
                          "encoder": enc(mask="causal")}},
     "targets": {"clip": {"name": "contrastive", "streams": ["image", "text"], "pooling": ["cls", "last"],
                          "embed_dim": 16}}},
    lambda: {**image_batch(), **text_batch(with_labels=False)})

COVERS = {  # which shape exercises each registered model component
    ("embedding", "token"): "bert", ("embedding", "patch"): "clip", ("embedding", "code_dataflow"): "graphcodebert",
    ("encoder", "transformer"): "bert", ("decoder", "transformer"): "t5",
    ("embedding", "pixels"): "clip_timm", ("encoder", "timm"): "clip_timm",
    ("target_embedding", "token"): "t5", ("target_embedding", "mae"): "mae",
    ("target", "mlm"): "bert", ("target", "clm"): "gpt", ("target", "contrastive"): "clip",
    ("target", "mae"): "mae",
}
