"""The zoo's T5-layout encoder-decoder computes what `transformers.T5ForConditionalGeneration` computes,
through `modalzoo.modalities.text.hub.t5` (shared table, block-0 relative bias, fused q/k/v and cross k/v,
ReLU or gated feed-forward, tied and scaled or untied head), both ways; t5_small is T5-small's published
shape; what T5 cannot express is refused by name; a trained t5_tiny run exports (verified), loads natively
with its sentinel tokenizer, and transformers' greedy generate() fills a corrupted input's sentinels with
the same tokens as the zoo's `generate_ids`; init_from=hf: is strict."""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from omegaconf import OmegaConf

import modalzoo
from conftest import run_cli, tiny_overrides
from modalzoo import ModalzooError
from modalzoo.hub import architecture
from modalzoo.hub.export import export_run, load_run
from modalzoo.hub.pretrained import import_hf
from modalzoo.modalities.text.generate import generate, generate_ids
from modalzoo.modalities.text.hub import t5
from tiny_models import perturbed

S = "model.streams.text."
TINY = [f"{S}{slot}.{k}={v}" for slot in ("embedding", "target_embedding") for k, v in (("vocab_size", 100),
                                                                                      ("dim", 32))]
TINY += [f"{S}{stack}.{k}={v}" for stack in ("encoder", "decoder") for k, v in (("dim", 32), ("layers", 2),
                                                                              ("ffn_dim", 64), ("heads", 4))]


def tiny(recipe: str = "t5_tiny", *overrides: str):
    return modalzoo.load_recipe(recipe, [*TINY, *overrides])


def both_stacks(key: str, value) -> list[str]:
    return [f"{S}encoder.{key}={value}", f"{S}decoder.{key}={value}"]


def hf_t5(cfg, **extra) -> transformers.T5ForConditionalGeneration:
    kwargs = {**t5.hf_config_kwargs(cfg), "pad_token_id": 0, "decoder_start_token_id": 0, **extra}
    return transformers.T5ForConditionalGeneration(transformers.T5Config(**kwargs)).eval()


def logits_diff(zoo, hf, target="t5") -> float:
    tok = type("Tok", (), {"pad_id": 0, "bos_id": 2, "eos_id": 3, "vocab_size": 100, "special_ids": [0, 1, 2, 3, 4]})
    batch = t5.seq2seq_batch(100, tok)
    real = batch["decoder_attention_mask"].bool()
    with torch.no_grad():
        ours = t5.zoo_logits(zoo, batch, "text", target)
        theirs = hf(**batch).logits
    assert ours[real].abs().mean() > 0.05
    return (ours[real] - theirs[real]).abs().max().item()


def test_t5_small_is_the_published_shape():
    cfg = modalzoo.load_recipe("t5_small")
    kwargs = t5.hf_config_kwargs(cfg)
    defaults = transformers.T5Config()                     # google-t5/t5-small
    for key in ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_decoder_layers", "num_heads",
                "relative_attention_num_buckets", "relative_attention_max_distance", "dropout_rate",
                "layer_norm_epsilon", "feed_forward_proj", "tie_word_embeddings", "scale_decoder_outputs"):
        assert kwargs[key] == getattr(defaults, key), key
    with torch.device("meta"):
        zoo = modalzoo.build_model(cfg)
        hf = transformers.T5ForConditionalGeneration(transformers.T5Config(vocab_size=kwargs["vocab_size"]))
    assert sum(p.numel() for p in zoo.parameters()) == sum(p.numel() for p in hf.parameters()) == 60_506_624


@pytest.mark.parametrize("activation, scaled", [("relu", True), ("geglu", False)])
def test_logits_match_transformers_both_directions(activation, scaled):
    cfg = tiny("t5_tiny", *both_stacks("activation", activation), f"{S}decoder.layers=3",
               f"model.targets.t5.scale_output={str(scaled).lower()}")
    kwargs = t5.hf_config_kwargs(cfg)
    assert kwargs["feed_forward_proj"] == {"relu": "relu", "geglu": "gated-gelu"}[activation]
    assert kwargs["scale_decoder_outputs"] is scaled and kwargs["num_decoder_layers"] == 3
    hf = perturbed(hf_t5(cfg))                                            # HF weights -> zoo
    zoo = modalzoo.build_model(cfg).eval()
    zoo.load_state_dict(t5.hf_to_zoo(hf.state_dict()), strict=True)
    assert logits_diff(zoo, hf) <= 1e-4
    perturbed(zoo, seed=3)                                                # zoo weights -> HF
    hf = hf_t5(cfg)
    hf.load_state_dict(t5.zoo_to_hf(zoo.state_dict()), strict=True)
    assert logits_diff(zoo, hf) <= 1e-4
    back = t5.hf_to_zoo(hf.state_dict())
    assert set(back) == set(zoo.state_dict()) and all(torch.equal(back[k], v) for k, v in zoo.state_dict().items())
    assert {k for k in back if "relative" in k} == {"streams.text.encoder.relative.table.weight",
                                                    "streams.text.decoder.relative.table.weight"}


