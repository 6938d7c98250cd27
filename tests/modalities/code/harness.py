"""Code's test harness: a tiny GraphCodeBERT shape (`code_dataflow`: code tokens, data-flow nodes and a
per-sample graph mask) on synthetic batches, one on real laid-out functions with MLM + data_flow + identifier
tagging, and the `code` dataset's checks. Merged with the other modalities' by tests/harnesses.py."""

from __future__ import annotations

import torch

from conftest import sibling
from modalzoo.modalities.code.embedding import CodeTokens
from modalzoo.modalities.code.layout import collate, lay_out
from modalzoo.modalities.code.objectives import DataFlowConfig, DataFlowMasking
from modalzoo.pretrain_tasks.mlm import MLMConfig, MLMMasking
from modalzoo.registry import REGISTRIES
from tiny_models import D, V, code_batch, enc

code_data = sibling(__file__, "code_data")


def pretrain_batch(combine: str = "sum") -> dict:
    tok = code_data.tokenizer()
    batch = collate([lay_out(s, tok, 96, 16, 16) for s in code_data.samples()], tok.pad_id)
    g = torch.Generator().manual_seed(0)
    batch = MLMMasking(MLMConfig(mask_prob=0.3), tok.mask_id, tok.vocab_size, tok.special_ids, CodeTokens())(batch, g)
    return DataFlowMasking(DataFlowConfig(combine=combine))(batch, g)


CODE_EMBED = {"name": "code_dataflow", "vocab_size": 400, "dim": D, "max_positions": 98}

SHAPES = {
    "graphcodebert": (  # an embedding with several inputs and a per-sample graph mask
        {"streams": {"code": {"embedding": {"name": "code_dataflow", "vocab_size": V, "dim": D,
                                            "max_positions": 32},
                              "encoder": enc(prenorm=False, final_norm=False)}},
         "targets": {"mlm": {"name": "mlm", "stream": "code"}}},
        lambda: code_batch()),
    "graphcodebert_full": (  # real functions laid out: MLM + edge prediction + node alignment + identifier tags
        {"streams": {"code": {"embedding": CODE_EMBED, "encoder": enc(prenorm=False, final_norm=False)}},
         "targets": {"mlm": {"name": "mlm", "stream": "code"},
                     "data_flow": {"name": "data_flow", "stream": "code", "combine": "sum"},
                     "tags": {"name": "identifier_tagging", "stream": "code"}}},
        pretrain_batch),
}

COVERS = {("embedding", "code_dataflow"): "graphcodebert", ("target", "data_flow"): "graphcodebert_full",
          ("target", "identifier_tagging"): "graphcodebert_full"}


def exercise_code_dataset(kind, name, fixtures):
    path = code_data.write(fixtures["tmp_path"] / "code", extra={"train": [b"{not json", b'{"lang": "python"}']})
    data = REGISTRIES[kind].build({"name": name, "path": str(path), "seq_len": 96, "max_nodes": 16,
                                   "comment_len": 16, "num_workers": 0,
                                   "tokenizer": {"name": "bytelevel_bpe", "vocab_size": 400, "min_frequency": 1}})
    data.prepare(None)
    batch = next(iter(data.loader("train", 8, [], seed=0, train=True)))
    assert data.throughput_unit == "tokens" and batch["input_ids"].shape[0] == 8
    assert batch["attn_mask"].shape[1:] == (batch["input_ids"].shape[1],) * 2
    every = list(data.loader("train", 42, [], seed=0, train=False))
    assert sum(b["input_ids"].shape[0] for b in every) == 40 and sum(int(b["_skipped"]) for b in every) == 2


DATASETS = {"code": exercise_code_dataset}


def exercise_code_sample(kind, name, fixtures):
    """The builder on a one-file stdlib and a one-package site-packages (the real walk is test_corpus.py's)."""
    import json

    from modalzoo.modalities.code import corpus
    tmp = fixtures["tmp_path"]
    for root in ("std", "site/pkg"):
        (tmp / root).mkdir(parents=True)
    (tmp / "std" / "mod.py").write_text(code_data.SOURCE)
    # other bodies and other docstrings: a copy of a test function or of a test docstring is dropped from train
    (tmp / "site" / "pkg" / "mod.py").write_text(code_data.SOURCE.replace('"""', '"""In the package: ').replace(
        "acc", "sum_so_far").replace("out", "result").replace("words", "pieces").replace("x = ", "y = ")
        .replace("return x", "return y").replace('"""In the package: \n', '"""\n'))
    saved = corpus.stdlib_root, corpus.site_roots
    corpus.stdlib_root, corpus.site_roots = (lambda: tmp / "std"), (lambda: [tmp / "site"])
    try:
        REGISTRIES[kind].build({"name": name, "workers": 1}).build(tmp / "out")
    finally:
        corpus.stdlib_root, corpus.site_roots = saved
    info = json.loads((tmp / "out" / "info.json").read_text())
    assert info["functions"]["test"] == 4 and info["functions"]["train"] + info["functions"]["validation"] == 4


def exercise_pack_code(packer, tmp_path):
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "good.py").write_text(code_data.SOURCE)
    (tmp_path / "repo" / "bad.py").write_text("def broken(:\n")
    summary = packer.pack([tmp_path / "repo"], tmp_path / "out")
    assert "packed 4 functions" in summary and "syntax" in summary, summary


SAMPLE_DATA = {"code-sample": exercise_code_sample}
PACKERS = {"pack-code": exercise_pack_code}
