"""The one way an old name keeps working for a release: a ``DeprecationWarning`` that names
the new name (and, where the meaning changed, what the old name meant).

Example:

    >>> import warnings
    >>> from kspace_attacks._deprecation import renamed
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     renamed("f.old", "f.new")
    >>> str(w[0].message)
    'f.old is deprecated and will be removed in the next release; use f.new'
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["renamed", "renamed_keys"]


def renamed(old: str, new: str, note: str = "", stacklevel: int = 3) -> None:
    """Warn that ``old`` is deprecated in favour of ``new`` (``note``: what else changed)."""
    message = f"{old} is deprecated and will be removed in the next release; use {new}"
    warnings.warn(message + (f" ({note})" if note else ""), DeprecationWarning, stacklevel=stacklevel)


def renamed_keys(rows: Iterable[Mapping[str, Any]], renames: Mapping[str, str], what: str) -> list[dict[str, Any]]:
    """``rows`` with old keys renamed (``renames``: old -> new), warning once per call when one
    was found; a key whose new name is already present is dropped, not overwritten."""
    rows = [dict(r) for r in rows]
    old = sorted({k for r in rows for k in r if k in renames})
    if not old:
        return rows
    renamed(f"{what} {', '.join(repr(k) for k in old)}", ", ".join(repr(renames[k]) for k in old),
            stacklevel=4)
    return [{renames.get(k, k): v for k, v in r.items() if not (k in renames and renames[k] in r)} for r in rows]
