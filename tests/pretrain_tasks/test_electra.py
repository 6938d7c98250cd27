"""The `electra` target: a generator trained by MLM fills the masked positions with its own samples, a discriminator
it drives spots the replaced tokens; ELECTRA's masking, tie, sampling, loss, metrics and refusals."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

import modalzoo
from modalzoo import build_model
from modalzoo.datasets.fields import DataContext
from modalzoo.errors import ConfigError
from modalzoo.pretrain_tasks import electra as electra_mod
from tiny_models import MASK, SHAPES, V, text_batch

IGNORE = -100


def build(streams=None, **target):
    spec = copy.deepcopy(SHAPES["electra"][0])
    spec["targets"]["electra"].update(target)
    for path, value in (streams or {}).items():          # "generator.encoder.dim": 64
        *keys, last = path.split(".")
        node = spec["streams"]
        for key in keys:
            node = node[key]
        node[last] = value
    torch.manual_seed(0)
    return build_model({"model": spec})


def capture_discriminator_input(model) -> list[torch.Tensor]:
    seen = []
    model.streams["discriminator"].embedding.register_forward_hook(lambda m, i, o: seen.append(i[0]["input_ids"]))
    return seen


def test_one_step_trains_both_streams_and_their_shared_tables():
    model, batch = build(), text_batch()
    out = model(batch)
    out.loss.backward()
    m = out.metrics
    assert {f"electra/{k}" for k in ("generator_loss", "generator_accuracy", "discriminator_loss",
                                     "discriminator_accuracy", "replaced", "discriminator_precision",
                                     "discriminator_recall")} <= set(m)
    assert torch.allclose(out.loss, m["electra/generator_loss"] + 50 * m["electra/discriminator_loss"])
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not no_grad, f"parameters that got no gradient: {no_grad}"
    state = model.state_dict()      # the generator reads the discriminator's tables: stored once, its project its own
    assert [k for k in state if k.startswith("streams.generator.embedding.")] == [
        "streams.generator.embedding.project.weight", "streams.generator.embedding.project.bias"]
    generator, discriminator = model.streams["generator"], model.streams["discriminator"]
    assert generator.embedding.output_weight is discriminator.embedding.word.weight
    assert model.targets["electra"].features_stream == "discriminator"
    assert out.counts["electra"] == int(batch["attention_mask"].sum())


def test_the_generator_alone_reaches_the_shared_table():
    model, batch = build(discriminator_weight=0.0), text_batch()
    model(batch).loss.backward()
    assert model.streams["discriminator"].embedding.word.weight.grad.abs().sum() > 0
    assert model.streams["discriminator"].encoder.blocks[0].mlp.fc1.weight.grad.abs().sum() == 0


def test_the_discriminator_reads_the_generators_samples_and_learns_what_changed():
    model, batch = build(), text_batch()
    seen = capture_discriminator_input(model)
    out = model(batch)
    selected, real = batch["labels"] != IGNORE, batch["attention_mask"]
    original = torch.where(selected, batch["labels"], batch["input_ids"])
    assert len(seen) == 1 and torch.equal(seen[0][~selected], original[~selected])
    assert not (seen[0][selected] == MASK).any()                  # every selected position holds a sample
    replaced = (seen[0] != original) & real
    assert replaced.any()
    assert out.metrics["electra/replaced"].item() == pytest.approx(replaced.sum().item() / real.sum().item())


def test_a_sample_equal_to_the_original_counts_as_original(monkeypatch):
    model, batch = build(), text_batch()
    selected = batch["labels"] != IGNORE
    monkeypatch.setattr(electra_mod, "sample", lambda logits: batch["labels"][selected])   # the generator is right
    seen = capture_discriminator_input(model)
    out = model(batch)
    original = torch.where(selected, batch["labels"], batch["input_ids"])
    assert torch.equal(seen[0], original)                        # the [MASK]s are filled back in
    assert out.metrics["electra/replaced"] == 0
    with torch.no_grad():
        scores = model.targets["electra"].discriminator_head(model.streams["discriminator"](
            {**batch, "input_ids": original}).hidden.x)
    real = batch["attention_mask"]
    want = F.binary_cross_entropy_with_logits(scores[real], torch.zeros(int(real.sum())))
    assert out.metrics["electra/discriminator_loss"].item() == pytest.approx(want.item(), rel=1e-5)


def test_metrics_of_a_discriminator_that_calls_everything_replaced():
    model, batch = build(), text_batch()
    head = model.targets["electra"].discriminator_head.prediction
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(20.0)
    m = model(batch).metrics
    assert m["electra/discriminator_recall"] == 1
    assert m["electra/discriminator_precision"].item() == pytest.approx(m["electra/replaced"].item())
    assert m["electra/discriminator_accuracy"].item() == pytest.approx(m["electra/replaced"].item())
    assert 0 < m["electra/replaced"] < 1


def test_sampling_replays_after_restoring_torchs_rng():
    """What exact resume needs: checkpoints restore torch's RNG per rank, and then the samples repeat."""
    model, batch = build(), text_batch()
    seen = capture_discriminator_input(model)
    state = torch.get_rng_state()
    first = model(batch).loss
    torch.set_rng_state(state)
    again = model(batch).loss
    torch.manual_seed(123)
    model(batch)
    assert torch.equal(seen[0], seen[1]) and torch.equal(first, again)
    assert not torch.equal(seen[0], seen[2])


