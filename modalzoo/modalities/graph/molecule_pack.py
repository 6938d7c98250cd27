"""The molecule half of `pack-graphs` (`pack.py`): SMILES .csv / .smi and .sdf files -> molecule graphs.

A CSV's SMILES column is ``--smiles-column`` or the first of `SMILES_COLUMNS` (any case); a first pass over the
text (no RDKit) finds the label columns: every other column whose non-empty cells all read as numbers (or
``--labels``). A label cell that is empty is a missing label (NaN in the batch, ignored by the loss). In an
.sdf every numeric property is a label. Molecules keep their largest fragment and the atom/bond features of
`featurize.py`, so the pack reads like `data build molecules` and a molecule model pretrained there fits it.
"""

from __future__ import annotations

import csv
import hashlib
import math
from collections.abc import Iterator
from pathlib import Path

from ...errors import ModalzooError
from .featurize import key, mol_to_graph, molecule_schema, parse, rdkit
from .graphs import Graph, GraphSchema
from .readers import Bad, id_like

SMILES_COLUMNS = ("smiles", "canonical_smiles", "smi", "mol", "molecule")


def _float(cell) -> float | None:
    try:
        value = float(cell)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


class MoleculePack:
    def __init__(self, cfg, sources: list[Path]):
        rdkit()                                           # a clear message when RDKit is missing
        self.cfg, self.sources = cfg, sources
        self.columns: dict[Path, tuple[str, list[str]]] = {}
        self.values: dict[str, set] = {}                  # label -> distinct values (binary or regression)
        self.ignored: set[str] = set()
        for src in sources:
            if src.suffix.lower() == ".csv":
                self.columns[src] = self._csv_columns(src)

    def _csv_columns(self, path: Path) -> tuple[str, list[str]]:
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            reader = csv.DictReader(f)
            names = list(reader.fieldnames or [])
            wanted = self.cfg.smiles_column.strip().lower()
            found = [n for n in names if n.strip().lower() == wanted] if wanted else \
                [n for c in SMILES_COLUMNS for n in names if n.strip().lower() == c][:1]
            if not found:
                named = f"named {self.cfg.smiles_column!r} " if wanted else ""
                raise ModalzooError(f"{path}: no SMILES column {named}(columns: {', '.join(names)}); "
                                    f"name it with --smiles-column")
            smiles = found[0]
            numeric = {n: False for n in names if n != smiles}      # False: no number seen yet
            for row in reader:
                for n in list(numeric):
                    cell = (row.get(n) or "").strip()
                    if cell and _float(cell) is None:
                        del numeric[n]
                    elif cell:
                        numeric[n] = True
        wanted = self.cfg.labels
        labels = [n for n, seen in numeric.items() if seen and (n in wanted if wanted is not None else not id_like(n))]
        self.ignored |= set(names) - set(labels) - {smiles}
        return smiles, labels

    def split(self, identity: str) -> str:
        digest = hashlib.sha1(identity.encode()).hexdigest()
        return self.cfg.val_split if int(digest[:8], 16) % 10_000 < self.cfg.val_fraction * 10_000 else "train"

    def _rows(self, src: Path) -> Iterator[tuple[str, str, dict]]:
        """(where, smiles, labels) of one file."""
        suffix = src.suffix.lower()
        if suffix == ".sdf":
            yield from self._sdf(src)
            return
        with open(src, newline="", encoding="utf-8", errors="replace") as f:
            if suffix == ".smi":
                for n, line in enumerate(f, 1):
                    if line.strip() and not line.lstrip().startswith("#"):
                        yield f"{src}:{n}", line.split()[0], {}
                return
            smiles, labels = self.columns[src]
            for n, row in enumerate(csv.DictReader(f), 2):
                values = {k: _float(row.get(k)) for k in labels}
                yield f"{src}:{n}", (row.get(smiles) or "").strip(), {k: v for k, v in values.items() if v is not None}

    def _sdf(self, src: Path) -> Iterator[tuple[str, str, dict]]:
        Chem = rdkit()
        for i, mol in enumerate(Chem.SDMolSupplier(str(src))):
            where = f"{src} record {i + 1}"
            if mol is None:
                yield where, "", {}
                continue
            labels = {}
            for name, value in mol.GetPropsAsDict().items():
                number = None if isinstance(value, bool) else _float(value)
                wanted = self.cfg.labels
                if number is not None and (name in wanted if wanted is not None else not id_like(name)):
                    labels[name] = number
                elif number is None:
                    self.ignored.add(name)
            yield where, Chem.MolToSmiles(mol), labels

    def molecules(self) -> Iterator[Bad | tuple[Graph, str]]:
        """(graph, identity: canonical SMILES without stereochemistry) or a `Bad` per row."""
        for src in self.sources:
            for where, smiles, labels in self._rows(src):
                if not smiles:
                    yield Bad("no SMILES" if src.suffix.lower() != ".sdf" else "unreadable SDF record", where)
                    continue
                mol = parse(smiles)
                if mol is None:
                    yield Bad("unparsable SMILES", where, smiles[:80])
                    continue
                for name, value in labels.items():
                    seen = self.values.setdefault(name, set())
                    if len(seen) < 3:
                        seen.add(value)
                yield mol_to_graph(mol, labels), key(mol)

    def schema(self) -> GraphSchema:
        if self.cfg.labels is not None and (absent := sorted(set(self.cfg.labels) - set(self.values))):
            raise ModalzooError(f"--labels {', '.join(absent)}: no numeric value of it in any source")
        tasks = {n: "binary" if v <= {0.0, 1.0} else "regression" for n, v in sorted(self.values.items())}
        return molecule_schema(tasks, "pack-graphs: " + ", ".join(map(str, self.sources)))

    def info(self) -> dict:
        return {"ignored_columns": sorted(self.ignored - set(self.values))}
