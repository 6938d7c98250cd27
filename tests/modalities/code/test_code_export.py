"""A GraphCodeBERT (`code_dataflow` stream + post-LN encoder + mlm) exported as transformers' `RobertaForMaskedLM`:
verified on load under eager and SDPA attention with `transformers_inputs` (node-averaged ``inputs_embeds``,
``position_ids`` = ``position_idx``, the zoo's final mask as a 4-D float additive mask), the card's usage snippet
runs as written, a 4-D bool mask is shown wrong under eager (why the float one), a random 514-position RoBERTa
checkpoint imports with ``init_from=hf:`` and gives the same logits, export -> import is exact, and shapes RoBERTa
cannot express are refused naming the option. Tiny: 2 layers, width 32, hand-made batches; the run is faked (a
config.yaml, a tokenizer.json and a checkpoint of perturbed weights)."""

from __future__ import annotations

import copy
import json
import re
import runpy

import pytest
import torch
import transformers
from omegaconf import OmegaConf

import modalzoo
from modalzoo import ModalzooError
from modalzoo.encoders.masks import build_attention_mask
from modalzoo.hub import architecture
from modalzoo.hub.export import export_run, load_run
from modalzoo.hub.pretrained import import_hf, init_from
from modalzoo.modalities.code import embedding as code_embedding
from modalzoo.modalities.code.hub import graphcodebert
from modalzoo.modalities.code.hub import transformers_inputs as ti
from modalzoo.registry import TOKENIZERS
from modalzoo.training import checkpoint as ckpt
from tiny_models import perturbed

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.timeout(300)]

VOCAB, DIM = 300, 32
CORPUS = ["def add(a, b):\n    return a + b\n", "Return the sum of two numbers.",
          "for i in range(n):\n    total = total + i * x\n", "Add one to x and return y.", "y = x + 1"] * 20


def recipe_model(**embedding) -> dict:
    """GraphCodeBERT's shape, tiny: RoBERTa's options (post-LN, LayerNorm eps 1e-5, GELU, one token type)."""
    emb = {"name": "code_dataflow", "vocab_size": VOCAB, "dim": DIM, "max_positions": 40, "type_vocab_size": 1,
           "norm": "layernorm", "norm_eps": 1e-5, **embedding}
    enc = {"name": "transformer", "layers": 2, "dim": DIM, "heads": 4, "ffn_dim": 64, "prenorm": False,
           "final_norm": False, "norm_eps": 1e-5, "activation": "gelu"}
    return {"streams": {"code": {"embedding": emb, "encoder": enc}},
            "targets": {"mlm": {"name": "mlm", "stream": "code", "head_norm_eps": 1e-5},
                        "data_flow": {"name": "data_flow", "stream": "code"}}}


def graph_batch(seed: int = 0, spans: bool = True) -> dict[str, torch.Tensor]:
    """Three rows in the `code` layout by hand: <s> comment </s> code </s> nodes, padding. Row 0: 3 nodes in a
    chain of data flow, one of them with its code links hidden (node alignment), so only its span places it;
    row 1: shorter, 2 nodes; row 2: no comment and no nodes."""
    g = torch.Generator().manual_seed(seed)
    rows = [(4, 8, [(0, 1), (3, 5), (5, 6)], [(1, 0), (2, 1)], 2), (2, 5, [(1, 3), (4, 5)], [(0, 1)], None),
            (0, 6, [], [], None)]                         # comment, code, node spans (in code), edges, hidden node
    L = 24
    ids = torch.full((3, L), 1)
    position = torch.ones(3, L, dtype=torch.long)
    mask = torch.zeros(3, L, L, dtype=torch.bool)
    span = torch.zeros(3, L, 2, dtype=torch.long)
    for b, (c, k, node_spans, edges, hidden) in enumerate(rows):
        specials = [0, c + 1, c + k + 2] if c else [0, k + 1]
        text = specials[-1] + 1
        code = specials[-2] + 1
        ids[b, :text] = torch.randint(5, VOCAB, (text,), generator=g)
        ids[b, specials] = torch.tensor([0] + [2] * (len(specials) - 1))
        ids[b, text:text + len(node_spans)] = 3                  # <unk>
        position[b, :text] = torch.arange(2, 2 + text)
        position[b, text:text + len(node_spans)] = 0
        mask[b, :text, :text] = True
        mask[b, specials, text:text + len(node_spans)] = True
        for j, (s, e) in enumerate(node_spans):
            n, s, e = text + j, code + s, code + e
            span[b, n] = torch.tensor([s, e])
            if j != hidden:
                mask[b, n, s:e] = mask[b, s:e, n] = True
        for src, dst in edges:
            mask[b, text + src, text + dst] = True
    batch = {"input_ids": ids, "position_idx": position, "attn_mask": mask}
    if spans:
        batch["node_span"] = span
    labels = torch.full_like(ids, -100)
    labels[:, 1] = ids[:, 1]
    batch["labels"] = labels
    batch["input_ids"] = ids.masked_fill(labels != -100, 4)      # <mask>
    return batch


