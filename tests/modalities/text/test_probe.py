"""The docstring package probe: package labels in the text-sample shards, the probe's classifier on synthetic
features, the probe on tiny mlm / clm / encoder-decoder models, and its lines in `modalzoo eval`."""

from __future__ import annotations

import copy
import email.parser
import json
import os
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.modules.linear

import modalzoo
from conftest import tiny_overrides
from modalzoo.cli import main
from modalzoo.datasets.shards import ShardWriter
from modalzoo.evaluation.probe import probe_accuracy
from modalzoo.modalities.text.dataset import TextData, TextDataConfig
from modalzoo.modalities.text.probe import (
    ProbeConfig,
    docstring_probe,
    has_packages,
    package_docs,
    probe_applies,
    probe_set,
    text_features,
)
from modalzoo.modalities.text.samples import package_of, source_roots
from modalzoo.model import build_model
from tiny_models import SHAPES

PROBE_KEYS = ("docstring_probe_top1", "docstring_probe_top1_random_init", "docstring_probe_majority")


def test_package_of_stdlib_and_site_packages_paths():
    stdlib, venv = Path("/py/lib/python3.11"), Path("/venv/lib/python3.11/site-packages")
    roots = [stdlib, venv]
    assert package_of(venv / "torch/nn/modules/linear.py", roots) == "torch"
    assert package_of(stdlib / "email/parser.py", roots) == "email"
    assert package_of(stdlib / "os.py", roots) == "os"
    assert package_of(venv / "six.py", roots) == "six"
    assert package_of(stdlib / "site-packages/pip/_internal/main.py", roots) == "pip"   # the base interpreter's
    assert package_of(stdlib / "dist-packages/typing_extensions.py", roots) == "typing_extensions"
    assert package_of(stdlib / "site-packages/torch/nn/init.py", [stdlib, stdlib / "site-packages"]) == "torch"
    with pytest.raises(ValueError, match="under none of"):
        package_of(Path("/elsewhere/x.py"), roots)
    real = source_roots()                       # this interpreter's own files
    assert package_of(Path(torch.nn.modules.linear.__file__), real) == "torch"
    assert package_of(Path(email.parser.__file__), real) == "email"
    assert package_of(Path(os.__file__), real) == "os"


def test_text_sample_shards_carry_the_package(text_sample):
    info = json.loads((text_sample / "info.json").read_text())
    data = TextData(TextDataConfig(path=str(text_sample)))
    for split in ("train", "validation"):
        read = Counter(package for _, package in package_docs(data, split))
        assert read == Counter(info["packages"][split]) and read.total() == info["documents"][split]
    assert has_packages(data)


@pytest.mark.parametrize("per_member", [1, 1000])
def test_old_shards_without_packages_still_read(tmp_path, per_member):
    with ShardWriter(tmp_path / "old", "validation", per_member=per_member) as w:   # as built before packages
        w.write({"__key__": "a", "txt": "An old docstring without its package."})
    with ShardWriter(tmp_path / "new", "validation", per_member=per_member) as w:
        w.write({"__key__": "a", "txt": "A docstring that knows its package.", "package": "email"})
    old = TextData(TextDataConfig(path=str(tmp_path / "old")))
    assert list(old.texts("validation")) == ["An old docstring without its package."]
    assert list(package_docs(old, "validation")) == [] and not has_packages(old)
    new = TextData(TextDataConfig(path=str(tmp_path / "new")))
    assert list(package_docs(new, "validation")) == [("A docstring that knows its package.", "email")]
    assert list(new.texts("validation")) == ["A docstring that knows its package."]
    run = SimpleNamespace(data=old, data_ctx=SimpleNamespace(tokenizer=object()),
                          model=build_model({"model": SHAPES["bert"][0]}))
    assert not probe_applies(run, "mlm")


