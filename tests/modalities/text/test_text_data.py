"""Text shards: the sample builder, pack-text, splitting across readers, corrupt samples, packing masks."""

from __future__ import annotations

import io
import json
import tarfile

import pytest
import torch

from modalzoo.datasets import shards
from modalzoo.datasets.dataset import FieldBatcher
from modalzoo.datasets.shards import ShardStream, list_shards
from modalzoo.errors import ModalzooError
from modalzoo.modalities.text.dataset import TextData, TextDataConfig
from modalzoo.modalities.text.fields import TextField
from modalzoo.modalities.text.pack import pack_text


def test_text_sample_is_real_prose_split_by_file(text_sample):
    info = json.loads((text_sample / "info.json").read_text())
    assert info["documents"]["train"] > 50 and info["documents"]["validation"] > 3
    data = TextData(TextDataConfig(path=str(text_sample)))
    train, val = list(data.texts("train")), list(data.texts("validation"))
    assert len(set(train) & set(val)) == 0
    words = " ".join(train[:200]).lower().split()
    assert sum(w in {"the", "a", "of", "to", "is"} for w in words) / len(words) > 0.05   # English


def test_pack_text_txt_and_jsonl(tmp_path):
    (tmp_path / "a.txt").write_text("first doc\nstill first\n\nsecond doc\n\n\nthird doc\n")
    records = [json.dumps({"text": "json doc one"}), "", json.dumps({"text": "two"})]
    (tmp_path / "b.jsonl").write_text("\n".join(records) + "\n")
    counts = pack_text([tmp_path / "a.txt", tmp_path / "b.jsonl"], tmp_path / "out")
    assert counts == {"train": 5, "validation": 0}
    data = TextData(TextDataConfig(path=str(tmp_path / "out")))
    assert list(data.texts("train")) == ["first doc\nstill first", "second doc", "third doc", "json doc one", "two"]
    per_line = pack_text([tmp_path / "a.txt"], tmp_path / "lines", per="line")
    assert per_line["train"] == 4


def test_pack_text_errors(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"body": "x"}\n')
    with pytest.raises(ModalzooError, match="bad.jsonl:1: no string field 'text'"):
        pack_text([tmp_path / "bad.jsonl"], tmp_path / "o")
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(ModalzooError, match="expected a .txt or .jsonl"):
        pack_text([tmp_path / "x.csv"], tmp_path / "o")


def test_shards_split_across_ranks_and_workers_without_overlap(text_sample, monkeypatch):
    """2 ranks x 2 loader workers read every sample of an epoch exactly once."""
    urls = list_shards(text_sample, "train")
    seen = []
    for rank in range(2):
        monkeypatch.setattr(shards.dist, "is_initialized", lambda: True)
        monkeypatch.setattr(shards.dist, "get_rank", lambda r=rank: r)
        monkeypatch.setattr(shards.dist, "get_world_size", lambda: 2)
        stream = ShardStream(urls, lambda samples, skips: ({"key": s["__key__"]} for s in samples),
                             seed=3, shuffle=True, shuffle_buffer=10, repeat=False)
        loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=2)
        seen += [b["key"] for b in loader]
    monkeypatch.undo()
    everything = [s["__key__"] for s in ShardStream(urls, lambda s, k: s, shuffle=False, repeat=False)]
    assert len(seen) == len(everything) and set(seen) == set(everything)


def test_corrupt_sample_is_skipped_and_counted(tmp_path):
    shard = tmp_path / "train" / "shard-000000.tar"
    shard.parent.mkdir()
    with tarfile.open(shard, "w") as tar:
        for key, payload in [("a", b"good one"), ("b", b"\xff\xfe\xfa bad utf8"), ("c", b"good two")]:
            info = tarfile.TarInfo(f"{key}.txt")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    skips = shards.SkipCounter()
    decode = FieldBatcher({"text": TextField({"name": "wordpiece"}, 16, True, 0)}, {"text": None}, 1, False).decoded
    stream = ShardStream([str(shard)], lambda samples, k: (row["text"] for row in decode(samples, skips)),
                         shuffle=False, repeat=False)
    assert list(stream) == ["good one", "good two"]
    assert skips.skipped == 1


def test_missing_shards_name_the_build_command(tmp_path):
    with pytest.raises(ModalzooError, match="modalzoo data build text-sample"):
        TextData(TextDataConfig(path=str(tmp_path))).shards("train")


@pytest.mark.parametrize("packing", [True, False])
def test_batches_are_ready_for_the_model(text_sample, packing):
    data = TextData(TextDataConfig(path=str(text_sample), seq_len=48, packing=packing, num_workers=0,
                                   tokenizer={"name": "wordpiece", "vocab_size": 600}))
    tok = data.prepare(None).tokenizer
    batch = next(iter(data.loader("train", 4, [], seed=0, train=True)))
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.shape[0] == 4 and ids.shape[1] <= 48
    assert (ids[~mask] == tok.pad_id).all()
    assert (ids[:, 0] == tok.bos_id).all()
    if packing:
        assert ids.shape[1] == 48 and (batch["segment_ids"].max(1).values >= 1).all()
        starts = batch["position_ids"] == 0
        assert (ids[starts & mask] == tok.bos_id).all()          # every packed document starts with [CLS]