def tokenizer():
    return TOKENIZERS.build({"name": "bytelevel_bpe", "vocab_size": VOCAB}, "data.tokenizer").train(CORPUS)


def fake_run(root, model_spec: dict):
    run_dir = root / "run"
    run_dir.mkdir(parents=True)
    data = {"name": "code", "path": str(root / "data"), "seq_len": 38, "max_nodes": 8, "comment_len": 8,
            "tokenizer": {"name": "bytelevel_bpe", "vocab_size": VOCAB}}
    cfg = OmegaConf.create({"recipe": "graphcodebert_tiny", "run_dir": str(run_dir), "data": data,
                            "model": model_spec})
    OmegaConf.save(cfg, run_dir / "config.yaml")
    tokenizer().save(run_dir / "tokenizer.json")
    torch.manual_seed(0)
    model = perturbed(modalzoo.build_model(cfg), std=0.05, seed=1)
    ckpt.save_checkpoint(run_dir, 7, model, {"step": 7}, keep_last=1, meta={"recipe": "graphcodebert_tiny"})
    return run_dir


def zoo_logits(zoo, batch) -> torch.Tensor:
    """The zoo's MLM logits at every comment/code position (position_idx >= 2)."""
    with torch.no_grad():
        out = zoo.streams["code"](batch)
        return zoo.targets["mlm"].logits(out.hidden.x[batch["position_idx"] >= 2], out)


def hf_logits(hf, batch, impl: str, mask: torch.Tensor | None = None) -> torch.Tensor:
    inputs = ti.transformers_inputs(hf.get_input_embeddings(), batch)
    if mask is not None:
        inputs["attention_mask"] = mask
    hf.set_attn_implementation(impl)
    with torch.no_grad():
        return hf(**inputs).logits[batch["position_idx"] >= 2]


def max_diff(a, b) -> float:
    assert a.shape == b.shape and a.abs().mean() > 0.1
    return (a - b).abs().max().item()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("gcb")
    run_dir = fake_run(root, recipe_model())
    said = []
    out = export_run(run_dir, root / "export", echo=said.append)
    return run_dir, out, said


# ------------------------------------------------------------------------------------------------- export

def test_export_is_verified_under_eager_and_sdpa(exported):
    run_dir, out, said = exported
    assert any("logits (eager)" in s and "logits (sdpa)" in s for s in said)
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["RobertaForMaskedLM"] and config["max_position_embeddings"] == 40
    assert json.loads((out / "tokenizer_config.json").read_text())["tokenizer_class"] == "RobertaTokenizer"

    zoo = load_run(run_dir).model
    hf = transformers.AutoModelForMaskedLM.from_pretrained(out).eval()
    assert type(hf).__name__ == "RobertaForMaskedLM"
    for spans in (True, False):
        batch = graph_batch(spans=spans)
        ours = zoo_logits(zoo, batch)
        for impl in ("eager", "sdpa"):
            diff = max_diff(ours, hf_logits(hf, batch, impl))
            print(f"max |Δ logits| {impl} (node_span {spans}): {diff:.2g}")
            assert diff <= 1e-4


def test_a_bool_mask_is_silently_wrong_under_eager(exported):
    """Why the export is run with a float mask: a 4-D bool mask is right under SDPA, off under eager."""
    run_dir, out, _ = exported
    zoo = load_run(run_dir).model
    hf = transformers.AutoModelForMaskedLM.from_pretrained(out).eval()
    batch = graph_batch()
    ours = zoo_logits(zoo, batch)
    bool_mask = ti.final_mask(batch["position_idx"], batch["attn_mask"])[:, None]
    assert max_diff(ours, hf_logits(hf, batch, "sdpa", bool_mask)) <= 1e-4
    assert max_diff(ours, hf_logits(hf, batch, "eager", bool_mask)) > 1e-3
    with pytest.raises(RuntimeError, match="expand"):   # a 3-D mask, as GraphCodeBERT's own code passes it
        hf_logits(hf, batch, "eager", bool_mask[:, 0])


