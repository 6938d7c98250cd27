"""The zoo's patch embedding + Transformer stream computes what `transformers.ViTModel` computes (ViT-B/16),
through `modalzoo.modalities.vision.hub.vit`."""

from __future__ import annotations

import copy

import pytest
import torch
import transformers

from modalzoo import ModalzooError
from modalzoo.modalities.vision.hub.vit import hf_config_kwargs, hf_to_zoo, zoo_to_hf
from modalzoo.model import Stream, import_components
from tiny_models import perturbed

VIT_B16 = {  # the zoo spec of ViT-B/16 (google/vit-base-patch16-224-in21k's shape)
    "embedding": {"name": "patch", "image_size": 224, "patch_size": 16, "dim": 768, "positions": "learned",
                  "cls_token": True},
    "encoder": {"name": "transformer", "layers": 12, "dim": 768, "heads": 12, "ffn_dim": 3072, "prenorm": True,
                "final_norm": True, "norm_eps": 1e-12, "activation": "gelu"},
}


@pytest.fixture(scope="module")
def vit_pair():
    import_components()
    kwargs = hf_config_kwargs(VIT_B16)
    hf = perturbed(transformers.ViTModel(transformers.ViTConfig(**kwargs), add_pooling_layer=False))
    zoo = Stream(VIT_B16, "model.streams.image").eval()
    zoo.load_state_dict(hf_to_zoo(hf.state_dict(), stream=None), strict=True)
    return zoo, hf, kwargs


def test_vit_b16_config_is_the_published_one(vit_pair):
    _, _, kwargs = vit_pair
    published = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
                 "hidden_act": "gelu", "layer_norm_eps": 1e-12, "image_size": 224, "patch_size": 16,
                 "num_channels": 3, "qkv_bias": True}   # google/vit-base-patch16-224-in21k's config.json
    assert {k: kwargs[k] for k in published} == published


def test_vit_b16_hidden_states_match_transformers(vit_pair):
    zoo, hf, _ = vit_pair
    pixels = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        zoo_out = zoo({"pixel_values": pixels}).hidden.x
        hf_out = hf(pixel_values=pixels).last_hidden_state
    assert zoo_out.shape == hf_out.shape == (2, 197, 768)
    diff = (zoo_out - hf_out).abs().max().item()
    print(f"vit-b/16: max |last_hidden_state diff| = {diff:.3g}")
    assert diff <= 1e-4


def test_round_trip_is_exact(vit_pair):
    zoo, hf, _ = vit_pair
    zoo_state = zoo.state_dict()
    hf_state = zoo_to_hf(zoo_state, stream=None)
    assert set(hf_state) == set(hf.state_dict())
    hf.load_state_dict(hf_state, strict=True)
    back = hf_to_zoo(hf.state_dict(), stream=None)
    assert set(back) == set(zoo_state)
    assert all(torch.equal(back[k], zoo_state[k]) for k in zoo_state)
    # inside a PretrainModel the same tensors live under streams.<stream>.
    named = hf_to_zoo(hf.state_dict(), stream="pixels")
    assert set(named) == {f"streams.pixels.{k}" for k in zoo_state}
    assert set(zoo_to_hf(named, stream="pixels")) == set(hf_state)


def test_missing_and_unmapped_keys_are_named(vit_pair):
    zoo, hf, _ = vit_pair
    hf_state = dict(hf.state_dict())
    gone = hf_state.pop("layers.11.attention.k_proj.bias")
    with pytest.raises(ModalzooError, match=r"missing layers\.11\.attention\.k_proj\.bias"):
        hf_to_zoo(hf_state)
    hf_state["layers.11.attention.k_proj.bias"] = gone
    hf_state["pooler.dense.weight"] = torch.zeros(2, 2)       # ViTModel(add_pooling_layer=True)
    with pytest.raises(ModalzooError, match=r"unmapped pooler\.dense\.weight"):
        hf_to_zoo(hf_state)

    zoo_state = dict(zoo.state_dict())
    zoo_state["embedding.norm.weight"] = torch.ones(768)       # CLIP's ln_pre, which ViT lacks
    with pytest.raises(ModalzooError, match=r"unmapped embedding\.norm\.weight"):
        zoo_to_hf(zoo_state, stream=None)
    del zoo_state["embedding.norm.weight"], zoo_state["encoder.norm.bias"]
    with pytest.raises(ModalzooError, match=r"missing encoder\.norm\.bias"):
        zoo_to_hf(zoo_state, stream=None)


@pytest.mark.parametrize("slot, key, value", [
    ("embedding", "positions", "sincos2d"),
    ("embedding", "norm", "layernorm"),
    ("embedding", "patch_bias", False),
    ("embedding", "mask_ratio", 0.75),
    ("embedding", "cls_token", False),
    ("encoder", "prenorm", False),
    ("encoder", "activation", "swiglu"),
    ("encoder", "norm", "rmsnorm"),
    ("encoder", "positions", "rope"),
    ("encoder", "bias", False),
])
def test_config_vit_cannot_express_is_named(slot, key, value):
    spec = copy.deepcopy(VIT_B16)
    spec[slot][key] = value
    with pytest.raises(ModalzooError, match=rf"vit cannot express .*{slot}\.{key}="):
        hf_config_kwargs({"model": {"streams": {"image": spec}}})


def test_a_decoder_is_refused():
    spec = {**VIT_B16, "decoder": {"name": "transformer", "cross_attention": False}}
    with pytest.raises(ModalzooError, match=r"cannot express model\.streams\.image\.decoder"):
        hf_config_kwargs(spec)
