"""A tiny CLAP (fbank-patch audio tower, causal text tower, contrastive target) trained a few steps on the
synthetic tone clips: its eval report (zero-shot with the data's templates, retrieval recall, confusion PNG),
its exports (the audio tower as ASTModel, the whole model in the zoo format) and the refusal of ClapModel."""

from __future__ import annotations

import json

import pytest
import torch

import modalzoo
import modalzoo.modalities.audio.fbank  # noqa: F401  (registering, until audio/__init__ imports it)
import modalzoo.modalities.audio.hub.ast  # noqa: F401
from modalzoo import ModalzooError
from modalzoo.evaluation import run as eval_run
from modalzoo.hub.export import export_run
from modalzoo.modalities.audio.clap_reports import REPORTS, audio_text_streams
from shapes_clap import audio_batch

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"data.val_split": "validation", "data.num_workers": 0, "data.tokenizer.vocab_size": 300,
        "data.seq_len": 16, "data.max_seconds": 1.0,
        "model.streams.audio.embedding.num_mel_bins": 32, "model.streams.audio.embedding.max_frames": 100,
        "model.streams.audio.embedding.dim": 32, "model.streams.audio.encoder.dim": 32,
        "model.streams.audio.encoder.ffn_dim": 64, "model.streams.audio.encoder.layers": 1,
        "model.streams.text.embedding.vocab_size": 300, "model.streams.text.embedding.dim": 32,
        "model.streams.text.embedding.max_positions": 16, "model.streams.text.encoder.dim": 32,
        "model.streams.text.encoder.ffn_dim": 64, "model.streams.text.encoder.layers": 1,
        "model.targets.clap.embed_dim": 16, "trainer.batch_size": 12, "trainer.max_steps": 40,
        "trainer.lr": 3.0e-3, "trainer.warmup_steps": 4, "trainer.log_every": 20, "trainer.eval_every": 40,
        "trainer.eval_batches": 2, "trainer.checkpoint_every": 40, "trainer.progress": False}


@pytest.fixture(scope="module")
def clap_run(audio_clips, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "clap_tiny"
    overrides = {**TINY, "data.path": str(audio_clips), "run_dir": str(run_dir)}
    cfg = modalzoo.load_recipe("clap_tiny", [f"{k}={v}" for k, v in overrides.items()])
    torch.manual_seed(0)
    return modalzoo.train(cfg)


def test_eval_reports_zero_shot_retrieval_and_a_confusion_png(clap_run, monkeypatch):
    monkeypatch.setattr(eval_run, "all_reports", lambda: list(REPORTS))   # until audio/reports.py lists them
    result = eval_run.evaluate_run(clap_run, batches=5, echo=lambda _: None)
    saved = json.loads((clap_run / "eval.json").read_text())
    print({k: v for k, v in saved.items() if "recall" in k or "zero_shot" in k})
    assert saved["zero_shot_chance"] == pytest.approx(1 / 3)
    assert 0.0 <= saved["zero_shot_top1"] <= 1.0
    for way in ("audio_to_text", "text_to_audio"):
        r1, r5 = saved[f"{way}_recall@1"], saved[f"{way}_recall@5"]
        assert 0.0 <= r1 <= r5 <= 1.0
    assert saved["retrieval_items"] == 24                        # the whole validation split
    assert (clap_run / "zero_shot_confusion.png").stat().st_size > 1000
    assert result["clap"]["summary"]["confusion_matrix_png"].endswith("zero_shot_confusion.png")


def test_the_report_applies_to_an_audio_text_contrastive_target_only(clap_run):
    run = eval_run.LoadedRun(clap_run)
    assert audio_text_streams(run, "clap") == ("audio", "text")
    run.model.targets["clap"].cfg.streams = ["text", "text"]
    assert audio_text_streams(run, "clap") is None


def test_clap_model_is_refused_with_the_reason(clap_run, tmp_path):
    for arch in (None, "clap"):                         # what `modalzoo export RUN --format hf [--arch clap]` runs
        with pytest.raises(ModalzooError, match=r"ClapModel.*HTSAT, a Swin transformer.*--arch ast"):
            export_run(clap_run, tmp_path / "hf", format="hf", arch=arch, echo=lambda _: None)
    assert not (tmp_path / "hf").exists()


def test_audio_tower_exports_to_ast_and_the_whole_clap_to_the_zoo_format(clap_run, tmp_path):
    lines = []
    out = export_run(clap_run, tmp_path / "ast", format="hf", arch="ast", stream="audio", echo=lines.append)
    assert "verified against transformers.ASTModel" in lines[0]
    assert json.loads((out / "config.json").read_text())["model_type"] == "audio-spectrogram-transformer"
    assert json.loads((out / "preprocessor_config.json").read_text())["max_length"] == 100

    zoo_dir = export_run(clap_run, tmp_path / "zoo", format="modalzoo", echo=lambda _: None)
    model = modalzoo.from_pretrained(zoo_dir)
    trained = eval_run.LoadedRun(clap_run).model.eval()
    batch = {**audio_batch(), "input_ids": torch.tensor([[1, 5, 6, 2], [1, 7, 2, 0], [1, 8, 9, 2]]),
             "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 1, 1]])}
    with torch.no_grad():
        assert torch.equal(model(batch).loss, trained(batch).loss)


def test_init_from_a_clap_model_checkpoint_is_refused_with_the_reason(clap_run, tmp_path):
    from transformers import ClapConfig, ClapModel

    from modalzoo.hub.pretrained import import_hf
    text = {"vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
            "intermediate_size": 32, "max_position_embeddings": 20}
    audio = {"hidden_size": 16, "depths": [1, 1], "num_attention_heads": [1, 1], "patch_embeds_hidden_size": 16,
             "spec_size": 32, "window_size": 4, "num_mel_bins": 16, "patch_stride": (4, 4), "patch_size": 4}
    ClapModel(ClapConfig(text_config=text, audio_config=audio, projection_dim=8)).save_pretrained(tmp_path)
    run = eval_run.LoadedRun(clap_run)
    with pytest.raises(ModalzooError, match=r"HTSAT, a Swin transformer"):
        import_hf(run.model, modalzoo.registry.to_plain(run.cfg.model), str(tmp_path), echo=lambda _: None)