def test_v1_1_untied_head_maps_both_ways():
    """T5 v1.1: lm_head untied from shared, no output scaling. transformers 5 ties the head of a model built
    from a config whatever tie_word_embeddings says (it unties when a checkpoint holds both, different), so
    the HF side is untied by assigning the weights."""
    cfg = tiny("t5_tiny", "model.targets.t5.tie_weights=false", *both_stacks("activation", "geglu"))
    zoo = perturbed(modalzoo.build_model(cfg), seed=5)
    assert zoo.targets["t5"].output_scale is None
    state = t5.zoo_to_hf(zoo.state_dict())
    assert not torch.equal(state["lm_head.weight"], state["shared.weight"])
    untied = {**t5.hf_config_kwargs(tiny()), "tie_word_embeddings": False, "scale_decoder_outputs": False,
              "feed_forward_proj": "gated-gelu"}
    hf = transformers.T5ForConditionalGeneration(transformers.T5Config(**untied, pad_token_id=0)).eval()
    hf.load_state_dict(state, strict=True, assign=True)
    assert hf.lm_head.weight is not hf.shared.weight
    assert logits_diff(zoo, hf) <= 1e-4
    back = t5.hf_to_zoo(hf.state_dict(), tie_weights=False)
    assert all(torch.equal(back[k], v) for k, v in zoo.state_dict().items())
    with pytest.raises(ModalzooError, match="set the target's tie_weights: false"):
        t5.hf_to_zoo(hf.state_dict(), tie_weights=True)
    built = architecture.hf_model(architecture.architectures()["t5"], {**t5.hf_config_kwargs(cfg), "pad_token_id": 0})
    assert built.lm_head.weight is not built.shared.weight and not built.config.scale_decoder_outputs


@pytest.mark.parametrize("override, named", [
    (f"{S}encoder.bias=true", "model.streams.text.encoder.bias=True"),
    (f"{S}decoder.norm=layernorm", "model.streams.text.decoder.norm='layernorm'"),
    (f"{S}encoder.positions=rope", "model.streams.text.encoder.positions='rope'"),
    (f"{S}decoder.attn_scale=0.0", "model.streams.text.decoder.attn_scale=0.0"),
    (f"{S}decoder.heads=2", "model.streams.text.decoder.heads=2"),
    (f"{S}decoder.rel_buckets=16", "model.streams.text.decoder.rel_buckets=16"),
    (f"{S}target_embedding.shares=''", "model.streams.text.target_embedding.shares=''"),
    (f"{S}encoder.activation=gelu", "model.streams.text.decoder.activation='relu' (needs 'gelu')"),  # one for both
])
def test_what_t5_cannot_express_is_named(override, named):
    cfg = tiny("t5_tiny", override)
    with pytest.raises(ModalzooError, match="t5 cannot express") as err:
        t5.hf_config_kwargs(cfg)
    assert named in str(err.value)
    assert t5.hf_config_kwargs(tiny("t5_tiny", *both_stacks("activation", "gelu")))["feed_forward_proj"] == "gelu"


def test_the_t5_architecture_takes_only_encoder_decoders():
    found = {name: architecture.find(modalzoo.load_recipe(name)) for name in modalzoo.list_recipes()}
    assert {name for name, arch in found.items() if arch is not None and arch.name == "t5"} == \
        {"t5_tiny", "t5_small", "ul2_tiny"}
    decoder_only = modalzoo.load_recipe("ul2_tiny", ["model.targets.ul2.source=encoder"])
    assert not t5.t5_target(OmegaConf.to_container(decoder_only.model, resolve=True))
    model = OmegaConf.to_container(tiny().model, resolve=True)
    model["targets"] = {"lm": {"name": "clm", "stream": "text", "source": "decoder"}}
    assert architecture.find(model).name == "t5"


