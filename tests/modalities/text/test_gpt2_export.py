"""The zoo's GPT-2-layout causal LM computes what `transformers.GPT2LMHeadModel` computes, through
`modalzoo.modalities.text.hub.gpt2` (Conv1D weights transposed, fused c_attn, tied or untied head); the
gpt2_small recipe is GPT-2's published 124M shape; what GPT-2 cannot express is refused by name.
(Exports of trained runs, tokenizers and generate(): test_causal_lm.py.)"""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
import torch
import transformers

import modalzoo
from modalzoo import ModalzooError
from modalzoo.datasets.fields import DataContext
from modalzoo.hub import architecture
from modalzoo.modalities.text.hub.gpt2 import hf_config_kwargs, hf_to_zoo, zoo_to_hf
from tiny_models import lm_logits_diff as logits_diff
from tiny_models import padded_lm_batch as padded_batch
from tiny_models import perturbed

E, N = "model.streams.text.embedding.", "model.streams.text.encoder."
TINY = [f"{E}vocab_size=100", f"{E}dim=32", f"{E}max_positions=24", f"{N}dim=32", f"{N}layers=2", f"{N}ffn_dim=64"]


def tiny(*overrides: str):
    return modalzoo.load_recipe("gpt_tiny", [*TINY, *overrides])




def test_gpt2_small_is_the_published_shape():
    cfg = modalzoo.load_recipe("gpt2_small")
    kwargs = hf_config_kwargs(cfg)
    published = {"vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_layer": 12, "n_head": 12,
                 "n_inner": 3072, "layer_norm_epsilon": 1e-5, "resid_pdrop": 0.1, "embd_pdrop": 0.1,
                 "attn_pdrop": 0.1, "scale_attn_weights": True, "tie_word_embeddings": True}
    assert {k: kwargs[k] for k in published} == published
    assert kwargs["activation_function"] == "gelu_pytorch_tanh"   # GPT-2's gelu_new, computed by torch
    with torch.device("meta"):
        zoo = modalzoo.build_model(cfg)
        hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(**kwargs))
    assert sum(p.numel() for p in zoo.parameters()) == 124_439_808        # openai-community/gpt2
    assert sum(p.numel() for p in hf.parameters()) == 124_439_808


@pytest.mark.parametrize("tie", [True, False], ids=["tied", "untied"])
def test_logits_match_transformers_both_directions(tie):
    cfg = tiny(f"model.targets.lm.tie_weights={str(tie).lower()}")
    kwargs = hf_config_kwargs(cfg)
    assert kwargs["tie_word_embeddings"] is tie
    # HF weights -> zoo
    hf = perturbed(transformers.GPT2LMHeadModel(transformers.GPT2Config(**kwargs, pad_token_id=1)))
    zoo = modalzoo.build_model(cfg).eval()
    zoo.load_state_dict(hf_to_zoo(hf.state_dict(), tie_weights=tie), strict=True)
    assert logits_diff(zoo, hf, padded_batch()) <= 1e-4
    # zoo weights -> HF
    perturbed(zoo, seed=3)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(**kwargs, pad_token_id=1)).eval()
    hf.load_state_dict(zoo_to_hf(zoo.state_dict()), strict=True)
    assert logits_diff(zoo, hf, padded_batch()) <= 1e-4
    assert (hf.lm_head.weight is hf.transformer.wte.weight) is tie
    back = hf_to_zoo(hf.state_dict(), tie_weights=tie)
    assert set(back) == set(zoo.state_dict()) and all(torch.equal(back[k], v) for k, v in zoo.state_dict().items())


def test_conv1d_weights_are_transposed_and_c_attn_is_qkv():
    zoo = perturbed(modalzoo.build_model(tiny()))
    hf = zoo_to_hf(zoo.state_dict())
    block = zoo.streams["text"].encoder.blocks[1]
    assert torch.equal(hf["transformer.h.1.attn.c_attn.weight"], block.attn.qkv.weight.T)
    assert torch.equal(hf["transformer.h.1.mlp.c_fc.weight"], block.mlp.fc1.weight.T)
    assert hf["transformer.h.1.mlp.c_proj.weight"].shape == (64, 32)


def test_unmapped_and_untied_keys_are_named():
    cfg = tiny()
    hf = perturbed(transformers.GPT2LMHeadModel(transformers.GPT2Config(**hf_config_kwargs(cfg))))
    state = dict(hf.state_dict())
    state["transformer.h.0.attn.masked_bias"] = torch.zeros(1)
    with pytest.raises(ModalzooError, match=r"unmapped transformer\.h\.0\.attn\.masked_bias"):
        hf_to_zoo(state)
    state = {k: v.clone() for k, v in hf.state_dict().items() if k != "transformer.ln_f.bias"}
    with pytest.raises(ModalzooError, match=r"missing transformer\.ln_f\.bias"):
        hf_to_zoo(state)
    state["transformer.ln_f.bias"] = torch.zeros(32)
    state["lm_head.weight"] += 1
    with pytest.raises(ModalzooError, match="tie_weights: false"):
        hf_to_zoo(state)


@pytest.mark.parametrize("override, option", [
    (f"{N}kv_heads=2", "encoder.kv_heads"),
    (f"{N}norm=rmsnorm", "encoder.norm"),
    (f"{N}activation=swiglu", "encoder.activation"),
    (f"{N}prenorm=false", "encoder.prenorm"),
    (f"{N}final_norm=false", "encoder.final_norm"),
    (f"{N}positions=rope", "encoder.positions"),
    (f"{N}bias=false", "encoder.bias"),
    (f"{N}attn_scale=0.5", "encoder.attn_scale"),
    (f"{E}positions=sinusoidal", "embedding.positions"),
    (f"{E}norm=layernorm", "embedding.norm"),
    (f"{E}type_vocab_size=2", "embedding.type_vocab_size"),
    (f"{E}position_offset=2", "embedding.position_offset"),
])
def test_what_gpt2_cannot_express_is_named(override, option):
    with pytest.raises(ModalzooError, match=r"gpt2 cannot express .*" + re.escape(option) + "="):
        hf_config_kwargs(tiny(override))


def test_attention_without_scaling_maps_to_scale_attn_weights():
    cfg = tiny(f"{N}attn_scale=1.0")
    kwargs = hf_config_kwargs(cfg)
    assert kwargs["scale_attn_weights"] is False
    hf = perturbed(transformers.GPT2LMHeadModel(transformers.GPT2Config(**kwargs, pad_token_id=1)))
    zoo = modalzoo.build_model(cfg).eval()
    zoo.load_state_dict(hf_to_zoo(hf.state_dict()), strict=True)
    assert logits_diff(zoo, hf, padded_batch()) <= 1e-4


def test_export_config_needs_the_runs_byte_level_tokenizer():
    gpt = architecture.get("gpt2")
    model = tiny().model
    tok = SimpleNamespace(pad_id=1, bos_id=0, eos_id=2)
    with pytest.raises(ModalzooError, match="needs the run's tokenizer.json"):
        gpt.hf_config(model, None, DataContext())
    with pytest.raises(ModalzooError, match="needs a bytelevel_bpe tokenizer; data.tokenizer.name is 'wordpiece'"):
        gpt.hf_config(model, None, DataContext(tokenizer=tok, tokenizer_name="wordpiece"))
    kwargs = gpt.hf_config(model, None, DataContext(tokenizer=tok, tokenizer_name="bytelevel_bpe"))
    assert (kwargs["pad_token_id"], kwargs["bos_token_id"], kwargs["eos_token_id"]) == (1, 0, 2)
