"""Code's test harness: a tiny GraphCodeBERT shape (`code_dataflow`: code tokens, data-flow nodes and a
per-sample graph mask). Merged with the other modalities' by tests/harnesses.py."""

from __future__ import annotations

from tiny_models import D, V, code_batch, enc

SHAPES = {
    "graphcodebert": (  # an embedding with several inputs and a per-sample graph mask
        {"streams": {"code": {"embedding": {"name": "code_dataflow", "vocab_size": V, "dim": D,
                                            "max_positions": 32},
                              "encoder": enc(prenorm=False, final_norm=False)}},
         "targets": {"mlm": {"name": "mlm", "stream": "code"}}},
        lambda: code_batch()),
}

COVERS = {("embedding", "code_dataflow"): "graphcodebert"}
