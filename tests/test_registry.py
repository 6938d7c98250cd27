"""Every registered component, of every kind, is built from a tiny config and exercised.

Model components run on the tiny shapes, datasets / sample builders / packers through the checks each
modality's tests/modalities/<name>/harness.py defines. A component without one fails
`test_every_component_has_a_harness`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

import modalzoo
from harnesses import HARNESSES, merged
from modalzoo.errors import ConfigError
from modalzoo.model import build_model, import_components
from modalzoo.registry import REGISTRIES, Registry
from tiny_models import COVERS, SHAPES

import_components()
ALL = [(kind, name) for kind, reg in REGISTRIES.items() for name in reg.names()]
MODEL_KINDS = {"embedding", "encoder", "target_embedding", "decoder", "target"}
TEXTS = ["Return the number of items in the queue.", "Open a file and return a stream.",
         "The quick brown fox jumps over the lazy dog."] * 20


def exercise_model_component(kind, name, _fixtures):
    spec, make_batch = SHAPES[COVERS[(kind, name)]]
    torch.manual_seed(0)
    model = build_model({"model": spec})
    out = model(make_batch())
    out.loss.backward()
    assert torch.isfinite(out.loss)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def exercise_tokenizer(kind, name, _fixtures):
    tok = REGISTRIES[kind].build({"name": name, "vocab_size": 300, "min_frequency": 1}).train(TEXTS)
    ids, words = tok.encode("Return the items.")
    assert ids and len(ids) == len(words)
    assert tok.unk_id not in ids
    assert {tok.pad_id, tok.mask_id, tok.bos_id, tok.eos_id} <= set(tok.special_ids)
    assert "return" in tok.decode(ids).lower()


def exercise_optimizer(kind, name, _fixtures):
    model = build_model({"model": SHAPES["bert"][0]})
    opt = REGISTRIES[kind].build({"name": name}).build(model, lr=1e-2)
    before = [p.detach().clone() for p in model.parameters()]
    model(SHAPES["bert"][1]()).loss.backward()
    opt.step()
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))


def exercise_scheduler(kind, name, _fixtures):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = REGISTRIES[kind].build({"name": name, "min_lr_ratio": 0.1}).build(opt, warmup_steps=4, total_steps=20)
    lrs = []
    for _ in range(20):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.25) and lrs[3] == pytest.approx(1.0)   # linear warmup to the peak
    assert all(0.1 - 1e-9 <= lr <= 1.0 + 1e-9 for lr in lrs[4:])


DATASET_HARNESS = merged("DATASETS")
SAMPLE_DATA_HARNESS = merged("SAMPLE_DATA")
PACKER_HARNESS = merged("PACKERS")


def exercise_dataset(kind, name, fixtures):
    DATASET_HARNESS[name](kind, name, fixtures)


def exercise_sample_data(kind, name, fixtures):
    SAMPLE_DATA_HARNESS[name](kind, name, fixtures)


def exercise_packer(kind, name, fixtures):
    PACKER_HARNESS[name](REGISTRIES[kind].build({"name": name}), fixtures["tmp_path"])


HARNESS = {kind: exercise_model_component for kind in MODEL_KINDS} | {
    "tokenizer": exercise_tokenizer, "dataset": exercise_dataset, "optimizer": exercise_optimizer,
    "scheduler": exercise_scheduler, "sample_data": exercise_sample_data, "packer": exercise_packer}


def test_every_component_has_a_harness():
    per_name = {"dataset": DATASET_HARNESS, "sample_data": SAMPLE_DATA_HARNESS, "packer": PACKER_HARNESS}
    missing = [(k, n) for k, n in ALL if k not in HARNESS or (k in MODEL_KINDS and (k, n) not in COVERS)
               or (k in per_name and n not in per_name[k])]
    assert not missing, (f"registered without a test harness: {missing} (add them to the SHAPES/COVERS, "
                         "DATASETS, SAMPLE_DATA or PACKERS of tests/modalities/<modality>/harness.py)")


def test_every_modality_has_a_harness():
    from modalzoo.components import MODALITIES
    assert set(HARNESSES) == set(MODALITIES), "add tests/modalities/<name>/harness.py for every modality"


@pytest.mark.parametrize("kind,name", ALL, ids=[f"{k}:{n}" for k, n in ALL])
def test_component(kind, name, request, tmp_path):
    HARNESS[kind](kind, name, Fixtures(request, tmp_path))


class Fixtures:
    """``fixtures["digits"]``: a harness asks for the (session) fixtures it needs by name, when it needs them."""

    def __init__(self, request, tmp_path):
        self.request, self.tmp_path = request, tmp_path

    def __getitem__(self, name: str):
        return self.tmp_path if name == "tmp_path" else self.request.getfixturevalue(name)


def test_list_components_api():
    everything = modalzoo.list_components()
    assert set(everything) == set(REGISTRIES)
    assert "transformer" in modalzoo.list_components("encoder")
    with pytest.raises(ConfigError, match="did you mean 'encoder'"):
        modalzoo.list_components("encodr")


def test_unknown_name_lists_valid_and_closest():
    with pytest.raises(ConfigError) as err:
        REGISTRIES["encoder"].make_config({"name": "transfomer"}, "model.streams.text.encoder")
    msg = str(err.value)
    assert "did you mean 'transformer'" in msg and "model.streams.text.encoder.name" in msg


def test_wrong_type_says_what_was_expected():
    with pytest.raises(ConfigError, match="'model.x.layers' expected an integer, got str 'two'"):
        REGISTRIES["encoder"].make_config({"name": "transformer", "layers": "two"}, "model.x")
    with pytest.raises(ConfigError, match=r"expected one of \['layernorm', 'rmsnorm'\]"):
        REGISTRIES["encoder"].make_config({"name": "transformer", "norm": "batchnorm"}, "model.x")


def test_user_component_registers_and_builds():
    """A user's own encoder, registered in their module, is usable by name in a model spec."""
    reg = REGISTRIES["encoder"]

    @dataclass
    class IdentityConfig:
        dim: int = 32

    @reg.register("test_identity")
    class IdentityEncoder(nn.Module):
        """Returns its input (a user-defined encoder)."""

        Config = IdentityConfig

        def __init__(self, cfg, **_):
            super().__init__()
            self.dim = cfg.dim
            self.scale = nn.Parameter(torch.ones(()))

        def forward(self, tokens, memory=None):
            return tokens.replace(x=tokens.x * self.scale)

    try:
        spec = {"streams": {"text": {**SHAPES["bert"][0]["streams"]["text"], "encoder": {"name": "test_identity"}}},
                "targets": SHAPES["bert"][0]["targets"]}
        model = build_model({"model": spec})
        assert isinstance(model.streams["text"].encoder, IdentityEncoder)
        model(SHAPES["bert"][1]()).loss.backward()
    finally:
        reg._entries.pop("test_identity")


def test_register_requires_a_dataclass_config():
    with pytest.raises(TypeError, match="dataclass config"):
        Registry("thing").register("x")(type("X", (), {}))


def test_a_fresh_interpreter_sees_every_component():
    """`import modalzoo` alone registers everything (no test-import order can hide a missing import)."""
    import json
    import subprocess
    import sys
    code = "import json, modalzoo; print(json.dumps(modalzoo.list_components()))"
    fresh = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                      check=True).stdout)
    expected = {kind: reg.names() for kind, reg in REGISTRIES.items()}
    expected["encoder"] = [n for n in expected["encoder"] if n != "test_identity"]
    assert fresh == expected
