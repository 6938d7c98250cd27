"""Causal LM end to end, for both layouts (gpt_tiny -> GPT2LMHeadModel, llama_tiny -> LlamaForCausalLM):
packed rows compute each document as if alone; each recipe maps to exactly one transformers class; a
trained run exports (verified), loads with AutoModelForCausalLM + AutoTokenizer natively and imports back
strictly; transformers' own greedy generate() continues a prompt with the same tokens as the zoo's
`generate_ids` / `generate`."""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from omegaconf import OmegaConf

import modalzoo
from modalzoo.errors import ModalzooError
from modalzoo.hub import architecture
from modalzoo.hub.export import export_run, load_run
from modalzoo.hub.pretrained import import_hf
from modalzoo.modalities.text.generate import generate, generate_ids
from modalzoo.modalities.text.hub import causal_lm, gpt2, llama
from modalzoo.modalities.text.packing import SpecialIds, pack, stack
from tiny_models import perturbed

E, N = "model.streams.text.embedding.", "model.streams.text.encoder."
TINY = [f"{E}vocab_size=500", f"{E}dim=32", f"{E}max_positions=64", f"{N}dim=32", f"{N}layers=2", f"{N}ffn_dim=64",
        f"{N}heads=4"]
ARCHS = {"gpt_tiny": ("gpt2", gpt2, "GPT2LMHeadModel", "GPT2Tokenizer"),
         "llama_tiny": ("llama", llama, "LlamaForCausalLM", "TokenizersBackend")}
PROMPTS = ["Return the path of", "Args:\n    x: the", "Raises ValueError if"]


def tiny(recipe: str, *overrides: str):
    return modalzoo.load_recipe(recipe, [*TINY, *([f"{N}kv_heads=2"] if recipe == "llama_tiny" else []), *overrides])


@pytest.mark.parametrize("recipe", list(ARCHS))
def test_packed_row_computes_each_document_alone(recipe):
    """Three documents packed in one row (segment_ids, positions restarting): each one's logits and the loss
    are those of the document on its own."""
    model = perturbed(modalzoo.build_model(tiny(recipe)), std=0.05)
    g = torch.Generator().manual_seed(0)
    docs = [[0, *torch.randint(5, 500, (n,), generator=g).tolist(), 2] for n in (6, 9, 3)]
    row = stack(list(pack([(d, [-1] * len(d)) for d in docs], seq_len=24, pad_id=SpecialIds(1, 0, 2).pad)))
    assert row["segment_ids"].max() == 3 and row["position_ids"][0, len(docs[0])] == 0
    with torch.no_grad():
        packed = causal_lm.zoo_logits(model, row, "text", "lm")[0]
        start, losses = 0, []
        for doc in docs:
            alone = {"input_ids": torch.tensor([doc])}
            assert (packed[start:start + len(doc)] - causal_lm.zoo_logits(model, alone, "text", "lm")[0]).abs().max() \
                <= 1e-5
            losses.append((model(alone).loss, len(doc) - 1))
            start += len(doc)
        mean = sum(loss * n for loss, n in losses) / sum(n for _, n in losses)     # no prediction across documents
        assert abs(model(row).loss - mean) <= 1e-5


def test_each_recipe_maps_to_one_architecture():
    """`matches` never overlaps (find raises if two match); the causal recipes go where their layout says."""
    found = {name: architecture.find(modalzoo.load_recipe(name)) for name in modalzoo.list_recipes()}
    kinds = {name: arch.name if arch else None for name, arch in found.items()}
    assert {kinds[r] for r in ("gpt_tiny", "gpt2_small")} == {"gpt2"}
    assert {kinds[r] for r in ("llama_tiny", "smollm2_135m")} == {"llama"}
    assert kinds["bert_mlm_tiny"] == "bert" and kinds["roberta_base_mlm"] == "roberta"


@pytest.mark.parametrize("recipe", list(ARCHS))
def test_transformers_generate_matches_zoo_generate_ids(recipe):
    """Greedy continuations of random-weight models (no ties, varied tokens): transformers' generate() with
    its own KV cache equals generate_ids, token for token."""
    cfg = tiny(recipe)
    _, module, model_class, _ = ARCHS[recipe]
    zoo = perturbed(modalzoo.build_model(cfg), std=0.3, seed=4)
    config = getattr(transformers, model_class.replace("LMHeadModel", "Config").replace("ForCausalLM", "Config"))
    hf = getattr(transformers, model_class)(config(**module.hf_config_kwargs(cfg), pad_token_id=1, bos_token_id=0,
                                                   eos_token_id=2)).eval()
    hf.load_state_dict(module.zoo_to_hf(zoo.state_dict()), strict=True)
    prompt = torch.tensor([[0, 17, 230, 41, 99, 5]])
    theirs = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=24, do_sample=False,
                         eos_token_id=None)[0, prompt.shape[1]:]
    ours = generate_ids(zoo, prompt, max_new_tokens=24)[0]
    assert len(set(ours.tolist())) > 5                  # a real continuation, not a token or two repeated
    assert ours.tolist() == theirs.tolist()