def test_gumbel_max_draws_from_the_softmax():
    torch.manual_seed(0)
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0, -30.0]).expand(40_000, 5)
    freq = torch.bincount(electra_mod.sample(logits), minlength=5).float() / 40_000
    assert (freq - logits[0].softmax(-1)).abs().max() < 0.01


def test_masking_is_electras_85_percent_mask_15_percent_kept_none_random():
    model = build()
    tok = SimpleNamespace(mask_id=MASK, vocab_size=V, special_ids=[0, 1, 2, 3, MASK])
    transform = model.batch_transforms(DataContext(tokenizer=tok))
    assert len(transform) == 1
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, V, (64, 128), generator=g)
    out = transform[0]({"input_ids": ids, "attention_mask": torch.ones_like(ids, dtype=torch.bool)},
                       torch.Generator().manual_seed(1))
    selected = out["labels"] != IGNORE
    assert selected.float().mean().item() == pytest.approx(0.15, abs=0.01)
    masked = out["input_ids"][selected] == MASK
    assert masked.float().mean().item() == pytest.approx(0.85, abs=0.02)
    assert torch.equal(out["input_ids"][selected][~masked], ids[selected][~masked])    # kept, never random
    assert torch.equal(out["input_ids"][~selected], ids[~selected])


def test_nothing_masked_still_trains_the_discriminator():
    model, batch = build(), text_batch()
    batch = {**batch, "input_ids": torch.where(batch["labels"] != IGNORE, batch["labels"], batch["input_ids"]),
             "labels": torch.full_like(batch["labels"], IGNORE)}
    out = model(batch)
    out.loss.backward()
    assert torch.isfinite(out.loss) and out.metrics["electra/replaced"] == 0
    assert model.targets["electra"].discriminator_head.dense.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("streams, named", [
    ({"generator.encoder.dim": 64, "generator.encoder.heads": 4, "generator.embedding.output_dim": 64},
     r"encoder\.dim 64 > 32"),
    ({"generator.encoder.layers": 3}, r"encoder\.layers 3 > 2"),
])
def test_a_generator_larger_than_the_discriminator_is_refused(streams, named):
    with pytest.raises(ConfigError, match="electra's generator 'model.streams.generator' is larger than its "
                                          "discriminator 'model.streams.discriminator' .*" + named):
        build(streams)


def test_a_misnamed_stream_names_the_closest():
    with pytest.raises(ConfigError, match="electra's generator is stream 'genrator'.*did you mean 'generator'"):
        build(generator="genrator")


@pytest.mark.slow
def test_the_cli_refuses_a_larger_generator_in_one_line(tmp_path, text_sample):
    from conftest import run_cli
    result = run_cli("train", "electra_tiny", "model.streams.generator.encoder.layers=6", "data.num_workers=0",
                     f"data.path={text_sample}", "data.tokenizer.vocab_size=300",
                     "model.streams.discriminator.embedding.vocab_size=300", f"run_dir={tmp_path}/run")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "is larger than its discriminator" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_electra_small_is_the_published_shape():
    """ELECTRA-Small (the paper's Table 6, google-research/electra): a 14M-parameter discriminator over 128-wide
    embeddings, and a generator of 1/4 its width with all its layers."""
    cfg = modalzoo.load_recipe("electra_small")
    model = build_model(cfg)
    params = {p: sum(v.numel() for k, v in model.named_parameters() if k.startswith(p))
              for p in ("streams.discriminator.", "targets.electra.discriminator_head.", "streams.generator.",
                        "targets.electra.generator_head.")}
    discriminator = params["streams.discriminator."] + params["targets.electra.discriminator_head."]
    assert round(discriminator / 1e6) == 14 and discriminator == 13_549_057
    d, g = model.streams["discriminator"], model.streams["generator"]
    assert (d.embedding.cfg.dim, d.embedding.out_dim, d.encoder.cfg.layers, d.encoder.cfg.heads,
            d.encoder.cfg.hidden_ffn, d.embedding.cfg.max_positions, d.embedding.cfg.vocab_size) == \
        (128, 256, 12, 4, 1024, 512, 30522)
    assert (g.embedding.out_dim, g.encoder.cfg.layers, g.encoder.cfg.heads, g.encoder.cfg.hidden_ffn) == \
        (64, 12, 1, 256)
    assert g.embedding.tables is d.embedding
    t = model.targets["electra"].cfg
    assert (t.mask_prob, t.replace_with_mask, t.replace_with_random, t.discriminator_weight) == (0.15, 0.85, 0.0, 50.0)
    assert (cfg.trainer.lr, cfg.trainer.batch_size, cfg.data.seq_len) == (5e-4, 128, 128)
