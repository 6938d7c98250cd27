"""ELECTRA's two transformers classes, through `modalzoo.modalities.text.hub.electra`: the discriminator is
`ElectraForPreTraining`, the generator `ElectraForMaskedLM`; the same function with the same weights both ways,
an exported run that transformers' Auto classes load, and ``init_from=hf:`` back from either."""

from __future__ import annotations

import pytest
import torch
import transformers
from omegaconf import OmegaConf

import modalzoo
from modalzoo import ModalzooError
from modalzoo.hub import export as export_mod
from modalzoo.hub.pretrained import import_hf
from modalzoo.modalities.text.hub.electra import hf_config_kwargs, hf_to_zoo, zoo_to_hf
from modalzoo.registry import TOKENIZERS
from modalzoo.training import checkpoint as ckpt
from tiny_models import CORPUS, perturbed

CLASSES = {"discriminator": transformers.ElectraForPreTraining, "generator": transformers.ElectraForMaskedLM}
D, G = "model.streams.discriminator.", "model.streams.generator."
TINY = ["data.tokenizer.vocab_size=400", "data.seq_len=24", f"{D}embedding.vocab_size=400",
        f"{D}embedding.dim=16", f"{D}embedding.output_dim=32", f"{D}embedding.max_positions=24",
        f"{D}encoder.layers=2", f"{D}encoder.dim=32", f"{D}encoder.heads=2", f"{D}encoder.ffn_dim=64",
        f"{G}embedding.output_dim=8", f"{G}encoder.layers=2", f"{G}encoder.dim=8", f"{G}encoder.ffn_dim=16"]
TABLES = "streams.discriminator.embedding"


def tiny(extra=()):
    return modalzoo.load_recipe("electra_tiny", [*TINY, *extra])


