"""MLM masking statistics and the head that runs only on masked positions."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import pytest
import torch

from modalzoo import build_model
from modalzoo.datasets.fields import DataContext
from modalzoo.encoders.masks import RealPositions
from modalzoo.modalities.text.embedding import TokenEmbedding, TokenEmbeddingConfig
from modalzoo.pretrain_tasks.mlm import IGNORE, MLMConfig, MLMMasking
from tiny_models import SHAPES, V, code_batch

SPECIALS = [0, 1, 2, 3, 4]


def big_batch(B=64, L=128):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 1000, (B, L), generator=g)
    ids[:, 0], ids[:, -1] = 2, 3
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[: B // 2, L // 2:] = False
    ids[~mask] = 0
    return {"input_ids": ids, "attention_mask": mask,
            "word_ids": torch.arange(L).div(3, rounding_mode="floor").expand(B, L).clone()}


def test_80_10_10_and_rate():
    torch.manual_seed(0)
    batch = big_batch()
    out = MLMMasking(MLMConfig(mask_prob=0.15), mask_id=4, vocab_size=1000, special_ids=SPECIALS)(batch)
    selected = out["labels"] != IGNORE
    candidates = batch["attention_mask"] & (batch["input_ids"] > 4)
    assert not (selected & ~candidates).any()                    # never specials or padding
    rate = selected.sum() / candidates.sum()
    assert abs(rate - 0.15) < 0.01
    as_mask = (out["input_ids"] == 4) & selected
    unchanged = (out["input_ids"] == batch["input_ids"]) & selected
    assert abs(as_mask.sum() / selected.sum() - 0.8) < 0.02
    assert abs(unchanged.sum() / selected.sum() - 0.1) < 0.02   # (random hits the same id ~never)
    assert (out["labels"][selected] == batch["input_ids"][selected]).all()
    assert (out["input_ids"][~selected] == batch["input_ids"][~selected]).all()


def test_whole_word_masking_takes_all_pieces():
    torch.manual_seed(0)
    batch = big_batch()
    batch["attention_mask"][:] = True
    batch["input_ids"][:, 1:-1] = batch["input_ids"][:, 1:-1].clamp(min=5)   # no padding inside words
    out = MLMMasking(MLMConfig(whole_word=True), mask_id=4, vocab_size=1000, special_ids=SPECIALS)(batch)
    selected = (out["labels"] != IGNORE)[:, 3:126].reshape(64, -1, 3)   # words 1..41 = three tokens each
    assert ((selected.sum(-1) == 0) | (selected.sum(-1) == 3)).all()
    assert selected.any()


def test_head_runs_only_on_masked_positions():
    spec, make_batch = SHAPES["bert"]
    model = build_model({"model": spec})
    batch = make_batch()
    seen = []
    model.targets["mlm"].dense.register_forward_hook(lambda m, i, o: seen.append(i[0].shape))
    model(batch)
    assert seen == [torch.Size([int((batch["labels"] != IGNORE).sum()), 32])]


def test_decoder_is_tied_to_the_embedding():
    model = build_model({"model": SHAPES["bert"][0]})
    names = [n for n, _ in model.named_parameters()]
    assert not any("decoder" in n for n in names)
    model(SHAPES["bert"][1]()).loss.backward()
    assert model.streams["text"].embedding.word.weight.grad.abs().sum() > 0


# --------------------------------------------------------------------------------------------------
# Which positions may be masked: the stream's embedding says (`maskable`)
# --------------------------------------------------------------------------------------------------

def old_rule_masking(cfg, mask_id, vocab_size, special_ids, batch, g):
    """MLMMasking as it was before embeddings said what is maskable: specials and attention_mask only."""
    ids = batch["input_ids"]
    candidates = ~torch.isin(ids, torch.tensor(special_ids))
    if "attention_mask" in batch:
        candidates &= batch["attention_mask"].bool()
    if cfg.whole_word and "word_ids" in batch:
        word_ids = batch["word_ids"]
        draw = torch.rand(ids.shape[0], int(word_ids.max()) + 2, generator=g)
        selected = draw.gather(1, word_ids.clamp(min=0)) < cfg.mask_prob
        selected &= (word_ids >= 0) & candidates
    else:
        selected = (torch.rand(ids.shape, generator=g) < cfg.mask_prob) & candidates
    labels = torch.where(selected, ids, torch.full_like(ids, IGNORE))
    action = torch.rand(ids.shape, generator=g)
    to_mask = selected & (action < cfg.replace_with_mask)
    to_random = selected & ~to_mask & (action < cfg.replace_with_mask + cfg.replace_with_random)
    corrupted = ids.clone()
    corrupted[to_mask] = mask_id
    corrupted[to_random] = torch.randint(max(special_ids) + 1, vocab_size, (int(to_random.sum()),), generator=g)
    return {**batch, "input_ids": corrupted, "labels": labels}


TOK = SimpleNamespace(mask_id=4, vocab_size=1000, special_ids=SPECIALS)


@pytest.mark.parametrize("with_padding", [True, False])
@pytest.mark.parametrize("whole_word", [False, True])
def test_text_masks_are_bitwise_the_old_rule(whole_word, with_padding):
    """The text stream's transform (asking its token embedding) masks exactly as before, seed for seed."""
    spec = {**SHAPES["bert"][0], "targets": {"mlm": {"name": "mlm", "stream": "text", "whole_word": whole_word}}}
    transform = build_model({"model": spec}).batch_transforms(DataContext(tokenizer=TOK))[0]
    batch = big_batch()
    if not with_padding:
        del batch["attention_mask"]
    for seed in range(3):
        got = transform(batch, torch.Generator().manual_seed(seed))
        want = old_rule_masking(transform.cfg, 4, 1000, SPECIALS, batch, torch.Generator().manual_seed(seed))
        assert torch.equal(got["input_ids"], want["input_ids"]) and torch.equal(got["labels"], want["labels"])


