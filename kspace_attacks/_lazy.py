"""Names of a package imported on first use (PEP 562), so importing the package stays cheap.

Example:

    >>> import types
    >>> pkg = types.ModuleType("pkg")
    >>> getattr_, dir_ = lazy_exports(vars(pkg), "json", {"dumps": ""})
    >>> getattr_("dumps")([1])
    '[1]'
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(namespace: dict[str, Any], package: str,
                 exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for a package whose public name ``n`` lives in module
    ``package + "." + exports[n]`` (``""``: the package itself); a looked-up name is cached in
    ``namespace`` (the package's globals), so later look-ups are plain attribute access."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        where = f"{package}.{exports[name]}" if exports[name] else package
        value = getattr(importlib.import_module(where), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports})

    return __getattr__, __dir__
