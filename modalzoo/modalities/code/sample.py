"""One code sample as the corpus stores it: a function's code (docstring removed), its docstring, the code's
leaf tokens with character spans, and its data flow over those tokens. Language-neutral: Python's front end
(`python.py`) and the tree-sitter front ends (`treesitter.py`) both produce it; the model input is laid out from it
at load time (`layout.py`), once the run's subword tokenizer is known.

Shard member ``KEY.json``::

    {"lang": "python", "name": "pkg.mod.C.f", "origin": "pkg/mod.py", "doc": "Return ...",
     "code": "def f(x):\\n    ...", "tok": [[start, end, kind], ...], "nodes": [[token, ...], ...],
     "edges": [[src, dst, kind], ...]}

``tok``: the code's leaves (what the model sees, in source order; comments and layout are not leaves), each a
``[start, end)`` character span of ``code`` and a kind (`TOKEN_KINDS`). ``nodes``: the data-flow nodes, each the
index of the leaf it is (a variable occurrence is one leaf). ``edges``: ``src`` depends on ``dst`` (a use comes
from a definition, a target is computed from a right-hand variable), kinds `EDGE_KINDS`. Only nodes with at least
one edge are kept (GraphCodeBERT's rule: an isolated variable carries no flow and costs a node slot).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

TOKEN_KINDS = ("other", "identifier", "keyword", "string", "number")
OTHER, IDENTIFIER, KEYWORD, STRING, NUMBER = range(len(TOKEN_KINDS))
EDGE_KINDS = ("comesFrom", "computedFrom")


class SkippedFunction(ValueError):
    """A function the corpus cannot use; ``reason`` is what the build counts it under ("syntax", "no_data_flow",
    "no_docstring", "too_short", ...)."""

    def __init__(self, reason: str, message: str = ""):
        super().__init__(message or reason)
        self.reason = reason


@dataclass
class CodeSample:
    language: str
    code: str
    tokens: list[tuple[int, int, int]]          # (start, end, kind) character spans of ``code``
    nodes: list[int]                            # token index of each data-flow node
    edges: list[tuple[int, int, int]]           # (src node, dst node, kind): src's value comes from dst
    docstring: str = ""
    name: str = ""
    origin: str = ""
    extra: dict = field(default_factory=dict)

    def token_text(self, i: int) -> str:
        start, end, _ = self.tokens[i]
        return self.code[start:end]

    def leaves(self) -> list[str]:
        return [self.code[s:e] for s, e, _ in self.tokens]

    def check(self) -> CodeSample:
        """Raises ValueError when the sample is inconsistent (a corrupt or hand-edited shard member)."""
        n = len(self.code)
        prev = 0
        for i, (s, e, k) in enumerate(self.tokens):
            if not (prev <= s < e <= n) or not 0 <= k < len(TOKEN_KINDS):
                raise ValueError(f"token {i} [{s}, {e}) kind {k} is not an ordered span of the {n}-character code")
            prev = e
        if any(not 0 <= t < len(self.tokens) for t in self.nodes):
            raise ValueError("a node names a token the sample does not have")
        if any(not (0 <= a < len(self.nodes) and 0 <= b < len(self.nodes) and 0 <= k < len(EDGE_KINDS))
               for a, b, k in self.edges):
            raise ValueError("an edge names a node or kind the sample does not have")
        return self

    def to_json(self) -> str:
        d = {"lang": self.language, "name": self.name, "origin": self.origin, "doc": self.docstring,
             "code": self.code, "tok": [list(t) for t in self.tokens], "nodes": list(self.nodes),
             "edges": [list(e) for e in self.edges]}
        if self.extra:
            d["extra"] = self.extra
        return json.dumps(d, ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str | bytes) -> CodeSample:
        d = json.loads(raw)
        return cls(language=d["lang"], code=d["code"], tokens=[tuple(t) for t in d["tok"]], nodes=list(d["nodes"]),
                   edges=[tuple(e) for e in d["edges"]], docstring=d.get("doc", ""), name=d.get("name", ""),
                   origin=d.get("origin", ""), extra=d.get("extra", {})).check()


def keep_connected(tokens_of_nodes: list[int], edges: list[tuple[int, int, int]]
                   ) -> tuple[list[int], list[tuple[int, int, int]]]:
    """Drop the nodes without any edge and re-index the edges (GraphCodeBERT's rule)."""
    used = sorted({a for a, _, _ in edges} | {b for _, b, _ in edges})
    index = {old: new for new, old in enumerate(used)}
    return ([tokens_of_nodes[i] for i in used],
            sorted({(index[a], index[b], k) for a, b, k in edges}))