def padded_batch(vocab: int, lengths=(20, 13)) -> dict[str, torch.Tensor]:
    """Right padding in the second row, both token types."""
    g = torch.Generator().manual_seed(1)
    B, L = len(lengths), max(lengths)
    ids = torch.randint(5, vocab, (B, L), generator=g)
    mask = torch.arange(L)[None] < torch.tensor(lengths)[:, None]
    ids[~mask] = 0
    types = (torch.arange(L)[None] >= L // 2).long().expand(B, L) * mask
    return {"input_ids": ids, "attention_mask": mask.long(), "token_type_ids": types}


def logits_diff(zoo, hf, role: str, batch) -> float:
    real = batch["attention_mask"].bool()
    target = zoo.targets["electra"]
    with torch.no_grad():
        out = zoo.streams[role](batch)
        mine = (target.discriminator_head(out.hidden.x)[real] if role == "discriminator"
                else target.generator_head.logits(out.hidden.x[real], out))
        theirs = hf(**batch).logits[real]
    assert mine.shape == theirs.shape
    return (mine - theirs).abs().max().item()


@pytest.mark.parametrize("role", ["discriminator", "generator"])
def test_zoo_weights_in_transformers_compute_the_same(role):
    cfg = tiny()
    torch.manual_seed(0)
    zoo = perturbed(modalzoo.build_model(cfg))
    hf = CLASSES[role](transformers.ElectraConfig(**hf_config_kwargs(cfg, role))).eval()
    hf_state = zoo_to_hf(zoo.state_dict(), role, tables=TABLES)
    assert set(hf_state) == set(hf.state_dict())
    hf.load_state_dict(hf_state, strict=True)
    assert logits_diff(zoo, hf, role, padded_batch(400)) <= 1e-4
    back = hf_to_zoo(hf.state_dict(), role, tables=TABLES)
    assert back and all(torch.equal(back[k], zoo.state_dict()[k]) for k in back)


@pytest.mark.parametrize("role", ["discriminator", "generator"])
def test_transformers_weights_in_the_zoo_compute_the_same(role):
    cfg = tiny()
    torch.manual_seed(1)
    hf = perturbed(CLASSES[role](transformers.ElectraConfig(**hf_config_kwargs(cfg, role))))
    zoo = modalzoo.build_model(cfg).eval()
    result = zoo.load_state_dict(hf_to_zoo(hf.state_dict(), role, tables=TABLES), strict=False)
    other = "generator" if role == "discriminator" else "discriminator"
    assert not result.unexpected_keys
    left = [k for k in result.missing_keys if not k.startswith((f"streams.{other}.", f"targets.electra.{other}_head."))]
    assert not left, left                            # everything of the role's part came from the checkpoint
    assert logits_diff(zoo, hf, role, padded_batch(400)) <= 1e-4


def test_electra_small_is_google_electra_small_discriminator():
    cfg = modalzoo.load_recipe("electra_small")
    kwargs = hf_config_kwargs(cfg, "discriminator")
    published = {"vocab_size": 30522, "embedding_size": 128, "hidden_size": 256, "num_hidden_layers": 12,
                 "num_attention_heads": 4, "intermediate_size": 1024, "max_position_embeddings": 512,
                 "type_vocab_size": 2, "layer_norm_eps": 1e-12, "hidden_act": "gelu"}   # its config.json
    assert {k: kwargs[k] for k in published} == published
    hf = transformers.ElectraForPreTraining(transformers.ElectraConfig(**kwargs))
    assert sum(p.numel() for p in hf.parameters()) == 13_549_057          # = the zoo's discriminator, ~14M
    generator = hf_config_kwargs(cfg, "generator")
    assert (generator["hidden_size"], generator["num_hidden_layers"], generator["intermediate_size"],
            generator["num_attention_heads"], generator["embedding_size"]) == (64, 12, 256, 1, 128)


@pytest.mark.parametrize("override, role, named", [
    (f"{D}encoder.prenorm=true", "discriminator", r"model\.streams\.discriminator\.encoder\.prenorm=True"),
    ("model.targets.electra.discriminator_activation=relu", "discriminator",
     r"model\.targets\.electra\.discriminator_activation='relu' \(needs 'gelu'\)"),
    ("model.targets.electra.head_activation=relu", "generator", r"model\.targets\.electra\.head_activation='relu'"),
    (f"{G}embedding.output_dim=0", "generator", r"model\.streams\.generator\.encoder\.dim=8 \(needs 16\)"),
])
def test_what_electra_cannot_express_is_named(override, role, named):
    with pytest.raises(ModalzooError, match="electra cannot express .*" + named):
        hf_config_kwargs(tiny([override]), role)


def test_missing_and_unmapped_keys_are_named():
    hf = transformers.ElectraForPreTraining(transformers.ElectraConfig(**hf_config_kwargs(tiny())))
    state = dict(hf.state_dict())
    state["electra.pooler.dense.weight"] = torch.zeros(2, 2)
    with pytest.raises(ModalzooError, match=r"unmapped electra\.pooler\.dense\.weight"):
        hf_to_zoo(state)
    del state["electra.pooler.dense.weight"], state["discriminator_predictions.dense.bias"]
    with pytest.raises(ModalzooError, match=r"missing discriminator_predictions\.dense\.bias"):
        hf_to_zoo(state)


# ------------------------------------------------------------------------------------------ a run, exported

@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A faked tiny run (config, tokenizer, a checkpoint of perturbed weights): what `modalzoo export` reads."""
    run_dir = tmp_path_factory.mktemp("electra") / "run"
    cfg = modalzoo.load_recipe("electra_tiny", [*TINY, f"run_dir={run_dir}"])
    run_dir.mkdir()
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    TOKENIZERS.build(OmegaConf.to_container(cfg.data.tokenizer), "data.tokenizer").train(CORPUS).save(
        run_dir / "tokenizer.json")
    torch.manual_seed(0)
    model = perturbed(modalzoo.build_model(cfg), std=0.05, seed=1)
    ckpt.save_checkpoint(run_dir, 7, model, {"step": 7}, keep_last=1, meta={"recipe": "electra_tiny"})
    return run_dir


def test_an_exported_run_loads_natively_and_the_discriminator_imports_back(run_dir, tmp_path):
    said = []
    disc_dir = export_mod.export_run(run_dir, tmp_path / "discriminator", echo=said.append)
    gen_dir = export_mod.export_run(run_dir, tmp_path / "generator", arch="electra_generator", echo=said.append)
    assert "verified against transformers.ElectraForPreTraining" in said[0]
    run = export_mod.load_run(run_dir)
    zoo, prep = run.model, run.data_ctx
    texts = ["Return the path of the file.", "A photo of a cat, said O'Neil."]
    for out, auto, role in ((disc_dir, transformers.AutoModelForPreTraining, "discriminator"),
                            (gen_dir, transformers.AutoModelForMaskedLM, "generator")):
        hf = auto.from_pretrained(out).eval()
        assert type(hf) is CLASSES[role]
        tok = transformers.AutoTokenizer.from_pretrained(out)
        for text in texts:
            assert tok(text)["input_ids"] == [prep.tokenizer.bos_id, *prep.tokenizer.encode(text)[0],
                                              prep.tokenizer.eos_id]
        assert logits_diff(zoo, hf, role, dict(tok(texts, padding=True, return_tensors="pt"))) <= 1e-4

    cfg = run.cfg
    torch.manual_seed(123)
    fresh = perturbed(modalzoo.build_model(cfg), std=0.05, seed=2)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    import_hf(fresh, OmegaConf.to_container(cfg.model, resolve=True), str(disc_dir), echo=lambda _: None)
    state, original = fresh.state_dict(), zoo.state_dict()
    disc = [k for k in state if k.startswith(("streams.discriminator.", "targets.electra.discriminator_head."))]
    assert disc and all(torch.equal(state[k], original[k]) for k in disc)
    rest = [k for k in state if k not in disc]                   # the generator keeps its own weights
    assert rest and all(torch.equal(state[k], before[k]) for k in rest)

    # the generator's export imports back too: config.json's `architectures` picks it among model_type electra
    fresh = perturbed(modalzoo.build_model(cfg), std=0.05, seed=3)
    import_hf(fresh, OmegaConf.to_container(cfg.model, resolve=True), str(gen_dir), echo=lambda _: None)
    state = fresh.state_dict()
    gen = [k for k in state if k.startswith(("streams.generator.", "targets.electra.generator"))]
    assert gen and all(torch.equal(state[k], original[k]) for k in gen)


def test_the_exports_name_the_stream_they_hold(run_dir, tmp_path):
    with pytest.raises(ModalzooError, match="exports the discriminator stream 'discriminator', not 'generator'; "
                                            "--arch electra_generator exports the other one"):
        export_mod.export_run(run_dir, tmp_path / "x", arch="electra", stream="generator", echo=lambda _: None)
