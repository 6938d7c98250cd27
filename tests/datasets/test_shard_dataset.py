"""The shard dataset over fields, with a toy field (what a new modality writes): decode/skip/count, collate,
finishers seeded per batch, the empty-epoch guard, DataContext lookups and files, and both shard layouts."""

from __future__ import annotations

import io
import json
import tarfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from modalzoo.datasets import shards
from modalzoo.datasets.dataset import ShardDataConfig, ShardDataset
from modalzoo.datasets.fields import DataContext
from modalzoo.datasets.shards import GROUP_KEY, ShardStream, ShardWriter
from modalzoo.errors import ModalzooError


@dataclass
class Scale:
    factor: float


class NumberField:
    """``KEY.num``: one number per sample, times a prepared factor; a finisher adds seeded noise."""

    kind, keys, unit, rows = "number", ("num",), "numbers", "numbers"

    def prepare(self, data, run_dir):
        return Scale(2.0)

    def restore(self, data, run_dir):
        return Scale(float((Path(run_dir) / "factor.txt").read_text()))

    def decode(self, sample, state):
        return float(sample["num"]) * state.factor

    def collate(self, values, state):
        return {"x": torch.tensor(values)}

    def finisher(self, state, train):
        return lambda batch, generator: {**batch, "noise": torch.rand(len(batch["x"]), generator=generator)}

    def count(self, batch):
        return len(batch["x"])

    def files(self, state, out, style):
        path = Path(out) / f"number_{style or 'default'}.json"
        path.write_text(json.dumps({"factor": state.factor}))
        return [path]


class Numbers(ShardDataset):
    """A preset: the generic dataset with one field."""
    build_hint = "write some .num shards"

    def make_fields(self):
        return {"number": NumberField()}


def write_numbers(root: Path, split: str, values: list[str], per_member: int = 1, max_count: int = 100) -> None:
    with ShardWriter(root, split, max_count=max_count, per_member=per_member) as writer:
        for i, v in enumerate(values):
            writer.write({"__key__": f"n{i:04d}", "num": v})


def test_fields_decode_skip_count_collate_and_finish(tmp_path):
    write_numbers(tmp_path, "validation", ["1", "2", "oops", "3", "4"])
    data = Numbers(ShardDataConfig(path=str(tmp_path), num_workers=0))
    ctx = data.prepare(None)
    assert ctx.get("factor") == 2.0 and ctx.get("missing", "default") == "default"
    batches = list(data.loader("val", 2, [], seed=0, train=False))
    assert [b["x"].tolist() for b in batches] == [[2.0, 4.0], [6.0, 8.0]]
    assert [int(b["_skipped"]) for b in batches] == [0, 1]          # "oops" skipped, counted with the batch after it
    assert data.throughput_unit == "numbers" and data.tokens_in(batches[0]) == 2
    again = list(data.loader("val", 2, [], seed=0, train=False))
    assert torch.equal(again[1]["noise"], batches[1]["noise"])      # the finisher's randomness: per batch position
    assert not torch.equal(batches[0]["noise"], batches[1]["noise"])


def test_a_reader_that_never_fills_a_batch_is_an_error(tmp_path):
    write_numbers(tmp_path, "train", ["1", "2", "3"])
    data = Numbers(ShardDataConfig(path=str(tmp_path), num_workers=0))
    data.prepare(None)
    with pytest.raises(ModalzooError, match="no full batch of 4 numbers in 20 epochs"):
        next(iter(data.loader("train", 4, [], seed=0, train=True)))
    with pytest.raises(ModalzooError, match="write some .num shards"):
        data.shards("test")


def test_context_restores_a_run_and_writes_each_fields_files(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "factor.txt").write_text("3.5")
    data = Numbers(ShardDataConfig(path=str(tmp_path / "no-shards-here")))
    ctx = data.context(tmp_path / "run")
    assert ctx.get("factor") == 3.5
    assert [p.name for p in ctx.write_files(tmp_path / "out")] == ["number_default.json"]
    assert [p.name for p in ctx.write_files(tmp_path / "out", {"number": "fancy"})] == ["number_fancy.json"]
    assert ctx.write_files(tmp_path / "out", {"text": "bert"}) == []           # a kind not named writes nothing
    given = DataContext(tokenizer="tok", seq_len=8)
    assert given.tokenizer == "tok" and given.get("seq_len") == 8 and given.write_files(tmp_path / "x") == []


