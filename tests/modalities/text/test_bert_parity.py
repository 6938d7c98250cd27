"""The zoo's BERT/RoBERTa MLM recipes compute what `transformers` computes, through
`modalzoo.modalities.text.hub.bert`."""

from __future__ import annotations

import re

import pytest
import torch
import transformers

import modalzoo
from modalzoo import ConfigError, ModalzooError
from modalzoo.modalities.text.hub.bert import hf_config_kwargs, hf_to_zoo, zoo_to_hf
from tiny_models import perturbed

IGNORE = -100


def load_recipe(name: str, overrides=()):
    try:
        return modalzoo.load_recipe(name, overrides)
    except ConfigError as err:
        # roberta_base_mlm inherits text_sample's WordPiece-only `lowercase`, which bytelevel_bpe refuses
        if "data.tokenizer.lowercase" not in str(err):
            raise
        return modalzoo.load_recipe(name, [*overrides, "~data.tokenizer.lowercase=true"])


def make_pair(recipe: str, arch: str, overrides=()):
    cfg = load_recipe(recipe, overrides)
    kwargs = hf_config_kwargs(cfg, arch=arch)
    config_cls, model_cls = ((transformers.BertConfig, transformers.BertForMaskedLM) if arch == "bert" else
                             (transformers.RobertaConfig, transformers.RobertaForMaskedLM))
    hf = perturbed(model_cls(config_cls(**kwargs)))
    zoo = modalzoo.build_model(cfg).eval()
    zoo.load_state_dict(hf_to_zoo(hf.state_dict(), arch=arch), strict=True)
    return zoo, hf, kwargs


