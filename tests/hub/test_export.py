"""`modalzoo export` / `init_from=hf:`: per mapping, a tiny zoo model with random weights is exported, loaded
with the transformers Auto class, compared on the same inputs (outputs, tokenizer ids, pixels), and imported
back exactly. Runs are faked (a config.yaml, a tokenizer and a checkpoint of perturbed weights), so no
training is needed; one test goes through the CLI with a real training run."""

from __future__ import annotations

import json
import re
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from omegaconf import OmegaConf
from PIL import Image
from safetensors.torch import load_file, save_file

import modalzoo
from modalzoo import ModalzooError
from modalzoo.hub import export as export_mod
from modalzoo.hub.pretrained import import_hf
from modalzoo.modalities.text.fields import encode_texts
from modalzoo.modalities.vision.fields import decode_image
from modalzoo.registry import TOKENIZERS
from modalzoo.training import checkpoint as ckpt
from tiny_models import perturbed

SMALL_TEXT = {"dim": 32, "layers": 2, "heads": 2, "ffn_dim": 64}


def corpus() -> list[str]:
    """Real English from the standard library's docstrings, enough for a few hundred BPE/WordPiece tokens."""
    import collections
    import json as json_mod
    import os
    import pathlib
    return [m.__doc__ for m in (collections, json_mod, os, pathlib, re, torch.nn.Module) if m.__doc__] * 3


def stream_overrides(stream: str, emb: dict, enc: dict) -> list[str]:
    return ([f"model.streams.{stream}.embedding.{k}={v}" for k, v in emb.items()]
            + [f"model.streams.{stream}.encoder.{k}={v}" for k, v in enc.items()])


RECIPES = {
    "bert": ("bert_mlm_tiny", ["data.tokenizer.vocab_size=400", "data.seq_len=24",
                               *stream_overrides("text", {"vocab_size": 400, "dim": 32, "max_positions": 24},
                                                 SMALL_TEXT)]),
    "roberta": ("roberta_base_mlm", ["data.tokenizer.vocab_size=400", "data.seq_len=24",
                                     *stream_overrides("text", {"vocab_size": 400, "dim": 32, "max_positions": 24},
                                                       SMALL_TEXT)]),
    "clip": ("clip_vit_tiny", ["data.tokenizer.vocab_size=400", "data.seq_len=12", "data.image_size=16",
                               *stream_overrides("text", {"vocab_size": 400, "dim": 32, "max_positions": 12},
                                                 SMALL_TEXT),
                               *stream_overrides("image", {"image_size": 16, "dim": 32}, SMALL_TEXT),
                               "model.targets.clip.embed_dim=16"]),
    "vit_mae": ("mae_vit_tiny", ["data.image_size=16", "model.streams.image.embedding.image_size=16",
                                 "model.streams.image.target_embedding.grid=4"]),
}


def fake_run(root: Path, arch: str, extra=(), sharded: bool = False, edit=None) -> Path:
    """``edit``: a function of the resolved recipe (plain dict) returning the recipe to use instead."""
    recipe, overrides = RECIPES[arch]
    run_dir = root / f"run-{arch}"
    cfg = modalzoo.load_recipe(recipe, [*overrides, *extra, f"run_dir={run_dir}"])
    if edit is not None:
        cfg = OmegaConf.create(edit(OmegaConf.to_container(cfg, resolve=True)))
    run_dir.mkdir(parents=True)
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    if cfg.data.get("tokenizer"):
        TOKENIZERS.build(OmegaConf.to_container(cfg.data.tokenizer), "data.tokenizer").train(corpus()).save(
            run_dir / "tokenizer.json")
    model = modalzoo.build_model(cfg)
    perturbed(model, std=0.05, seed=1)
    if sharded:                      # a DCP folder as FSDP runs write it (single process: no process group)
        import torch.distributed.checkpoint as dcp
        path = ckpt.checkpoint_dir(run_dir) / f"{ckpt.PREFIX}{7:08d}"
        dcp.save({"model": model.state_dict()}, checkpoint_id=str(path))
        (path / "meta.json").write_text(json.dumps({"step": 7, "sharded": True}))
    else:
        ckpt.save_checkpoint(run_dir, 7, model, {"step": 7}, keep_last=1, meta={"recipe": recipe})
    return run_dir


