"""Old import paths, kept for one release: importing one warns and returns the new module.

The package was reorganised into layers (core, ``data``, ``study``, ``testing``, ``interop``;
see docs/ARCHITECTURE.md). A meta-path finder maps each old module name to its new home, so
``import kspace_attacks.evaluation`` still works (with a ``DeprecationWarning``) and yields
the very module object of ``kspace_attacks.study.transfer``: monkeypatching either name
patches both. No stub files clutter the package.

>>> import importlib, sys, warnings
>>> _ = sys.modules.pop("kspace_attacks.evaluation", None)
>>> with warnings.catch_warnings(record=True) as w:
...     warnings.simplefilter("always")
...     old = importlib.import_module("kspace_attacks.evaluation")
>>> old is importlib.import_module("kspace_attacks.study.transfer"), w[0].category.__name__
(True, 'DeprecationWarning')
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

from ._deprecation import renamed

__all__ = ["MOVED_MODULES", "install"]

#: old module name -> new module name.
MOVED_MODULES: dict[str, str] = {
    "kspace_attacks.evaluation": "kspace_attacks.study.transfer",
    "kspace_attacks.report": "kspace_attacks.study.report",
    "kspace_attacks.plots": "kspace_attacks.study.plots",
    "kspace_attacks.demo": "kspace_attacks.study.demo",
    "kspace_attacks.sweep": "kspace_attacks.study.sweep",
    "kspace_attacks.journal": "kspace_attacks.study.journal",
    "kspace_attacks.analysis": "kspace_attacks.study.artifacts",
    "kspace_attacks.targeted": "kspace_attacks.study.targeted",
    "kspace_attacks.deepinv_interop": "kspace_attacks.interop.deepinv",
    "kspace_attacks.pytest_plugin": "kspace_attacks.testing.plugin",
    "kspace_attacks.data.fastmri_io": "kspace_attacks.data.fastmri",
    "kspace_attacks.adapters.torchattacks": "kspace_attacks.interop.torchattacks",
    "kspace_attacks.adapters.training_diffusion": "kspace_attacks.adapters.training.diffusion",
}


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None  # a throw-away module; exec_module swaps in the real one

    def exec_module(self, module: ModuleType) -> None:
        old = module.__name__
        renamed(old, f"import {self.new}")
        # The import system returns whatever sys.modules holds after exec_module.
        sys.modules[old] = importlib.import_module(self.new)


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: object = None, target: object = None):
        new = MOVED_MODULES.get(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(new))


def install() -> None:
    """Put the alias finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _AliasFinder())
