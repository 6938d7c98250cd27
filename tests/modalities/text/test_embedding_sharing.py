"""`shares`: a token embedding that reads another's tables (T5's decoder input, ELECTRA's generator) holds
no copy and no alias, trains the one table from both sides, checkpoints once; `output_dim` projects."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from modalzoo import ModalzooError, build_model
from modalzoo.errors import ConfigError
from tiny_models import D, H, V, enc, text_batch


def seq2seq(shares="streams.text.embedding", **target_embedding):
    te = {"name": "token", "vocab_size": V, "dim": D, "positions": "none", "shares": shares, **target_embedding}
    return {"streams": {"text": {"embedding": {"name": "token", "vocab_size": V, "dim": D, "positions": "none"},
                                 "encoder": enc(),
                                 "target_embedding": te,
                                 "decoder": {"name": "transformer", "layers": 1, "dim": D, "heads": H, "ffn_dim": 64}}},
            "targets": {"lm": {"name": "clm", "stream": "text", "source": "decoder"}}}


def seq2seq_batch():
    src, tgt = text_batch(with_labels=False), text_batch(L=7, seed=1, with_labels=False)
    return {**src, **{f"decoder_{k}": v for k, v in tgt.items()}, "decoder_labels": tgt["input_ids"]}


def test_a_shared_table_is_stored_once_and_trained_from_both_sides(tmp_path):
    torch.manual_seed(0)
    model = build_model({"model": seq2seq()})
    stream = model.streams["text"]
    state = model.state_dict()
    assert "streams.text.embedding.word.weight" in state
    assert not [k for k in state if k.startswith("streams.text.target_embedding.")]
    assert stream.target_embedding.output_weight is stream.embedding.word.weight
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "m.safetensors")   # no shared storage
    model(seq2seq_batch()).loss.backward()
    grad = stream.embedding.word.weight.grad
    decoder_only = seq2seq_batch()["decoder_input_ids"].unique()
    encoder_only = seq2seq_batch()["input_ids"].unique()
    assert grad is not None and grad[decoder_only].abs().sum() > 0 and grad[encoder_only].abs().sum() > 0
    # a reloaded model shares again (the reference is rebuilt, not stored)
    again = build_model({"model": seq2seq()})
    again.load_state_dict(load_file(tmp_path / "m.safetensors"))
    assert torch.equal(again.streams["text"].target_embedding.output_weight, stream.embedding.word.weight)


def test_the_sharer_follows_a_deep_copy():
    import copy
    model = build_model({"model": seq2seq()})
    twin = copy.deepcopy(model)
    assert twin.streams["text"].target_embedding.tables is twin.streams["text"].embedding


def test_a_typo_in_the_path_names_the_closest_module():
    with pytest.raises(ConfigError, match=r"did you mean 'streams\.text\.embedding'"):
        build_model({"model": seq2seq(shares="streams.text.embeding")})


def test_different_table_options_are_refused_by_name():
    with pytest.raises(ModalzooError, match=r"vocab_size \(60 vs 50\)"):
        build_model({"model": seq2seq(vocab_size=60)})


def test_output_dim_projects_to_the_encoder_width():
    spec = {"streams": {"text": {"embedding": {"name": "token", "vocab_size": V, "dim": 16, "output_dim": D},
                                 "encoder": enc()}},
            "targets": {"lm": {"name": "clm", "stream": "text"}}}
    model = build_model({"model": spec})
    tokens = model.streams["text"].embedding(text_batch(with_labels=False))
    assert tokens.x.shape[-1] == D and model.streams["text"].embedding.out_dim == D
