"""Users' graph files -> raw graphs (`RawGraph`) for `pack-graphs` (`pack.py`); none needs networkx.

* networkx node-link JSON: ``{"directed", "multigraph", "graph": {...}, "nodes": [{"id", attrs...}],
  "links" | "edges": [{"source", "target", attrs...}]}`` — a ``.json`` file holds one graph or a list of them,
  a ``.jsonl`` file one graph per line. Edges name nodes by their ``id``.
* An edge-list folder: ``edges.csv`` (``source``, ``target``, optional ``graph`` and edge attribute columns),
  optional ``nodes.csv`` (``node``, optional ``graph``, attribute columns: a node of an edge must be listed
  there) and ``graphs.csv`` (``graph`` and graph-level label columns). Without a ``graph`` column the folder
  is one graph. Node ids are any strings; a folder is read whole (its CSVs are grouped by graph in memory).

A malformed graph comes out as a `Bad` with the reason it is counted under, never as an exception.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import ModalzooError

GRAPH_COLUMNS = ("graph", "graph_id")
SOURCE_COLUMNS = ("source", "src", "from")
TARGET_COLUMNS = ("target", "dst", "to")
NODE_COLUMNS = ("node", "node_id", "id")


def id_like(name: str) -> bool:
    """A column or graph attribute that names rows rather than measures them: never a label by default."""
    name = name.strip().lower()
    return name in ("id", "index", "idx", "name", "key") or name.endswith(("_id", " id")) or name.startswith("unnamed")


@dataclass
class RawGraph:
    """A graph as read: per-node attribute dicts, (i, j, attrs) edges over node positions, graph attributes."""
    nodes: list[dict]
    edges: list[tuple[int, int, dict]]
    graph: dict = field(default_factory=dict)
    directed: bool = False
    where: str = ""


@dataclass
class Bad:
    reason: str          # the count it goes under in info.json
    where: str
    detail: str = ""


def node_link(data, where: str) -> RawGraph | Bad:
    """One node-link graph (a parsed JSON object) as a `RawGraph`."""
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
        return Bad("not a node-link graph", where, "expected an object with a 'nodes' list")
    links = data.get("links", data.get("edges", []))
    if not isinstance(links, list):
        return Bad("not a node-link graph", where, "'links' is not a list")
    if not data["nodes"]:
        return Bad("no nodes", where)
    index, nodes = {}, []
    for i, node in enumerate(data["nodes"]):
        if not isinstance(node, dict):
            return Bad("not a node-link graph", where, f"node {i} is not an object")
        ident = node.get("id", i)
        if _hashable(ident) in index:
            return Bad("duplicate node id", where, f"node id {ident!r} appears twice")
        index[_hashable(ident)] = i
        nodes.append({k: v for k, v in node.items() if k != "id"})
    edges = []
    for link in links:
        if not isinstance(link, dict) or "source" not in link or "target" not in link:
            return Bad("not a node-link graph", where, "an edge without 'source' and 'target'")
        ends = [index.get(_hashable(link[k])) for k in ("source", "target")]
        if None in ends:
            return Bad("edge names an unknown node", where, f"{link['source']!r} -> {link['target']!r}")
        edges.append((ends[0], ends[1], {k: v for k, v in link.items() if k not in ("source", "target", "key")}))
    graph = data.get("graph") if isinstance(data.get("graph"), dict) else {}
    return RawGraph(nodes, edges, graph, bool(data.get("directed")), where)


def _hashable(value):
    return json.dumps(value, sort_keys=True) if isinstance(value, (list, dict)) else value


def json_graphs(path: Path) -> Iterator[RawGraph | Bad]:
    """The graphs of a ``.json`` (one graph or a list) or ``.jsonl`` (one per line) file."""
    if path.suffix.lower() == ".jsonl":
        with open(path, encoding="utf-8", errors="replace") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    yield _parsed(line, f"{path}:{n}")
        return
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        yield Bad("unreadable file", str(path), str(err))
        return
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        yield Bad("not JSON", str(path), str(err))
        return
    for i, item in enumerate(data if isinstance(data, list) else [data]):
        yield node_link(item, f"{path}[{i}]" if isinstance(data, list) else str(path))


def _parsed(line: str, where: str) -> RawGraph | Bad:
    try:
        return node_link(json.loads(line), where)
    except json.JSONDecodeError as err:
        return Bad("not JSON", where, str(err))


def _column(names: list[str], choices: tuple[str, ...], path: Path, required: bool = True) -> str | None:
    found = [n for n in names if n.strip().lower() in choices]
    if not found and required:
        raise ModalzooError(f"{path} needs a column named one of {', '.join(choices)} (it has: {', '.join(names)})")
    return found[0] if found else None


def _rows(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def edge_list_graphs(folder: Path) -> Iterator[RawGraph | Bad]:
    """The graphs of an edge-list folder (see the module docstring); CSV cells stay strings here."""
    names, edge_rows = _rows(folder / "edges.csv")
    src, dst = (_column(names, columns, folder / "edges.csv") for columns in (SOURCE_COLUMNS, TARGET_COLUMNS))
    gcol = _column(names, GRAPH_COLUMNS, folder / "edges.csv", required=False)
    node_rows: dict[str, list[dict]] = {}
    ncol = ngcol = None
    if (folder / "nodes.csv").exists():
        node_names, rows = _rows(folder / "nodes.csv")
        ncol = _column(node_names, NODE_COLUMNS, folder / "nodes.csv")
        ngcol = _column(node_names, GRAPH_COLUMNS, folder / "nodes.csv", required=False)
        if (gcol is None) != (ngcol is None):
                raise ModalzooError(f"{folder}: edges.csv and nodes.csv must both have a graph column or neither")
        for row in rows:
            node_rows.setdefault(row[ngcol] if ngcol else "", []).append(row)
    labels: dict[str, dict] = {}
    if (folder / "graphs.csv").exists():
        graph_names, rows = _rows(folder / "graphs.csv")
        lcol = _column(graph_names, GRAPH_COLUMNS, folder / "graphs.csv")
        labels = {row[lcol]: {k: v for k, v in row.items() if k != lcol} for row in rows}
    grouped: dict[str, list[dict]] = {}
    for row in edge_rows:
        grouped.setdefault(row[gcol] if gcol else "", []).append(row)
    for gid in sorted(set(grouped) | set(node_rows), key=_natural):
        where = f"{folder} graph {gid}" if gid else str(folder)
        index: dict[str, int] = {}
        nodes = []
        for row in node_rows.get(gid, []):
            if row[ncol] in index:
                yield Bad("duplicate node id", where, f"node {row[ncol]!r} appears twice")
                break
            index[row[ncol]] = len(nodes)
            nodes.append({k: v for k, v in row.items() if k not in (ncol, ngcol) and v not in ("", None)})
        else:
            edges, listed = [], bool(node_rows)
            for row in grouped.get(gid, []):
                ends = []
                for end in (row[src], row[dst]):
                    if end not in index:
                        if listed:
                            break
                        index[end] = len(nodes)
                        nodes.append({})
                    ends.append(index[end])
                if len(ends) < 2:
                    yield Bad("edge names an unknown node", where, f"{row[src]!r} -> {row[dst]!r} (not in nodes.csv)")
                    break
                edges.append((ends[0], ends[1], {k: v for k, v in row.items()
                                                 if k not in (src, dst, gcol) and v not in ("", None)}))
            else:
                if not nodes:
                    yield Bad("no nodes", where)
                    continue
                graph = {k: v for k, v in labels.get(gid, {}).items() if v not in ("", None)}
                yield RawGraph(nodes, edges, graph, False, where)


def _natural(gid: str):
    return (0, int(gid), "") if gid.lstrip("-").isdigit() else (1, 0, gid)
