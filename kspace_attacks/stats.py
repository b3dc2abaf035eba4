"""Seeded bootstrap confidence intervals: shared by the study's verdicts and the robustness cards.

Pure tensors (core layer): :mod:`kspace_attacks.study.statistics` decides the study's paired
claims with it, :mod:`kspace_attacks.testing.card` puts intervals on a card's means.

Example:

    >>> from kspace_attacks.stats import bootstrap_ci
    >>> lo, hi = bootstrap_ci([1.0, 2.0, 3.0, 4.0])
    >>> 1.0 <= lo < 2.5 < hi <= 4.0
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["bootstrap_ci"]


def bootstrap_ci(values: Sequence[float], level: float = 0.95, resamples: int = 10000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``values`` (seeded, so verdicts are reproducible).

    >>> lo, hi = bootstrap_ci([1.0, 2.0, 3.0, 4.0])
    >>> 1.0 <= lo < 2.5 < hi <= 4.0
    True
    """
    v = torch.as_tensor([float(x) for x in values], dtype=torch.float64)
    if v.numel() == 0:
        raise ValueError("values: expected at least one value, got none")
    if not 0 < level < 1:
        raise ValueError(f"level: expected a number in (0, 1), got {level}")
    if v.numel() == 1:
        return float(v[0]), float(v[0])
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, v.numel(), (resamples, v.numel()), generator=g)
    means = v[idx].mean(dim=1)
    alpha = (1 - level) / 2
    return float(torch.quantile(means, alpha)), float(torch.quantile(means, 1 - alpha))
