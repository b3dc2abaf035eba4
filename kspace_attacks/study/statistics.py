"""Paired statistics behind every verdict: cluster bootstrap CIs, p-values, floors and corrections.

A claim compares two conditions on the same slices (attack vs equal-norm noise, eps 0.08 vs
eps 0.02, ...). Each slice gives one paired difference ``d_i = harm_a(i) - harm_b(i)`` in one
metric, signed so that a positive value means "a is worse than b".

**Independent units.** Neighbouring slices of one brain are near-identical, so slices are not
independent: the bootstrap resamples whole clusters (:func:`~kspace_attacks.stats.cluster_bootstrap_means`)
and the mean is taken over all slices of the drawn clusters. The cluster (:func:`clusters_of`)
is the ``subject`` when the compared slices come from at least ``min_subjects`` (5) subjects,
else the (``subject``, ``block``) pair (an anatomical block of one subject: ``unit`` "block");
records without those columns (earlier runs) fall back to the slice (``unit`` "item"), and
every row says so. ``n`` counts slices, ``n_clusters`` the resampled units, ``n_subjects``
the subjects (``None`` when unknown); ``small_sample`` is fewer than 10 units.

**A practical floor.** A difference has to be large enough to matter: with the floor ``f``
(:data:`FLOORS`, decided per cell by the caller, e.g. 10 % of what the comparison condition
does) the claim *holds* when the difference exceeds ``threshold + f``, *does not hold* when it
lies below ``threshold - f`` (b is clearly worse), is *negligible* when it lies within
``threshold +- f``, and is *inconclusive* otherwise (or with fewer than two units). Ties are
not effects: a CI within the metric's float resolution around the threshold (``tolerance``,
relative to the size of the compared values) is *no difference*, whatever the floor.

**p-values and multiplicity.** Each conclusion has a bootstrap p-value from the resampled
means (:func:`~kspace_attacks.stats.bootstrap_p`): ``p_holds`` for "difference > threshold + f",
``p_does_not_hold`` for "difference < threshold - f", ``p_negligible`` the TOST for
"|difference - threshold| < f" (the larger of its two one-sided p-values). Each one-sided p is
doubled: a cell can conclude in either direction, so each direction gets ``alpha / 2``, and
before any correction ``p < alpha`` implies "the ``1 - alpha`` (95 %) CI lies beyond the
bound", the rule of the interval that is shown. No p-value is smaller than ``k`` independent
units can support (:func:`unit_resolution`: ``2 * 2**-k``, the exact sign-flip test's; the
bootstrap of few units has no resample beyond their range and would claim ``p ~ 1 /
resamples``): a cell needs 6 units to decide at all, and a large family needs more (with 13
units a cell survives Holm in a family of up to about 200). The cell's candidate conclusion is
the one with the smallest p (``p_uncorrected``, its outcome ``outcome_uncorrected``). Within
one question (:func:`family_of`: the cells of one claim about one target in one metric, across
surrogates, attacks and eps: the study answers each claim per model and metric) the candidates' p-values are
adjusted (:func:`correct`) and the cell's ``outcome`` is its candidate when ``p_adjusted <
alpha``, else inconclusive.

The default correction is Holm's: it controls the family-wise error, the chance that *any*
cell of a question is wrongly decided, under any dependence between the cells (they share slices
and models, so they are strongly dependent), and each decided cell can be quoted on its own.
Benjamini-Hochberg (``correction="bh"``) controls the false discovery rate instead (the
expected share of wrong conclusions among the decided cells; valid for positively dependent
tests): more cells are decided, fit when the claim is read as a count over many cells. Cells
that cannot decide (ties, a single unit) are not tested and do not enlarge the family. The
number of resamples grows with the family (:func:`family_resamples`) so that the p-values'
resolution never decides a cell.

Example:

    >>> from kspace_attacks.study.statistics import paired_outcome
    >>> paired_outcome([0.3, 0.25, 0.4, 0.35, 0.3, 0.28, 0.33, 0.37],
    ...                [0.1, 0.12, 0.08, 0.11, 0.1, 0.09, 0.12, 0.1]).outcome
    'holds'
    >>> paired_outcome([0.3, 0.25, 0.4, 0.35], [0.1, 0.12, 0.08, 0.11]).outcome  # 4 units cannot decide
    'inconclusive'
    >>> paired_outcome([0.1, 0.2, 0.1], [0.15, 0.1, 0.12]).outcome
    'inconclusive'
    >>> paired_outcome([0.05, 0.06, 0.07], [0.05 - 1e-9, 0.06, 0.07 + 4e-9]).outcome  # float rounding
    'no difference'
    >>> b = [0.1 * k for k in range(1, 9)]
    >>> o = paired_outcome([x + 0.001 * (-1) ** k for k, x in enumerate(b)], b, floor=0.01)
    >>> o.outcome, o.floor  # differences of +-0.001: within the floor
    ('negligible', 0.01)
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass

import torch

from ..stats import CORRECTIONS, adjust_p, bootstrap_ci, bootstrap_p, cluster_bootstrap_means

__all__ = ["PairedOutcome", "Clustering", "bootstrap_ci", "paired_outcome", "clusters_of", "correct",
           "family_of", "family_resamples", "unit_resolution", "support", "HOLDS", "DOES_NOT_HOLD", "NEGLIGIBLE", "INCONCLUSIVE",
           "NO_DIFFERENCE", "OUTCOMES", "RESOLUTION", "FLOORS", "FLOOR_FRACTION", "ALPHA", "MIN_SUBJECTS",
           "RESAMPLES", "UNITS", "CORRECTIONS"]

HOLDS, DOES_NOT_HOLD, INCONCLUSIVE = "holds", "does not hold", "inconclusive"
#: the CI lies within the practical floor around the threshold: a difference too small to matter
NEGLIGIBLE = "negligible"
#: the CI lies within the metric's resolution around the threshold: a tie, not an effect
NO_DIFFERENCE = "no difference"
OUTCOMES = (HOLDS, DOES_NOT_HOLD, NEGLIGIBLE, INCONCLUSIVE, NO_DIFFERENCE)
#: Default resolution of a paired difference, relative to the compared values' size: float32
#: metrics carry about 7 significant digits, so differences below 1e-6 of the values are rounding.
RESOLUTION = 1e-6
#: Fewer independent units (clusters) than this: the verdict is marked small-sample.
SMALL_SAMPLE = 10
#: Default practical floor, relative: this fraction of the comparison condition's mean harm
#: ``|mean_b|`` (10 % of what equal-norm noise does, of the harm at the smallest eps, ...).
FLOOR_FRACTION = 0.1
#: Absolute floors per metric (in the metric's harm units): the floor is never below them, so
#: a comparison whose condition b does almost nothing still needs a visible difference.
#:
#: - ``deviation`` (relative output change): 0.001, 0.1 % of the clean reconstruction's norm
#:   (about -60 dB); the metric is relative and scales with eps, so the relative floor decides;
#: - ``ssim`` (SSIM lost): 0.005, below what the 7x7 SSIM window and a reader resolve;
#: - ``psnr`` (dB lost): 0.1 dB, the resolution at which reconstruction quality is reported;
#: - ``structure`` (area beyond the noise null): 0.005, half the null's own nominal area (0.01);
#: - ``spectrum`` / ``values`` (0..1 distances): 0.01 of their range;
#: - ``roi_contrast`` (targeted test, share of the inserted contrast): 0.05.
FLOORS = {"deviation": 1e-3, "ssim": 5e-3, "psnr": 0.1, "structure": 5e-3, "spectrum": 1e-2, "values": 1e-2,
          "roi_contrast": 0.05}
#: Significance level of every decision, after the correction.
ALPHA = 0.05
#: Distinct subjects a cell needs for the subject to be the resampled unit.
MIN_SUBJECTS = 5
#: Resamples of one cell at least (:func:`family_resamples` raises it for large families).
RESAMPLES = 10000
#: what the bootstrap resamples: subjects, (subject, block) pairs, slices, or given clusters
UNITS = ("subject", "block", "item", "cluster")


@dataclass(frozen=True)
class PairedOutcome:
    """A decided comparison: means of both sides, the paired mean difference, its CI and p-values.

    ``outcome`` is the uncorrected decision of this cell alone (a family of one);
    :func:`correct` re-decides a family of cells.
    """

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
    unit: str = "item"
    n_clusters: int = 0
    n_subjects: int | None = None
    floor: float = 0.0
    effect: float = float("nan")
    p_holds: float = 1.0
    p_does_not_hold: float = 1.0
    p_negligible: float = 1.0
    p_uncorrected: float = 1.0
    p_adjusted: float | None = None
    outcome_uncorrected: str = INCONCLUSIVE
    correction: str = "none"
    family_size: int = 1
    resamples: int = RESAMPLES

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Clustering:
    """The resampled unit of a set of records: one cluster label (and subject) per record."""

    unit: str
    labels: list
    subjects: list | None


def _present(v: object) -> bool:
    return v is not None and v != "" and not (isinstance(v, float) and math.isnan(v))


def _key(v: object) -> Hashable:
    """A label that reads the same from JSON and CSV records (3, 3.0 and "3" alike)."""
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v)


def clusters_of(records: Sequence[Mapping], min_subjects: int = MIN_SUBJECTS) -> Clustering:
    """The resampling unit of ``records`` (one per slice) and each record's cluster.

    ``subject`` when they hold at least ``min_subjects`` distinct subjects (or no blocks);
    else the (subject, block) pair; ``item`` (every slice its own cluster) when a record has
    no ``subject`` (records of earlier versions).

    >>> recs = [{"subject": s, "block": b} for s in "ab" for b in (0, 0, 1)]
    >>> c = clusters_of(recs)
    >>> c.unit, len(set(c.labels)), clusters_of(recs, min_subjects=2).unit
    ('block', 4, 'subject')
    >>> clusters_of([{"sample_id": 1}, {"sample_id": 2}]).unit
    'item'
    """
    if isinstance(min_subjects, bool) or not isinstance(min_subjects, int) or min_subjects < 1:
        raise ValueError(f"min_subjects: expected an integer >= 1, got {min_subjects!r}")
    subjects = [r.get("subject") for r in records]
    if not records or not all(_present(s) for s in subjects):
        return Clustering("item", list(range(len(records))), None)
    subj = [_key(s) for s in subjects]
    blocks = [r.get("block") for r in records]
    if len(set(subj)) >= min_subjects or not any(_present(b) for b in blocks):
        return Clustering("subject", subj, subj)
    return Clustering("block", [(s, _key(b) if _present(b) else "") for s, b in zip(subj, blocks, strict=True)],
                      subj)


def family_resamples(family_size: int, alpha: float = ALPHA, minimum: int = RESAMPLES) -> int:
    """Resamples per cell for a family of ``family_size`` cells: at least ``minimum``, and
    enough that the smallest bootstrap p-value (``2 / (resamples + 1)``) adjusted over the
    whole family stays below ``alpha / 10``: the resolution of the bootstrap never decides.

    >>> family_resamples(1), family_resamples(400)
    (10000, 160000)
    """
    if isinstance(family_size, bool) or not isinstance(family_size, int) or family_size < 0:
        raise ValueError(f"family_size: expected an integer >= 0, got {family_size!r}")
    return max(minimum, math.ceil(20 * family_size / alpha))


def _check_number(name: str, value: object, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= minimum or math.isinf(value):
        raise ValueError(f"{name}: expected a finite number >= {minimum}, got {value!r}")
    return float(value)


def unit_resolution(n_clusters: int) -> float:
    """The smallest p-value ``n_clusters`` independent units can support: ``2 * 2**-k``, the
    exact sign-flip test's (each unit's difference either sign, both directions). The bootstrap
    of a few units sees no resample beyond their range and would report ``p ~ 1 / resamples``;
    its p-values are floored here, so a cell needs at least 6 units to decide at 0.05.

    >>> unit_resolution(2), unit_resolution(6), unit_resolution(13) < 3e-4
    (0.5, 0.03125, True)
    """
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, int) or n_clusters < 1:
        raise ValueError(f"n_clusters: expected an integer >= 1, got {n_clusters!r}")
    return min(1.0, 2.0 ** (1 - n_clusters))


def _tests(means: torch.Tensor, threshold: float, margin: float, practical: bool, k: int) -> dict[str, float]:
    """The three doubled one-sided bootstrap p-values of a cell of ``k`` units (floored at
    :func:`unit_resolution`)."""
    def two(bound: float, alternative: str) -> float:
        return min(1.0, max(2 * bootstrap_p(means, bound, alternative), unit_resolution(k)))
    return {"p_holds": two(threshold + margin, "greater"),
            "p_does_not_hold": two(threshold - margin, "less"),
            "p_negligible": max(two(threshold + margin, "less"), two(threshold - margin, "greater"))
            if practical else 1.0}


def _candidate(p: Mapping[str, float]) -> tuple[str, float]:
    """The conclusion with the smallest p (holds first on ties) and that p."""
    options = ((HOLDS, p["p_holds"]), (DOES_NOT_HOLD, p["p_does_not_hold"]), (NEGLIGIBLE, p["p_negligible"]))
    return min(options, key=lambda o: o[1])


def _pairs(a: Sequence[float], b: Sequence[float], clusters: Sequence[Hashable] | None,
           subjects: Sequence[Hashable] | None) -> tuple[list[int], list, list | None]:
    """Indices of the finite pairs, their cluster labels and subjects (lengths checked)."""
    if len(a) != len(b):
        raise ValueError(f"a, b: expected paired values of equal length, got {len(a)} and {len(b)}")
    for name, seq in (("clusters", clusters), ("subjects", subjects)):
        if seq is not None and len(seq) != len(a):
            raise ValueError(f"{name}: expected one label per pair ({len(a)}), got {len(seq)}")
    keep = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if math.isfinite(float(x)) and math.isfinite(float(y))]
    labels = [clusters[i] for i in keep] if clusters is not None else list(keep)
    return keep, labels, [subjects[i] for i in keep] if subjects is not None else None


def paired_outcome(a: Sequence[float], b: Sequence[float], threshold: float = 0.0, level: float = 0.95,
                   seed: int = 0, resolution: float = RESOLUTION, *, floor: float = 0.0,
                   floor_fraction: float = 0.0, clusters: Sequence[Hashable] | None = None,
                   subjects: Sequence[Hashable] | None = None, unit: str | None = None,
                   resamples: int = RESAMPLES) -> PairedOutcome:
    """Decide whether ``a`` exceeds ``b`` by more than ``threshold`` (paired per slice).

    :param a: per-slice harm of condition a (larger = worse), e.g. the attack.
    :param b: per-slice harm of condition b, same slices in the same order, e.g. noise.
    :param float threshold: the claim is ``mean(a - b) > threshold``.
    :param float level: level of the CI; the cell decides at ``alpha = 1 - level``.
    :param float resolution: differences below ``resolution`` x the values' size (the larger
        mean absolute value of ``a`` and ``b``) are ties: the outcome's ``tolerance``.
    :param float floor: the practical floor's absolute minimum (:data:`FLOORS`).
    :param float floor_fraction: the floor relative to ``|mean(b)|``; the floor is
        ``max(floor, floor_fraction * |mean(b)|)`` (both 0: no practical floor).
    :param clusters: one cluster label per pair (e.g. :func:`clusters_of`); default: every
        pair its own cluster.
    :param subjects: one subject per pair, counted as ``n_subjects``.
    :param str unit: what a cluster is (:data:`UNITS`); default "item" without ``clusters``,
        else "cluster".
    :returns: a :class:`PairedOutcome`; non-finite pairs are dropped (``n`` counts the rest).

    >>> o = paired_outcome([1.0, 1.1, 1.0, 1.2, 0.9, 1.1], [0.1] * 6, clusters="aabbcc", unit="subject")
    >>> o.outcome, o.unit, o.n, o.n_clusters, o.p_holds  # 3 subjects: p >= 2 * 2**-3
    ('inconclusive', 'subject', 6, 3, 0.25)
    """
    if isinstance(resolution, bool) or not isinstance(resolution, (int, float)) or not resolution >= 0:
        raise ValueError(f"resolution: expected a number >= 0, got {resolution!r}")
    if not 0 < level < 1:
        raise ValueError(f"level: expected a number in (0, 1), got {level!r}")
    floor, floor_fraction = _check_number("floor", floor), _check_number("floor_fraction", floor_fraction)
    unit = unit if unit is not None else ("item" if clusters is None else "cluster")
    if unit not in UNITS:
        raise ValueError(f"unit: expected one of {list(UNITS)}, got {unit!r}")
    keep, labels, subj = _pairs(a, b, clusters, subjects)
    n_subjects = len(set(subj)) if subj is not None else None
    if not keep:
        nan = float("nan")
        return PairedOutcome(0, nan, nan, nan, nan, nan, nan, threshold, INCONCLUSIVE, True, unit=unit,
                             n_subjects=n_subjects, resamples=resamples)
    xa, xb = [float(a[i]) for i in keep], [float(b[i]) for i in keep]
    diffs = [x - y for x, y in zip(xa, xb, strict=True)]
    n, k = len(diffs), len(set(labels))
    mean_a, mean_b, mean_diff = sum(xa) / n, sum(xb) / n, sum(diffs) / n
    tol = float(resolution) * max(sum(map(abs, xa)) / n, sum(map(abs, xb)) / n)
    floor = max(floor, floor_fraction * abs(mean_b))
    means = cluster_bootstrap_means(diffs, labels, resamples, seed)
    lo, hi = torch.quantile(means, torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)).tolist()
    p = _tests(means, threshold, max(floor, tol), floor > tol, k) if k >= 2 else \
        {"p_holds": 1.0, "p_does_not_hold": 1.0, "p_negligible": 1.0}
    candidate, p_min = _candidate(p)
    if abs(lo - threshold) <= tol and abs(hi - threshold) <= tol:
        outcome = NO_DIFFERENCE  # rounding, not the models: even one slice shows a tie
    elif k < 2:
        outcome = INCONCLUSIVE  # one unit decides nothing
    else:
        outcome = candidate if p_min < 1 - level else INCONCLUSIVE
    return PairedOutcome(n, mean_a, mean_b, mean_diff, lo, hi, mean_a / mean_b if mean_b != 0 else float("inf"),
                         threshold, outcome, k < SMALL_SAMPLE, tol, unit=unit, n_clusters=k, n_subjects=n_subjects,
                         floor=floor, effect=mean_diff / abs(mean_b) if mean_b != 0 else float("nan"), **p,
                         p_uncorrected=p_min, p_adjusted=p_min if k >= 2 and outcome != NO_DIFFERENCE else None,
                         outcome_uncorrected=outcome, resamples=resamples)


def _tested(row: Mapping) -> bool:
    """A cell that can decide: not a tie and at least two units."""
    return row.get("outcome_uncorrected") != NO_DIFFERENCE and int(row.get("n_clusters") or 0) >= 2


def family_of(row: Mapping) -> tuple:
    """The question a verdict cell answers, the family its p-value is corrected in: the claim
    about one target in one metric (``(claim_id, metric, target)``). The study asks each claim
    per metric, the attack's own objective first (a claim "holds in deviation" and "in SSIM"
    are two answers), and per model under test: adding a target to a study asks a new question
    about that model and must not change the answers about the others.

    >>> family_of({"claim_id": "beats_noise", "metric": "ssim", "target": "diffusion", "eps": 0.08})
    ('beats_noise', 'ssim', 'diffusion')
    """
    return (row.get("claim_id"), row.get("metric"), row.get("target"))


def correct(rows: Sequence[Mapping], correction: str = "holm", alpha: float = ALPHA) -> list[dict]:
    """Re-decide verdict rows with their p-values adjusted within each question
    (:func:`family_of`: a claim about one target in one metric).

    Each tested cell's candidate p (``p_uncorrected``) is adjusted over the family's tested
    cells (``family_size``); ``outcome`` is the candidate when ``p_adjusted < alpha``, else
    inconclusive, and ``outcome_uncorrected`` the same decision without the adjustment. Ties
    and single-unit cells keep their outcome (``p_adjusted`` None). Rows without p-values
    (from earlier versions) are returned unchanged.

    >>> row = paired_outcome([0.3, 0.5, 0.4, 0.05, 0.2, 0.35, 0.15, 0.25, 0.3, -0.1], [0.1] * 10).as_dict()
    >>> row["outcome"], round(row["p_uncorrected"], 4)  # alone, the cell holds
    ('holds', 0.0116)
    >>> family = correct([dict(row, claim_id="c")] * 10)  # one of ten such cells: not enough
    >>> family[0]["outcome"], round(family[0]["p_adjusted"], 3), family[0]["outcome_uncorrected"]
    ('inconclusive', 0.116, 'holds')
    """
    if correction not in CORRECTIONS:
        raise ValueError(f"correction: expected one of {list(CORRECTIONS)}, got {correction!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ValueError(f"alpha: expected a number in (0, 1), got {alpha!r}")
    out = [dict(r) for r in rows]
    families: dict[object, list[int]] = defaultdict(list)
    for i, r in enumerate(out):
        if "p_holds" in r and _tested(r):
            families[family_of(r)].append(i)
    for members in families.values():
        picks = [_candidate(out[i]) for i in members]
        adjusted = adjust_p([p for _, p in picks], correction)
        for i, (candidate, p), p_adj in zip(members, picks, adjusted, strict=True):
            out[i].update(p_uncorrected=p, p_adjusted=p_adj, family_size=len(members),
                          outcome_uncorrected=candidate if p < alpha else INCONCLUSIVE,
                          outcome=candidate if p_adj < alpha else INCONCLUSIVE)
    for r in out:
        if "p_holds" in r:
            r["correction"] = correction
            if not _tested(r):
                r.update(p_adjusted=None, family_size=0, outcome=r.get("outcome_uncorrected", r.get("outcome")))
    return out


def _span(values: list[int]) -> str:
    lo, hi = min(values), max(values)
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def _plural(count: str, word: str) -> str:
    return f"{count} {word}" if count == "1" else f"{count} {word}s"


def support(rows: Sequence[Mapping]) -> str:
    """What stands behind verdict rows: subjects, clusters and the resampled unit.

    >>> support([{"unit": "block", "n_subjects": 3, "n_clusters": 13}])
    '3 subjects, 13 blocks; unit: block'
    >>> support([{"unit": "item", "n_clusters": 12, "n_subjects": None}])
    'unit: item, no subject ids'
    """
    by: dict[str, list[Mapping]] = defaultdict(list)
    for r in rows:
        if r.get("unit"):
            by[r["unit"]].append(r)
    parts = []
    for unit, rs in by.items():
        subjects = [int(r["n_subjects"]) for r in rs if r.get("n_subjects") is not None]
        clusters = _span([int(r.get("n_clusters") or 0) for r in rs])
        if unit == "subject":
            text = f"{_plural(clusters, 'subject')}; unit: subject"
        elif unit == "block":
            text = f"{_plural(_span(subjects), 'subject')}, {_plural(clusters, 'block')}; unit: block"
        elif unit == "item":
            text = "unit: item, no subject ids"
        else:
            text = f"{_plural(clusters, 'cluster')}; unit: {unit}"
        parts.append(text + (f" ({len(rs)} cells)" if len(by) > 1 else ""))
    return "; ".join(parts)