def test_import_is_strict():
    cfg = tiny()
    hf = perturbed(hf_t5(cfg))
    state = dict(hf.state_dict())
    state["encoder.block.0.layer.0.SelfAttention.extra.weight"] = torch.zeros(1)
    with pytest.raises(ModalzooError, match="unmapped encoder.block.0.layer.0.SelfAttention.extra.weight"):
        t5.hf_to_zoo(state)
    del state["encoder.block.0.layer.0.SelfAttention.extra.weight"], state["decoder.final_layer_norm.weight"]
    with pytest.raises(ModalzooError, match="missing decoder.final_layer_norm.weight"):
        t5.hf_to_zoo(state)


def test_transformers_generate_matches_zoo_generate_ids():
    """Random weights (varied tokens): transformers' greedy generate() with its cache == generate_ids."""
    cfg = tiny()
    torch.manual_seed(0)
    zoo = perturbed(modalzoo.build_model(cfg), std=0.5, seed=4)
    hf = hf_t5(cfg, eos_token_id=3)
    hf.load_state_dict(t5.zoo_to_hf(zoo.state_dict()), strict=True)
    inputs = torch.tensor([[2, 17, 41, 99, 60, 61, 23, 3], [2, 77, 30, 31, 8, 9, 3, 0]])
    mask = inputs != 0
    theirs = hf.generate(inputs, attention_mask=mask.long(), max_new_tokens=16, do_sample=False,
                         eos_token_id=None)[:, 1:]                         # (drop the decoder start)
    ours = torch.stack([generate_ids(zoo, row[m][None], max_new_tokens=16, decoder_start_id=0)[0]
                        for row, m in zip(inputs, mask)])
    assert len(set(ours[0].tolist())) > 4
    assert ours.tolist() == theirs.tolist()


# ----------------------------------------------------------------------------------- a trained run

@pytest.fixture(scope="module")
def trained_run(text_sample, tmp_path_factory):
    root = tmp_path_factory.mktemp("t5")
    cfg = tiny("t5_tiny", f"run_dir={root / 'run'}", f"data.path={text_sample}", "data.num_workers=0",
               *[f"{S}{slot}.vocab_size=500" for slot in ("embedding", "target_embedding")],
               "data.tokenizer.vocab_size=500", "data.seq_len=48", "trainer.batch_size=8", "trainer.max_steps=20",
               "trainer.lr=3e-3", "trainer.warmup_steps=2", "trainer.log_every=10", "trainer.eval_every=20",
               "trainer.eval_batches=2", "trainer.checkpoint_every=20", "trainer.progress=false")
    run_dir = modalzoo.train(cfg)
    lines = []
    out = export_run(run_dir, root / "hf", echo=lines.append)
    return run_dir, out, lines


@pytest.mark.slow
def test_trained_run_exports_and_loads_natively(trained_run):
    run_dir, out, lines = trained_run
    assert "verified against transformers.T5ForConditionalGeneration" in lines[0]
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "t5" and config["architectures"] == ["T5ForConditionalGeneration"]
    hf = transformers.AutoModelForSeq2SeqLM.from_pretrained(out).eval()
    tok = transformers.AutoTokenizer.from_pretrained(out)
    run = load_run(run_dir)
    zoo_tok = run.data_ctx.tokenizer
    assert type(hf).__name__ == "T5ForConditionalGeneration"
    assert tok.extra_special_tokens == [f"<extra_id_{i}>" for i in range(100)]
    assert tok.convert_tokens_to_ids("<extra_id_0>") == zoo_tok.sentinel_ids[0]
    assert hf.config.decoder_start_token_id == zoo_tok.pad_id
    texts = ["Return the <extra_id_0> of the <extra_id_1>.", "Open a file and <extra_id_0> a stream."]
    for text in texts:                                # the encoder's input, as the zoo frames a document
        assert tok(text)["input_ids"] == [zoo_tok.bos_id, *zoo_tok.encode(text)[0], zoo_tok.eos_id]
    # transformers' greedy generate() from its tokenizer's ids == the zoo's generate() from the same text
    for text in texts:
        inputs = tok(text, return_tensors="pt")
        theirs = hf.generate(**inputs, max_new_tokens=10, do_sample=False)[0, 1:].tolist()
        result = generate(run.model, zoo_tok, text, max_new_tokens=10)
        assert result.prompt_ids == inputs["input_ids"][0].tolist()
        assert result.ids == theirs[:len(result.ids)], text
        assert result.ids[0] == zoo_tok.sentinel_ids[0]                         # it learned T5's targets
        assert all(t == zoo_tok.pad_id for t in theirs[len(result.ids):])       # transformers pads after eos
    # init_from=hf: strict, every tensor back exactly
    fresh = perturbed(modalzoo.build_model(run.cfg), seed=9)
    import_hf(fresh, OmegaConf.to_container(run.cfg.model, resolve=True), str(out), tokenizer=zoo_tok,
              echo=lambda _: None, data=run.data_ctx)           # and its config agrees with the recipe's
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in run.model.state_dict().items())


