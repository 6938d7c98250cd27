"""`modalzoo data pack-graphs`: users' graphs -> webdataset shards and a schema for the `graph` dataset.

Two kinds of pack, one per output folder:

* molecules — SMILES ``.csv`` (a ``smiles`` column; every other all-numeric column is a label), ``.smi``
  (SMILES first on each line) or ``.sdf`` (numeric properties are labels), featurised exactly as `data build
  molecules` does (`featurize.py`: six atom features, bond types), so a pretrained molecule model reads them.
* graphs — networkx node-link ``.json`` / ``.jsonl`` and edge-list folders (`readers.py`). The schema is
  inferred in a first pass: a node attribute whose values are all numbers is continuous (standardised with
  the train split's mean and sd, a missing value filled with the mean, i.e. 0), any other is categorical
  (its values, most frequent first, at most ``max_values``, then ``<other>``; ``<missing>`` when some node
  lacks it); ``--categorical`` forces names to categorical. The edge attribute ``--edge-type`` gives edge
  types; numeric graph attributes are graph labels (binary when all are 0/1). A graph without any
  categorical node attribute gets one constant feature, so every node has an embedding. Directed graphs are
  read as undirected (the structural encodings are undirected) and counted.

A graph goes to the validation split by a hash of its content (a molecule's: its canonical SMILES), so
re-packing keeps the split and a duplicate never straddles it; exact duplicates are dropped and counted.
Bad rows and files are skipped and counted by reason in info.json, with the first few named. Everything is
written to ``OUT.partial`` and renamed to ``OUT`` at the end, so an interrupted pack leaves no half set.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...datasets.shards import ShardWriter
from ...errors import ModalzooError
from ...registry import PACKERS
from .graphs import Graph, GraphSchema
from .molecule_pack import MoleculePack
from .readers import Bad, RawGraph, edge_list_graphs, id_like, json_graphs

MOLECULE_SUFFIXES = (".csv", ".smi", ".sdf")
GRAPH_SUFFIXES = (".json", ".jsonl")
MISSING, OTHER = "<missing>", "<other>"


@dataclass
class PackGraphsConfig:
    """The `data pack-graphs` flags (metadata "help": their help)."""
    val_fraction: float = field(default=0.05, metadata={"help": "graphs routed to the validation split"})
    val_split: str = field(default="validation", metadata={"help": "the validation split's folder name"})
    labels: list[str] | None = field(default=None, metadata={"help": "graph labels to keep, e.g. '[logS]' "
                                                                     "(default: every numeric one)"})
    smiles_column: str = field(default="", metadata={"help": "the SMILES column of a CSV (default: smiles)"})
    edge_type: str = field(default="type", metadata={"help": "the edge attribute that holds the edge type"})
    categorical: list[str] = field(default_factory=list, metadata={"help": "node attributes to treat as "
                                                                            "categorical though numeric"})
    max_values: int = field(default=1000, metadata={"help": "values kept per categorical attribute"})


@dataclass
class _Attribute:
    """What pass 1 saw of one node attribute."""
    values: Counter = field(default_factory=Counter)
    numeric: bool = True
    present: int = 0
    total: float = 0.0
    squares: float = 0.0
    count: int = 0


def _number(value) -> float | None:
    """A JSON number or a CSV cell that reads as one (bools are not numbers); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            out = float(value)
        except ValueError:
            return None
        return out if math.isfinite(out) else None
    return None


