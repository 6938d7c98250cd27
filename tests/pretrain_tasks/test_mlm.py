"""MLM masking statistics and the head that runs only on masked positions."""

from __future__ import annotations

import torch

from modalzoo import build_model
from modalzoo.pretrain_tasks.mlm import IGNORE, MLMConfig, MLMMasking
from tiny_models import SHAPES

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