def test_probe_set_takes_the_top_packages_with_caps():
    train = [(f"t{i}", "a") for i in range(30)] + [(f"u{i}", "b") for i in range(20)] + [("v", "c")] * 5
    test = [("x", "a")] * 9 + [("y", "b")] * 3 + [("z", "d")] * 4          # 'd' is no class: not tested
    chosen = probe_set(train, test, ProbeConfig(classes=3, train_per_class=10, test_per_class=6,
                                                 min_test_docs=3))
    assert chosen.classes == ["a", "b"]             # 'c' has no held-out document: it would only distract
    assert probe_set(train, test, ProbeConfig(classes=3, min_test_docs=4)).classes == ["a"]
    assert chosen.counts() == {"a": {"train": 10, "test": 6}, "b": {"train": 10, "test": 3}}
    assert len(set(chosen.train_texts)) == 20
    assert chosen.majority_rate() == pytest.approx(6 / 9)


def test_probe_classifier_separates_separable_features_and_not_noise():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 16, generator=g) * 3

    def sample(n):
        y = torch.arange(4).repeat_interleave(n)
        return centers[y] + torch.randn(len(y), 16, generator=g), y.tolist()

    train_x, train_y = sample(30)
    test_x, test_y = sample(20)
    assert probe_accuracy(train_x, train_y, test_x, test_y) > 0.9
    shuffled = torch.randperm(len(train_y), generator=g).tolist()    # labels unrelated to the features
    assert probe_accuracy(train_x, [train_y[i] for i in shuffled], test_x, test_y) < 0.5


@pytest.mark.parametrize("shape,target", [("bert", "mlm"), ("gpt", "lm"), ("t5", "seq2seq")])
def test_probe_on_tiny_models(text_sample, shape, target):
    """mlm, clm and an encoder-decoder (encoder features): applies, and gives accuracies in [0, 1]."""
    spec = copy.deepcopy(SHAPES[shape][0])
    for slot in ("embedding", "target_embedding"):
        if slot in spec["streams"]["text"]:
            spec["streams"]["text"][slot]["vocab_size"] = 600
    data = TextData(TextDataConfig(path=str(text_sample), seq_len=32, num_workers=0,
                                   tokenizer={"name": "wordpiece", "vocab_size": 600}))
    ctx = data.prepare(None)
    run = SimpleNamespace(cfg={"model": spec}, model=build_model({"model": spec}), data=data, data_ctx=ctx,
                          device=torch.device("cpu"))
    assert probe_applies(run, target)
    feats = text_features(run.model, "text", ctx.tokenizer, ["short one.", "a longer docstring " * 9], 32, "cpu")
    assert feats.shape == (2, 32) and torch.isfinite(feats).all()
    result = docstring_probe(run, "text", ProbeConfig(classes=4, train_per_class=20, test_per_class=10))
    assert set(result["summary"]) == set(PROBE_KEYS)
    assert all(0.0 <= v <= 1.0 for v in result["summary"].values())
    # the classes are the corpus's: top train packages that have held-out documents (how many depends on what
    # is installed where the sample was built), each counted as probe_set counts them
    expected = probe_set(list(package_docs(data, "train")), list(package_docs(data, "validation")),
                         ProbeConfig(classes=4, train_per_class=20, test_per_class=10))
    assert 2 <= len(result["classes"]) <= 4 and result["classes"] == expected.counts()
    assert sum(c["test"] for c in result["classes"].values()) > 0


def test_eval_prints_the_probe_for_a_tiny_mlm_run(text_sample, tmp_path, capsys):
    run_dir = modalzoo.train(modalzoo.load_recipe("bert_mlm_tiny", tiny_overrides(
        text_sample, tmp_path / "run", **{"trainer.max_steps": 2, "trainer.eval_every": 2,
                                          "trainer.checkpoint_every": 2})))
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--batches", "2"]) == 0
    out = capsys.readouterr().out
    assert "docstring package probe (" in out
    for key in PROBE_KEYS:
        assert key in out
    report = json.loads((run_dir / "eval.json").read_text())
    assert all(0.0 <= report[key] <= 1.0 for key in PROBE_KEYS)
    assert len(report["mlm"]["classes"]) >= 2
