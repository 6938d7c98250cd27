"""``modalzoo.<modality>``: a modality's public Python API, where it has one (``modalities/<name>/api.py``).

``from modalzoo.tabular import TabularClassifier`` reads better than the package path, but the core may not
name a modality (docs/architecture.md, rule 4), so no alias module is written per modality: this finder,
installed by ``import modalzoo`` and consulted after the ordinary ones, resolves ``modalzoo.NAME`` to
``modalzoo.modalities.NAME.api`` (the same module object) for any modality that has an ``api`` module.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys


class PublicAPIs(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, package: str):
        self.package = package

    def find_spec(self, fullname, path=None, target=None):
        head, _, name = fullname.partition(".")
        if head != self.package or not name.isidentifier() or name == "modalities":
            return None
        if importlib.util.find_spec(f"{self.package}.modalities.{name}") is None:
            return None
        api = f"{self.package}.modalities.{name}.api"
        if importlib.util.find_spec(api) is None:
            return None
        return importlib.util.spec_from_loader(fullname, self, origin=api)

    def create_module(self, spec):
        return importlib.import_module(spec.origin)

    def exec_module(self, module) -> None:
        pass


def install(package: str) -> None:
    if not any(isinstance(f, PublicAPIs) for f in sys.meta_path):
        sys.meta_path.append(PublicAPIs(package))
