"""`modalzoo data pack-graphs`: node-link JSON/JSONL, edge-list folders, SMILES CSV/.smi/.sdf -> shards the
`graph` dataset reads, with bad rows skipped and counted, a content-hash split and no half-written output."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from modalzoo.cli import main
from modalzoo.datasets import shards
from modalzoo.errors import ModalzooError
from modalzoo.modalities.graph.graphs import GraphSchema, from_json
from modalzoo.modalities.graph.pack import PackGraphs, PackGraphsConfig, pack_graphs
from modalzoo.registry import DATASETS


def node_link(n_nodes, kinds="CN", charge=None, y=None, edge_type=None, key="links", directed=False):
    nodes = [{"id": f"n{i}", "kind": kinds[i % len(kinds)]} for i in range(n_nodes)]
    if charge is not None:
        for i, node in enumerate(nodes):
            node["charge"] = charge(i)
    links = [{"source": f"n{i}", "target": f"n{i + 1}", **({"type": edge_type(i)} if edge_type else {})}
             for i in range(n_nodes - 1)]
    return {"directed": directed, "multigraph": False, "graph": {} if y is None else {"y": y}, "nodes": nodes,
            key: links}


def samples(out: Path, split: str = "train") -> list[dict]:
    found = []
    for shard in sorted((out / split).glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar:
                assert member.name.endswith(".samples.jsonl"), member.name      # grouped members
                for line in tar.extractfile(member).read().splitlines():
                    found.append(json.loads(json.loads(line)["json"]))
    return found


def pack(sources, out, **kw):
    return pack_graphs([Path(s) for s in sources], Path(out), PackGraphsConfig(**kw))


def test_node_link_files_become_graphs_with_an_inferred_schema(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.json").write_text(json.dumps(node_link(4, charge=lambda i: 2.0 * i, y=1.5,
                                                     edge_type=lambda i: "single" if i else "double")))
    (src / "b.jsonl").write_text("\n".join(json.dumps(node_link(n, kinds="CNO", y=float(n), key="edges"))
                                           for n in (2, 3, 5, 6)) + "\n")
    info = pack([src], tmp_path / "out", val_fraction=0.0)
    schema = GraphSchema.load(tmp_path / "out")
    assert info["graphs"] == {"train": 5, "validation": 0} and info["skipped"] == {}
    kind = schema.node_features[0]
    assert kind["name"] == "kind" and set(kind["values"]) == {"C", "N", "O"} and kind["size"] == 3
    assert schema.numeric_features == ["charge"] and schema.labels == {"y": "regression"}
    assert set(schema.edge_types) == {"single", "double", "<missing>"}      # b.jsonl's edges have no type
    by_size = {len(s["node_cat"]): s for s in samples(tmp_path / "out")}
    a = by_size[4]
    values = kind["values"]
    assert [values[c[0]] for c in a["node_cat"]] == ["C", "N", "C", "N"]
    assert [schema.edge_types[t] for t in a["edge_type"]] == ["double", "single", "single"]
    assert a["edges"] == [[0, 1], [1, 2], [2, 3]] and a["labels"] == {"y": 1.5}
    # charge standardised with the train split's mean and sd; graphs without it get the mean (0)
    mean, sd = schema.numeric_scaling["charge"]
    np.testing.assert_allclose(np.array(a["node_num"])[:, 0] * sd + mean, [0, 2, 4, 6], atol=1e-5)
    assert all(v == [0.0] for v in by_size[5]["node_num"])


def test_bad_graphs_are_skipped_and_counted_by_reason(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "good.json").write_text(json.dumps(node_link(3)))
    (src / "broken.json").write_text("{oops")
    lines = [json.dumps(node_link(2)), "not json", json.dumps({"nodes": [], "links": []}),
             json.dumps({"nodes": [{"id": 0}], "links": [{"source": 0, "target": 7}]}),
             json.dumps({"nodes": [{"id": 0}, {"id": 0}], "links": []}), json.dumps({"no": "nodes"})]
    (src / "more.jsonl").write_text("\n".join(lines))
    info = pack([src], tmp_path / "out", val_fraction=0.0)
    assert info["graphs"]["train"] == 2
    assert info["skipped"] == {"not JSON": 2, "no nodes": 1, "edge names an unknown node": 1,
                               "duplicate node id": 1, "not a node-link graph": 1}
    assert any("more.jsonl:2" in e for e in info["skipped_examples"])
    assert json.loads((tmp_path / "out" / "info.json").read_text())["skipped"] == info["skipped"]


def test_edge_list_folder_with_node_and_graph_tables(tmp_path):
    el = tmp_path / "el"
    el.mkdir()
    (el / "edges.csv").write_text("graph,source,target,type\n1,a,b,x\n1,b,c,y\n2,a,b,x\n3,q,z,x\n")
    (el / "nodes.csv").write_text("graph,node,elem,mass\n1,a,C,12\n1,b,N,14\n1,c,C,\n2,a,O,16\n2,b,O,16\n"
                                  "3,q,C,1\n4,solo,N,2\n")
    (el / "graphs.csv").write_text("graph,active,graph_id_note\n1,1,x\n2,0,y\n3,1,z\n4,0,w\n")
    info = pack([el], tmp_path / "out", val_fraction=0.0)
    schema = GraphSchema.load(tmp_path / "out")
    assert info["graphs"]["train"] == 3 and info["skipped"] == {"edge names an unknown node": 1}   # graph 3: z
    assert schema.labels == {"active": "binary"} and schema.numeric_features == ["mass"]
    assert schema.node_features[0]["name"] == "elem" and "<missing>" not in schema.node_features[0]["values"]
    got = {len(s["node_cat"]): s for s in samples(tmp_path / "out")}
    assert got[1]["edges"] == [] and got[1]["labels"] == {"active": 0.0}            # an isolated node is a graph
    assert got[3]["edges"] == [[0, 1], [1, 2]] and [schema.edge_types[t] for t in got[3]["edge_type"]] == ["x", "y"]
    assert got[3]["node_num"][2] == [0.0]                                           # c's missing mass: the mean


def test_edge_list_without_node_table_gets_a_constant_feature(tmp_path):
    el = tmp_path / "el"
    el.mkdir()
    (el / "edges.csv").write_text("source,target\n0,1\n1,2\n2,0\n5,6\n")
    pack([el], tmp_path / "out", val_fraction=0.0)
    schema = GraphSchema.load(tmp_path / "out")
    assert schema.node_features == [{"name": "node", "size": 1, "values": ["node"]}] and schema.edge_types == ["edge"]
    (graph,) = samples(tmp_path / "out")
    assert len(graph["node_cat"]) == 5 and len(graph["edges"]) == 4                # one disconnected graph


def test_split_is_by_content_and_stable_and_duplicates_are_dropped(tmp_path):
    lines = [json.dumps(node_link(n % 40 + 2, y=float(n % 40))) for n in range(120)]   # each graph 3 times
    (tmp_path / "g.jsonl").write_text("\n".join(lines))
    first = pack([tmp_path / "g.jsonl"], tmp_path / "a", val_fraction=0.3)
    again = pack([tmp_path / "g.jsonl"], tmp_path / "b", val_fraction=0.3)
    assert first["duplicates_dropped"] == 80 and sum(first["graphs"].values()) == 40
    assert first["graphs"] == again["graphs"] and 0 < first["graphs"]["validation"] < 40
    train = {len(s["node_cat"]) for s in samples(tmp_path / "a")}
    val = {len(s["node_cat"]) for s in samples(tmp_path / "a", "validation")}
    assert not train & val and train | val == set(range(2, 42))


def test_categorical_override_and_value_cap(tmp_path):
    graphs = [node_link(3, charge=lambda i, n=n: n * 10 + i) for n in range(5)]
    (tmp_path / "g.json").write_text(json.dumps(graphs))
    pack([tmp_path / "g.json"], tmp_path / "out", val_fraction=0.0, categorical=["charge"], max_values=4)
    schema = GraphSchema.load(tmp_path / "out")
    charge = next(f for f in schema.node_features if f["name"] == "charge")
    assert schema.numeric_features == [] and charge["size"] == 5 and charge["values"][-1] == "<other>"


def test_refusals(tmp_path):
    (tmp_path / "g.json").write_text(json.dumps(node_link(3)))
    (tmp_path / "m.csv").write_text("smiles\nCCO\n")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ModalzooError, match="not both"):
        pack([tmp_path / "g.json", tmp_path / "m.csv"], tmp_path / "out")
    with pytest.raises(ModalzooError, match="expected a SMILES"):
        pack([tmp_path / "notes.txt"], tmp_path / "out")
    with pytest.raises(ModalzooError, match="no such file"):
        pack([tmp_path / "gone.json"], tmp_path / "out")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "old.txt").write_text("x")
    with pytest.raises(ModalzooError, match="not empty"):
        pack([tmp_path / "g.json"], tmp_path / "full")
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(ModalzooError, match="no graph to train on"):
        pack([tmp_path / "bad.json"], tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_an_interrupted_pack_leaves_no_output(tmp_path, monkeypatch):
    (tmp_path / "g.jsonl").write_text("\n".join(json.dumps(node_link(n + 2)) for n in range(30)))
    calls = []

    def explode(self, sample):
        calls.append(1)
        if len(calls) == 10:
            raise KeyboardInterrupt
    monkeypatch.setattr(shards.ShardWriter, "write", explode)
    with pytest.raises(KeyboardInterrupt):
        pack([tmp_path / "g.jsonl"], tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_packed_graphs_train_through_the_graph_dataset(tmp_path):
    (tmp_path / "g.jsonl").write_text("\n".join(json.dumps(node_link(n % 9 + 2, charge=lambda i: i / 3, y=n % 2))
                                               for n in range(60)))
    pack([tmp_path / "g.jsonl"], tmp_path / "out", val_fraction=0.2)
    data = DATASETS.build({"name": "graph", "path": str(tmp_path / "out"), "max_nodes": 15, "pack_len": 16,
                           "num_workers": 0})
    data.prepare(None)
    batch = next(iter(data.loader("train", 8, [], seed=0, train=True)))
    assert batch["node_num"].shape[-1] == 1 and batch["graph_labels"].shape == (8, 1)
    assert set(batch["graph_labels"].flatten().tolist()) <= {0.0, 1.0}
    val = list(data.loader("val", 100, [], seed=0, train=False))
    assert sum(int(b["graph_count"]) for b in val) == json.loads((tmp_path / "out" / "info.json").read_text())[
        "graphs"]["validation"]


def test_a_recipe_that_does_not_fit_the_pack_says_which_overrides_to_add(tmp_path):
    from modalzoo.model import PretrainModel, import_components

    import_components()                             # the shared encoder registers on import

    (tmp_path / "g.jsonl").write_text("\n".join(json.dumps(node_link(n + 2)) for n in range(10)))
    pack([tmp_path / "g.jsonl"], tmp_path / "out", val_fraction=0.0)
    data = DATASETS.build({"name": "graph", "path": str(tmp_path / "out"), "num_workers": 0})
    data.prepare(None)
    enc = {"name": "transformer", "dim": 16, "layers": 1, "heads": 2, "ffn_dim": 32}
    model = PretrainModel({"streams": {"g": {"embedding": {"name": "graph", "dim": 16, "heads": 2}, "encoder": enc}},
                   "targets": {"a": {"name": "attribute_masking", "stream": "g"}}})
    with pytest.raises(ModalzooError, match=r"'model\.streams\.g\.embedding\.node_vocab=\[2\]'"):
        data.batch_transforms(model)


# --- molecules -------------------------------------------------------------------------------------------
def test_smiles_csv_labels_and_bad_rows(tmp_path):
    pytest.importorskip("rdkit", reason="SMILES need RDKit: pip install 'modalzoo[graph]'")
    (tmp_path / "m.csv").write_text("ID,SMILES,logS,active,name\n1,CCO,0.5,1,eth\n2,c1ccccc1,-1.2,0,benz\n"
                                    "3,notasmiles,1,1,x\n4,CC(=O)O,,1,acetic\n5,,2,0,empty\n6,CCO,0.5,1,again\n"
                                    "7,[Na+].CC(=O)[O-],0.1,0,salt\n")
    info = pack([tmp_path / "m.csv"], tmp_path / "out", val_fraction=0.0)
    schema = GraphSchema.load(tmp_path / "out")
    assert schema.labels == {"active": "binary", "logS": "regression"}       # ID is id-like, name is text
    assert info["ignored_columns"] == ["ID", "name"]
    assert info["skipped"] == {"unparsable SMILES": 1, "no SMILES": 1} and info["duplicates_dropped"] == 1
    assert schema.vocab == [119, 4, 8, 6, 7, 2] and len(schema.edge_types) == 5    # `data build molecules`' features
    got = {s["smiles"]: s for s in samples(tmp_path / "out")}
    assert set(got) == {"CCO", "c1ccccc1", "CC(=O)O", "CC(=O)[O-]"}          # the salt's largest fragment
    assert got["CC(=O)O"]["labels"] == {"active": 1.0}                      # an empty cell is a missing label
    assert got["c1ccccc1"]["node_cat"][0][0] == 5 and set(got["c1ccccc1"]["edge_type"]) == {3}   # C, aromatic
    only = pack([tmp_path / "m.csv"], tmp_path / "only", val_fraction=0.0, labels=["logS"])
    assert only["labels"] == {"logS": "regression"}
    with pytest.raises(ModalzooError, match="--labels pKa"):
        pack([tmp_path / "m.csv"], tmp_path / "none", labels=["pKa"])


def test_smi_and_sdf_files(tmp_path):
    Chem = pytest.importorskip("rdkit.Chem", reason="SMILES need RDKit: pip install 'modalzoo[graph]'")
    (tmp_path / "a.smi").write_text("# a comment\nCCN ethylamine\nC1CC1\n\nnot_smiles x\n")
    info = pack([tmp_path / "a.smi"], tmp_path / "smi", val_fraction=0.0)
    assert info["graphs"]["train"] == 2 and info["skipped"] == {"unparsable SMILES": 1}
    writer = Chem.SDWriter(str(tmp_path / "b.sdf"))
    for smiles, value in [("CCO", 1.5), ("CCCC", -0.5)]:
        mol = Chem.MolFromSmiles(smiles)
        mol.SetProp("pIC50", str(value))
        mol.SetProp("vendor", "acme")
        writer.write(mol)
    writer.close()
    with open(tmp_path / "b.sdf", "a") as f:          # a neutral nitrogen with four bonds: RDKit refuses it
        f.write(Chem.MolToMolBlock(Chem.MolFromSmiles("C(C)(C)(C)C")).replace(" C ", " N ", 1) + "$$$$\n")
    info = pack([tmp_path / "b.sdf"], tmp_path / "sdf", val_fraction=0.0)
    assert info["graphs"]["train"] == 2 and info["skipped"] == {"unreadable SDF record": 1}
    assert info["labels"] == {"pIC50": "regression"} and info["ignored_columns"] == ["vendor"]
    assert sorted(s["labels"]["pIC50"] for s in samples(tmp_path / "sdf")) == [-0.5, 1.5]


def test_cli_pack_graphs(tmp_path, capsys):
    (tmp_path / "g.jsonl").write_text("\n".join(json.dumps(node_link(n + 2, y=n)) for n in range(12)) + "\n{bad")
    assert main(["data", "pack-graphs", str(tmp_path / "g.jsonl"), "--out", str(tmp_path / "out"),
                 "--val-fraction", "0.25", "--labels", "[y]"]) == 0
    line = capsys.readouterr().out
    assert "packed 12 graphs" in line and "skipped 1 (not JSON: 1)" in line and "labels: y" in line
    for split in ("train", "validation"):
        for s in samples(tmp_path / "out", split):
            from_json(s, 1)                         # every written sample parses against its schema
    assert main(["data", "pack-graphs", str(tmp_path / "g.jsonl"), "--out", str(tmp_path / "out")]) == 2
    assert "not empty" in capsys.readouterr().err


def test_packer_is_registered_with_its_example():
    assert PackGraphs.example.startswith("modalzoo data pack-graphs")
    with pytest.raises(ValueError, match="max_values"):
        PackGraphs(PackGraphsConfig(max_values=0))
