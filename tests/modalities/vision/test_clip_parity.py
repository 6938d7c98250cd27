"""The zoo's two-stream CLIP computes what `transformers.CLIPModel` and open_clip's ViT-B-32 compute, through
`modalzoo.modalities.vision.hub.clip`. Both comparisons use full ViT-B/32-shaped towers (12 x 768 image,
12 x 512 text)."""

from __future__ import annotations

import copy
import math

import open_clip
import pytest
import torch
import transformers

import modalzoo
from modalzoo import ModalzooError
from modalzoo.modalities.vision.hub.clip import (
    hf_config_kwargs,
    hf_to_zoo,
    open_clip_config,
    open_clip_to_zoo,
    zoo_to_hf,
    zoo_to_open_clip,
)
from tiny_models import perturbed

VOCAB, CONTEXT, EOS = 49408, 77, 49407     # CLIP's BPE: <|endoftext|> is the last (largest) id


def clip_spec(activation: str) -> dict:
    """ViT-B/32 CLIP as a zoo model (OpenAI's CLIP uses quick_gelu, open_clip's ViT-B-32 exact GELU)."""
    def enc(**kw):
        return {"name": "transformer", "layers": 12, "prenorm": True, "final_norm": True, "norm_eps": 1e-5,
                "activation": activation, **kw}
    return {"streams": {
        "image": {"embedding": {"name": "patch", "image_size": 224, "patch_size": 32, "dim": 768,
                                "positions": "learned", "cls_token": True, "norm": "layernorm", "norm_eps": 1e-5,
                                "patch_bias": False},
                  "encoder": enc(dim=768, heads=12, ffn_dim=3072)},
        "text": {"embedding": {"name": "token", "vocab_size": VOCAB, "dim": 512, "max_positions": CONTEXT,
                               "positions": "learned"},
                 "encoder": enc(dim=512, heads=8, ffn_dim=2048, mask="causal")}},
        "targets": {"clip": {"name": "contrastive", "streams": ["image", "text"], "pooling": ["cls", "last"],
                             "embed_dim": 512}}}


def make_batch() -> dict[str, torch.Tensor]:
    """Two images and two texts padded to CLIP's 77: a full row and a 20-token row, each ending in its only
    EOS (every other id is smaller), so HF's first-EOS, open_clip's argmax and the zoo's `last` agree."""
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([CONTEXT, 20])
    ids = torch.randint(1, EOS - 1, (2, CONTEXT), generator=g)
    attention_mask = torch.arange(CONTEXT)[None] < lengths[:, None]
    ids[torch.arange(2), lengths - 1] = EOS
    ids[~attention_mask] = 0
    return {"input_ids": ids, "attention_mask": attention_mask.long(),
            "pixel_values": torch.randn(2, 3, 224, 224, generator=g)}


def zoo_outputs(zoo, batch) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        outputs = {name: stream(batch) for name, stream in zoo.streams.items()}
        target = zoo.targets["clip"]
        image = target.features("image", outputs["image"].hidden, "cls")
        text = target.features("text", outputs["text"].hidden, "last")
        logits = target.logit_scale.exp() * image @ text.T
        return {"image": image, "text": text, "logits": logits, "loss": target(outputs, batch).loss}


@pytest.fixture(scope="module")
def hf_pair():
    spec = clip_spec("quick_gelu")
    kwargs = hf_config_kwargs(spec, eos_token_id=EOS)
    hf = perturbed(transformers.CLIPModel(transformers.CLIPConfig(**kwargs)))
    zoo = modalzoo.build_model(spec).eval()
    zoo.load_state_dict(hf_to_zoo(hf.state_dict()), strict=True)
    return zoo, hf, kwargs


@pytest.fixture(scope="module")
def open_clip_pair():
    spec = clip_spec("gelu")
    oc = perturbed(open_clip.create_model("ViT-B-32", pretrained=None))
    zoo = modalzoo.build_model(spec).eval()
    zoo.load_state_dict(open_clip_to_zoo(oc.state_dict()), strict=True)
    return zoo, oc, spec


def test_clip_vit_b32_config_is_the_published_one(hf_pair):
    _, _, kwargs = hf_pair
    text = {"vocab_size": 49408, "hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12,
            "num_attention_heads": 8, "max_position_embeddings": 77, "hidden_act": "quick_gelu",
            "layer_norm_eps": 1e-5}   # openai/clip-vit-base-patch32's config.json
    vision = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
              "image_size": 224, "patch_size": 32, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5}
    assert {k: kwargs["text_config"][k] for k in text} == text
    assert {k: kwargs["vision_config"][k] for k in vision} == vision
    assert kwargs["projection_dim"] == 512 and kwargs["logit_scale_init_value"] == pytest.approx(2.6592, abs=1e-4)


