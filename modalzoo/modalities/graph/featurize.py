"""Molecules as graphs: RDKit atoms and bonds -> the categorical features of a `Graph`.

Atoms carry six categorical features (Hu et al. 2020 use the first two; OGB's atom features add the rest):
element (atomic number 1-118, then "other"), chirality tag, formal charge (-3..+3, then "other"), total
hydrogens (0-4, then "5 or more"), hybridisation and aromaticity. A bond's type is its edge type (single,
double, triple, aromatic, other). Hydrogens are implicit (heavy-atom graphs), salts and solvents are dropped
by keeping the largest fragment, and every molecule is identified by its canonical SMILES without
stereochemistry (the deduplication key: stereoisomers count as one molecule, so a held-out molecule cannot
reach the pretraining pool as another stereoisomer).

The vocabulary sizes are constants here, importable without RDKit (the embedding's defaults); RDKit itself is
imported only by the functions that read molecules (the optional ``[graph]`` extra).
"""

from __future__ import annotations

import numpy as np

from .graphs import Graph, GraphSchema

CHIRALITY = ["CHI_UNSPECIFIED", "CHI_TETRAHEDRAL_CW", "CHI_TETRAHEDRAL_CCW", "other"]
CHARGES = [-3, -2, -1, 0, 1, 2, 3]
HYBRIDISATION = ["S", "SP", "SP2", "SP3", "SP3D", "SP3D2", "other"]
BONDS = ["SINGLE", "DOUBLE", "TRIPLE", "AROMATIC", "other"]
ATOM_FEATURES = ["element", "chirality", "charge", "hydrogens", "hybridisation", "aromatic"]
ATOM_VOCAB = [119, len(CHIRALITY), len(CHARGES) + 1, 6, len(HYBRIDISATION), 2]
DESCRIPTORS = ["MolWt", "MolLogP", "TPSA", "NumHDonors", "NumHAcceptors", "NumRotatableBonds", "RingCount",
               "NumAromaticRings"]
INSTALL_HINT = "pip install 'modalzoo[graph]' (RDKit, BSD-3-Clause)"


def rdkit():
    try:
        from rdkit import Chem, RDLogger
    except ImportError:
        raise ImportError(f"reading molecules needs RDKit: {INSTALL_HINT}") from None
    RDLogger.DisableLog("rdApp.*")            # parse errors become skip counts, not stderr noise
    return Chem


def molecule_schema(labels: dict[str, str] | None = None, source: str = "") -> GraphSchema:
    features = [{"name": name, "size": size} for name, size in zip(ATOM_FEATURES, ATOM_VOCAB)]
    return GraphSchema(features, BONDS, [], dict(labels or {}), source)


def _index(value, choices: list) -> int:
    return choices.index(value) if value in choices else len(choices) - 1


def parse(smiles: str):
    """The largest fragment of ``smiles`` as an RDKit molecule, or None if RDKit cannot read it."""
    Chem = rdkit()
    mol = Chem.MolFromSmiles(smiles) if smiles else None
    if mol is None or mol.GetNumAtoms() == 0:
        return None
    fragments = Chem.GetMolFrags(mol, asMols=True, sanitizeFrags=False)
    return max(fragments, key=lambda m: m.GetNumHeavyAtoms()) if len(fragments) > 1 else mol


def key(mol) -> str:
    """Canonical SMILES without stereochemistry: the identity molecules are deduplicated by."""
    return rdkit().MolToSmiles(mol, isomericSmiles=False)


def mol_to_graph(mol, labels: dict[str, float] | None = None, descriptors: bool = False) -> Graph:
    atoms = []
    for atom in mol.GetAtoms():
        z = atom.GetAtomicNum()
        charge = atom.GetFormalCharge()
        atoms.append([z - 1 if 1 <= z <= 118 else 118,
                      _index(str(atom.GetChiralTag()), CHIRALITY),
                      CHARGES.index(charge) if charge in CHARGES else len(CHARGES),
                      min(atom.GetTotalNumHs(), 5),
                      _index(str(atom.GetHybridization()), HYBRIDISATION),
                      int(atom.GetIsAromatic())])
    edges = [[b.GetBeginAtomIdx(), b.GetEndAtomIdx()] for b in mol.GetBonds()]
    types = [_index(str(b.GetBondType()), BONDS) for b in mol.GetBonds()]
    desc = None
    if descriptors:
        from rdkit.Chem import Descriptors
        desc = [float(getattr(Descriptors, name)(mol)) for name in DESCRIPTORS]
    return Graph(np.asarray(atoms, dtype=np.int64), np.asarray(edges, dtype=np.int64).reshape(-1, 2),
                 np.asarray(types, dtype=np.int64), None, dict(labels or {}), desc, rdkit().MolToSmiles(mol))
