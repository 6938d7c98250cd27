"""One BERT-shaped text stream of a larger model exported alone as `BertModel` / `RobertaModel`
(``modalzoo export RUN --format hf --arch bert_encoder|roberta_encoder --stream text``), loaded back with
transformers' Auto classes, compared with the zoo stream, and imported back into that stream (``init_from=hf:``).

A tiny CLAP whose text tower is clap_base's (RoBERTa-shaped: post-norm, bidirectional, positions from 2) is
trained a few steps on synthetic clips; a CLIP-style model with a BERT-shaped text tower (two token types) is a
faked run (config, tokenizer, checkpoint of perturbed weights). Both go through the real `export_run`."""

from __future__ import annotations

import json
import re
import runpy

import pytest
import torch
import transformers
from omegaconf import OmegaConf
from safetensors.torch import load_file

import modalzoo
from modalzoo import ModalzooError
from modalzoo.hub import architecture
from modalzoo.hub.export import export_run, load_run
from modalzoo.hub.pretrained import init_from
from modalzoo.modalities.text.fields import encode_texts
from modalzoo.modalities.text.hub.bert import encoder_config_kwargs
from modalzoo.registry import TOKENIZERS, to_plain
from modalzoo.training import checkpoint as ckpt
from tiny_models import WORDS, perturbed

pytestmark = pytest.mark.usefixtures("one_thread")

CAPTIONS = ["a low tone for 1.2 seconds", "the sound of a high tone", ""]

# clap_tiny shrunk, its text tower made clap_base's (LAION-CLAP's RoBERTa): post-norm, bidirectional, learned
# positions from 2, one token type, embedding LayerNorm; the <s> token is pooled.
CLAP = {"data.val_split": "validation", "data.num_workers": 0, "data.tokenizer.vocab_size": 300,
        "data.seq_len": 16, "data.max_seconds": 1.0,
        "model.streams.audio.embedding.num_mel_bins": 32, "model.streams.audio.embedding.max_frames": 100,
        "model.streams.audio.embedding.dim": 32, "model.streams.audio.encoder.dim": 32,
        "model.streams.audio.encoder.ffn_dim": 64, "model.streams.audio.encoder.layers": 1,
        "model.streams.text.embedding.vocab_size": 300, "model.streams.text.embedding.dim": 32,
        "model.streams.text.embedding.max_positions": 16, "model.streams.text.embedding.position_offset": 2,
        "model.streams.text.embedding.type_vocab_size": 1, "model.streams.text.embedding.norm": "layernorm",
        "model.streams.text.embedding.norm_eps": 1e-5, "model.streams.text.encoder.norm_eps": 1e-5,
        "model.streams.text.encoder.dim": 32, "model.streams.text.encoder.ffn_dim": 64,
        "model.streams.text.encoder.layers": 2, "model.streams.text.encoder.mask": "bidirectional",
        "model.streams.text.encoder.prenorm": "false", "model.streams.text.encoder.final_norm": "false",
        "model.streams.text.encoder.activation": "gelu", "model.targets.clap.pooling": "[cls,cls]",
        "model.targets.clap.embed_dim": 16, "trainer.batch_size": 8, "trainer.max_steps": 3,
        "trainer.lr": 3.0e-3, "trainer.warmup_steps": 1, "trainer.log_every": 3, "trainer.eval_every": 3,
        "trainer.eval_batches": 1, "trainer.checkpoint_every": 3, "trainer.progress": False}

# clip_vit_tiny shrunk, its text tower made BERT's: WordPiece, two token types, post-norm, bidirectional, cls.
BERT_TEXT = {"embedding": {"vocab_size": 300, "dim": 32, "max_positions": 16, "type_vocab_size": 2,
                           "norm": "layernorm", "norm_eps": 1e-12},
             "encoder": {"dim": 32, "ffn_dim": 64, "layers": 2, "mask": "bidirectional", "prenorm": False,
                         "final_norm": False, "activation": "gelu", "norm_eps": 1e-12}}