def test_clip_matches_transformers(hf_pair):
    zoo, hf, _ = hf_pair
    batch = make_batch()
    ours = zoo_outputs(zoo, batch)
    with torch.no_grad():
        theirs = hf(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    pixel_values=batch["pixel_values"], return_loss=True)
    diffs = {"image_embeds": (ours["image"] - theirs.image_embeds).abs().max().item(),
             "text_embeds": (ours["text"] - theirs.text_embeds).abs().max().item(),
             "logits_per_image": (ours["logits"] - theirs.logits_per_image).abs().max().item(),
             "loss": (ours["loss"] - theirs.loss).abs().item()}
    print("clip vit-b/32 vs transformers: " + ", ".join(f"max |{k} diff| = {v:.3g}" for k, v in diffs.items()))
    assert all(v <= 1e-4 for v in diffs.values()), diffs


def test_clip_matches_open_clip_vit_b32(open_clip_pair):
    zoo, oc, spec = open_clip_pair
    published, cfg = open_clip.get_model_config("ViT-B-32"), open_clip_config(spec)
    assert cfg["embed_dim"] == published["embed_dim"] and cfg["quick_gelu"] is False
    assert all(published[tower].items() <= cfg[tower].items() for tower in ("vision_cfg", "text_cfg"))
    batch = make_batch()
    ours = zoo_outputs(zoo, batch)
    with torch.no_grad():
        image = oc.encode_image(batch["pixel_values"], normalize=True)
        text = oc.encode_text(batch["input_ids"], normalize=True)     # causal only: padding after EOS is inert
        logits = oc.logit_scale.exp() * image @ text.T
    diffs = {"image": (ours["image"] - image).abs().max().item(), "text": (ours["text"] - text).abs().max().item(),
             "logits_per_image": (ours["logits"] - logits).abs().max().item()}
    print("clip vit-b/32 vs open_clip: " + ", ".join(f"max |{k} diff| = {v:.3g}" for k, v in diffs.items()))
    assert all(v <= 1e-4 for v in diffs.values()), diffs


def test_open_clip_config_builds_what_the_zoo_computes():
    """A small tower pair through every option `open_clip_config` sets: quick_gelu, a norm eps, EOS pooling."""
    spec = clip_spec("quick_gelu")
    image, text = spec["streams"]["image"], spec["streams"]["text"]
    image["embedding"].update(image_size=32, patch_size=8, dim=64, norm_eps=1e-6)
    image["encoder"].update(layers=2, dim=64, heads=4, ffn_dim=128, norm_eps=1e-6)
    text["embedding"].update(vocab_size=100, dim=32, max_positions=16)
    text["encoder"].update(layers=2, dim=32, heads=2, ffn_dim=64, norm_eps=1e-6)
    spec["targets"]["clip"]["embed_dim"] = 16
    eos = 7                                        # not the largest id: pool_type eos, not argmax
    oc = perturbed(open_clip.model.CLIP(**open_clip_config(spec, eos_token_id=eos)))
    zoo = modalzoo.build_model(spec).eval()
    zoo.load_state_dict(open_clip_to_zoo(oc.state_dict()), strict=True)
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(10, 100, (2, 16), generator=g)
    lengths = torch.tensor([16, 9])
    ids[torch.arange(2), lengths - 1] = eos
    mask = torch.arange(16)[None] < lengths[:, None]
    batch = {"input_ids": ids.masked_fill(~mask, 0), "attention_mask": mask.long(),
             "pixel_values": torch.randn(2, 3, 32, 32, generator=g)}
    ours = zoo_outputs(zoo, batch)
    with torch.no_grad():
        image_diff = (ours["image"] - oc.encode_image(batch["pixel_values"], normalize=True)).abs().max().item()
        text_diff = (ours["text"] - oc.encode_text(batch["input_ids"], normalize=True)).abs().max().item()
    assert image_diff <= 1e-5 and text_diff <= 1e-5, (image_diff, text_diff)


def test_round_trips_are_exact(hf_pair, open_clip_pair):
    for (zoo, other, _), to_other, from_other in ((hf_pair, zoo_to_hf, hf_to_zoo),
                                                  (open_clip_pair, zoo_to_open_clip, open_clip_to_zoo)):
        zoo_state = zoo.state_dict()
        other_state = to_other(zoo_state)
        assert set(other_state) == set(other.state_dict())
        other.load_state_dict(other_state, strict=True)
        back = from_other(other.state_dict())
        assert set(back) == set(zoo_state)
        assert all(torch.equal(back[k], zoo_state[k]) for k in zoo_state)


