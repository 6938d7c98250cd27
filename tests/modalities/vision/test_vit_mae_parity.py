"""The zoo's MAE (ViT-B/16 encoder, the paper's 8-block 512-wide decoder) computes what
`transformers.ViTMAEForPreTraining` computes, through `modalzoo.modalities.vision.hub.vit_mae`."""

from __future__ import annotations

import copy

import pytest
import torch
import transformers

import modalzoo
from modalzoo import ModalzooError
from modalzoo.modalities.vision.hub.vit_mae import (
    POSITION_TABLES,
    hf_config_kwargs,
    hf_to_zoo,
    position_table,
    zoo_to_hf,
)
from tiny_models import perturbed

MAE_VIT_B16 = {"streams": {"image": {
    "embedding": {"name": "patch", "image_size": 224, "patch_size": 16, "dim": 768, "positions": "sincos2d",
                  "cls_token": True, "mask_ratio": 0.75},
    "encoder": {"name": "transformer", "layers": 12, "dim": 768, "heads": 12, "ffn_dim": 3072, "prenorm": True,
                "final_norm": True, "norm_eps": 1e-12, "activation": "gelu"},
    "target_embedding": {"name": "mae", "encoder_dim": 768, "dim": 512, "grid": 14},
    "decoder": {"name": "transformer", "layers": 8, "dim": 512, "heads": 16, "ffn_dim": 2048, "norm_eps": 1e-12,
                "activation": "gelu", "cross_attention": False, "mask": "bidirectional"}}},
    "targets": {"mae": {"name": "mae", "stream": "image", "norm_pix_loss": True}}}


def with_position_tables(hf_model, grid: int):
    """Noise on every parameter, then the fixed sin-cos tables set as a checkpoint has them (a fresh
    transformers 5 ViTMAE has zeros there)."""
    perturbed(hf_model)
    with torch.no_grad():
        for name in POSITION_TABLES:
            table = hf_model.get_parameter(name)
            table.copy_(position_table(grid, table.shape[-1]))
    return hf_model


@pytest.fixture(scope="module")
def mae_pair():
    kwargs = hf_config_kwargs(MAE_VIT_B16)
    hf = with_position_tables(transformers.ViTMAEForPreTraining(transformers.ViTMAEConfig(**kwargs)), grid=14)
    zoo = modalzoo.build_model(MAE_VIT_B16).eval()
    zoo.load_state_dict(hf_to_zoo(hf.state_dict()), strict=True)
    return zoo, hf, kwargs


def test_mae_vit_b16_config_is_the_published_one(mae_pair):
    _, _, kwargs = mae_pair
    published = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
                 "hidden_act": "gelu", "layer_norm_eps": 1e-12, "image_size": 224, "patch_size": 16,
                 "num_channels": 3, "qkv_bias": True, "decoder_hidden_size": 512, "decoder_num_hidden_layers": 8,
                 "decoder_num_attention_heads": 16, "decoder_intermediate_size": 2048,
                 "mask_ratio": 0.75}   # facebook/vit-mae-base's config.json
    assert {k: kwargs[k] for k in published} == published
    assert kwargs["norm_pix_loss"] is True


def test_mae_matches_transformers(mae_pair):
    zoo, hf, _ = mae_pair
    g = torch.Generator().manual_seed(1)
    pixels, noise = torch.randn(2, 3, 224, 224, generator=g), torch.rand(2, 196, generator=g)
    batch = {"pixel_values": pixels, "mae_noise": noise}
    with torch.no_grad():
        out = zoo.streams["image"](batch)
        target = zoo.targets["mae"]
        zoo_logits = target.reconstruct(out.decoded)
        zoo_loss = target({"image": out}, batch).loss
        hf_latent = hf.vit(pixel_values=pixels, noise=noise).last_hidden_state
        hf_out = hf(pixel_values=pixels, noise=noise)
    assert torch.equal(out.hidden.extras["mae_mask"], hf_out.mask)
    assert torch.equal(out.hidden.extras["ids_restore"], hf_out.ids_restore)
    assert out.hidden.x.shape == hf_latent.shape == (2, 50, 768)
    assert zoo_logits.shape == hf_out.logits.shape == (2, 196, 768)
    latent = (out.hidden.x - hf_latent).abs().max().item()
    logits = (zoo_logits - hf_out.logits).abs().max().item()
    loss = (zoo_loss - hf_out.loss).abs().item()
    print(f"mae vit-b/16: max |latent diff| = {latent:.3g}, max |logits diff| = {logits:.3g}, "
          f"|loss diff| = {loss:.3g}")
    assert latent <= 1e-4 and logits <= 1e-4 and loss <= 1e-4