def make_batch(vocab: int, pad_id: int, type_vocab: int, lengths=(40, 27)) -> dict[str, torch.Tensor]:
    """Batch 2, right padding in the second row, a few labelled (masked) positions in each row."""
    g = torch.Generator().manual_seed(1)
    B, L = len(lengths), max(lengths)
    ids = torch.randint(5, vocab, (B, L), generator=g)
    attention_mask = torch.arange(L)[None, :] < torch.tensor(lengths)[:, None]
    ids[~attention_mask] = pad_id
    types = (torch.arange(L)[None, :] >= L // 2).long().expand(B, L) if type_vocab > 1 else torch.zeros(B, L).long()
    types = types * attention_mask
    labels = torch.full_like(ids, IGNORE)
    for row, n in enumerate(lengths):
        pos = torch.randperm(n, generator=g)[:6]
        labels[row, pos] = ids[row, pos]
        ids[row, pos[:4]] = 4                   # a [MASK]-like id on most of them, as MLM masking does
    return {"input_ids": ids, "attention_mask": attention_mask.long(), "token_type_ids": types, "labels": labels}


def compare(zoo, hf, batch) -> tuple[float, float]:
    """Max |logit difference| at the labelled positions, and |loss difference|."""
    with torch.no_grad():
        out = zoo.streams["text"](batch)
        selected = batch["labels"] != IGNORE
        zoo_logits = zoo.targets["mlm"].logits(out.hidden.x[selected], out)
        zoo_loss = zoo(batch).loss
        hf_out = hf(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    token_type_ids=batch["token_type_ids"], labels=batch["labels"])
    assert zoo_logits.shape == (int(selected.sum()), hf_out.logits.shape[-1])
    return (zoo_logits - hf_out.logits[selected]).abs().max().item(), (zoo_loss - hf_out.loss).abs().item()


@pytest.fixture(scope="module")
def bert_pair():
    return make_pair("bert_base_mlm", "bert")


@pytest.fixture(scope="module")
def roberta_pair():
    return make_pair("roberta_base_mlm", "roberta", ["model.streams.text.encoder.layers=2"])


def test_bert_base_config_is_the_published_one(bert_pair):
    _, _, kwargs = bert_pair
    published = {"vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                 "intermediate_size": 3072, "max_position_embeddings": 512, "type_vocab_size": 2,
                 "layer_norm_eps": 1e-12, "hidden_act": "gelu"}  # bert-base-uncased's config.json
    assert {k: kwargs[k] for k in published} == published


def test_bert_base_mlm_logits_match_transformers(bert_pair):
    zoo, hf, kwargs = bert_pair
    batch = make_batch(kwargs["vocab_size"], pad_id=0, type_vocab=kwargs["type_vocab_size"])
    logits_diff, loss_diff = compare(zoo, hf, batch)
    print(f"bert_base_mlm: max |logits diff| = {logits_diff:.3g}, |loss diff| = {loss_diff:.3g}")
    assert logits_diff <= 1e-4
    assert loss_diff <= 1e-4


def test_roberta_mlm_logits_match_transformers(roberta_pair):
    zoo, hf, kwargs = roberta_pair
    assert kwargs["max_position_embeddings"] == 514 and kwargs["pad_token_id"] == 1
    # RoBERTa numbers positions from pad_id + 1 = 2 and skips padding; right padding keeps them aligned
    batch = make_batch(kwargs["vocab_size"], pad_id=1, type_vocab=kwargs["type_vocab_size"])
    logits_diff, loss_diff = compare(zoo, hf, batch)
    print(f"roberta_base_mlm (2 layers): max |logits diff| = {logits_diff:.3g}, |loss diff| = {loss_diff:.3g}")
    assert logits_diff <= 1e-4
    assert loss_diff <= 1e-4


@pytest.mark.parametrize("arch", ["bert", "roberta"])
def test_round_trip_is_exact(arch, bert_pair, roberta_pair):
    zoo, hf, _ = bert_pair if arch == "bert" else roberta_pair
    zoo_state = zoo.state_dict()
    hf_state = zoo_to_hf(zoo_state, arch=arch)
    assert set(hf_state) == set(hf.state_dict())
    hf.load_state_dict(hf_state, strict=True)
    back = hf_to_zoo(hf.state_dict(), arch=arch)
    assert set(back) == set(zoo_state)
    assert all(torch.equal(back[k], zoo_state[k]) for k in zoo_state)


def test_untied_decoder_round_trips():
    cfg = modalzoo.load_recipe("bert_mlm_tiny", ["model.streams.text.encoder.layers=1",
                                                 "model.targets.mlm.tie_weights=false"])
    kwargs = hf_config_kwargs(cfg)
    assert kwargs["tie_word_embeddings"] is False
    hf = perturbed(transformers.BertForMaskedLM(transformers.BertConfig(**kwargs)))
    zoo = modalzoo.build_model(cfg).eval()
    zoo.load_state_dict(hf_to_zoo(hf.state_dict(), tie_weights=False), strict=True)
    assert torch.equal(zoo.targets["mlm"].decoder.weight, hf.cls.predictions.decoder.weight)
    batch = make_batch(kwargs["vocab_size"], pad_id=0, type_vocab=2)
    assert compare(zoo, hf, batch)[0] <= 1e-4
    back = hf_to_zoo(zoo_to_hf(zoo.state_dict()), tie_weights=False)
    assert all(torch.equal(back[k], v) for k, v in zoo.state_dict().items())


def test_missing_and_unmapped_keys_are_named(roberta_pair):
    zoo, hf, _ = roberta_pair
    hf_state = dict(hf.state_dict())
    gone = hf_state.pop("roberta.encoder.layer.1.attention.self.key.bias")
    with pytest.raises(ModalzooError, match=r"missing roberta\.encoder\.layer\.1\.attention\.self\.key\.bias"):
        hf_to_zoo(hf_state, arch="roberta")
    hf_state["roberta.encoder.layer.1.attention.self.key.bias"] = gone
    hf_state["roberta.pooler.dense.weight"] = torch.zeros(2, 2)
    with pytest.raises(ModalzooError, match=r"unmapped roberta\.pooler\.dense\.weight"):
        hf_to_zoo(hf_state, arch="roberta")
    with pytest.raises(ModalzooError, match="missing"):                 # the wrong arch maps nothing
        hf_to_zoo(hf.state_dict(), arch="bert")

    zoo_state = dict(zoo.state_dict())
    zoo_state["streams.text.encoder.norm.weight"] = torch.ones(768)   # a final norm RoBERTa lacks
    with pytest.raises(ModalzooError, match=r"unmapped streams\.text\.encoder\.norm\.weight"):
        zoo_to_hf(zoo_state, arch="roberta")
    del zoo_state["streams.text.encoder.norm.weight"], zoo_state["targets.mlm.bias"]
    with pytest.raises(ModalzooError, match=r"missing targets\.mlm\.bias"):
        zoo_to_hf(zoo_state, arch="roberta")


def test_untied_hf_decoder_is_refused_when_the_zoo_ties(roberta_pair):
    _, hf, _ = roberta_pair
    hf_state = dict(hf.state_dict())
    hf_state["lm_head.decoder.weight"] = hf_state["lm_head.decoder.weight"] + 1
    with pytest.raises(ModalzooError, match="tie_weights: false"):
        hf_to_zoo(hf_state, arch="roberta")


@pytest.mark.parametrize("override, option", [
    ("model.streams.text.encoder.prenorm=true", "encoder.prenorm"),
    ("model.streams.text.encoder.norm=rmsnorm", "encoder.norm"),
    ("model.streams.text.encoder.activation=swiglu", "encoder.activation"),
    ("model.streams.text.encoder.positions=rope", "encoder.positions"),
    ("model.streams.text.encoder.bias=false", "encoder.bias"),
    ("model.streams.text.encoder.final_norm=true", "encoder.final_norm"),
    ("model.streams.text.encoder.kv_heads=2", "encoder.kv_heads"),
    ("model.streams.text.encoder.attn_scale=1.0", "encoder.attn_scale"),
    ("model.streams.text.embedding.position_offset=2", "embedding.position_offset"),
    ("model.targets.mlm.head_norm_eps=1e-5", "mlm.head_norm_eps"),
])
def test_config_bert_cannot_express_is_named(override, option):
    cfg = modalzoo.load_recipe("bert_mlm_tiny", [override])
    with pytest.raises(ModalzooError, match=r"bert cannot express .*" + re.escape(option) + "="):
        hf_config_kwargs(cfg)
