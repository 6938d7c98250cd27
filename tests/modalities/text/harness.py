"""Text's test harness: tiny model shapes over the `token` embedding, and the checks the registry-wide test
(tests/test_registry.py) runs for the `text` dataset, the `text-sample` builder and `pack-text`. Merged with
the other modalities' by tests/harnesses.py."""

from __future__ import annotations

from modalzoo.registry import REGISTRIES
from tiny_models import D, H, V, enc, text_batch

# T5's stack (pre-norm RMSNorm, no biases, ReLU, bucketed relative bias, unscaled attention) and a batch run
# through a denoising target's transform, with sentinels 40..49 and UL2's mode tokens 37..39 in the vocab.
T5_BLOCK = {"norm": "rmsnorm", "norm_eps": 1e-6, "bias": False, "activation": "relu", "positions": "t5_relative",
            "attn_scale": 1.0}


def denoised_batch(kind: str):
    from types import SimpleNamespace

    import torch

    from modalzoo.datasets.fields import DataContext
    from modalzoo.model import build_model
    tok = SimpleNamespace(sentinel_ids=list(range(40, 50)), extra_special_ids={"[NLU]": 37, "[NLG]": 38, "[S2S]": 39},
                          pad_id=0, bos_id=2, eos_id=3)
    spec = SHAPES["t5_span" if kind == "span_corruption" else "ul2_prefix"][0]
    (fn,) = build_model({"model": spec}).batch_transforms(DataContext(tokenizer=tok))
    batch = text_batch(L=16, with_labels=False)
    batch["input_ids"][:, -1] = 3                                   # an eos closes the first (full) row
    return fn(batch, torch.Generator().manual_seed(0))

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
    "electra": (  # replaced-token detection: a narrower generator sharing the discriminator's tables
        {"streams": {"discriminator": {"embedding": {"name": "token", "vocab_size": V, "dim": 16, "output_dim": D,
                                                     "max_positions": 32, "type_vocab_size": 2, "norm": "layernorm"},
                                       "encoder": enc(prenorm=False, final_norm=False)},
                     "generator": {"embedding": {"name": "token", "vocab_size": V, "dim": 16, "output_dim": 8,
                                                 "max_positions": 32, "type_vocab_size": 2, "norm": "layernorm",
                                                 "shares": "streams.discriminator.embedding"},
                                   "encoder": enc(dim=8, heads=1, ffn_dim=16, prenorm=False, final_norm=False)}},
         "targets": {"electra": {"name": "electra"}}},
        lambda: text_batch()),
    "t5_span": (  # T5 v1.0: span corruption, the decoder reading the encoder's embedding table
        {"streams": {"text": {"embedding": {"name": "token", "vocab_size": V, "dim": D, "positions": "none"},
                              "encoder": enc(**T5_BLOCK),
                              "target_embedding": {"name": "token", "vocab_size": V, "dim": D, "positions": "none",
                                                   "shares": "streams.text.embedding"},
                              "decoder": {"name": "transformer", **enc(**T5_BLOCK), "mask": "causal",
                                          "cross_attention": True}}},
         "targets": {"t5": {"name": "span_corruption", "stream": "text"}}},
        lambda: denoised_batch("span_corruption")),
    "ul2_prefix": (  # UL2 on a decoder-only stream: [mode, input, targets] under a prefix-LM mask
        {"streams": {"text": {"embedding": {"name": "token", "vocab_size": V, "dim": D, "positions": "none"},
                              "encoder": enc(mask="prefix", positions="rope")}},
         "targets": {"ul2": {"name": "ul2", "stream": "text", "source": "encoder"}}},
        lambda: denoised_batch("ul2")),
}

COVERS = {  # which shape exercises each registered model component
    ("embedding", "token"): "bert", ("encoder", "transformer"): "bert", ("decoder", "transformer"): "t5",
    ("target_embedding", "token"): "t5", ("target", "mlm"): "bert", ("target", "clm"): "gpt",
    ("target", "electra"): "electra", ("target", "span_corruption"): "t5_span", ("target", "ul2"): "ul2_prefix",
}


def exercise_text_dataset(kind, name, fixtures):
    data = REGISTRIES[kind].build({"name": name, "path": str(fixtures["text_sample"]), "num_workers": 0,
                                   "seq_len": 32, "tokenizer": {"name": "wordpiece", "vocab_size": 500}})
    data.prepare(None)
    batch = next(iter(data.loader("train", 4, [], seed=0, train=True)))
    assert batch["input_ids"].shape == (4, 32)
    assert data.tokens_in(batch) > 0


def exercise_text_sample(kind, name, fixtures):
    out = fixtures["tmp_path"] / name
    info = REGISTRIES[kind].build({"name": name, "max_mb": 0.05, "docs_per_shard": 20}).build(out)
    assert sum(info["documents"].values()) > 0
    assert list((out / "train").glob("*.tar"))


def exercise_pack_text(packer, tmp_path):
    (tmp_path / "a.txt").write_text("one document\n\nanother one\n")
    assert packer.pack([tmp_path / "a.txt"], tmp_path / "out").startswith("packed 2 train / 0 validation")
    data = REGISTRIES["dataset"].build({"name": "text", "path": str(tmp_path / "out")})
    assert list(data.texts("train")) == ["one document", "another one"]


DATASETS = {"text": exercise_text_dataset}
SAMPLE_DATA = {"text-sample": exercise_text_sample}
PACKERS = {"pack-text": exercise_pack_text}