def test_round_trip_is_exact(mae_pair):
    zoo, hf, _ = mae_pair
    zoo_state = zoo.state_dict()
    hf_state = zoo_to_hf(zoo_state, image_size=224)
    assert set(hf_state) == set(hf.state_dict())
    for name in POSITION_TABLES:          # export writes the fixed tables a checkpoint needs
        assert torch.equal(hf_state[name], hf.state_dict()[name])
    hf.load_state_dict(hf_state, strict=True)
    back = hf_to_zoo(hf.state_dict())
    assert set(back) == set(zoo_state)
    assert all(torch.equal(back[k], zoo_state[k]) for k in zoo_state)


def test_missing_unmapped_and_foreign_keys_are_named(mae_pair):
    zoo, hf, _ = mae_pair
    hf_state = dict(hf.state_dict())
    gone = hf_state.pop("decoder.decoder_layers.7.attention.v_proj.weight")
    with pytest.raises(ModalzooError, match=r"missing decoder\.decoder_layers\.7\.attention\.v_proj\.weight"):
        hf_to_zoo(hf_state)
    hf_state["decoder.decoder_layers.7.attention.v_proj.weight"] = gone
    table = hf_state.pop("decoder.decoder_pos_embed")
    with pytest.raises(ModalzooError, match=r"missing decoder\.decoder_pos_embed"):
        hf_to_zoo(hf_state)
    hf_state["decoder.decoder_pos_embed"] = torch.zeros_like(table)   # what a fresh transformers 5 ViTMAE holds
    with pytest.raises(ModalzooError, match=r"decoder\.decoder_pos_embed' is not the fixed 2D sin-cos table"):
        hf_to_zoo(hf_state)
    hf_state["decoder.decoder_pos_embed"] = table
    hf_state["vit.pooler.dense.weight"] = torch.zeros(2, 2)
    with pytest.raises(ModalzooError, match=r"unmapped vit\.pooler\.dense\.weight"):
        hf_to_zoo(hf_state)

    zoo_state = dict(zoo.state_dict())
    del zoo_state["targets.mae.pred.bias"]
    with pytest.raises(ModalzooError, match=r"missing targets\.mae\.pred\.bias"):
        zoo_to_hf(zoo_state, image_size=224)
    zoo_state["targets.mae.pred.bias"] = torch.zeros(768)
    zoo_state["streams.image.embedding.norm.weight"] = torch.ones(768)
    with pytest.raises(ModalzooError, match=r"unmapped streams\.image\.embedding\.norm\.weight"):
        zoo_to_hf(zoo_state, image_size=224)


@pytest.mark.parametrize("path, value, option", [
    ("embedding.positions", "learned", "embedding.positions"),
    ("embedding.dropout", 0.1, "embedding.dropout"),
    ("encoder.prenorm", False, "encoder.prenorm"),
    ("decoder.norm_eps", 1e-6, "decoder.norm_eps"),
    ("decoder.activation", "quick_gelu", "decoder.activation"),
    ("target_embedding.cls_token", False, "target_embedding.cls_token"),
    ("target_embedding.grid", 7, "target_embedding.grid"),
])
def test_config_vit_mae_cannot_express_is_named(path, value, option):
    spec = copy.deepcopy(MAE_VIT_B16)
    slot, key = path.split(".")
    spec["streams"]["image"][slot][key] = value
    with pytest.raises(ModalzooError, match=r"vit_mae cannot express .*" + option.replace(".", r"\.") + "="):
        hf_config_kwargs(spec)


def test_extra_streams_and_targets_are_refused():
    spec = copy.deepcopy(MAE_VIT_B16)
    spec["streams"]["text"] = {"embedding": {"name": "token"}, "encoder": {"name": "transformer"}}
    with pytest.raises(ModalzooError, match=r"cannot express model\.streams\.text"):
        hf_config_kwargs(spec)