def code_transform(mask_prob=0.5):
    spec = SHAPES["graphcodebert"][0]
    spec = {**spec, "targets": {"mlm": {"name": "mlm", "stream": "code", "mask_prob": mask_prob}}}
    return build_model({"model": spec}).batch_transforms(DataContext(tokenizer=TOK))[0]


def test_mlm_never_masks_a_data_flow_node_or_a_pad():
    batch = code_batch(B=64, code_len=20, nodes=10, pad=6)
    batch = {k: v for k, v in batch.items() if k != "labels"}
    batch["input_ids"] = batch["input_ids"].clamp(min=5).masked_fill(batch["position_idx"] == 1, 1)  # no [MASK]s
    code = batch["position_idx"] >= 2
    out = code_transform()(batch, torch.Generator().manual_seed(0))
    selected = out["labels"] != IGNORE
    assert not selected[~code].any()                                  # nodes (0) and padding (1) never
    assert torch.equal(out["input_ids"][~code], batch["input_ids"][~code])
    assert abs(selected[code].float().mean() - 0.5) < 0.03            # code tokens at the asked rate
    old = MLMMasking(MLMConfig(mask_prob=0.5), 4, 1000, SPECIALS)(batch, torch.Generator().manual_seed(0))
    assert (old["labels"][batch["position_idx"] == 0] != IGNORE).any()   # the old rule did mask nodes


def test_maskable_honors_the_embedding_prefix():
    fn = TokenEmbedding(TokenEmbeddingConfig(vocab_size=V, prefix="query_")).maskable()
    pad = torch.tensor([[1, 1, 0]], dtype=torch.bool)
    ids = torch.tensor([[5, 6, 0]])
    assert torch.equal(fn({"query_input_ids": ids, "query_attention_mask": pad, "attention_mask": ~pad}), pad)
    assert torch.equal(fn({"query_input_ids": ids}), torch.ones(1, 3, dtype=torch.bool))


def test_masking_transforms_pickle_without_modules():
    """They run in loader workers: a pickled transform holds key names, not the embedding."""
    for transform in (code_transform(), build_model({"model": SHAPES["bert"][0]}).batch_transforms(
            DataContext(tokenizer=TOK))[0]):
        again = pickle.loads(pickle.dumps(transform))
        assert not isinstance(again.maskable, torch.nn.Module) and len(pickle.dumps(transform.maskable)) < 200
    assert isinstance(MLMMasking(MLMConfig(), 4, 1000, SPECIALS).maskable, RealPositions)