def _text(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _digest(raw: RawGraph) -> str:
    return hashlib.sha1(json.dumps([raw.nodes, [list(e) for e in raw.edges], raw.graph], sort_keys=True,
                                   default=str).encode()).hexdigest()


class _Skips:
    def __init__(self):
        self.counts: Counter = Counter()
        self.examples: list[str] = []

    def add(self, bad: Bad) -> None:
        self.counts[bad.reason] += 1
        if len(self.examples) < 5:
            self.examples.append(f"{bad.where}: {bad.reason}{': ' + bad.detail if bad.detail else ''}")


class GraphPack:
    """Pass 1 (`observe`) infers the schema from the train split's graphs; pass 2 (`encode`) writes them."""

    def __init__(self, cfg: PackGraphsConfig):
        self.cfg = cfg
        self.nodes: dict[str, _Attribute] = {}
        self.edge_types: Counter = Counter()
        self.graph_attrs: dict[str, _Attribute] = {}
        self.directed = self.total_nodes = 0

    def split(self, digest: str) -> str:
        return self.cfg.val_split if int(digest[:8], 16) % 10_000 < self.cfg.val_fraction * 10_000 else "train"

    def observe(self, raw: RawGraph) -> None:
        train = self.split(_digest(raw)) == "train"
        self.total_nodes += len(raw.nodes)
        for node in raw.nodes:
            for name, value in node.items():
                if isinstance(value, (list, dict)) or value is None:
                    continue
                attr = self.nodes.setdefault(name, _Attribute())
                attr.present += 1
                number, text = _number(value), _text(value)
                attr.numeric &= number is not None
                if len(attr.values) < 10 * self.cfg.max_values or text in attr.values:   # bounded memory
                    attr.values[text] += 1
                if number is not None and train:
                    attr.total, attr.squares = attr.total + number, attr.squares + number ** 2
                    attr.count += 1
        for _, _, attrs in raw.edges:
            self.edge_types[_text(attrs.get(self.cfg.edge_type, MISSING))] += 1
        for name, value in raw.graph.items():
            attr = self.graph_attrs.setdefault(name, _Attribute())
            number = 1.0 if value is True else 0.0 if value is False else _number(value)
            attr.numeric &= number is not None
            if number is not None:
                attr.values[_text(number)] += 1

    def finish(self, sources: list[str]) -> GraphSchema:
        """The schema pass 1 implies (and the tables pass 2 encodes with)."""
        self.categorical, self.numeric = {}, {}
        for name in sorted(self.nodes):
            attr = self.nodes[name]
            if attr.numeric and name not in self.cfg.categorical:
                mean = attr.total / max(attr.count, 1)
                sd = math.sqrt(max(attr.squares / max(attr.count, 1) - mean ** 2, 0.0)) or 1.0
                self.numeric[name] = (mean, sd)
            else:
                ranked = sorted(attr.values, key=lambda v: (-attr.values[v], v))
                values = ranked[: self.cfg.max_values] + ([OTHER] if len(ranked) > self.cfg.max_values else [])
                self.categorical[name] = values + ([MISSING] if attr.present < self.total_nodes else [])
        if not self.categorical:
            self.categorical["node"] = ["node"]
        self.edge_names = sorted(self.edge_types, key=lambda v: (-self.edge_types[v], v))
        if set(self.edge_names) <= {MISSING}:            # no edge has a type: one type for all
            self.edge_names = ["edge"]
        labels = {}
        for name, attr in sorted(self.graph_attrs.items()):
            wanted = self.cfg.labels
            if attr.numeric and (name in wanted if wanted is not None else not id_like(name)):
                labels[name] = "binary" if set(attr.values) <= {"0", "1"} else "regression"
        self.labels = labels
        features = [{"name": n, "size": len(v), "values": v} for n, v in self.categorical.items()]
        return GraphSchema(features, self.edge_names, list(self.numeric), labels, "pack-graphs: " + ", ".join(sources),
                           numeric_scaling={n: list(s) for n, s in self.numeric.items()})

    def encode(self, raw: RawGraph) -> Graph:
        index = {n: {v: i for i, v in enumerate(values)} for n, values in self.categorical.items()}
        cat = np.zeros((len(raw.nodes), len(self.categorical)), dtype=np.int64)
        num = np.zeros((len(raw.nodes), len(self.numeric)), dtype=np.float32) if self.numeric else None
        for i, node in enumerate(raw.nodes):
            for j, (name, table) in enumerate(index.items()):
                value = node.get(name)
                cat[i, j] = (table.get(MISSING, 0) if value is None or isinstance(value, (list, dict))
                             else table.get(_text(value), table.get(OTHER, 0)))
            for j, (name, (mean, sd)) in enumerate(self.numeric.items()):
                value = _number(node.get(name))
                num[i, j] = 0.0 if value is None else (value - mean) / sd
        types = {v: i for i, v in enumerate(self.edge_names)}
        edges = np.array([[a, b] for a, b, _ in raw.edges], dtype=np.int64).reshape(-1, 2)
        etype = np.array([types.get(_text(attrs.get(self.cfg.edge_type, MISSING)), 0) for _, _, attrs in raw.edges],
                         dtype=np.int64)
        labels = {}
        for name in self.labels:
            value = raw.graph.get(name)
            value = float(value) if isinstance(value, bool) else _number(value)
            if value is not None:
                labels[name] = value
        return Graph(cat, edges, etype, num, labels)


def _graph_sources(sources: list[Path]) -> Iterator[RawGraph | Bad]:
    for src in sources:
        if src.is_dir() and (src / "edges.csv").exists():
            yield from edge_list_graphs(src)
        elif src.is_dir():
            for path in sorted(p for p in src.rglob("*") if p.suffix.lower() in GRAPH_SUFFIXES and p.is_file()
                               and not any(part.startswith(".") for part in p.relative_to(src).parts)):
                yield from json_graphs(path)
            for sub in sorted(p.parent for p in src.rglob("edges.csv")):
                yield from edge_list_graphs(sub)
        else:
            yield from json_graphs(src)


def _kind(sources: list[Path]) -> str:
    kinds = set()
    for src in sources:
        if not src.exists():
            raise ModalzooError(f"no such file or folder: {src}")
        suffix = src.suffix.lower()
        if src.is_dir() or suffix in GRAPH_SUFFIXES:
            kinds.add("graphs")
        elif suffix in MOLECULE_SUFFIXES:
            kinds.add("molecules")
        else:
            raise ModalzooError(f"{src}: expected a SMILES .csv/.smi, an .sdf, a node-link .json/.jsonl or a "
                                f"folder of them (or of edges.csv/nodes.csv/graphs.csv)")
    if len(kinds) > 1:
        raise ModalzooError("one pack holds molecules (.csv/.smi/.sdf) or graphs (.json/.jsonl/edge-list folders), "
                            "not both: their node features differ; pack them into two folders")
    return kinds.pop()


class _Output:
    """Shard writers into OUT.partial, renamed to OUT by `commit`."""

    def __init__(self, out: Path, per_member: int = 200):
        if out.exists() and any(out.iterdir()):
            raise ModalzooError(f"{out} exists and is not empty: pack into a new folder (or delete it first)")
        self.out, self.tmp, self.per_member = out, out.with_name(out.name + ".partial"), per_member
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        self.writers: dict[str, ShardWriter] = {}
        self.counts: Counter = Counter()
        self.seen: set[bytes] = set()

    def write(self, split: str, graph: Graph, identity: str) -> bool:
        token = hashlib.sha1(identity.encode()).digest()
        if token in self.seen:
            return False
        self.seen.add(token)
        if split not in self.writers:
            self.writers[split] = ShardWriter(self.tmp, split, per_member=self.per_member)
        self.writers[split].write({"__key__": f"{split}-{self.counts[split]:09d}", "json": graph.to_json()})
        self.counts[split] += 1
        return True

    def close(self) -> None:
        for w in self.writers.values():
            w.close()

    def commit(self, schema: GraphSchema, info: dict) -> None:
        schema.save(self.tmp)
        (self.tmp / "info.json").write_text(json.dumps(info, indent=2))
        if self.out.exists():
            self.out.rmdir()
        self.tmp.rename(self.out)


def pack_graphs(sources: list[Path], out: Path, cfg: PackGraphsConfig) -> dict:
    """Pack ``sources`` into ``out``; returns info.json's content."""
    from tqdm import tqdm

    sources, out = [Path(s) for s in sources], Path(out)
    if not sources:
        raise ModalzooError("give at least one graph file or folder")
    if not 0 <= cfg.val_fraction < 1:
        raise ModalzooError(f"--val-fraction must be in [0, 1), got {cfg.val_fraction}")
    if cfg.val_split == "train" or not cfg.val_split or "/" in cfg.val_split:
        raise ModalzooError(f"--val-split must be a plain folder name other than 'train', got {cfg.val_split!r}")
    kind = _kind(sources)
    skips, duplicates, extra = _Skips(), 0, {}
    output = _Output(out)
    try:
        if kind == "molecules":
            pack = MoleculePack(cfg, sources)
            for item in tqdm(pack.molecules(), desc="molecules", unit=" mol", disable=None):
                if isinstance(item, Bad):
                    skips.add(item)
                    continue
                graph, identity = item
                duplicates += not output.write(pack.split(identity), graph, identity + json.dumps(graph.labels))
            schema, extra = pack.schema(), pack.info()
        else:
            pack = GraphPack(cfg)
            for raw in tqdm(_graph_sources(sources), desc="reading", unit=" graphs", disable=None):
                if isinstance(raw, RawGraph):
                    pack.observe(raw)
            schema = pack.finish([str(s) for s in sources])
            for raw in tqdm(_graph_sources(sources), desc="packing", unit=" graphs", disable=None):
                if isinstance(raw, Bad):
                    skips.add(raw)
                    continue
                pack.directed += raw.directed
                digest = _digest(raw)
                duplicates += not output.write(pack.split(digest), pack.encode(raw), digest)
            extra = {"directed_read_as_undirected": pack.directed,
                     "ignored_graph_attributes": sorted(n for n, a in pack.graph_attrs.items() if n not in pack.labels)}
    except BaseException:
        output.close()
        shutil.rmtree(output.tmp, ignore_errors=True)
        raise
    output.close()
    counts = {"train": output.counts["train"], cfg.val_split: output.counts[cfg.val_split]}
    if not counts["train"]:
        shutil.rmtree(output.tmp, ignore_errors=True)
        first = f"; first: {skips.examples[0]}" if skips.examples else ""
        raise ModalzooError(f"no graph to train on from {', '.join(map(str, sources))} (validation: "
                            f"{counts[cfg.val_split]}, skipped: {dict(skips.counts)}{first})")
    info = {"name": "pack-graphs", "kind": kind, "graphs": counts, "skipped": dict(skips.counts),
            "skipped_examples": skips.examples, "duplicates_dropped": duplicates,
            "sources": [str(s) for s in sources], "labels": schema.labels,
            "node_features": [f["name"] for f in schema.node_features], "numeric_features": schema.numeric_features,
            "edge_types": schema.edge_types, **extra}
    output.commit(schema, info)
    return info


@PACKERS.register("pack-graphs")
class PackGraphs:
    """Pack graphs into webdataset shards and graph_schema.json (for the graph dataset). Molecules: SMILES
    .csv (a smiles column; other numeric columns are labels), .smi or .sdf, featurised like `data build
    molecules`. Graphs: networkx node-link .json/.jsonl, or edge-list folders (edges.csv with source,target
    [,graph,type]; optional nodes.csv with node[,graph] and attributes; optional graphs.csv with graph and
    labels); node attributes typed from their values. Bad rows skipped and counted; split by content hash."""

    Config = PackGraphsConfig
    inputs = "SRC"
    example = "modalzoo data pack-graphs molecules.csv --out data/my-molecules --labels '[logS]'"

    def __init__(self, cfg: PackGraphsConfig):
        if cfg.max_values < 1:
            raise ValueError("max_values must be at least 1")
        self.cfg = cfg

    def pack(self, sources: list[Path], out: Path) -> str:
        info = pack_graphs(sources, out, self.cfg)
        split, skipped = self.cfg.val_split, sum(info["skipped"].values())
        total = sum(info["graphs"].values())
        reasons = ", ".join(f"{k}: {v}" for k, v in info["skipped"].items()) or "none"
        return (f"packed {total} {info['kind']} ({info['graphs']['train']} train / {info['graphs'][split]} {split}) "
                f"into {out}; skipped {skipped} ({reasons}), {info['duplicates_dropped']} duplicates dropped; "
                f"labels: {', '.join(info['labels']) or 'none'}")
