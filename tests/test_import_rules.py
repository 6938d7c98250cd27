"""Imports point one way (docs/architecture.md, rule 4): the core never imports a modality, and a modality
imports only the core, itself and `modalities.text`. `components.py` alone names the modalities (in one
tuple, imported by name). Checked by parsing every module's import statements."""

from __future__ import annotations

import ast
from pathlib import Path

import modalzoo

PACKAGE = Path(modalzoo.__file__).parent
MODALITIES = "modalzoo.modalities"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(source: str, module: str, is_package: bool) -> set[str]:
    """Every module an import statement in ``source`` names (``from a import b`` names a and a.b),
    relative imports resolved against ``module``."""
    package = module if is_package else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("modalzoo."):
            names.add(node.value)       # importlib.import_module("modalzoo....") / __import__ by a literal name
    return names


def names_a_modality(name: str) -> bool:
    return name == MODALITIES or name.startswith(MODALITIES + ".")


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        yield path, name, imported(path.read_text(), name, path.name == "__init__.py")


def test_the_checker_resolves_relative_imports():
    found = imported("from ..modalities.text import dataset\nfrom . import x", "modalzoo.hub.export", False)
    assert {"modalzoo.modalities.text", "modalzoo.modalities.text.dataset", "modalzoo.hub.x"} <= found
    found = imported("from ...text.hub.bert import text_batch", "modalzoo.modalities.vision.hub", True)
    assert "modalzoo.modalities.text.hub.bert" in found
    assert names_a_modality(next(iter(imported("from .. import modalities", "modalzoo.hub.export", False)
                                       - {"modalzoo"})))
    assert "modalzoo.modalities.vision" in imported("importlib.import_module('modalzoo.modalities.vision')",
                                                   "modalzoo.hub.export", False)


def test_the_core_never_imports_a_modality():
    core = [(path, names) for path, name, names in modules()
            if not name.startswith(MODALITIES) and name != "modalzoo.components"]
    assert len(core) > 20                       # the walk found the core
    bad = {str(path.relative_to(PACKAGE)): sorted(n for n in names if names_a_modality(n))
           for path, names in core}
    assert {k: v for k, v in bad.items() if v} == {}


def test_a_modality_imports_only_the_core_itself_and_text():
    seen = set()
    bad = {}
    for path, name, names in modules():
        if not name.startswith(MODALITIES + "."):
            continue
        own = name.split(".")[2]
        seen.add(own)
        wrong = sorted(n for n in names if n.startswith(MODALITIES + ".") and n.split(".")[2] not in (own, "text"))
        if wrong:
            bad[str(path.relative_to(PACKAGE))] = wrong
    assert {"text", "vision", "code"} <= seen
    assert bad == {}