def zoo_model(run_dir: Path):
    run = export_mod.load_run(run_dir)
    return run.model, run.cfg, run.data_ctx


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


def photos() -> list[Image.Image]:
    """Odd sizes and modes: the processor must do what the zoo's loader does for each."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8))
    grey = Image.fromarray(rng.integers(0, 256, (20, 16), dtype=np.uint8), "L")
    return [rgb, grey.convert("RGB")]


def zoo_pixels(images: list[Image.Image], prep) -> torch.Tensor:
    """The zoo's eval-time image path: encode, decode + resize + crop, scale, normalise."""
    import io
    out = []
    for img in images:
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        pixels = decode_image(buf.getvalue(), prep.get("image_size")).float() / 255
        mean, std = torch.tensor(prep.get("mean"))[:, None, None], torch.tensor(prep.get("std"))[:, None, None]
        out.append((pixels - mean) / std)
    return torch.stack(out)


def check_import_back(out: Path, cfg, original: dict[str, torch.Tensor], stream=None, exact_keys=None) -> None:
    """Import the export into a differently initialised zoo model: every mapped tensor comes back exactly."""
    torch.manual_seed(123)
    fresh = modalzoo.build_model(cfg)
    perturbed(fresh, std=0.05, seed=2)
    import_hf(fresh, OmegaConf.to_container(cfg.model, resolve=True), str(out), stream=stream, echo=lambda _: None)
    state = fresh.state_dict()
    keys = exact_keys if exact_keys is not None else list(original)
    assert keys
    different = [k for k in keys if not torch.equal(state[k], original[k])]
    assert not different, different[:5]


def run_card_snippet(out: Path, tmp_path: Path) -> str:
    """The usage snippet in README.md runs as written."""
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "license:" in card and "pipeline_tag:" in card
    code = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    script = tmp_path / "snippet.py"
    script.write_text(code)
    runpy.run_path(str(script), run_name="__main__")
    return card


def mlm_export_logits_diff(out: Path, zoo, batch: dict, model_class: str) -> float:
    """Max |logit difference| at real tokens between the zoo model and the export loaded by AutoModelForMaskedLM."""
    hf = transformers.AutoModelForMaskedLM.from_pretrained(out).eval()
    assert type(hf).__name__ == model_class
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        hidden = zoo.streams["text"](dict(batch))
        zoo_logits = zoo.targets["mlm"].logits(hidden.hidden.x[real], hidden)
        return max_diff(zoo_logits, hf(**batch).logits[real])


# ----------------------------------------------------------------------------------------------- per mapping

def test_bert_export_loads_in_transformers_and_imports_back(tmp_path, capsys):
    run_dir = fake_run(tmp_path, "bert")
    out = export_mod.export_run(run_dir, tmp_path / "export", echo=lambda _: None)
    zoo, cfg, prep = zoo_model(run_dir)
    tok = transformers.AutoTokenizer.from_pretrained(out)
    texts = ["Return the path of the file.", "", "x " * 40]
    for text in texts:
        ids, _ = prep.tokenizer.encode(text)
        want = [prep.tokenizer.bos_id, *ids[:22], prep.tokenizer.eos_id]
        assert tok(text, truncation=True)["input_ids"] == want
    assert (tok.pad_token_id, tok.mask_token_id) == (prep.tokenizer.pad_id, prep.tokenizer.mask_id)
    assert mlm_export_logits_diff(out, zoo, tok(texts[:2], padding=True, return_tensors="pt"),
                                  "BertForMaskedLM") <= 1e-4
    check_import_back(out, cfg, zoo.state_dict())
    card = run_card_snippet(out, tmp_path)
    assert "fill-mask" in card and "library_name: transformers" in card and "![loss curve]" not in card


