"""The `mixture` dataset: draws a pure function of (seed, batch index), per-source positions, config errors with
paths and closest names, one shared tokenizer, per-batch target routing in the model, the contrastive
``shares`` option, and a tiny image + audio + text binding run that resumes bitwise exactly."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import modalzoo
from conftest import bind_overrides
from modalzoo.datasets.mixture import BLOCK, draws, positions
from modalzoo.errors import ConfigError

pytestmark = pytest.mark.timeout(600)


def test_draws_are_a_pure_function_of_the_batch_index():
    w = np.array([3.0, 1.0, 0.0])
    whole = draws(5, w, 0, 3 * BLOCK)
    for start, stop in [(0, 10), (BLOCK - 7, BLOCK + 9), (2 * BLOCK + 1, 3 * BLOCK)]:
        assert np.array_equal(draws(5, w, start, stop), whole[start:stop])
    assert not np.array_equal(draws(6, w, 0, 1000), whole[:1000])            # the seed matters
    share = np.bincount(whole, minlength=3) / len(whole)
    assert abs(share[0] - 0.75) < 0.02 and share[2] == 0                    # weights; a zero weight is never drawn
    assert np.array_equal(positions(5, w, 2 * BLOCK + 17), np.bincount(whole[:2 * BLOCK + 17], minlength=3))


def recipe(digits, audio_clips, run_dir, **extra):
    return modalzoo.load_recipe("bind_tiny", bind_overrides(digits, audio_clips, run_dir, **extra))


def records(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_a_binding_run_trains_both_targets_and_resumes_exactly(digits, audio_clips, tmp_path):
    straight = modalzoo.train(recipe(digits, audio_clips, tmp_path / "straight"))
    train = [r for r in records(straight) if r["split"] == "train"]
    fed = [{k.split("/")[0] for k in r if k.endswith("/loss")} for r in train]
    assert all(len(f) == 1 for f in fed) and {"image_text", "audio_text"} == set().union(*fed)  # one source a step
    val = [r for r in records(straight) if r["split"] == "val"][-1]
    assert "image_text/loss" in val and "audio_text/loss" in val                # validation reads every source
    assert (straight / "tokenizer.json").exists()           # one text vocabulary for both caption sets

    # The shared text projection is stored once, under its owner.
    weights = load_file(sorted((straight / "checkpoints").glob("step_*"))[-1] / "model.safetensors")
    assert "targets.image_text.projections.text.weight" in weights
    assert not any(k.startswith("targets.audio_text.projections.text") for k in weights)

    # Resume from step 3 of a copy: the same weights as the uninterrupted run, bit for bit.
    resumed_dir = tmp_path / "resumed"
    shutil.copytree(straight, resumed_dir)
    for path in (resumed_dir / "checkpoints").glob("step_*"):
        if path.name != "step_00000003":
            shutil.rmtree(path)
    (resumed_dir / "DONE").unlink()
    modalzoo.train(recipe(digits, audio_clips, resumed_dir, **{"trainer.resume": "auto"}))
    state = torch.load(resumed_dir / "checkpoints" / "step_00000003" / "trainer_state.pt", weights_only=True)
    assert sum(state["data_position"].values()) == state["batches_seen"] == 3
    a = load_file(straight / "checkpoints" / "step_00000006" / "model.safetensors")
    b = load_file(resumed_dir / "checkpoints" / "step_00000006" / "model.safetensors")
    assert [k for k in a if not torch.equal(a[k], b[k])] == []


def test_a_changed_mixture_resumes_each_source_where_it_stopped(digits, audio_clips, tmp_path, capsys):
    run_dir = tmp_path / "r"
    modalzoo.train(recipe(digits, audio_clips, run_dir, **{"trainer.max_steps": 3}))
    before = torch.load(run_dir / "checkpoints" / "step_00000003" / "trainer_state.pt",
                        weights_only=True)["data_position"]
    modalzoo.train(recipe(digits, audio_clips, run_dir, **{"trainer.max_steps": 6, "trainer.resume": "auto",
                                                            "data.sources.words.weight": 0.0001}))
    assert "the data mixture changed" in capsys.readouterr().err
    after = torch.load(run_dir / "checkpoints" / "step_00000006" / "trainer_state.pt", weights_only=True)
    # The new draws follow the new weights from where each source stopped (audio is almost never drawn now).
    assert after["data_position"]["digits"] >= before["digits"] + 2
    assert after["data_position"]["words"] == before["words"]


@pytest.mark.parametrize("key,value,message", [
    ("data.sources.words.wieght", 1, "did you mean 'data.sources.words.weight'"),
    ("data.sources.words.data.max_second", 1.0, "data.sources.words.data.max_seconds"),
    ("data.sources.words.weight", -1, "must be a number >= 0"),
    ("data.sources.words.targets", "[]", "must list the model targets"),
])
def test_bad_sources_are_named(digits, audio_clips, tmp_path, key, value, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        recipe(digits, audio_clips, tmp_path, **{key: value})


def test_targets_the_sources_do_not_match_are_refused(digits, audio_clips, tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'audio_text'"):
        modalzoo.train(recipe(digits, audio_clips, tmp_path / "a", **{"data.sources.words.targets": "[audio_txt]"}))
    with pytest.raises(ConfigError, match=r"\['audio_text'\] are fed by no data source"):
        modalzoo.train(recipe(digits, audio_clips, tmp_path / "b", **{"data.sources.words.weight": 0}))


def test_text_fields_of_a_mixture_need_one_tokenizer(digits, audio_clips, tmp_path):
    with pytest.raises(modalzoo.ModalzooError, match=r"share one tokenizer.*differ in \['vocab_size'\]"):
        modalzoo.train(recipe(digits, audio_clips, tmp_path, **{"data.sources.words.data.tokenizer.vocab_size": 400}))


# -- the model: routing and the shared projection --------------------------------------------------------

def bind_model(**audio_text):
    tiny = {"layers": 1, "dim": 16, "heads": 2, "ffn_dim": 32}
    streams = {
        "image": {"embedding": {"name": "patch", "image_size": 8, "patch_size": 4, "dim": 16, "cls_token": True},
                  "encoder": {"name": "transformer", **tiny}},
        "audio": {"embedding": {"name": "fbank_patch", "num_mel_bins": 32, "max_frames": 48, "patch_size": 16,
                                "dim": 16}, "encoder": {"name": "transformer", **tiny}},
        "text": {"embedding": {"name": "token", "vocab_size": 50, "dim": 16, "max_positions": 8},
                 "encoder": {"name": "transformer", **tiny}}}
    targets = {"image_text": {"name": "contrastive", "streams": ["image", "text"], "pooling": ["cls", "mean"],
                              "embed_dim": 8},
               "audio_text": {"name": "contrastive", "streams": ["audio", "text"], "pooling": ["mean", "mean"],
                              "embed_dim": 8, "shares": "image_text", **audio_text}}
    return modalzoo.build_model({"model": {"streams": streams, "targets": targets}})


def audio_text_batch():
    g = torch.Generator().manual_seed(0)
    return {"input_values": torch.randn(4, 8000, generator=g), "audio_lengths": torch.full((4,), 8000),
            "input_ids": torch.randint(0, 50, (4, 8), generator=g),
            "attention_mask": torch.ones(4, 8, dtype=torch.bool),
            "_targets": ("audio_text",)}


def test_a_batch_runs_only_its_targets_and_their_streams():
    model = bind_model()
    out = model(audio_text_batch())            # no pixel_values: the image stream must not run
    assert set(out.metrics) == {"audio_text/loss", "audio_text/accuracy", "audio_text/logit_scale"}
    out.loss.backward()
    assert all(p.grad is None for p in model.streams.image.parameters())
    shared = model.targets.image_text.projections.text.weight
    assert shared.grad is not None and shared.grad.abs().sum() > 0            # audio-text trains the shared head
    assert model.targets.audio_text.projection("text") is model.targets.image_text.projections.text
    with pytest.raises(ConfigError, match="did you mean 'audio_text'"):
        model({**audio_text_batch(), "_targets": ("audio_txt",)})


@pytest.mark.parametrize("option,message", [
    ({"shares": "image_txt"}, "did you mean 'image_text'"),
    ({"embed_dim": 4}, "a shared projection needs one embed_dim"),
    ({"shares": "audio_text"}, "names no other contrastive target"),
])
def test_shares_errors_are_clear(option, message):
    with pytest.raises(ConfigError, match=message):
        bind_model(**option)


def test_tilde_overrides_remove_a_source_with_its_tower_and_target(digits, audio_clips, tmp_path):
    """The comparison runs of the README: bind_tiny less its audio (a CLIP of the same towers)."""
    removed = ["~data.sources.words", "~model.streams.audio", "~model.targets.audio_text"]
    cfg = modalzoo.load_recipe("bind_tiny", [*bind_overrides(digits, audio_clips, tmp_path / "clip"), *removed])
    assert list(cfg.data.sources) == ["digits"] and list(cfg.model.targets) == ["image_text"]
    with pytest.raises(ConfigError, match="is not key=value"):
        modalzoo.load_recipe("bind_tiny", ["data.sources.words"])
