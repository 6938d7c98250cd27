"""Text's test harness: tiny model shapes over the `token` embedding, and the checks the registry-wide test
(tests/test_registry.py) runs for the `text` dataset, the `text-sample` builder and `pack-text`. Merged with
the other modalities' by tests/harnesses.py."""

from __future__ import annotations

from modalzoo.registry import REGISTRIES
from tiny_models import D, H, V, enc, text_batch

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
}

COVERS = {  # which shape exercises each registered model component
    ("embedding", "token"): "bert", ("encoder", "transformer"): "bert", ("decoder", "transformer"): "t5",
    ("target_embedding", "token"): "t5", ("target", "mlm"): "bert", ("target", "clm"): "gpt",
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
