"""Exports of a binding run (a `mixture` of digits and tone clips; image, audio and text towers): the zoo format
keeps every tower and embeds as the run does, `--target image_text` is a verified CLIPModel with only the
digits source's files, the audio tower alone is an ASTModel, and a target that borrows its text projection
exports with a copy of it."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from test_embed import shard_files

import modalzoo
from conftest import bind_overrides, write_audio_clips
from modalzoo import ModalzooError
from modalzoo.evaluation.run import evaluate_run
from modalzoo.hub.export import export_run

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def bind_clips(tmp_path_factory):
    """The tone clips, their 3 classes named as three of the digits' (so the emergent report applies)."""
    clips = write_audio_clips(tmp_path_factory.mktemp("data") / "clips")
    (clips / "classes.json").write_text(json.dumps({"classes": ["zero", "one", "two"], "templates": ["{}"]}))
    return clips


@pytest.fixture(scope="module")
def bind_run(digits, bind_clips, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "bind"
    torch.manual_seed(0)
    no_dropout = {"model.streams.image.encoder.dropout": 0.0, "model.streams.text.encoder.dropout": 0.0}  # CLIPModel's
    return modalzoo.train(modalzoo.load_recipe("bind_tiny", bind_overrides(digits, bind_clips, run_dir,
                                                                           **no_dropout)))


def test_eval_reports_each_target_on_its_source_and_the_emergent_retrieval(bind_run):
    result = evaluate_run(bind_run, batches=5, echo=lambda line: None)
    saved = json.loads((bind_run / "eval.json").read_text())
    assert saved["emergent_audio_to_image_top1"] == result["emergent_audio_to_image_top1"]
    assert 0 <= saved["emergent_audio_to_image_top1"] <= 1 and 0 < saved["emergent_chance"] < 1
    # a number both targets report is named by target at the top level, never overwritten
    assert "zero_shot_top1" not in saved
    assert saved["image_text/zero_shot_chance"] == pytest.approx(0.1)       # 10 digits
    assert saved["audio_text/zero_shot_chance"] == pytest.approx(1 / 3)     # 3 tones
    assert (bind_run / "zero_shot_confusion-image_text.png").exists()
    assert (bind_run / "zero_shot_confusion-audio_text.png").exists()
    assert (bind_run / "emergent_audio_to_image.png").exists()


def test_the_zoo_format_keeps_every_tower_and_embeds_as_the_run(bind_run, bind_clips, digits, tmp_path):
    out = export_run(bind_run, tmp_path / "zoo", format="modalzoo")
    # the image processor and the audio feature extractor both are preprocessor_config.json: one per source
    assert not (out / "preprocessor_config.json").exists() and (out / "tokenizer.json").exists()
    assert "ImageProcessor" in json.loads((out / "digits" / "preprocessor_config.json").read_text())[
        "image_processor_type"]
    assert "sampling_rate" in json.loads((out / "words" / "preprocessor_config.json").read_text())
    assert "a mixture of digits: `image_text` data" in (out / "README.md").read_text()
    loaded = modalzoo.from_pretrained(out)
    assert set(loaded.streams) == {"image", "audio", "text"} and set(loaded.targets) == {"image_text", "audio_text"}
    clips = shard_files(bind_clips, "validation", "flac", tmp_path / "clips", 4)
    images = shard_files(digits, "test", "png", tmp_path / "images", 4)
    for stream, inputs in (("audio", clips), ("image", images), ("text", ["someone saying three."])):
        torch.testing.assert_close(modalzoo.embed(out, stream, inputs), modalzoo.embed(bind_run, stream, inputs),
                                   rtol=0, atol=0)
    # text has one projection (shared) and one pooling in both targets: one space, no target to choose
    both = [modalzoo.embed(bind_run, "text", ["a photo of the number 3."], target=t)
            for t in ("image_text", "audio_text")]
    assert torch.equal(both[0], both[1])


def test_the_image_text_target_exports_as_clip_with_its_sources_files(bind_run, tmp_path):
    lines: list[str] = []
    out = export_run(bind_run, tmp_path / "clip", format="hf", target="image_text", echo=lines.append)
    assert any(line.startswith("verified against transformers.CLIPModel") for line in lines)
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["CLIPModel"]
    assert (out / "preprocessor_config.json").exists() and (out / "tokenizer.json").exists()
    preprocessor = json.loads((out / "preprocessor_config.json").read_text())
    assert "ImageProcessor" in preprocessor["image_processor_type"]          # the digits source's, not audio's
    assert not any("audio" in k for k in load_file(out / "model.safetensors"))
    figures = sorted(p.name for p in out.glob("*.png"))
    assert "zero_shot_confusion-image_text.png" in figures                 # the eval test ran first
    assert not any("audio_text" in f for f in figures)                     # the left-out target's figures

    from transformers import CLIPModel
    assert type(CLIPModel.from_pretrained(out)).__name__ == "CLIPModel"


def test_the_audio_tower_exports_as_ast(bind_run, tmp_path):
    lines: list[str] = []
    out = export_run(bind_run, tmp_path / "ast", format="hf", arch="ast", stream="audio", echo=lines.append)
    assert any(line.startswith("verified against transformers.ASTModel") for line in lines)
    assert json.loads((out / "config.json").read_text())["architectures"] == ["ASTModel"]


def test_a_sharing_target_exports_with_a_copy_of_the_projection_it_borrows(bind_run, tmp_path):
    out = export_run(bind_run, tmp_path / "audio_text", format="modalzoo", target="audio_text")
    loaded = modalzoo.from_pretrained(out)
    assert set(loaded.streams) == {"audio", "text"} and set(loaded.targets) == {"audio_text"}
    run = modalzoo.from_pretrained(export_run(bind_run, tmp_path / "all", format="modalzoo"))
    torch.testing.assert_close(loaded.targets["audio_text"].projections["text"].weight,
                               run.targets["image_text"].projections["text"].weight, rtol=0, atol=0)
    assert json.loads((out / "config.json").read_text())["data"]["name"] == "audio"     # the source's data


def test_an_unknown_target_names_the_closest(bind_run, tmp_path):
    with pytest.raises(ModalzooError, match="did you mean 'image_text'"):
        export_run(bind_run, tmp_path / "x", format="hf", target="imagetext")
    assert not (tmp_path / "x").exists()
