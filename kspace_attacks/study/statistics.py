"""Paired statistics behind every verdict: bootstrap confidence intervals and decided outcomes.

A claim compares two conditions on the same slices (attack vs equal-norm noise, eps 0.08 vs
eps 0.02, ...). Each slice gives one paired difference ``d_i = harm_a(i) - harm_b(i)`` in one
metric, signed so that a positive value means "a is worse than b". The claim *holds* when the
whole 95 % bootstrap confidence interval of the mean difference lies above the threshold,
*does not hold* when it lies at or below it, and is *inconclusive* when it spans it (or when
there is a single slice).

Ties are not effects: differences below a metric's resolution (``tolerance``, relative to the
size of the compared values: float rounding, not the models, decides them) never decide a
claim. A CI that lies within ``threshold +- tol`` is *no difference*; otherwise the claim holds
only when the CI lies above ``threshold + tol`` and does not hold when it lies at or below it.

Example:

    >>> from kspace_attacks.study.statistics import paired_outcome
    >>> paired_outcome([0.3, 0.25, 0.4, 0.35], [0.1, 0.12, 0.08, 0.11]).outcome
    'holds'
    >>> paired_outcome([0.1, 0.2, 0.1], [0.15, 0.1, 0.12]).outcome
    'inconclusive'
    >>> paired_outcome([0.05, 0.06, 0.07], [0.05 - 1e-9, 0.06, 0.07 + 4e-9]).outcome  # float rounding
    'no difference'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from ..stats import bootstrap_ci  # the core's; re-exported here

__all__ = ["PairedOutcome", "bootstrap_ci", "paired_outcome", "HOLDS", "DOES_NOT_HOLD", "INCONCLUSIVE",
           "NO_DIFFERENCE", "OUTCOMES", "RESOLUTION"]

HOLDS, DOES_NOT_HOLD, INCONCLUSIVE = "holds", "does not hold", "inconclusive"
#: the CI lies within the metric's resolution around the threshold: a tie, not an effect
NO_DIFFERENCE = "no difference"
OUTCOMES = (HOLDS, DOES_NOT_HOLD, INCONCLUSIVE, NO_DIFFERENCE)
#: Default resolution of a paired difference, relative to the compared values' size: float32
#: metrics carry about 7 significant digits, so differences below 1e-6 of the values are rounding.
RESOLUTION = 1e-6
#: Fewer paired slices than this: the verdict is marked small-sample.
SMALL_SAMPLE = 10


@dataclass(frozen=True)
class PairedOutcome:
    """A decided comparison: means of both sides, the paired mean difference and its CI."""

    n: int
    mean_a: float
    mean_b: float
    mean_diff: float
    ci_low: float
    ci_high: float
    ratio: float
    threshold: float
    outcome: str
    small_sample: bool
    tolerance: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def paired_outcome(a: Sequence[float], b: Sequence[float], threshold: float = 0.0,
                   level: float = 0.95, seed: int = 0, resolution: float = RESOLUTION) -> PairedOutcome:
    """Decide whether ``a`` exceeds ``b`` by more than ``threshold`` (paired per slice).

    :param a: per-slice harm of condition a (larger = worse), e.g. the attack.
    :param b: per-slice harm of condition b, same slices in the same order, e.g. noise.
    :param float threshold: the claim is ``mean(a - b) > threshold``.
    :param float resolution: differences below ``resolution`` x the values' size (the larger
        mean absolute value of ``a`` and ``b``) are ties: the outcome's ``tolerance``.
    :returns: a :class:`PairedOutcome`; non-finite pairs are dropped (``n`` counts the rest).
    """
    if isinstance(resolution, bool) or not isinstance(resolution, (int, float)) or not resolution >= 0:
        raise ValueError(f"resolution: expected a number >= 0, got {resolution!r}")
    if len(a) != len(b):
        raise ValueError(f"a, b: expected paired values of equal length, got {len(a)} and {len(b)}")
    pairs = [(float(x), float(y)) for x, y in zip(a, b, strict=True)
             if math.isfinite(float(x)) and math.isfinite(float(y))]
    if not pairs:
        nan = float("nan")
        return PairedOutcome(0, nan, nan, nan, nan, nan, nan, threshold, INCONCLUSIVE, True)
    xa = [p[0] for p in pairs]
    xb = [p[1] for p in pairs]
    diffs = [x - y for x, y in pairs]
    lo, hi = bootstrap_ci(diffs, level=level, seed=seed)
    mean_a, mean_b = sum(xa) / len(xa), sum(xb) / len(xb)
    scale = max(sum(abs(x) for x in xa) / len(xa), sum(abs(x) for x in xb) / len(xb))
    tol = float(resolution) * scale
    if abs(lo - threshold) <= tol and abs(hi - threshold) <= tol:
        outcome = NO_DIFFERENCE  # rounding, not the models: even one slice shows a tie
    elif len(pairs) < 2:
        outcome = INCONCLUSIVE  # one slice decides nothing
    elif lo > threshold + tol:
        outcome = HOLDS
    elif hi <= threshold + tol:
        outcome = DOES_NOT_HOLD
    else:
        outcome = INCONCLUSIVE
    ratio = mean_a / mean_b if mean_b != 0 else float("inf")
    return PairedOutcome(len(pairs), mean_a, mean_b, sum(diffs) / len(diffs), lo, hi, ratio,
                         threshold, outcome, len(pairs) < SMALL_SAMPLE, tol)
