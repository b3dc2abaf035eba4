"""Choosing slices of a volume: explicit indices, a ``"start:stop:step"`` range, or n evenly
spaced among candidates.

Shared by the NIfTI reader (:func:`~kspace_attacks.data.nifti.load_nifti_slices`), the fastMRI
data set (:class:`~kspace_attacks.data.fastmri.FastMRISlices`) and sweep configurations, so a
selection means the same everywhere.

    >>> select_slices([3, -1], 10)
    [3, 9]
    >>> select_slices("10:40:10", 50)
    [10, 20, 30]
    >>> evenly_spaced([4, 5, 6, 7, 8], 3)
    [4, 6, 8]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._checks import check_positive_int, describe

__all__ = ["SliceSpec", "select_slices", "evenly_spaced"]

#: What a slice selection may be: indices, a ``range``/``slice``, or a ``"start:stop[:step]"`` string.
SliceSpec = Sequence[int] | range | slice | str

_RANGE = re.compile(r"^\s*(-?\d*)\s*:\s*(-?\d*)\s*(?::\s*(-?\d*)\s*)?$")


def _parse_range(spec: str, name: str) -> slice:
    m = _RANGE.match(spec)
    if m is None:
        raise ValueError(
            f"{name}: expected a list of slice indices or a range 'start:stop[:step]' such as "
            f"'10:40:5', got {spec!r}"
        )
    start, stop, step = (int(v) if v not in (None, "") else None for v in m.groups())
    if step == 0:
        raise ValueError(f"{name}: expected a non-zero step in {spec!r}, got step 0")
    return slice(start, stop, step)


def select_slices(spec: Any, n: int, name: str = "slices", where: str = "") -> list[int]:
    """Resolve a slice selection against a volume of ``n`` slices.

    :param spec: indices (negative ones count from the end), a ``range``, a ``slice`` or a
        string ``"start:stop[:step]"`` with Python slicing rules (``"10:40:5"``, ``":8"``).
    :param int n: number of slices in the volume.
    :param str name: argument name used in error messages.
    :param str where: what the volume is (e.g. a file path), appended to error messages.
    :return: distinct non-negative indices in the given order.
    :raises TypeError, ValueError: naming ``name``, what was expected and what was given.
    """
    n = check_positive_int("n", n)
    of = f" of {where}" if where else ""
    if isinstance(spec, str):
        spec = _parse_range(spec, name)
    if isinstance(spec, slice):
        idx = list(range(n)[spec])
        if not idx:
            raise ValueError(f"{name}: the range selects no slice of the {n} slices{of}, got {spec}")
        return idx
    if isinstance(spec, np.ndarray):
        spec = spec.tolist()
    if not isinstance(spec, (Sequence, range)) or not len(spec):
        raise TypeError(
            f"{name}: expected a non-empty list of slice indices or a range 'start:stop[:step]', "
            f"got {describe(spec)}"
        )
    bad = [v for v in spec if isinstance(v, bool) or not isinstance(v, (int, np.integer))]
    if bad:
        raise TypeError(f"{name}: expected integer slice indices, got {list(spec)!r}")
    out_of_range = [int(v) for v in spec if not -n <= v < n]
    if out_of_range:
        raise ValueError(
            f"{name}: expected indices in [0, {n}) (or negative from the end){of}, "
            f"got {out_of_range} in {list(spec)}"
        )
    idx = [int(v) % n for v in spec]
    if len(set(idx)) != len(idx):
        raise ValueError(f"{name}: expected distinct slice indices, got {list(spec)}")
    return idx


def evenly_spaced(candidates: Sequence[int], n: int) -> list[int]:
    """``n`` evenly spaced entries of ``candidates`` (first and last included), or all of them
    if there are fewer: ``candidates[round(i (len - 1) / (n - 1))]``."""
    n = check_positive_int("n_slices", n)
    c = list(candidates)
    if n >= len(c):
        return c
    return [c[round(i * (len(c) - 1) / max(1, n - 1))] for i in range(n)]
