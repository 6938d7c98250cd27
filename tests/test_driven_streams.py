"""A target that runs a stream on inputs it builds (`Target.driven_streams`), on a tiny ELECTRA-shaped model:
a generator stream trained by MLM, and a discriminator stream that a test-only target runs on the generator's
sampled (or argmax) tokens and trains to spot the replaced ones."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from modalzoo import build_model
from modalzoo.errors import ConfigError, ModalzooError
from modalzoo.pretrain_tasks.base import Target, TargetConfig, TaskOutput
from modalzoo.registry import TARGETS
from tiny_models import D, V, enc, text_batch

IGNORE = -100


@dataclass
class ReplacedTokenConfig(TargetConfig):
    generator: str = "generator"
    discriminator: str = "discriminator"
    sample: bool = True              # sample the generator's tokens (ELECTRA) or take its argmax


class ReplacedTokenDetection(Target):
    """Test-only ELECTRA discriminator loss: the discriminator reads the generator's tokens."""

    Config = ReplacedTokenConfig

    def __init__(self, cfg: ReplacedTokenConfig, streams: nn.ModuleDict):
        super().__init__(cfg, streams)
        self.score = nn.Linear(D, 1)

    def driven_streams(self) -> tuple[str, ...]:
        return (self.cfg.discriminator,)

    def stream_head(self, name, output):
        return self.score(output.hidden.x).squeeze(-1) if name == self.cfg.discriminator else None

    def forward(self, outputs, batch):
        gen = outputs[self.cfg.generator]
        masked = batch["labels"] != IGNORE
        with torch.no_grad():            # no gradient through sampling, as in ELECTRA
            logits = F.linear(gen.hidden.x[masked], gen.stream.embedding.output_weight)
            picked = (torch.multinomial(logits.softmax(-1), 1).squeeze(-1) if self.cfg.sample
                      else logits.argmax(-1))
        original = torch.where(masked, batch["labels"], batch["input_ids"])
        corrupted = original.masked_scatter(masked, picked)
        disc = self.run_stream(self.cfg.discriminator, {**batch, "input_ids": corrupted})
        real = batch["attention_mask"].bool()
        replaced = (corrupted != original).float()
        loss = F.binary_cross_entropy_with_logits(disc.heads[self][real], replaced[real])
        return TaskOutput(loss=loss, metrics={"replaced": replaced[real].mean()}, count=int(real.sum()))


def token_stream(layers=2):
    return {"embedding": {"name": "token", "vocab_size": V, "dim": D, "max_positions": 32},
            "encoder": enc(layers=layers)}


def electra(sample=True, discriminator="discriminator"):
    return {"streams": {"generator": token_stream(layers=1), "discriminator": token_stream()},
            "targets": {"mlm": {"name": "mlm", "stream": "generator"},
                        "rtd": {"name": "test_replaced_token", "discriminator": discriminator, "sample": sample,
                                "weight": 50.0}}}


@pytest.fixture(scope="module", autouse=True)
def registered():
    """Registered for this module only: the registry-wide test wants a harness for every registered name."""
    TARGETS.register("test_replaced_token")(ReplacedTokenDetection)
    yield
    TARGETS._entries.pop("test_replaced_token")


def build(**kw):
    torch.manual_seed(0)
    return build_model({"model": electra(**kw)})


@pytest.mark.parametrize("sample", [True, False])
def test_forward_backward_reaches_both_streams(sample):
    model, batch = build(sample=sample), text_batch()
    out = model(batch)
    out.loss.backward()
    assert torch.isfinite(out.loss) and {"mlm/loss", "rtd/loss", "rtd/replaced"} <= set(out.metrics)
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not no_grad, f"parameters that got no gradient: {no_grad}"


def test_the_driven_stream_runs_once_on_the_targets_inputs():
    model, batch = build(sample=False), text_batch()
    seen = []
    model.streams["discriminator"].embedding.register_forward_hook(lambda m, i, o: seen.append(i[0]["input_ids"]))
    model(batch)
    assert len(seen) == 1                                         # not also on the raw batch
    masked = batch["labels"] != IGNORE
    with torch.no_grad():
        generator = model.streams["generator"]
        hidden = generator(batch).hidden.x[masked]
        argmax = F.linear(hidden, generator.embedding.output_weight).argmax(-1)
    assert torch.equal(seen[0][masked], argmax)                   # the [MASK]s hold the generator's tokens
    assert torch.equal(seen[0][~masked], batch["input_ids"][~masked])


def test_sampling_from_torchs_rng_replays_after_restoring_it():
    """What exact resume needs: checkpoints restore torch's RNG per rank, and then the samples repeat."""
    model, batch = build(), text_batch()
    seen = []
    model.streams["discriminator"].embedding.register_forward_hook(lambda m, i, o: seen.append(i[0]["input_ids"]))
    state = torch.get_rng_state()
    first = model(batch).loss
    torch.set_rng_state(state)
    again = model(batch).loss
    torch.manual_seed(123)
    other = model(batch).loss
    assert torch.equal(seen[0], seen[1]) and torch.equal(first, again)
    assert not torch.equal(seen[0], seen[2]) and not torch.equal(first, other)


def test_fsdp_units_and_weight_decay_see_every_stream():
    model = build()
    units = model.fsdp_units()
    for name in ("generator", "discriminator"):
        blocks = list(model.streams[name].encoder.blocks)
        assert all(any(u is b for u in units) for b in blocks)
    assert len(units) == 3
    no_decay = model.no_weight_decay()
    assert "streams.discriminator.encoder.blocks.0.norm1.weight" in no_decay
    assert "streams.discriminator.embedding.word.weight" in no_decay
    assert not any(k.startswith("targets.rtd._run_stream") for k in model.state_dict())
    assert sum(k.startswith("streams.discriminator.") for k in model.state_dict()) > 0


def test_a_target_driving_a_missing_stream_is_a_clear_error():
    with pytest.raises(ConfigError, match="target 'model.targets.rtd' drives stream 'discriminatr', but the model "
                                          "has no such stream; did you mean 'discriminator'"):
        build(discriminator="discriminatr")


def test_a_target_may_only_run_streams_it_drives():
    model, batch = build(), text_batch()
    with pytest.raises(ModalzooError, match="runs stream 'generator' without driving it"):
        model.targets["rtd"].run_stream("generator", batch)
