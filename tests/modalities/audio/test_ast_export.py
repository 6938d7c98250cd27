"""A fbank_patch + pre-norm Transformer stream maps onto `transformers.ASTModel` exactly, its fbank settings
onto `ASTFeatureExtractor`'s preprocessor_config.json, and what AST cannot express is refused by name."""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace

import pytest
import torch
import transformers

from modalzoo import ModalzooError
from modalzoo.datasets.fields import DataContext
from modalzoo.hub import architecture
from modalzoo.hub.pretrained import import_hf
from modalzoo.modalities.audio.hub.ast import (
    ast_feature_config,
    hf_config_kwargs,
    hf_to_zoo,
    write_ast_features,
    zoo_to_hf,
)
from modalzoo.model import build_model
from shapes_clap import FBANK, SHAPES
from tiny_models import perturbed

pytestmark = pytest.mark.usefixtures("one_thread")

# AST's published options at tiny size: overlapping 8x8 patches, LayerNorm eps 1e-12, GELU.
AUDIO = {"embedding": dict(FBANK, frequency_stride=4, time_stride=4),
         "encoder": {"name": "transformer", "layers": 2, "dim": 32, "heads": 4, "ffn_dim": 64, "norm_eps": 1e-12}}
MODEL = {"streams": {"audio": AUDIO, "text": SHAPES["clap"][0]["streams"]["text"]},
         "targets": {"clap": dict(SHAPES["clap"][0]["targets"]["clap"])}}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A perturbed zoo CLAP, its audio tower written as ASTModel + preprocessor config and loaded back."""
    torch.manual_seed(0)
    zoo = perturbed(build_model({"model": MODEL}))
    arch = architecture.get("ast")
    kwargs = arch.hf_config(MODEL, "audio", DataContext(sample_rate=16000))
    hf = architecture.hf_model(arch, kwargs)
    hf.load_state_dict(arch.to_hf(zoo, MODEL, "audio", kwargs), strict=True)
    out = tmp_path_factory.mktemp("ast")
    hf.save_pretrained(out)
    assert [p.name for p in arch.model_files(MODEL, "audio", out)] == ["preprocessor_config.json"]  # as export does
    loaded = transformers.AutoModel.from_pretrained(out, use_safetensors=True).eval()
    return zoo, loaded, kwargs, out


def test_config_is_ast_s(exported):
    _, loaded, kwargs, _ = exported
    assert type(loaded).__name__ == "ASTModel"
    assert {k: kwargs[k] for k in ("patch_size", "frequency_stride", "time_stride", "max_length", "num_mel_bins",
                                   "layer_norm_eps", "hidden_act")} == \
        {"patch_size": 8, "frequency_stride": 4, "time_stride": 4, "max_length": 40, "num_mel_bins": 16,
         "layer_norm_eps": 1e-12, "hidden_act": "gelu"}
    # ASTEmbeddings.get_shape: (16 - 8) // 4 + 1 = 3 frequency x (40 - 8) // 4 + 1 = 9 time patches, + 2 tokens
    assert loaded.embeddings.position_embeddings.shape == (1, 29, 32)


def test_raw_audio_through_the_written_extractor_and_model_matches_the_zoo(exported):
    zoo, loaded, _, out = exported
    diffs = architecture.get("ast").compare(zoo, loaded, MODEL, "audio", DataContext(sample_rate=16000))
    print(f"ast export: {diffs}")
    assert set(diffs) == {"feature_extractor", "last_hidden_state", "pooler_output"}
    assert max(diffs.values()) <= 1e-4
    written = json.loads((out / "preprocessor_config.json").read_text())
    assert written["feature_extractor_type"] == "ASTFeatureExtractor"
    assert {k: written[k] for k in ("sampling_rate", "num_mel_bins", "max_length", "mean", "std", "do_normalize")} \
        == {"sampling_rate": 16000, "num_mel_bins": 16, "max_length": 40, "mean": -6.0, "std": 3.0,
            "do_normalize": True}
    extractor = transformers.AutoFeatureExtractor.from_pretrained(out)
    assert type(extractor).__name__ == "ASTFeatureExtractor"


def test_round_trip_is_exact_and_keys_are_checked(exported):
    zoo, loaded, _, _ = exported
    state = {k: v for k, v in zoo.state_dict().items() if k.startswith("streams.audio.")}
    hf_state = zoo_to_hf(state, stream="audio")
    assert set(hf_state) == set(loaded.state_dict())
    back = hf_to_zoo(hf_state, stream="audio")
    assert set(back) == set(state) and all(torch.equal(back[k], state[k]) for k in state)
    hf_state.pop("embeddings.distillation_token")
    with pytest.raises(ModalzooError, match=r"missing embeddings\.distillation_token"):
        hf_to_zoo(hf_state)


def test_init_from_an_ast_checkpoint_fills_the_audio_stream(exported):
    zoo, _, _, out = exported
    fresh = build_model({"model": MODEL})
    import_hf(fresh, MODEL, str(out), stream="audio", echo=lambda _: None)
    own = zoo.state_dict()
    assert all(torch.equal(v, own[k]) for k, v in fresh.state_dict().items() if k.startswith("streams.audio."))


@pytest.mark.parametrize("change, match", [
    ({"embedding": {"prefix_tokens": 1}}, r"embedding\.prefix_tokens=1 \(needs 2\)"),
    ({"encoder": {"prenorm": False}}, r"encoder\.prenorm=False \(needs True\)"),
    ({"encoder": {"positions": "rope"}}, r"encoder\.positions='rope'"),
    ({"embedding": {"dropout": 0.1}}, r"embedding\.dropout=0\.1"),
])
def test_what_ast_lacks_is_named(change, match):
    spec = copy.deepcopy(AUDIO)
    for slot, options in change.items():
        spec[slot].update(options)
    with pytest.raises(ModalzooError, match=match):
        hf_config_kwargs(spec)


def test_a_sample_rate_or_waveform_normalisation_the_extractor_lacks_is_refused():
    arch = architecture.get("ast")
    with pytest.raises(ModalzooError, match="sample_rate=16000 but the run's data is 8000 Hz"):
        arch.hf_config(MODEL, "audio", DataContext(sample_rate=8000))
    normalised = DataContext({"audio": SimpleNamespace(kind="audio", normalize=True)},
                             {"audio": SimpleNamespace(sample_rate=16000)})
    with pytest.raises(ModalzooError, match="data.normalize=true"):
        arch.hf_config(MODEL, "audio", normalised)
    with pytest.raises(ModalzooError, match="ast export needs 'fbank_patch'"):
        arch.hf_config(MODEL, "text", DataContext())


def test_feature_config_writes_what_the_extractor_reads(tmp_path):
    path = write_ast_features(tmp_path, AUDIO)
    extractor = transformers.ASTFeatureExtractor.from_pretrained(tmp_path)
    config = ast_feature_config(AUDIO)
    assert path.name == "preprocessor_config.json"
    assert all(getattr(extractor, k) == v for k, v in config.items() if k != "feature_extractor_type")