def test_roberta_export_loads_in_transformers_and_imports_back(tmp_path):
    run_dir = fake_run(tmp_path, "roberta")
    out = export_mod.export_run(run_dir, tmp_path / "export", echo=lambda _: None)
    zoo, cfg, prep = zoo_model(run_dir)
    tok = transformers.AutoTokenizer.from_pretrained(out)
    batch = tok(["def f(x): return x", "Return the path."], padding=True, return_tensors="pt")
    for row, text in enumerate(["def f(x): return x", "Return the path."]):
        ids = [prep.tokenizer.bos_id, *prep.tokenizer.encode(text)[0], prep.tokenizer.eos_id]
        assert batch["input_ids"][row, :len(ids)].tolist() == ids
    assert mlm_export_logits_diff(out, zoo, batch, "RobertaForMaskedLM") <= 1e-4
    check_import_back(out, cfg, zoo.state_dict())
    run_card_snippet(out, tmp_path)


def test_clip_export_loads_in_transformers_and_imports_back(tmp_path):
    run_dir = fake_run(tmp_path, "clip")
    out = export_mod.export_run(run_dir, tmp_path / "export", echo=lambda _: None)
    zoo, cfg, prep = zoo_model(run_dir)
    processor = transformers.AutoProcessor.from_pretrained(out)
    prompts = ["a photo of the number seven.", "", "seven " * 30]
    images = photos()
    inputs = processor(text=prompts, images=images, return_tensors="pt", padding="max_length", truncation=True)
    want = encode_texts(prep.tokenizer, prompts, prep.get("seq_len"))
    assert torch.equal(inputs["input_ids"], want["input_ids"])
    assert torch.equal(inputs["attention_mask"].bool(), want["attention_mask"])
    assert max_diff(inputs["pixel_values"], zoo_pixels(images, prep)) <= 1e-5
    hf = transformers.AutoModel.from_pretrained(out).eval()
    assert type(hf).__name__ == "CLIPModel"
    con = zoo.targets["clip"]
    with torch.no_grad():
        text = con.features("text", zoo.streams["text"](dict(want)).hidden, "last")
        image = con.features("image", zoo.streams["image"]({"pixel_values": inputs["pixel_values"]}).hidden, "cls")
        out_hf = hf(**inputs)
    assert max_diff(text, out_hf.text_embeds) <= 1e-4
    assert max_diff(image, out_hf.image_embeds) <= 1e-4
    assert max_diff(con.logit_scale.exp() * image @ text.T, out_hf.logits_per_image) <= 1e-4
    check_import_back(out, cfg, zoo.state_dict())
    card = run_card_snippet(out, tmp_path)
    assert "zero-shot-image-classification" in card


def test_clip_export_names_what_blocks_it(tmp_path):
    run_dir = fake_run(tmp_path, "clip", ["model.streams.image.embedding.patch_bias=true"])   # CLIP has none
    with pytest.raises(ModalzooError, match=r"patch_bias=True \(needs False\).*--format modalzoo"):
        export_mod.export_run(run_dir, tmp_path / "export", echo=lambda _: None)
    assert not (tmp_path / "export").exists() and not (tmp_path / ".tmp-export").exists()


