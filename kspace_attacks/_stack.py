"""A batch stacked once per budget: ``k`` copies of ``n`` samples, copy-major.

Attacks take per-sample budgets, so one call can search a whole eps grid: row ``i * n + j`` is
sample ``j`` at budget ``i``. Per-sample physics parameters (masks and coil maps with a batch
dimension of ``n``) are repeated with the data. Used by the study's transfer and by the
robustness cards.
"""

from __future__ import annotations

import copy
from typing import Any

from torch import Tensor

__all__ = ["repeat_rows", "repeat_physics"]


def repeat_rows(t: Tensor, k: int) -> Tensor:
    """Stack ``k`` copies of the batch: index ``i * B + j`` is copy ``i`` of sample ``j``."""
    return t.repeat(k, *([1] * (t.dim() - 1)))


def repeat_physics(physics: Any, k: int, n: int) -> Any:
    """The physics for ``k`` stacked copies of a batch of ``n``: per-sample masks and coil maps
    (``(n, N, H, W)``, e.g. estimated per fastMRI slice) are repeated; shared ones are kept."""
    updates = {}
    for name, min_dim in (("mask", 3), ("coil_maps", 4)):
        t = getattr(physics, name, None)
        if k == 1 or not isinstance(t, Tensor) or t.dim() < min_dim or t.shape[0] in (1, n * k):
            continue
        if t.shape[0] != n:
            raise ValueError(f"physics.{name}: expected batch size 1 or {n} (the data's), got {t.shape[0]}")
        updates[name] = t.repeat(k, *([1] * (t.dim() - 1)))
    if not updates:
        return physics
    stacked = copy.deepcopy(physics)
    stacked.update_parameters(**updates)
    return stacked