CLIP = ["data.tokenizer.name=wordpiece", "data.tokenizer.vocab_size=300", "~data.tokenizer.specials_at_end=true",
        "data.seq_len=16", "data.image_size=16", "model.streams.image.embedding.image_size=16",
        "model.streams.image.embedding.dim=32", "model.streams.image.encoder.dim=32",
        "model.streams.image.encoder.ffn_dim=64", "model.streams.image.encoder.layers=1",
        *(f"model.streams.text.{slot}.{k}={v}" for slot, opts in BERT_TEXT.items() for k, v in opts.items()),
        "model.targets.clip.pooling=[cls,cls]", "model.targets.clip.embed_dim=16"]


@pytest.fixture(scope="module")
def clap_run(audio_clips, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "clap_roberta_text"
    overrides = {**CLAP, "data.path": str(audio_clips), "run_dir": str(run_dir)}
    torch.manual_seed(0)
    return modalzoo.train(modalzoo.load_recipe("clap_tiny", [f"{k}={v}" for k, v in overrides.items()]))


def fake_run(root, recipe: str, overrides) -> object:
    """A run without training: config.yaml, a tokenizer trained on a few lines, a checkpoint of perturbed weights."""
    run_dir = root / f"run-{recipe}"
    cfg = modalzoo.load_recipe(recipe, [*overrides, f"run_dir={run_dir}"])
    run_dir.mkdir(parents=True)
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    corpus = [" ".join(WORDS), *CAPTIONS, "the digit seven in a photo of a three"] * 20
    TOKENIZERS.build(OmegaConf.to_container(cfg.data.tokenizer), "data.tokenizer").train(corpus).save(
        run_dir / "tokenizer.json")
    model = perturbed(modalzoo.build_model(cfg), std=0.05, seed=1)
    ckpt.save_checkpoint(run_dir, 7, model, {"step": 7}, keep_last=1, meta={"recipe": recipe})
    return run_dir


def fake_clip_run(root, extra=()):
    """A CLIP-style run with a BERT-shaped text tower."""
    return fake_run(root, "clip_vit_tiny", [*CLIP, *extra])


def text_hidden(module, batch) -> torch.Tensor:
    with torch.no_grad():
        return module(dict(batch)).hidden.x


def check_stream_import(out, run, stream: str) -> None:
    """init_from=hf: the exported encoder fills exactly the stream's tensors; everything else keeps its values."""
    fresh = perturbed(modalzoo.build_model(run.cfg), std=0.05, seed=2)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    cfg = OmegaConf.merge(run.cfg, {"init_from": f"hf:{out}"})
    said = []
    init_from(fresh, cfg, run.data_ctx.tokenizer, echo=said.append, data=run.data_ctx)   # what `train` runs
    assert "RobertaModel" in said[0] or "BertModel" in said[0]
    after, trained = fresh.state_dict(), run.model.state_dict()
    mine = [k for k in after if k.startswith((f"streams.{stream}.embedding.", f"streams.{stream}.encoder."))]
    assert mine and all(torch.equal(after[k], trained[k]) for k in mine)
    assert all(torch.equal(after[k], before[k]) for k in after if k not in mine)


def test_clap_text_tower_exports_to_roberta_model_and_imports_back(clap_run, tmp_path):
    lines = []
    out = export_run(clap_run, tmp_path / "text", arch="roberta_encoder", stream="text", echo=lines.append)
    diff = float(re.search(r"max \|Δ last_hidden_state\| = (\S+)", lines[0]).group(1))
    print(f"CLAP text tower -> RobertaModel: {lines[0]}")
    assert "verified against transformers.RobertaModel" in lines[0] and diff <= 1e-4
    config = json.loads((out / "config.json").read_text())
    assert (config["model_type"], config["architectures"]) == ("roberta", ["RobertaModel"])
    assert not any(k.startswith("pooler.") for k in load_file(str(out / "model.safetensors")))
    assert not (out / "preprocessor_config.json").exists()             # the audio tower is not exported

    run = load_run(clap_run)
    tok = transformers.AutoTokenizer.from_pretrained(out)
    hf = transformers.AutoModel.from_pretrained(out, add_pooling_layer=False).eval()
    assert type(hf).__name__ == "RobertaModel"
    inputs = tok(CAPTIONS, padding="max_length", max_length=16, truncation=True, return_tensors="pt")
    want = encode_texts(run.data_ctx.tokenizer, CAPTIONS, 16)           # what the CLAP's caption field feeds it
    assert torch.equal(inputs["input_ids"], want["input_ids"])
    real = want["attention_mask"]
    zoo = text_hidden(run.model.streams["text"], want)
    with torch.no_grad():
        hf_hidden = hf(**inputs).last_hidden_state
    measured = (zoo[real] - hf_hidden[real]).abs().max().item()
    print(f"captions through AutoTokenizer + RobertaModel vs the zoo text stream: max |Δ| = {measured:.2g}")
    assert measured <= 1e-4 and (zoo[:, 0] - hf_hidden[:, 0]).abs().max() <= 1e-4   # the pooled <s> token
    check_stream_import(out, run, "text")
    card = (out / "README.md").read_text()
    assert "pipeline_tag: feature-extraction" in card and "add_pooling_layer=False" in card


def test_bert_shaped_text_tower_of_a_clip_style_model_exports_to_bert_model(tmp_path):
    run_dir = fake_clip_run(tmp_path)
    lines = []
    out = export_run(run_dir, tmp_path / "text", arch="bert_encoder", stream="text", echo=lines.append)
    print(f"CLIP-style BERT text tower -> BertModel: {lines[0]}")
    assert "verified against transformers.BertModel" in lines[0]
    run = load_run(run_dir)
    tok = transformers.AutoTokenizer.from_pretrained(out)
    texts = CAPTIONS[:2]
    inputs = tok(texts, padding="max_length", max_length=16, truncation=True, return_tensors="pt")
    want = encode_texts(run.data_ctx.tokenizer, texts, 16)
    assert torch.equal(inputs["input_ids"], want["input_ids"])
    types = (torch.arange(16) >= 4).long() * want["attention_mask"]       # the second token type too
    hf = transformers.AutoModel.from_pretrained(out, add_pooling_layer=False).eval()
    assert type(hf).__name__ == "BertModel"
    zoo = text_hidden(run.model.streams["text"], {**want, "token_type_ids": types})
    with torch.no_grad():
        hf_hidden = hf(**inputs.data | {"token_type_ids": types}).last_hidden_state
    real = want["attention_mask"]
    measured = (zoo[real] - hf_hidden[real]).abs().max().item()
    print(f"BertModel vs the zoo text stream (two token types): max |Δ| = {measured:.2g}")
    assert measured <= 1e-4
    check_stream_import(out, run, "text")
    snippet = re.search(r"```python\n(.*?)```", (out / "README.md").read_text(), re.S).group(1)
    (tmp_path / "snippet.py").write_text(snippet)
    runpy.run_path(str(tmp_path / "snippet.py"), run_name="__main__")      # the card's usage runs as written


def test_mlm_runs_still_pick_the_masked_lm_architectures(tmp_path):
    small = ["data.tokenizer.vocab_size=300", "data.seq_len=16", "model.streams.text.embedding.vocab_size=300",
             "model.streams.text.embedding.dim=32", "model.streams.text.embedding.max_positions=16",
             "model.streams.text.encoder.dim=32", "model.streams.text.encoder.ffn_dim=64",
             "model.streams.text.encoder.layers=1"]
    run_dir = fake_run(tmp_path, "bert_mlm_tiny", small)
    said = []
    export_run(run_dir, tmp_path / "mlm", echo=said.append)                     # no --arch: the MLM model
    export_run(run_dir, tmp_path / "enc", arch="bert_encoder", echo=said.append)   # its encoder alone
    assert "BertForMaskedLM" in said[0] and "transformers.BertModel" in said[2]
    for recipe, name in (("bert_mlm_tiny", "bert"), ("roberta_base_mlm", "roberta")):
        spec = to_plain(modalzoo.load_recipe(recipe).model)
        assert architecture.detect(spec).name == name
    by_class = {cls: architecture.by_model_type(kind, cls).name for kind, cls in
                (("bert", "BertModel"), ("bert", "BertForMaskedLM"), ("roberta", "RobertaModel"),
                 ("roberta", "RobertaForPreTraining"))}
    assert by_class == {"BertModel": "bert_encoder", "BertForMaskedLM": "bert", "RobertaModel": "roberta_encoder",
                        "RobertaForPreTraining": "roberta"}


@pytest.mark.parametrize("option, value, named", [
    ("encoder.mask", "causal", "encoder.mask='causal' (needs 'bidirectional')"),
    ("encoder.prenorm", True, "encoder.prenorm=True (needs False)"),
    ("encoder.norm", "rmsnorm", "encoder.norm='rmsnorm' (needs 'layernorm')"),
    ("encoder.positions", "rope", "encoder.positions='rope' (needs 'none')"),
    ("encoder.final_norm", True, "encoder.final_norm=True (needs False)"),
    ("encoder.activation", "swiglu", "encoder.activation='swiglu'"),
    ("embedding.type_vocab_size", 0, "embedding.type_vocab_size=0 (needs '>= 1')"),
    ("embedding.norm", "none", "embedding.norm='none' (needs 'layernorm')"),
    ("embedding.position_offset", 2, "embedding.position_offset=2 (needs 0)"),
])
def test_a_stream_that_is_not_bert_shaped_is_refused_naming_the_option(option, value, named):
    slot, key = option.split(".")
    spec = {"embedding": {"name": "token", **BERT_TEXT["embedding"]},
            "encoder": {"name": "transformer", "heads": 2, **BERT_TEXT["encoder"]}}
    encoder_config_kwargs(spec, "text")                                  # the unchanged tower exports
    spec[slot][key] = value
    with pytest.raises(ModalzooError, match=r"bert_encoder cannot express .*model\.streams\.text\."
                                            + re.escape(named)):
        encoder_config_kwargs(spec, "text")


def test_export_refusals_name_the_stream_and_the_reason(clap_run, tmp_path):
    with pytest.raises(ModalzooError, match=r"BertModel: bert_encoder cannot express "
                                            r"model\.streams\.text\.embedding\.position_offset=2 \(needs 0\)"):
        export_run(clap_run, tmp_path / "a", arch="bert_encoder", stream="text", echo=lambda _: None)
    with pytest.raises(ModalzooError, match=r"'model\.streams\.audio\.embedding\.name' = 'fbank_patch': "
                                            r"roberta_encoder export needs 'token'"):
        export_run(clap_run, tmp_path / "b", arch="roberta_encoder", stream="audio", echo=lambda _: None)
    with pytest.raises(ModalzooError, match=r"--stream naming a text stream .*text streams: \['text'\]"):
        export_run(clap_run, tmp_path / "c", arch="roberta_encoder", stream="captions", echo=lambda _: None)
    clip_like = fake_clip_run(tmp_path, ["model.streams.text.encoder.mask=causal"])   # clip_vit_tiny's own tower
    with pytest.raises(ModalzooError, match=r"encoder\.mask='causal' \(needs 'bidirectional'\).*--format modalzoo"):
        export_run(clip_like, tmp_path / "d", arch="bert_encoder", stream="text", echo=lambda _: None)
    assert not any((tmp_path / n).exists() for n in "abcd")