def test_mae_export_and_its_encoder_as_vit(tmp_path):
    run_dir = fake_run(tmp_path, "vit_mae")
    zoo, cfg, prep = zoo_model(run_dir)
    out = export_mod.export_run(run_dir, tmp_path / "mae", echo=lambda _: None)
    processor = transformers.AutoImageProcessor.from_pretrained(out)
    images = photos()
    pixels = processor(images, return_tensors="pt")["pixel_values"]
    assert max_diff(pixels, zoo_pixels(images, prep)) <= 1e-5
    hf = transformers.AutoModelForPreTraining.from_pretrained(out).eval()
    assert type(hf).__name__ == "ViTMAEForPreTraining"
    noise = torch.rand(2, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        hidden = zoo.streams["image"]({"pixel_values": pixels, "mae_noise": noise})
        zoo_logits = zoo.targets["mae"].reconstruct(hidden.decoded)
        hf_out = hf(pixel_values=pixels, noise=noise)
    assert max_diff(zoo_logits, hf_out.logits) <= 1e-4
    check_import_back(out, cfg, zoo.state_dict())
    run_card_snippet(out, tmp_path)

    # The encoder alone, as ViTModel (the fixed sin-cos table becomes ViT's position table).
    vit_out = export_mod.export_run(run_dir, tmp_path / "vit", arch="vit", echo=lambda _: None)
    vit = transformers.AutoModel.from_pretrained(vit_out, add_pooling_layer=False).eval()
    assert type(vit).__name__ == "ViTModel"
    stream = zoo.streams["image"]
    stream.embedding.apply_mask = False
    with torch.no_grad():
        zoo_hidden = stream.encoder(stream.embedding({"pixel_values": pixels})).x
    assert max_diff(zoo_hidden, vit(pixel_values=pixels).last_hidden_state) <= 1e-4
    encoder_keys = [k for k in zoo.state_dict() if k.startswith(("streams.image.embedding.",
                                                                  "streams.image.encoder."))]
    check_import_back(vit_out, cfg, zoo.state_dict(), exact_keys=encoder_keys)
    run_card_snippet(vit_out, tmp_path)


def text_pair(recipe: dict) -> dict:
    """The CLIP recipe with its image tower replaced by a second text tower (docstrings and code, say)."""
    streams = recipe["model"]["streams"]
    image = streams.pop("image")
    streams["code"] = {"embedding": {**streams["text"]["embedding"], "prefix": "code_"},
                       "encoder": {**image["encoder"], "mask": "bidirectional"}}
    recipe["model"]["targets"]["clip"].update(streams=["text", "code"], pooling=["last", "mean"])
    return recipe


def test_a_contrastive_model_over_two_text_streams_is_not_clip(tmp_path):
    from modalzoo.hub.card import _pipeline_of
    run_dir = fake_run(tmp_path, "clip", edit=text_pair)
    with pytest.raises(ModalzooError, match=r"no transformers architecture matches .*'code': 'token'.*clip needs "
                                            r"one contrastive target over one `patch` \(image\) and one `token`"):
        export_mod.export_run(run_dir, tmp_path / "hf", echo=lambda _: None)
    with pytest.raises(ModalzooError, match=r"one image \(patch\) and one text \(token\) stream; got "
                                            r"\{'text': 'token', 'code': 'token'\}"):
        export_mod.export_run(run_dir, tmp_path / "hf", arch="clip", echo=lambda _: None)
    assert not (tmp_path / "hf").exists()
    out = export_mod.export_run(run_dir, tmp_path / "zoo", format="modalzoo", echo=lambda _: None)
    card = (out / "README.md").read_text()
    assert "pipeline_tag: feature-extraction" in card and "zero-shot-image-classification" not in card
    clip = OmegaConf.load(fake_run(tmp_path / "clip", "clip") / "config.yaml")
    assert _pipeline_of(clip) == "zero-shot-image-classification"      # image + text: CLIP's tag


# ----------------------------------------------------------------------------------------------- modalzoo format

def test_modalzoo_format_round_trip_for_a_model_transformers_cannot_express(tmp_path):
    run_dir = fake_run(tmp_path, "bert", ["model.streams.text.encoder.norm=rmsnorm"])
    with pytest.raises(ModalzooError, match=r"norm='rmsnorm' \(needs 'layernorm'\)"):
        export_mod.export_run(run_dir, tmp_path / "hf", echo=lambda _: None)
    out = export_mod.export_run(run_dir, tmp_path / "zoo", format="modalzoo", echo=lambda _: None)
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= {p.name for p in out.iterdir()}
    assert not any(p.suffix in (".bin", ".pt", ".pkl") for p in out.iterdir())
    zoo, _, prep = zoo_model(run_dir)
    loaded = modalzoo.from_pretrained(out)
    assert loaded.state_dict().keys() == zoo.state_dict().keys()
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in zoo.state_dict().items())
    ids = torch.tensor([[prep.tokenizer.bos_id, 40, 41, prep.tokenizer.eos_id]])
    with torch.no_grad():
        assert torch.equal(loaded.streams["text"]({"input_ids": ids}).hidden.x,
                           zoo.streams["text"]({"input_ids": ids}).hidden.x)
    card = run_card_snippet(out, tmp_path)
    assert "library_name: modalzoo" in card
    with pytest.raises(ModalzooError, match="transformers export"):
        modalzoo.from_pretrained(export_mod.export_run(fake_run(tmp_path / "b", "bert"), tmp_path / "hf2",
                                                       echo=lambda _: None))