def test_card_has_the_metadata_and_its_snippet_runs(exported, tmp_path):
    _, out, _ = exported
    card = (out / "README.md").read_text()
    meta = card.split("---")[1]
    assert "pipeline_tag: fill-mask" in meta and "library_name: transformers" in meta
    for tag in ("graphcodebert", "code", "data-flow"):
        assert f"- {tag}\n" in meta
    assert re.search(r"max \|Δ logits \(eager\)\| = \S+, max \|Δ logits \(sdpa\)\| = ", card)
    code = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    assert f'"{out.resolve()}"' in code
    assert ('model(inputs_embeds=inputs["inputs_embeds"], position_ids=inputs["position_ids"],\n'
            '                   attention_mask=inputs["attention_mask"])') in code
    assert "3-D" in code and "eager" in code and graphcodebert.CARD_NOTE in card      # the why, twice
    script = tmp_path / "snippet.py"
    script.write_text(code)
    runpy.run_path(str(script), run_name="__main__")


def test_export_then_import_is_exact(exported):
    run_dir, out, _ = exported
    run = load_run(run_dir)
    spec = OmegaConf.to_container(run.cfg.model, resolve=True)
    fresh = perturbed(modalzoo.build_model(run.cfg), std=0.05, seed=2)
    import_hf(fresh, spec, str(out), echo=lambda _: None)
    original, state = run.model.state_dict(), fresh.state_dict()
    assert set(state) == set(original)
    assert [k for k in original if not torch.equal(state[k], original[k])] == []


# ------------------------------------------------------------------------------------------------- helper

def test_transformers_inputs_are_the_zoo_embeddings_inputs():
    assert (ti.NODE, ti.PAD) == (code_embedding.NODE, code_embedding.PAD)
    torch.manual_seed(0)
    zoo = perturbed(modalzoo.build_model({"model": recipe_model()}), std=0.05)
    emb = zoo.streams["code"].embedding
    for spans in (True, False):
        batch = graph_batch(spans=spans)
        inputs = ti.transformers_inputs(emb.word, batch)
        with torch.no_grad():
            tokens = emb(batch)
            again = emb.norm(inputs["inputs_embeds"] + emb.position(batch["position_idx"]) + emb.token_type.weight[0])
        torch.testing.assert_close(again, tokens.x, rtol=0, atol=1e-6)
        mask, _ = build_attention_mask(tokens)
        assert torch.equal(inputs["attention_mask"] == 0, mask)
        assert inputs["attention_mask"].dtype == torch.float32 and inputs["attention_mask"].shape == mask.shape
        assert torch.equal(inputs["position_ids"], batch["position_idx"])
    # the hidden node: its span gives it its subwords' mean; without spans it has no links left (zero vector)
    words = emb.word(graph_batch()["input_ids"])
    with_span = ti.transformers_inputs(emb.word, graph_batch())["inputs_embeds"]
    without = ti.transformers_inputs(emb.word, graph_batch(spans=False))["inputs_embeds"]
    node = 15 + 2                                    # row 0: 15 text tokens, then nodes 0, 1, 2 (2 is hidden)
    torch.testing.assert_close(with_span[0, node], words[0, 11:12].mean(0))      # code from 6: span (5, 6)
    assert torch.equal(without[0, node], torch.zeros(DIM)) and torch.equal(with_span[0, 15], without[0, 15])


# ------------------------------------------------------------------------------------------------- import

def roberta_checkpoint(path, positions: int = 514, hidden: int = DIM):
    config = transformers.RobertaConfig(vocab_size=VOCAB, hidden_size=hidden, num_hidden_layers=2,
                                        num_attention_heads=4, intermediate_size=64,
                                        max_position_embeddings=positions, type_vocab_size=1, layer_norm_eps=1e-5,
                                        pad_token_id=1, bos_token_id=0, eos_token_id=2)
    torch.manual_seed(3)
    hf = transformers.RobertaForMaskedLM(config).eval()
    with torch.no_grad():                            # not a fresh init: norms and biases away from 1 and 0
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    hf.save_pretrained(path)
    return hf