@pytest.mark.slow
def test_an_untied_v1_1_run_exports_loads_untied_and_imports_back(text_sample, tmp_path):
    """T5 v1.1 (gated-GELU, own lm_head, no output scaling): the export writes both tables, transformers loads
    them untied (its config says tied: T5Config forces that), the card's generate() agrees, and init_from=hf:
    brings every tensor back."""
    cfg = tiny("t5_tiny", f"run_dir={tmp_path / 'run'}", f"data.path={text_sample}", "data.num_workers=0",
               *[f"{S}{slot}.vocab_size=500" for slot in ("embedding", "target_embedding")],
               "data.tokenizer.vocab_size=500", "data.seq_len=48", "trainer.batch_size=8", "trainer.max_steps=4",
               "trainer.lr=3e-3", "trainer.warmup_steps=1", "trainer.log_every=2", "trainer.eval_every=4",
               "trainer.eval_batches=1", "trainer.checkpoint_every=4", "trainer.progress=false",
               "model.targets.t5.tie_weights=false", *both_stacks("activation", "geglu"))
    run_dir = modalzoo.train(cfg)
    lines = []
    out = export_run(run_dir, tmp_path / "hf", echo=lines.append)
    assert "verified against transformers.T5ForConditionalGeneration" in lines[0]
    hf = transformers.AutoModelForSeq2SeqLM.from_pretrained(out).eval()
    assert hf.lm_head.weight is not hf.shared.weight and not torch.equal(hf.lm_head.weight, hf.shared.weight)
    assert not hf.config.scale_decoder_outputs
    run = load_run(run_dir)
    assert torch.equal(hf.lm_head.weight, run.model.targets["t5"].head.weight)
    tok = transformers.AutoTokenizer.from_pretrained(out)
    inputs = tok("Return the <extra_id_0> of the <extra_id_1>.", return_tensors="pt")
    theirs = hf.generate(**inputs, max_new_tokens=8, do_sample=False)[0, 1:].tolist()
    result = generate(run.model, run.data_ctx.tokenizer, "Return the <extra_id_0> of the <extra_id_1>.",
                      max_new_tokens=8)
    assert result.ids == theirs[:len(result.ids)]
    fresh = perturbed(modalzoo.build_model(run.cfg), seed=9)
    import_hf(fresh, OmegaConf.to_container(run.cfg.model, resolve=True), str(out), tokenizer=run.data_ctx.tokenizer,
              echo=lambda _: None, data=run.data_ctx)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in run.model.state_dict().items())


@pytest.mark.slow
def test_a_t5_recipe_without_sentinels_stops_at_start(text_sample, tmp_path):
    overrides = [o for o in tiny_overrides(text_sample, tmp_path / "run") if not o.startswith("model.")]
    result = run_cli("train", "t5_tiny", *overrides, *TINY, "data.tokenizer.extra_ids=0",
                     *[f"{S}{slot}.vocab_size=2000" for slot in ("embedding", "target_embedding")])
    assert result.returncode == 2, result.stderr
    assert "span_corruption needs sentinel tokens in the tokenizer, which has none: set data.tokenizer.extra_ids " \
           "(T5: 100)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_card_snippet_fills_sentinels(trained_run, tmp_path):
    import re
    import runpy
    _, out, _ = trained_run
    card = (out / "README.md").read_text()
    assert "pipeline_tag: text2text-generation" in card
    script = tmp_path / "snippet.py"
    script.write_text(re.search(r"```python\n(.*?)```", card, re.S).group(1))
    runpy.run_path(str(script), run_name="__main__")
