"""Seeded bootstrap statistics: shared by the study's verdicts and the robustness cards.

Pure tensors (core layer): :mod:`kspace_attacks.study.statistics` decides the study's paired
claims with it, :mod:`kspace_attacks.testing.card` puts intervals on a card's means.

- :func:`bootstrap_ci`: percentile bootstrap CI of a mean, items independent;
- :func:`cluster_bootstrap_means` / :func:`cluster_bootstrap_ci`: the same when items come in
  clusters (slices of one subject): whole clusters are resampled with replacement and the
  mean is taken over all items of the resampled clusters, so correlated items count once;
- :func:`bootstrap_p`: a one-sided bootstrap p-value read from the resampled means;
- :func:`adjust_p`: Holm (family-wise error) or Benjamini-Hochberg (false discovery rate)
  adjusted p-values of a family.

Example:

    >>> from kspace_attacks.stats import bootstrap_ci, cluster_bootstrap_ci
    >>> lo, hi = bootstrap_ci([1.0, 2.0, 3.0, 4.0])
    >>> 1.0 <= lo < 2.5 < hi <= 4.0
    True
    >>> # two clusters of near-identical items: the interval spans both clusters' means
    >>> cluster_bootstrap_ci([1.0, 1.0, 1.0, 4.0, 4.0, 4.0], clusters="aaabbb")
    (1.0, 4.0)
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Hashable, Iterator, Sequence

import torch

__all__ = ["bootstrap_ci", "cluster_bootstrap_means", "cluster_bootstrap_ci", "bootstrap_p", "adjust_p",
           "CORRECTIONS"]

#: multiplicity corrections of :func:`adjust_p`
CORRECTIONS = ("holm", "bh")
#: resampled means computed at once (bounds the memory of a large bootstrap: ~32 MB of indices)
_CHUNK = 1 << 22
#: resample designs up to this many entries (resamples x clusters, float64: 64 MB) are kept
_CACHED = 1 << 23


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


def _check_resamples(resamples: int) -> int:
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise ValueError(f"resamples: expected an integer >= 1, got {resamples!r}")
    return resamples


def cluster_bootstrap_means(values: Sequence[float], clusters: Sequence[Hashable] | None = None,
                            resamples: int = 10000, seed: int = 0) -> torch.Tensor:
    """Bootstrap distribution of the mean of ``values``, resampling whole clusters.

    Each resample draws as many clusters as there are, with replacement, and takes the mean
    over all items of the drawn clusters (a cluster of 5 items drawn twice counts 10 items).
    Without ``clusters`` every item is its own cluster: the ordinary bootstrap.

    :param values: one number per item (finite).
    :param clusters: one hashable label per item (e.g. the subject), same order as ``values``.
    :param int resamples: number of resampled means.
    :param int seed: seed of the resampling (a :class:`torch.Generator`).
    :returns: ``(resamples,)`` float64 tensor of resampled means.

    >>> m = cluster_bootstrap_means([0.0, 0.0, 1.0, 1.0], clusters=[1, 1, 2, 2], resamples=1000)
    >>> sorted({round(float(x), 2) for x in m})  # 0, 1 or both clusters: 0, 0.5, 1
    [0.0, 0.5, 1.0]
    """
    v = torch.as_tensor([float(x) for x in values], dtype=torch.float64)
    if v.numel() == 0:
        raise ValueError("values: expected at least one value, got none")
    if not bool(torch.isfinite(v).all()):
        raise ValueError(f"values: expected finite numbers, got {int((~torch.isfinite(v)).sum())} NaN/inf")
    _check_resamples(resamples)
    if clusters is None:
        ids = torch.arange(v.numel())
    else:
        labels = list(clusters)
        if len(labels) != v.numel():
            raise ValueError(f"clusters: expected one label per value ({v.numel()}), got {len(labels)}")
        index: dict[Hashable, int] = {}
        ids = torch.tensor([index.setdefault(c, len(index)) for c in labels])
    k = int(ids.max()) + 1
    sums = torch.zeros(k, dtype=torch.float64).index_add_(0, ids, v)
    sizes = torch.bincount(ids, minlength=k).to(torch.float64)
    if resamples * k <= _CACHED:  # the usual case: one (resamples, k) design serves every cell
        counts = _design(k, resamples, seed)
        return (counts @ sums) / (counts @ sizes)
    out = torch.empty(resamples, dtype=torch.float64)
    start = 0
    for idx in _draws(k, resamples, seed):
        out[start:start + idx.shape[0]] = sums[idx].sum(dim=1) / sizes[idx].sum(dim=1)
        start += idx.shape[0]
    return out


def _draws(k: int, resamples: int, seed: int) -> Iterator[torch.Tensor]:
    """The drawn cluster indices, ``(chunk, k)`` at a time (seeded)."""
    g = torch.Generator().manual_seed(seed)
    step = max(1, _CHUNK // k)
    for start in range(0, resamples, step):
        yield torch.randint(0, k, (min(step, resamples - start), k), generator=g)


_DESIGNS: OrderedDict[tuple[int, int, int], torch.Tensor] = OrderedDict()


def _design(k: int, resamples: int, seed: int) -> torch.Tensor:
    """``(resamples, k)`` float64 counts: how often each cluster is drawn in each resample.

    Verdicts decide hundreds of cells with the same number of clusters, resamples and seed:
    the design is drawn once and each cell's means are two matrix-vector products. A few
    designs are kept (least recently used dropped).
    """
    key = (k, resamples, seed)
    if key in _DESIGNS:
        _DESIGNS.move_to_end(key)
        return _DESIGNS[key]
    counts = torch.cat([torch.zeros(idx.shape, dtype=torch.float64).scatter_add_(
        1, idx, torch.ones(idx.shape, dtype=torch.float64)) for idx in _draws(k, resamples, seed)])
    _DESIGNS[key] = counts
    while len(_DESIGNS) > 1 and (len(_DESIGNS) > 4 or sum(d.numel() for d in _DESIGNS.values()) > 2 * _CACHED):
        _DESIGNS.popitem(last=False)
    return counts


def cluster_bootstrap_ci(values: Sequence[float], clusters: Sequence[Hashable] | None = None,
                         level: float = 0.95, resamples: int = 10000, seed: int = 0) -> tuple[float, float]:
    """Percentile CI of the mean from :func:`cluster_bootstrap_means`.

    >>> lo, hi = cluster_bootstrap_ci([0.1, 0.11, 0.5, 0.52, 0.3, 0.31], clusters="aabbcc")
    >>> 0.1 <= lo < hi <= 0.52
    True
    """
    if not 0 < level < 1:
        raise ValueError(f"level: expected a number in (0, 1), got {level}")
    means = cluster_bootstrap_means(values, clusters, resamples, seed)
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    lo, hi = torch.quantile(means, q).tolist()
    return lo, hi


def bootstrap_p(means: torch.Tensor, bound: float, alternative: str = "greater") -> float:
    """One-sided bootstrap p-value of "the mean is greater (less) than ``bound``".

    The share of resampled means on the wrong side of ``bound``, counted as
    ``(1 + count) / (resamples + 1)`` so that it is never 0 (its resolution is
    ``1 / (resamples + 1)``). It inverts the percentile interval: ``p < (1 - level) / 2``
    implies the lower end of the ``level`` interval of the same means lies above ``bound``.

    >>> m = torch.linspace(0.5, 1.5, 999, dtype=torch.float64)
    >>> round(bootstrap_p(m, 0.6), 3), round(bootstrap_p(m, 0.6, "less"), 3)
    (0.101, 0.9)
    """
    if alternative not in ("greater", "less"):
        raise ValueError(f"alternative: expected 'greater' or 'less', got {alternative!r}")
    if not isinstance(means, torch.Tensor) or means.dim() != 1 or means.numel() == 0:
        raise ValueError(f"means: expected a non-empty 1-D tensor of resampled means, got {means!r}")
    if isinstance(bound, bool) or not isinstance(bound, (int, float)) or math.isnan(bound):
        raise ValueError(f"bound: expected a number, got {bound!r}")
    wrong = means <= bound if alternative == "greater" else means >= bound
    return (1 + int(wrong.sum())) / (means.numel() + 1)


def adjust_p(p_values: Sequence[float], method: str = "holm") -> list[float]:
    """Adjusted p-values of one family of tests, in the given order.

    - ``"holm"``: Holm's step-down adjustment; rejecting where the adjusted p < alpha controls
      the family-wise error rate (the chance of any false rejection) at alpha, under any
      dependence between the tests;
    - ``"bh"``: Benjamini-Hochberg's step-up adjustment; controls the false discovery rate
      (the expected share of false rejections among the rejections), for independent or
      positively dependent tests.

    >>> adjust_p([0.01, 0.04, 0.03])
    [0.03, 0.06, 0.06]
    >>> [round(p, 3) for p in adjust_p([0.01, 0.04, 0.03], "bh")]
    [0.03, 0.04, 0.04]
    """
    if method not in CORRECTIONS:
        raise ValueError(f"method: expected one of {list(CORRECTIONS)}, got {method!r}")
    p = [float(x) for x in p_values]
    if any(not 0 <= x <= 1 for x in p):  # also NaN
        raise ValueError(f"p_values: expected numbers in [0, 1], got {p}")
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    out = [0.0] * m
    if method == "holm":
        running = 0.0
        for rank, i in enumerate(order):
            running = max(running, min(1.0, (m - rank) * p[i]))
            out[i] = running
    else:
        running = 1.0
        for rank in range(m - 1, -1, -1):
            i = order[rank]
            running = min(running, m * p[i] / (rank + 1))
            out[i] = running
    return out
