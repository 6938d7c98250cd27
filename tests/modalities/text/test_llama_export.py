"""The zoo's Llama-layout causal LM computes what `transformers.LlamaForCausalLM` computes, through
`modalzoo.modalities.text.hub.llama` (fused [q | k | v] with grouped-query heads, fc1 = [gate | up],
rotate-half RoPE, optional biases, tied or untied head); the smollm2_135m recipe is SmolLM2-135M's shape;
what Llama cannot express is refused by name. (Exports of trained runs, tokenizers and generate():
test_causal_lm.py.)"""

from __future__ import annotations

import re

import pytest
import torch
import transformers
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

import modalzoo
from modalzoo import ModalzooError
from modalzoo.encoders.positions import Rotary
from modalzoo.modalities.text.hub.llama import hf_config_kwargs, hf_to_zoo, zoo_to_hf
from tiny_models import lm_logits_diff as logits_diff
from tiny_models import padded_lm_batch as padded_batch
from tiny_models import perturbed

E, N = "model.streams.text.embedding.", "model.streams.text.encoder."
TINY = [f"{E}vocab_size=100", f"{E}dim=32", f"{E}max_positions=24", f"{N}dim=32", f"{N}layers=2", f"{N}ffn_dim=64",
        f"{N}heads=4", f"{N}kv_heads=2"]


def tiny(*overrides: str):
    return modalzoo.load_recipe("llama_tiny", [*TINY, *overrides])




def test_smollm2_135m_is_the_published_shape():
    cfg = modalzoo.load_recipe("smollm2_135m")
    kwargs = hf_config_kwargs(cfg)
    published = {"vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
                 "num_attention_heads": 9, "num_key_value_heads": 3, "head_dim": 64, "hidden_act": "silu",
                 "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "attention_bias": False, "mlp_bias": False,
                 "tie_word_embeddings": True}   # HuggingFaceTB/SmolLM2-135M's config.json
    assert {k: kwargs[k] for k in published} == published
    assert kwargs["rope_parameters"] == {"rope_type": "default", "rope_theta": 100000.0}
    with torch.device("meta"):
        zoo = modalzoo.build_model(cfg)
        hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**kwargs))
    assert sum(p.numel() for p in zoo.parameters()) == 134_515_008
    assert sum(p.numel() for p in hf.parameters()) == 134_515_008


@pytest.mark.parametrize("overrides", [
    [],                                                                 # GQA 4:2, tied, no biases
    [f"{N}kv_heads=1", "model.targets.lm.tie_weights=false"],           # multi-query, untied head
    [f"{N}kv_heads=4", f"{N}bias=true"],                                # multi-head, Qwen2-style biases
    [f"{N}activation=geglu", f"{N}rope_base=500000.0"],                 # gated GELU-tanh, another RoPE base
], ids=["gqa", "mqa-untied", "mha-bias", "geglu-rope-base"])
def test_logits_match_transformers_both_directions(overrides):
    cfg = tiny(*overrides)
    kwargs = hf_config_kwargs(cfg)
    tie, bias = kwargs["tie_word_embeddings"], kwargs["attention_bias"]
    config = transformers.LlamaConfig(**kwargs, pad_token_id=1)
    # HF weights -> zoo
    hf = perturbed(transformers.LlamaForCausalLM(config))
    zoo = modalzoo.build_model(cfg).eval()
    zoo.load_state_dict(hf_to_zoo(hf.state_dict(), tie_weights=tie, bias=bias), strict=True)
    assert logits_diff(zoo, hf, padded_batch()) <= 1e-4
    # zoo weights -> HF
    perturbed(zoo, seed=3)
    hf = transformers.LlamaForCausalLM(config).eval()
    hf.load_state_dict(zoo_to_hf(zoo.state_dict()), strict=True)
    assert logits_diff(zoo, hf, padded_batch()) <= 1e-4
    back = hf_to_zoo(hf.state_dict(), tie_weights=tie, bias=bias)
    assert set(back) == set(zoo.state_dict()) and all(torch.equal(back[k], v) for k, v in zoo.state_dict().items())


def test_fused_layouts_are_llamas():
    """qkv = [q (heads x d) | k (kv_heads x d) | v (kv_heads x d)], fc1 = [gate | up]."""
    zoo = perturbed(modalzoo.build_model(tiny()))
    hf = zoo_to_hf(zoo.state_dict())
    block = zoo.streams["text"].encoder.blocks[0]
    q, k, v = (hf[f"model.layers.0.self_attn.{w}_proj.weight"] for w in "qkv")
    assert (q.shape, k.shape, v.shape) == ((32, 32), (16, 32), (16, 32))
    assert torch.equal(torch.cat([q, k, v]), block.attn.qkv.weight)
    gate, up = hf["model.layers.0.mlp.gate_proj.weight"], hf["model.layers.0.mlp.up_proj.weight"]
    assert torch.equal(torch.cat([gate, up]), block.mlp.fc1.weight)


def test_rope_is_transformers_rotate_half():
    """The zoo's rotary cos/sin are LlamaRotaryEmbedding's, for the same base and head dim."""
    config = transformers.LlamaConfig(hidden_size=64, num_attention_heads=2, rope_parameters={
        "rope_type": "default", "rope_theta": 500000.0})
    positions = torch.tensor([[0, 1, 2, 7, 100, 3]])
    cos, sin = LlamaRotaryEmbedding(config)(torch.zeros(1, 6, 64), positions)
    ours_cos, ours_sin = Rotary(32, 500000.0)(positions)
    assert torch.allclose(ours_cos[:, 0], cos, atol=1e-6) and torch.allclose(ours_sin[:, 0], sin, atol=1e-6)


def test_unmapped_and_untied_keys_are_named():
    cfg = tiny()
    hf = perturbed(transformers.LlamaForCausalLM(transformers.LlamaConfig(**hf_config_kwargs(cfg))))
    state = dict(hf.state_dict())
    state["model.layers.0.self_attn.q_proj.bias"] = torch.zeros(32)    # a bias the recipe does not have
    with pytest.raises(ModalzooError, match=r"unmapped model\.layers\.0\.self_attn\.q_proj\.bias"):
        hf_to_zoo(state)
    state = {k: v.clone() for k, v in hf.state_dict().items() if k != "model.layers.1.mlp.up_proj.weight"}
    with pytest.raises(ModalzooError, match=r"missing model\.layers\.1\.mlp\.up_proj\.weight"):
        hf_to_zoo(state)
    state = {k: v.clone() for k, v in hf.state_dict().items()}
    state["lm_head.weight"] += 1
    with pytest.raises(ModalzooError, match="tie_weights: false"):
        hf_to_zoo(state)


@pytest.mark.parametrize("override, option", [
    (f"{E}positions=learned", "embedding.positions"),
    (f"{N}positions=alibi", "encoder.positions"),
    (f"{N}norm=layernorm", "encoder.norm"),
    (f"{N}activation=gelu", "encoder.activation"),
    (f"{N}prenorm=false", "encoder.prenorm"),
    (f"{N}final_norm=false", "encoder.final_norm"),
    (f"{N}dropout=0.1", "encoder.dropout"),
    (f"{E}dropout=0.1", "embedding.dropout"),
    (f"{N}attn_scale=1.0", "encoder.attn_scale"),
    (f"{E}norm=rmsnorm", "embedding.norm"),
    (f"{E}type_vocab_size=2", "embedding.type_vocab_size"),
])
def test_what_llama_cannot_express_is_named(override, option):
    with pytest.raises(ModalzooError, match=r"llama cannot express .*" + re.escape(option) + "="):
        hf_config_kwargs(tiny(override))