def test_sharded_checkpoint_exports(tmp_path):
    run_dir = fake_run(tmp_path, "bert", sharded=True)
    assert ckpt.is_sharded(ckpt.latest_checkpoint(run_dir))
    out = export_mod.export_run(run_dir, tmp_path / "export", echo=lambda _: None)
    hf = transformers.AutoModelForMaskedLM.from_pretrained(out)
    zoo, _, _ = zoo_model(run_dir)
    assert torch.equal(hf.bert.embeddings.word_embeddings.weight, zoo.streams["text"].embedding.word.weight)


# ----------------------------------------------------------------------------------------------- push

def test_push_sends_the_verified_folder(tmp_path, monkeypatch):
    import huggingface_hub
    calls = []

    class FakeApi:
        def create_repo(self, repo_id, **kw):
            calls.append(("create_repo", repo_id, kw))
            return huggingface_hub.RepoUrl(f"https://huggingface.co/{repo_id}")

        def upload_folder(self, folder_path, repo_id, **kw):
            calls.append(("upload_folder", repo_id, sorted(p.name for p in Path(folder_path).iterdir()), kw))

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    run_dir = fake_run(tmp_path, "bert")
    out = export_mod.export_run(run_dir, tmp_path / "export", push="me/tiny-bert", private=True, echo=lambda _: None)
    (create, repo, create_kw), (upload, repo2, files, upload_kw) = calls
    assert (create, repo, upload, repo2) == ("create_repo", "me/tiny-bert", "upload_folder", "me/tiny-bert")
    assert create_kw["private"] is True and create_kw["exist_ok"] is True
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= set(files)
    assert "*.safetensors" in upload_kw["allow_patterns"] and "*.bin" not in upload_kw["allow_patterns"]
    assert 'from_pretrained("me/tiny-bert")' in (out / "README.md").read_text()


def test_push_without_network_keeps_the_folder(tmp_path, monkeypatch):
    import huggingface_hub

    class OfflineApi:
        def create_repo(self, repo_id, **kw):
            raise ConnectionError("Failed to resolve 'huggingface.co'")

    monkeypatch.setattr(huggingface_hub, "HfApi", OfflineApi)
    run_dir = fake_run(tmp_path, "bert")
    with pytest.raises(ModalzooError, match=r"push to me/x failed .*the export is intact at"):
        export_mod.export_run(run_dir, tmp_path / "export", push="me/x", echo=lambda _: None)
    assert transformers.AutoModelForMaskedLM.from_pretrained(tmp_path / "export") is not None


# ----------------------------------------------------------------------------------------------- bad input

def test_partial_checkpoint_names_what_is_missing(tmp_path):
    run_dir = fake_run(tmp_path, "bert")
    file = ckpt.latest_checkpoint(run_dir) / "model.safetensors"
    state = load_file(str(file))
    del state["streams.text.encoder.blocks.1.mlp.fc2.weight"]
    save_file(state, str(file))
    with pytest.raises(ModalzooError, match=r"missing \['streams.text.encoder.blocks.1.mlp.fc2.weight'\]"):
        export_mod.export_run(run_dir, tmp_path / "export", echo=lambda _: None)
    assert not (tmp_path / "export").exists()


def test_import_is_strict_about_checkpoint_tensors(tmp_path):
    run_dir = fake_run(tmp_path, "bert")
    out = export_mod.export_run(run_dir, tmp_path / "export", echo=lambda _: None)
    _, cfg, _ = zoo_model(run_dir)
    spec = OmegaConf.to_container(cfg.model, resolve=True)
    weights = out / "model.safetensors"
    state = load_file(str(weights))
    state["bert.pooler.dense.weight"] = torch.zeros(32, 32)
    save_file(state, str(weights), metadata={"format": "pt"})
    model = modalzoo.build_model(cfg)
    with pytest.raises(ModalzooError, match=r"unmapped .*bert\.pooler\.dense\.weight"):
        import_hf(model, spec, str(out), echo=lambda _: None)
    import_hf(model, spec, str(out), ignore=["bert.pooler"], echo=lambda _: None)    # dropped on purpose
    del state["bert.pooler.dense.weight"], state["bert.encoder.layer.0.output.dense.weight"]
    save_file(state, str(weights), metadata={"format": "pt"})
    with pytest.raises(ModalzooError, match=r"missing from the checkpoint: .*layer\.0\.output\.dense\.weight"):
        import_hf(model, spec, str(out), echo=lambda _: None)
    weights.unlink()
    torch.save(state, out / "pytorch_model.bin")
    with pytest.raises(ModalzooError, match="never loads pickled"):
        import_hf(model, spec, str(out), echo=lambda _: None)


