"""`modalzoo.embed` / `modalzoo embed` on tiny runs trained a few steps: a CLIP on the digits (image files and
texts, the same numbers as the zero-shot report's `embed` on the loader's batch, an export's vectors equal to
the run's, the CLI's file), a CLAP on the tone clips (audio files), an MAE (no contrastive target: the mean of
the whole-image encoder output), a BERT (a field that batches itself) and each user error."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import modalzoo
from conftest import run_cli, tiny_overrides
from modalzoo import ModalzooError
from modalzoo.embed import Embedder, Text
from modalzoo.evaluation import zero_shot
from modalzoo.evaluation.run import LoadedRun
from modalzoo.hub.export import export_run
from modalzoo.pretrain_tasks.contrastive import pool

pytestmark = pytest.mark.usefixtures("one_thread")

SHORT = {"trainer.max_steps": 2, "trainer.batch_size": 16, "trainer.log_every": 2, "trainer.eval_every": 2,
         "trainer.eval_batches": 1, "trainer.checkpoint_every": 2, "trainer.warmup_steps": 1,
         "trainer.progress": False, "data.num_workers": 0}
IMAGE = {"data.image_size": 16, "model.streams.image.embedding.image_size": 16,
         "model.streams.image.embedding.dim": 32, "model.streams.image.encoder.dim": 32,
         "model.streams.image.encoder.ffn_dim": 64, "model.streams.image.encoder.layers": 1}
TEXT = {"data.tokenizer.vocab_size": 300, "data.seq_len": 12, "model.streams.text.embedding.vocab_size": 300,
        "model.streams.text.embedding.dim": 32, "model.streams.text.embedding.max_positions": 12,
        "model.streams.text.encoder.dim": 32, "model.streams.text.encoder.ffn_dim": 64,
        "model.streams.text.encoder.layers": 1}
AUDIO = {"data.val_split": "validation", "data.max_seconds": 1.0,
         "model.streams.audio.embedding.num_mel_bins": 32, "model.streams.audio.embedding.max_frames": 100,
         "model.streams.audio.embedding.dim": 32, "model.streams.audio.encoder.dim": 32,
         "model.streams.audio.encoder.ffn_dim": 64, "model.streams.audio.encoder.layers": 1}


def train(recipe: str, data: Path, run_dir: Path, **overrides) -> Path:
    options = {**SHORT, **overrides, "data.path": str(data), "run_dir": str(run_dir)}
    torch.manual_seed(0)
    return modalzoo.train(modalzoo.load_recipe(recipe, [f"{k}={v}" for k, v in options.items()]))


def shard_files(data: Path, split: str, ext: str, out: Path, count: int) -> list[Path]:
    """The first ``count`` samples' ``ext`` members of ``split``'s first shard, as files (what the unshuffled
    validation loader reads first)."""
    out.mkdir(parents=True, exist_ok=True)
    files = []
    with tarfile.open(sorted((data / split).glob("*.tar"))[0]) as tar:
        for member in tar:
            if member.name.endswith("." + ext) and len(files) < count:
                files.append(out / Path(member.name).name)
                files[-1].write_bytes(tar.extractfile(member).read())
    assert len(files) == count
    return files


def first_val_batch(run_dir: Path, size: int) -> tuple[LoadedRun, dict]:
    run = LoadedRun(run_dir)
    return run, next(iter(run.data.loader("val", size, [], seed=0, train=False)))


@pytest.fixture(scope="module")
def clip_run(digits, tmp_path_factory):
    return train("clip_vit_tiny", digits, tmp_path_factory.mktemp("runs") / "clip", **IMAGE, **TEXT,
                 **{"model.targets.clip.embed_dim": 16})


@pytest.fixture(scope="module")
def digit_files(digits, tmp_path_factory):
    return shard_files(digits, "test", "png", tmp_path_factory.mktemp("digit-files"), 6)


def test_image_files_embed_as_the_zero_shot_report_embeds_their_shard_batch(clip_run, digit_files):
    run, batch = first_val_batch(clip_run, len(digit_files))
    expected = zero_shot.embed(run.model, "clip", "image", batch, "cpu")
    got = modalzoo.embed(clip_run, "image", digit_files, batch_size=len(digit_files))
    assert got.shape == (6, 16)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    # batches of another size hold other rows together: the same vectors up to float rounding
    torch.testing.assert_close(modalzoo.embed(clip_run, "image", [str(f) for f in digit_files], batch_size=4),
                               expected, rtol=1e-4, atol=1e-5)


def test_texts_embed_as_zero_shot_class_prompts(clip_run):
    texts = ["a photo of the digit 3.", "seven", ""]
    got = modalzoo.embed(clip_run, "text", texts)
    assert got.shape == (3, 16)
    torch.testing.assert_close(got.norm(dim=-1), torch.ones(3))
    run = LoadedRun(clip_run)
    with torch.no_grad():
        prompt = zero_shot.class_embeddings(run, "clip", "text", ["3"], ["a photo of the digit {}."])
    torch.testing.assert_close(got[0], prompt[0], rtol=0, atol=1e-6)
    assert not torch.allclose(got[0], got[1])


def test_an_export_embeds_like_its_run(clip_run, digit_files, tmp_path):
    out = export_run(clip_run, tmp_path / "export", format="modalzoo", echo=lambda _: None)
    inputs = [*digit_files[:3], "a photo of the digit 3."]
    for stream, items in (("image", digit_files[:3]), ("text", inputs[3:])):
        torch.testing.assert_close(modalzoo.embed(out, stream, items), modalzoo.embed(clip_run, stream, items),
                                   rtol=0, atol=0)


def test_cli_writes_rows_in_input_order_with_their_metadata(clip_run, digit_files, tmp_path):
    out = tmp_path / "vectors" / "digits.safetensors"
    done = run_cli("embed", str(clip_run), "--stream", "image", str(digit_files[0]), str(digit_files[1]),
                   "--out", str(out), "--batch-size", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 embeddings of stream 'image' (target 'clip'), 16 dims" in done.stdout
    with safe_open(str(out), "pt") as f:
        vectors, meta = f.get_tensor("embeddings"), f.metadata()
    torch.testing.assert_close(vectors, modalzoo.embed(clip_run, "image", digit_files[:2]), rtol=0, atol=1e-6)
    assert json.loads(meta["inputs"]) == [str(digit_files[0]), str(digit_files[1])]
    assert (meta["stream"], meta["target"]) == ("image", "clip")
    assert not list(out.parent.glob(".tmp-*"))

    texts = tmp_path / "texts.safetensors"
    done = run_cli("embed", str(clip_run), "--stream", "text", "--text", "seven", "--text", str(digit_files[0]),
                   "--out", str(texts))
    assert done.returncode == 0, done.stderr[-3000:]
    with safe_open(str(texts), "pt") as f:
        vectors, meta = f.get_tensor("embeddings"), f.metadata()
    assert json.loads(meta["kinds"]) == ["text", "text"]        # --text is a text even where such a file exists
    expected = modalzoo.embed(clip_run, "text", ["seven", Text(str(digit_files[0]))])
    torch.testing.assert_close(vectors, expected, rtol=0, atol=1e-6)

    failed = run_cli("embed", str(clip_run), "--stream", "imag", str(digit_files[0]), "--out", str(out))
    assert failed.returncode == 2 and "did you mean 'image'" in failed.stderr


def test_errors_name_what_is_wrong(clip_run, digit_files, tmp_path):
    with pytest.raises(ModalzooError, match=r"unknown stream 'imag'; did you mean 'image'"):
        modalzoo.embed(clip_run, "imag", digit_files[:1])
    song = tmp_path / "song.mp3"
    song.write_bytes(b"ID3")
    with pytest.raises(ModalzooError, match=r"no field of this run reads \.mp3 files; it reads \.jpg, \.jpeg, "
                                            r"\.png files and texts"):
        modalzoo.embed(clip_run, "image", [digit_files[0], song])
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(ModalzooError, match=r"cannot read .*broken\.png as image"):
        modalzoo.embed(clip_run, "image", [digit_files[0], broken])
    with pytest.raises(ModalzooError, match=r"no such file: .*missing\.png"):
        modalzoo.embed(clip_run, "image", [str(tmp_path / "missing.png")])
    with pytest.raises(ModalzooError, match=r"stream 'image' cannot read the text 'seven' .*pixel_values.*stream "
                                            r"'image' reads \.jpg, \.jpeg, \.png files"):
        modalzoo.embed(clip_run, "image", ["seven"])
    with pytest.raises(ModalzooError, match=r"stream 'text' cannot read .*\.png .* reads texts"):
        modalzoo.embed(clip_run, "text", digit_files[:1])
    with pytest.raises(ModalzooError, match=r"unknown target 'clp'; did you mean 'clip'"):
        modalzoo.embed(clip_run, "text", ["seven"], target="clp")
    with pytest.raises(ModalzooError, match=r"does not exist"):
        modalzoo.embed(tmp_path / "no-run", "text", ["seven"])


def test_several_projections_of_a_stream_need_a_target_unless_shared(clip_run):
    embedder = Embedder(clip_run)
    model = embedder.model
    second = type(model.targets["clip"])(model.targets["clip"].cfg, model.streams)
    model.targets["other"] = second
    with pytest.raises(ModalzooError, match=r"projected into different spaces by the targets clip, other: "
                                            r"choose one with target="):
        embedder.embed("text", ["seven"])
    vectors, chosen = embedder.embed("text", ["seven"], target="other")
    assert chosen == "other" and vectors.shape == (1, 16)
    second.projections["text"] = model.targets["clip"].projections["text"]     # one module: one space
    assert embedder.embed("text", ["seven"])[1] == "clip"


def test_audio_files_embed_as_the_zero_shot_report_embeds_their_shard_batch(audio_clips, tmp_path):
    import modalzoo.modalities.audio.fbank  # noqa: F401  (registering, as tests/modalities/audio/test_clap.py)
    run_dir = train("clap_tiny", audio_clips, tmp_path / "clap", **AUDIO, **TEXT, **{"data.captions": True,
                                                                                    "model.targets.clap.embed_dim": 16})
    clips = shard_files(audio_clips, "validation", "flac", tmp_path / "clips", 5)
    run, batch = first_val_batch(run_dir, len(clips))
    expected = zero_shot.embed(run.model, "clap", "audio", batch, "cpu")
    torch.testing.assert_close(modalzoo.embed(run_dir, "audio", clips), expected, rtol=0, atol=1e-6)
    with pytest.raises(ModalzooError, match=r"stream 'audio' cannot read the text .* reads \.flac, \.wav, \.ogg"):
        modalzoo.embed(run_dir, "audio", ["a low tone"])


def test_without_a_contrastive_target_the_mean_of_the_whole_input(digits, digit_files, tmp_path):
    run_dir = train("mae_vit_tiny", digits, tmp_path / "mae", **IMAGE,
                    **{"model.streams.image.target_embedding.encoder_dim": 32,
                       "model.streams.image.target_embedding.grid": 4})
    run, batch = first_val_batch(run_dir, 3)
    stream = run.model.streams["image"]
    assert stream.embedding.apply_mask
    vectors, chosen = Embedder(run_dir).embed("image", digit_files[:3])
    assert chosen is None and stream.embedding.apply_mask        # masking is back on for training
    stream.embedding.apply_mask = False
    with torch.no_grad():
        expected = pool(stream.encoder(stream.embedding(batch)), "mean")
    torch.testing.assert_close(vectors, expected, rtol=0, atol=1e-6)


def test_a_field_that_batches_itself_embeds_each_text_alone(text_sample, tmp_path):
    run_dir = tmp_path / "bert"
    overrides = tiny_overrides(text_sample, run_dir, **{"trainer.max_steps": 2, "trainer.eval_every": 2,
                                                        "trainer.checkpoint_every": 2})
    modalzoo.train(modalzoo.load_recipe("bert_mlm_tiny", overrides))
    texts = ["Return the path.", "Open the file and read it. " * 40]           # the second is longer than seq_len
    vectors = modalzoo.embed(run_dir, "text", texts)
    run = LoadedRun(run_dir)
    tok = run.data_ctx.tokenizer
    stream = run.model.streams["text"]
    with torch.no_grad():
        for row, text in zip(vectors, texts):
            ids = [tok.bos_id, *tok.encode(text)[0][:62], tok.eos_id]
            batch = {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.bool)}
            torch.testing.assert_close(row, pool(stream.encoder(stream.embedding(batch)), "mean")[0],
                                       rtol=1e-5, atol=1e-5)