def test_missing_and_unmapped_keys_are_named(hf_pair, open_clip_pair):
    zoo, hf, _ = hf_pair
    hf_state = dict(hf.state_dict())
    hf_state["text_model.embeddings.position_ids"] = torch.arange(77)[None]   # older checkpoints: ignored
    assert set(hf_to_zoo(hf_state)) == set(zoo.state_dict())
    gone = hf_state.pop("vision_model.encoder.layers.11.self_attn.q_proj.bias")
    with pytest.raises(ModalzooError, match=r"missing vision_model\.encoder\.layers\.11\.self_attn\.q_proj\.bias"):
        hf_to_zoo(hf_state)
    hf_state["vision_model.encoder.layers.11.self_attn.q_proj.bias"] = gone
    hf_state["vision_model.embeddings.patch_embedding.bias"] = torch.zeros(768)   # the zoo's patch_bias: false
    with pytest.raises(ModalzooError, match=r"unmapped vision_model\.embeddings\.patch_embedding\.bias"):
        hf_to_zoo(hf_state)

    _, oc, _ = open_clip_pair
    oc_state = dict(oc.state_dict())
    oc_state["logit_bias"] = torch.zeros(())                                        # SigLIP's bias
    with pytest.raises(ModalzooError, match=r"open_clip state dict .*unmapped logit_bias"):
        open_clip_to_zoo(oc_state)
    del oc_state["logit_bias"], oc_state["transformer.resblocks.3.attn.in_proj_weight"]
    with pytest.raises(ModalzooError, match=r"missing transformer\.resblocks\.3\.attn\.in_proj_weight"):
        open_clip_to_zoo(oc_state)

    zoo_state = dict(zoo.state_dict())
    zoo_state["targets.clip.projections.image.bias"] = torch.zeros(512)
    with pytest.raises(ModalzooError, match=r"unmapped targets\.clip\.projections\.image\.bias"):
        zoo_to_hf(zoo_state)
    del zoo_state["targets.clip.projections.image.bias"], zoo_state["targets.clip.logit_scale"]
    with pytest.raises(ModalzooError, match=r"missing targets\.clip\.logit_scale"):
        zoo_to_open_clip(zoo_state)


@pytest.mark.parametrize("stream, slot, key, value", [
    ("image", "embedding", "patch_bias", True),
    ("image", "embedding", "norm", "none"),
    ("image", "embedding", "norm_eps", 1e-6),
    ("image", "encoder", "final_norm", False),
    ("text", "encoder", "mask", "bidirectional"),
    ("text", "embedding", "norm", "layernorm"),
    ("text", "encoder", "dropout", 0.1),
])
def test_config_clip_cannot_express_is_named(stream, slot, key, value):
    spec = clip_spec("quick_gelu")
    spec["streams"][stream][slot][key] = value
    pattern = rf"model\.streams\.{stream}\.{slot}\.{key}="
    with pytest.raises(ModalzooError, match=r"^clip cannot express .*" + pattern):
        hf_config_kwargs(spec, eos_token_id=EOS)
    with pytest.raises(ModalzooError, match=r"^open_clip cannot express .*" + pattern):
        open_clip_config(spec)


def test_pooling_eos_and_activations_are_checked():
    spec = clip_spec("quick_gelu")
    spec["targets"]["clip"]["pooling"] = ["cls", "mean"]
    with pytest.raises(ModalzooError, match=r"pooling\[text\]='mean'"):
        hf_config_kwargs(spec, eos_token_id=EOS)
    with pytest.raises(ModalzooError, match="not 2"):         # legacy: HF would pool the largest id instead
        hf_config_kwargs(clip_spec("quick_gelu"), eos_token_id=2)
    spec = clip_spec("quick_gelu")
    spec["streams"]["text"]["encoder"]["activation"] = "gelu"
    assert hf_config_kwargs(spec, eos_token_id=EOS)["text_config"]["hidden_act"] == "gelu"   # per tower in HF
    with pytest.raises(ModalzooError, match=r"open_clip cannot express .*text\.encoder\.activation='gelu'"):
        open_clip_config(spec)                                  # one quick_gelu flag for both towers
    assert open_clip_config(clip_spec("quick_gelu"), eos_token_id=EOS)["text_cfg"]["eos_id"] == EOS
    assert math.isclose(hf_config_kwargs(clip_spec("gelu"), eos_token_id=EOS)["logit_scale_init_value"],
                        math.log(1 / 0.07))


def test_streams_are_found_by_kind_not_name():
    spec = clip_spec("quick_gelu")
    spec["streams"] = {"caption": spec["streams"]["text"], "photo": spec["streams"]["image"]}
    spec["targets"]["clip"].update(streams=["caption", "photo"], pooling=["last", "cls"])
    kwargs = hf_config_kwargs(copy.deepcopy(spec), eos_token_id=EOS)
    assert kwargs["vision_config"]["patch_size"] == 32 and kwargs["text_config"]["vocab_size"] == VOCAB