@pytest.mark.parametrize("positions", [{"max_positions": 512, "position_offset": 2}, {"max_positions": 514}])
def test_init_from_a_514_position_roberta_checkpoint(tmp_path, positions):
    hf = roberta_checkpoint(tmp_path / "ckpt")
    spec = recipe_model(**positions)
    cfg = OmegaConf.create({"model": spec, "init_from": f"hf:{tmp_path / 'ckpt'}"})
    zoo = modalzoo.build_model(cfg).eval()
    said = []
    init_from(zoo, cfg, echo=said.append)
    assert "RobertaForMaskedLM" in said[0]
    torch.testing.assert_close(zoo.streams["code"].embedding.position.table.weight,
                               hf.roberta.embeddings.position_embeddings.weight, rtol=0, atol=0)
    batch = graph_batch()
    ours = zoo_logits(zoo, batch)
    for impl in ("eager", "sdpa"):
        assert max_diff(ours, hf_logits(hf, batch, impl)) <= 1e-4


def test_import_names_what_does_not_fit(tmp_path):
    roberta_checkpoint(tmp_path / "ckpt")
    spec = recipe_model(max_positions=512)                          # 512 rows: the checkpoint has 514
    with pytest.raises(ModalzooError, match=r"514 rows.*512 \(model.streams.code.embedding.max_positions 512 \+ "
                                            r"position_offset 0\): set max_positions to 514"):
        import_hf(modalzoo.build_model({"model": spec}), spec, str(tmp_path / "ckpt"), echo=lambda _: None)
    roberta_checkpoint(tmp_path / "wide", hidden=48)
    spec = recipe_model(max_positions=514)
    with pytest.raises(ModalzooError, match=r"another shape.*streams\.code\.embedding\.word\.weight"):
        import_hf(modalzoo.build_model({"model": spec}), spec, str(tmp_path / "wide"), echo=lambda _: None)


# ------------------------------------------------------------------------------------------------- refusals

def test_detection_and_positions():
    model = recipe_model()
    assert architecture.find(model).name == "graphcodebert"
    text = copy.deepcopy(model)
    text["streams"]["code"]["embedding"].update(name="token", position_offset=2)
    del text["targets"]["data_flow"]
    assert architecture.find(text).name == "roberta"              # a `token` stream is still text's RoBERTa
    assert architecture.find({**model, "targets": {**model["targets"], "tags": {"name": "identifier_tagging",
                                                                               "stream": "code"}}}) is None
    tagged = {**model, "targets": {**model["targets"], "tags": {"name": "identifier_tagging", "stream": "code"}}}
    with pytest.raises(ModalzooError, match=r"cannot express model\.targets\.tags .*--target mlm"):
        graphcodebert.config_kwargs(tagged)                       # --arch graphcodebert: the head has no place
    for positions in ({"max_positions": 512, "position_offset": 2}, {"max_positions": 514}):
        assert graphcodebert.config_kwargs(recipe_model(**positions))["max_position_embeddings"] == 514
    base = modalzoo.load_recipe("graphcodebert_base")             # the shipped recipe maps to the checkpoint's shape
    assert architecture.detect(base).name == "graphcodebert"
    assert graphcodebert.config_kwargs(base)["max_position_embeddings"] == 514


@pytest.mark.parametrize("where, change, named", [
    ("encoder", {"prenorm": True}, r"model\.streams\.code\.encoder\.prenorm=True \(needs False\)"),
    ("encoder", {"norm": "rmsnorm"}, r"encoder\.norm='rmsnorm' \(needs 'layernorm'\)"),
    ("encoder", {"positions": "rope"}, r"encoder\.positions='rope' \(needs 'none'\)"),
    ("embedding", {"positions": "none"}, r"embedding\.positions='none' \(needs 'learned'\)"),
    ("encoder", {"mask": "causal"}, r"encoder\.mask='causal' \(needs 'bidirectional'\)"),
])
def test_shapes_roberta_cannot_express_are_refused(where, change, named):
    model = recipe_model()
    model["streams"]["code"][where].update(change)
    with pytest.raises(ModalzooError, match=f"graphcodebert cannot express .*{named}"):
        graphcodebert.config_kwargs(model)


def test_a_refused_run_writes_nothing(tmp_path):
    model = recipe_model()
    model["streams"]["code"]["encoder"]["prenorm"] = True
    run_dir = fake_run(tmp_path, model)
    with pytest.raises(ModalzooError, match=r"RobertaForMaskedLM: graphcodebert cannot express .*prenorm.*"
                                            r"--format modalzoo"):
        export_run(run_dir, tmp_path / "export", echo=lambda _: None)
    assert not (tmp_path / "export").exists() and not (tmp_path / ".tmp-export").exists()