@pytest.fixture(scope="module", params=list(ARCHS))
def trained_run(request, text_sample, tmp_path_factory):
    """A tiny run of the recipe, trained a few steps on the fixture corpus, and its verified hf export."""
    recipe = request.param
    root = tmp_path_factory.mktemp(recipe)
    cfg = tiny(recipe, f"run_dir={root / 'run'}", f"data.path={text_sample}", "data.num_workers=0",
               "data.tokenizer.vocab_size=500", "data.seq_len=32", "trainer.batch_size=8", "trainer.max_steps=20",
               "trainer.lr=3e-3", "trainer.warmup_steps=2", "trainer.log_every=10", "trainer.eval_every=20",
               "trainer.eval_batches=2", "trainer.checkpoint_every=20", "trainer.progress=false")
    run_dir = modalzoo.train(cfg)
    lines = []
    out = export_run(run_dir, root / "hf", echo=lines.append)
    return recipe, run_dir, out, lines


@pytest.mark.slow
def test_trained_run_exports_and_loads_natively(trained_run):
    recipe, run_dir, out, lines = trained_run
    arch, _, model_class, tokenizer_class = ARCHS[recipe]
    assert f"verified against transformers.{model_class}" in lines[0]
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == arch and config["architectures"] == [model_class] and "auto_map" not in config
    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    tok = transformers.AutoTokenizer.from_pretrained(out)
    assert (type(hf).__name__, type(tok).__name__) == (model_class, tokenizer_class)
    run = load_run(run_dir)
    zoo_tok = run.data_ctx.tokenizer
    for prompt in PROMPTS:
        assert tok(prompt)["input_ids"] == [zoo_tok.bos_id, *zoo_tok.encode(prompt)[0]]
    batch = tok(PROMPTS, padding=True, return_tensors="pt")
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        ours = causal_lm.zoo_logits(run.model, {"input_ids": batch["input_ids"], "attention_mask": real}, "text",
                                    "lm")
        assert (ours[real] - hf(**batch).logits[real]).abs().max() <= 1e-4
    # transformers' generate() from its tokenizer's ids == the zoo's generate() from the prompt text
    for prompt in PROMPTS:
        inputs = tok(prompt, return_tensors="pt")
        theirs = hf.generate(**inputs, max_new_tokens=12, do_sample=False)[0, inputs["input_ids"].shape[1]:]
        result = generate(run.model, zoo_tok, prompt, max_new_tokens=12)
        assert result.prompt_ids == inputs["input_ids"][0].tolist()
        assert result.ids == theirs.tolist(), prompt
    # init_from=hf: strict, every tensor back exactly
    fresh = perturbed(modalzoo.build_model(run.cfg), seed=9)
    import_hf(fresh, OmegaConf.to_container(run.cfg.model, resolve=True), str(out), tokenizer=zoo_tok,
              echo=lambda _: None, data=run.data_ctx)             # its config agrees with the recipe's
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in run.model.state_dict().items())


@pytest.mark.slow
def test_a_checkpoint_whose_config_means_other_weights_is_refused(trained_run, tmp_path):
    """Same tensor names and shapes, another RoPE base / norm epsilon: init_from names the key, loads nothing."""
    import shutil
    recipe, run_dir, out, _ = trained_run
    key = {"gpt2": "layer_norm_epsilon", "llama": "rope_theta"}[ARCHS[recipe][0]]
    changed = tmp_path / "changed"
    shutil.copytree(out, changed)
    config = json.loads((changed / "config.json").read_text())
    if key == "rope_theta":           # transformers 5 keeps it in rope_parameters
        config["rope_parameters"]["rope_theta"] *= 10
    else:
        config[key] *= 10
    (changed / "config.json").write_text(json.dumps(config))
    run = load_run(run_dir)
    fresh = perturbed(modalzoo.build_model(run.cfg), seed=9)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    with pytest.raises(ModalzooError, match=rf"config differs from the recipe's .*{key}: checkpoint"):
        import_hf(fresh, OmegaConf.to_container(run.cfg.model, resolve=True), str(changed),
                  tokenizer=run.data_ctx.tokenizer, echo=lambda _: None, data=run.data_ctx)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in before.items())


@pytest.mark.slow
def test_card_snippet_generates(trained_run, tmp_path):
    import re
    import runpy
    _, _, out, _ = trained_run
    card = (out / "README.md").read_text()
    assert "pipeline_tag: text-generation" in card
    script = tmp_path / "snippet.py"
    script.write_text(re.search(r"```python\n(.*?)```", card, re.S).group(1))
    runpy.run_path(str(script), run_name="__main__")