def test_grouped_members_hold_many_samples_and_rotate_shards(tmp_path, monkeypatch):
    texts = [f"document {i} " + "word " * (i % 7) for i in range(25)]
    with ShardWriter(tmp_path, "train", max_count=10, per_member=4) as writer:
        for i, text in enumerate(texts):
            writer.write({"__key__": f"doc{i}", "txt": text})
    names = sorted(p.name for p in (tmp_path / "train").glob("*.tar"))
    assert names == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]     # 10 + 10 + 5 samples
    with tarfile.open(tmp_path / "train" / names[0]) as tar:
        assert tar.getnames() == [f"00000000{n}.{GROUP_KEY}" for n in (0, 4, 8)]    # 4 + 4 + 2 per member
    urls = [str(tmp_path / "train" / n) for n in names]
    read = list(ShardStream(urls, lambda samples, skips: samples, shuffle=False, repeat=False))
    assert [s["txt"] for s in read] == texts
    assert read[5]["__key__"] == "000000004/1"
    monkeypatch.setattr(shards, "MEMBER_BYTES", 30)                  # a byte cap closes members early too
    with ShardWriter(tmp_path, "small", max_count=10, per_member=100) as writer:
        for i in range(6):                                           # 22-byte lines: two per member
            writer.write({"__key__": f"doc{i}", "txt": "x" * 10})
    with tarfile.open(tmp_path / "small" / "shard-000000.tar") as tar:
        assert len(tar.getnames()) == 3
    with pytest.raises(ModalzooError, match="only text fields can share a tar member"):
        ShardWriter(tmp_path, "bad", per_member=2).write({"__key__": "x", "png": b"\x89PNG\xff"})


def test_a_corrupt_line_of_a_grouped_member_is_skipped_and_counted(tmp_path):
    shard = tmp_path / "shard-000000.tar"
    payload = b'{"txt": "first"}\n{"txt": "cut off\n[1, 2]\n\xff\xfe\n{"txt": "last"}\n'
    with tarfile.open(shard, "w") as tar:
        info = tarfile.TarInfo(f"000000000.{GROUP_KEY}")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    skips = shards.SkipCounter()
    stream = ShardStream([str(shard)], lambda samples, k: (s["txt"] for s in samples), shuffle=False, repeat=False)
    assert list(stream.raw_batches(0, 1, skips)) == ["first", "last"]
    assert skips.skipped == 3


def test_a_split_whose_every_sample_is_unreadable_is_an_error_naming_the_first(tmp_path):
    write_numbers(tmp_path, "validation", ["x", "y"])
    data = Numbers(ShardDataConfig(path=str(tmp_path), num_workers=0))
    data.prepare(None)
    with pytest.raises(ModalzooError, match=r"skipped all 2 samples.*the first: sample n0000: ValueError"):
        list(data.loader("val", 2, [], seed=0, train=False))


def test_a_configuration_error_inside_decode_is_not_a_skipped_sample(tmp_path):
    class Strict(NumberField):
        def decode(self, sample, state):
            raise ModalzooError("data.number.unit: unknown unit 'parsecs'")

    class StrictNumbers(Numbers):
        def make_fields(self):
            return {"number": Strict()}

    write_numbers(tmp_path, "validation", ["1", "2"])
    data = StrictNumbers(ShardDataConfig(path=str(tmp_path), num_workers=0))
    data.prepare(None)
    with pytest.raises(ModalzooError, match="unknown unit 'parsecs'"):
        list(data.loader("val", 2, [], seed=0, train=False))


def test_a_truncated_shard_warns_that_grouped_documents_are_lost(tmp_path):
    with ShardWriter(tmp_path / "full", "train", per_member=1000) as writer:
        for i in range(2500):
            writer.write({"__key__": f"d{i}", "txt": f"document number {i}"})
    whole = (tmp_path / "full" / "train" / "shard-000000.tar").read_bytes()
    (tmp_path / "cut" / "train").mkdir(parents=True)
    (tmp_path / "cut" / "train" / "shard-000000.tar").write_bytes(whole[:len(whole) // 2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                          # intact: no warning
        assert shards.list_shards(tmp_path / "full", "train")
    with pytest.warns(UserWarning, match="shard-000000.tar is truncated"):
        shards.list_shards(tmp_path / "cut", "train")


def test_context_lookups_read_state_data_only_and_refuse_ambiguity():
    class Stats:
        def __init__(self):
            self.count = 3

        def mean(self):                       # a method is not a value of the state
            return 0.0

    ctx = DataContext({}, {"a": Stats(), "b": Scale(2.0)})
    assert ctx.get("mean") is None and ctx.get("count") == 3 and ctx.get("factor") == 2.0
    two = DataContext({}, {"query": Scale(1.0), "document": Scale(2.0)})
    with pytest.raises(ModalzooError, match=r"fields \['document', 'query'\] all hold a 'factor'"):
        two.get("factor")
    assert DataContext({}, {"x": Scale(1.0), "y": Scale(1.0)}).get("factor") == 1.0   # the same value: fine