def test_text_loader_caps_workers_at_the_shards(tmp_path, monkeypatch):
    """More loader workers than shards: the extra readers would never yield and the DataLoader would
    wait forever; the loader runs with one worker per shard instead (and too few shards for the ranks is
    refused by name)."""
    (tmp_path / "docs.txt").write_text("\n\n".join(f"document number {i} about shards" for i in range(40)))
    pack_text([tmp_path / "docs.txt"], tmp_path / "one-shard")
    assert len(list_shards(tmp_path / "one-shard", "train")) == 1
    data = TextData(TextDataConfig(path=str(tmp_path / "one-shard"), num_workers=3, seq_len=16,
                                   tokenizer={"name": "wordpiece", "vocab_size": 200, "min_frequency": 1}))
    (tmp_path / "run").mkdir()
    data.prepare(tmp_path / "run")
    loader = data.loader("train", 4, [], seed=0, train=True)
    assert loader.num_workers == 1
    assert next(iter(loader))["input_ids"].shape == (4, 16)
    monkeypatch.setattr(shards.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(shards.dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(shards.dist, "get_rank", lambda: 0)
    with pytest.raises(ModalzooError, match="1 shard\\(s\\) cannot feed 2 ranks"):
        data.loader("train", 4, [], seed=0, train=True)


def test_unreadable_text_shard_is_a_clear_error(tmp_path):
    bad = tmp_path / "train" / "shard-000000.tar"
    bad.parent.mkdir()
    bad.write_bytes(b"<html>404 not found</html>" * 40)
    with pytest.raises(ModalzooError, match=r"shard-000000\.tar is not a readable tar file"):
        TextData(TextDataConfig(path=str(tmp_path))).shards("train")


def test_grouped_shards_are_compact_and_read_like_a_member_per_document(text_sample, tmp_path):
    """Text writers group documents into `N.samples.jsonl` members: ~1.05x the text instead of a 512-byte tar
    header plus padding per document (the old layout, still read), into the same documents and the same batches.
    The corpus depends on the installed site-packages, so the bounds are per document, not a fixed ratio."""
    texts = list(TextData(TextDataConfig(path=str(text_sample))).texts("train"))
    raw = sum(len(t.encode()) for t in texts)

    def write(root, per_member, max_count):
        with shards.ShardWriter(root, "train", max_count=max_count, per_member=per_member) as writer:
            for i, text in enumerate(texts):
                writer.write({"__key__": f"doc{i}", "txt": text})
        return sum(p.stat().st_size for p in (root / "train").glob("*.tar"))

    grouped, one_per_doc = write(tmp_path / "grouped", 1000, 10_000), write(tmp_path / "one-shard", 1, 10_000)
    assert grouped <= 1.1 * raw
    assert one_per_doc >= raw + 512 * len(texts)        # a header block per member, at the least
    assert grouped < one_per_doc - 400 * len(texts)
    write(tmp_path / "single", 1, 100)                  # the fixture's shard boundaries, a member per document
    cfg = {"seq_len": 32, "num_workers": 0, "tokenizer": {"name": "wordpiece", "vocab_size": 500}}
    TextData(TextDataConfig(path=str(text_sample), **cfg)).prepare(tmp_path)      # saves tmp_path/tokenizer.json
    cfg["tokenizer"] = {"name": "wordpiece", "path": str(tmp_path / "tokenizer.json")}
    batches = []
    for root in (text_sample, tmp_path / "single"):
        data = TextData(TextDataConfig(path=str(root), **cfg))
        data.prepare(None)
        assert list(data.texts("train")) == texts
        batches.append([b for _, b in zip(range(12), data.loader("train", 4, [], seed=5, train=True))])
    for a, b in zip(*batches, strict=True):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_context_restores_the_runs_tokenizer_without_shards(text_sample, tmp_path):
    cfg = {"seq_len": 48, "tokenizer": {"name": "wordpiece", "vocab_size": 500}}
    tok = TextData(TextDataConfig(path=str(text_sample), **cfg)).prepare(tmp_path).tokenizer
    ctx = TextData(TextDataConfig(path=str(tmp_path / "gone"), **cfg)).context(tmp_path)
    assert ctx.tokenizer.encode("Return the items.") == tok.encode("Return the items.")
    assert ctx.get("tokenizer_name") == "wordpiece" and ctx.get("seq_len") == 48
    written = ctx.write_files(tmp_path / "hf")                       # modalzoo format: WordPiece -> bert files
    assert {p.name for p in written} == {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"}
    config = json.loads((tmp_path / "hf" / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "BertTokenizer" and config["model_max_length"] == 48
    assert ctx.write_files(tmp_path / "none", {"image": "vit"}) == []
    assert TextData(TextDataConfig(**cfg)).context(tmp_path / "no-run").tokenizer is None
