"""`modalzoo export` of a HuBERT run -> `HubertModel` + preprocessor_config.json (verified on reload), and
``init_from=hf:`` back from it (strict). The run is faked from the hubert_tiny recipe (config.yaml and a
checkpoint of perturbed weights, no training), as tests/hub/test_export.py does for the other mappings."""

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

import modalzoo
import modalzoo.modalities.audio.hub.hubert as hub
import modalzoo.modalities.audio.hubert  # noqa: F401  (registers the target)
import modalzoo.modalities.audio.waveform  # noqa: F401  (registers the embedding)
from modalzoo.errors import ModalzooError
from modalzoo.hub import architecture
from modalzoo.hub import export as export_mod
from modalzoo.hub.pretrained import import_hf
from modalzoo.training import checkpoint as ckpt
from tiny_models import perturbed

pytestmark = pytest.mark.usefixtures("one_thread")
SMALL = ["model.streams.audio.embedding.dim=32", "model.streams.audio.embedding.conv_dim=[16,16,16,16,16,16,16]",
         "model.streams.audio.embedding.pos_conv_kernel=16", "model.streams.audio.embedding.pos_conv_groups=4",
         "model.streams.audio.encoder.dim=32", "model.streams.audio.encoder.layers=2",
         "model.streams.audio.encoder.ffn_dim=64", "model.targets.hubert.final_dim=16"]


def fake_run(root: Path, extra=()) -> Path:
    run_dir = root / "run-hubert"
    cfg = modalzoo.load_recipe("hubert_tiny", [*SMALL, *extra, f"data.path={root / 'no-shards'}",
                                               f"run_dir={run_dir}"])
    run_dir.mkdir(parents=True)
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    model = perturbed(modalzoo.build_model(cfg), std=0.05, seed=1)
    ckpt.save_checkpoint(run_dir, 7, model, {"step": 7}, keep_last=1, meta={"recipe": "hubert_tiny"})
    return run_dir


def test_the_hubert_recipes_detect_hubert_and_nothing_else_does():
    for recipe in ("bert_mlm_tiny", "mae_vit_tiny", "clip_vit_tiny"):     # (all recipes: tests/modalities/text)
        found = architecture.find(modalzoo.load_recipe(recipe))
        assert found is None or found.name != "hubert", recipe
    assert architecture.find(modalzoo.load_recipe("hubert_tiny")).name == "hubert"
    assert architecture.find(modalzoo.load_recipe("hubert_base")).name == "hubert"


def test_export_loads_in_transformers_matches_and_imports_back(tmp_path):
    run_dir = fake_run(tmp_path)
    run = export_mod.load_run(run_dir)
    out = export_mod.export_run(run_dir, tmp_path / "hf", echo=lambda _: None)
    assert json.loads((out / "config.json").read_text())["model_type"] == "hubert"
    prep = json.loads((out / "preprocessor_config.json").read_text())
    assert prep["feature_extractor_type"] == "Wav2Vec2FeatureExtractor" and prep["sampling_rate"] == 16000
    assert prep["return_attention_mask"] is False                       # group-norm front-end: zero padding

    extractor = transformers.AutoFeatureExtractor.from_pretrained(out)
    hf = transformers.AutoModel.from_pretrained(out).eval()
    assert type(hf).__name__ == "HubertModel"
    assert not any("final_proj" in k or "label_emb" in k for k in hf.state_dict())   # the head is not exported
    wave = np.random.default_rng(0).standard_normal(12000).astype(np.float32) * 0.1
    values = extractor(wave, sampling_rate=16000, return_tensors="pt")["input_values"]
    assert torch.equal(values[0], torch.from_numpy(wave))             # do_normalize false: the zoo's input
    stream = run.model.streams.audio
    with torch.no_grad():
        zoo_last = stream.encoder(stream.embedding({"input_values": values})).x
        assert (zoo_last - hf(values).last_hidden_state).abs().max() <= 1e-4
    assert max(hub.compare_hidden(stream, hf, hub.waveform_batch()).values()) <= 1e-4

    # init_from=hf: every stream tensor comes back exactly; the head keeps the fresh model's values
    torch.manual_seed(123)
    fresh = perturbed(modalzoo.build_model(run.cfg), std=0.05, seed=2)
    head_before = fresh.targets.hubert.label_embeddings.detach().clone()
    import_hf(fresh, OmegaConf.to_container(run.cfg.model, resolve=True), str(out), echo=lambda _: None)
    original, state = run.model.state_dict(), fresh.state_dict()
    stream_keys = [k for k in original if k.startswith("streams.audio.")]
    assert stream_keys and all(torch.equal(state[k], original[k]) for k in stream_keys)
    assert torch.equal(fresh.targets.hubert.label_embeddings, head_before)

    # the card's snippet runs as written
    code = re.search(r"```python\n(.*?)```", (out / "README.md").read_text(), re.S).group(1)
    script = tmp_path / "snippet.py"
    script.write_text(code)
    runpy.run_path(str(script), run_name="__main__")


def test_init_from_another_shape_or_meaning_is_refused(tmp_path):
    out = export_mod.export_run(fake_run(tmp_path), tmp_path / "hf", echo=lambda _: None)
    for extra, message in ((["model.streams.audio.encoder.layers=3"], "missing encoder.layers.2"),
                           (["model.streams.audio.embedding.extractor_mode=layer"], "feat_extract_norm"),
                           (["model.streams.audio.encoder.dim=48", "model.streams.audio.embedding.dim=48"],
                            "another shape")):
        cfg = modalzoo.load_recipe("hubert_tiny", [*SMALL, *extra])
        model = modalzoo.build_model(cfg)
        with pytest.raises(ModalzooError, match=message):
            import_hf(model, OmegaConf.to_container(cfg.model, resolve=True), str(out),
                      data=export_mod.load_run(tmp_path / "run-hubert").data_ctx, echo=lambda _: None)