def test_import_refuses_another_shape_or_architecture(tmp_path):
    out = export_mod.export_run(fake_run(tmp_path, "bert"), tmp_path / "export", echo=lambda _: None)
    wider = modalzoo.load_recipe("bert_mlm_tiny", RECIPES["bert"][1] + ["model.streams.text.embedding.dim=48",
                                                                        "model.streams.text.encoder.dim=48"])
    with pytest.raises(ModalzooError, match=r"another shape .*hidden_size': 32"):
        import_hf(modalzoo.build_model(wider), OmegaConf.to_container(wider.model), str(out), echo=lambda _: None)
    mae = modalzoo.load_recipe("mae_vit_tiny")
    with pytest.raises(ModalzooError, match="BertForMaskedLM checkpoint but the recipe's model is a 'vit_mae'"):
        import_hf(modalzoo.build_model(mae), OmegaConf.to_container(mae.model), str(out), echo=lambda _: None)


# ----------------------------------------------------------------------------------------------- the CLI

def test_cli_export_then_train_from_it(text_sample, tmp_path):
    from conftest import run_cli, tiny_overrides
    run_dir = fake_run(tmp_path, "bert")
    out = tmp_path / "export"
    done = run_cli("export", str(run_dir), "--format", "hf", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "verified against transformers.BertForMaskedLM" in done.stdout
    again = run_cli("export", str(run_dir), "--out", str(out))
    assert again.returncode == 2 and "--overwrite" in again.stderr

    shape = {
        "trainer.max_steps": 2, "trainer.eval_every": 2, "trainer.checkpoint_every": 2,
        "data.tokenizer.vocab_size": 400,
        "model.streams.text.embedding.vocab_size": 400, "model.streams.text.embedding.dim": 32,
        "model.streams.text.embedding.max_positions": 24, "data.seq_len": 24, "model.streams.text.encoder.dim": 32,
        "model.streams.text.encoder.ffn_dim": 64, "model.streams.text.encoder.heads": 2}
    own_tokenizer = tiny_overrides(text_sample, tmp_path / "own-tokenizer", **shape)
    wrong = run_cli("train", "bert_mlm_tiny", *own_tokenizer, f"init_from=hf:{out}")
    assert wrong.returncode == 2 and "data.tokenizer.path=" in wrong.stderr
    exported_tokenizer = tiny_overrides(text_sample, tmp_path / "continued", **shape,
                                        **{"data.tokenizer.path": out / "tokenizer.json"})
    trained = run_cli("train", "bert_mlm_tiny", *exported_tokenizer, f"init_from=hf:{out}")
    assert trained.returncode == 0, trained.stderr
    assert "init_from: loaded" in trained.stderr


def test_hub_repos_download_json_and_safetensors_only(tmp_path, monkeypatch):
    import huggingface_hub
    run_dir = fake_run(tmp_path, "bert")
    zoo_export = export_mod.export_run(run_dir, tmp_path / "zoo", format="modalzoo", echo=lambda _: None)
    hf_export = export_mod.export_run(run_dir, tmp_path / "hf", echo=lambda _: None)
    asked = []

    def fake_download(repo_id, allow_patterns=None, **kw):
        asked.append((repo_id, allow_patterns))
        return str({"me/zoo": zoo_export, "me/hf": hf_export}[repo_id])

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    model = modalzoo.from_pretrained("hf-hub:me/zoo")
    _, cfg, _ = zoo_model(run_dir)
    fresh = modalzoo.build_model(cfg)
    import_hf(fresh, OmegaConf.to_container(cfg.model, resolve=True), "me/hf", echo=lambda _: None)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in model.state_dict().items())
    assert [repo for repo, _ in asked] == ["me/zoo", "me/hf"]
    pickles = (".bin", ".pt", ".pth", ".pkl", ".ckpt")
    assert all("*.safetensors" in p and not any(x.endswith(pickles) for x in p) for _, p in asked)
