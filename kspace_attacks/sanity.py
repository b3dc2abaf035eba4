"""Sanity checks of a worst-case search, reported like AutoAttack's flags.

A search that is working satisfies three inequalities on the user's own model; a failure does not
stop a run, it becomes a warning naming the rows that failed:

- **monotone in eps**: the worst case at a larger budget is at least as bad as at a smaller one
  (the smaller ball lies inside the larger);
- **beats noise**: in the objective it maximises, the worst case is at least as bad as
  equal-norm noise (noise is one point of the ball);
- **white-box >= transferred**: on a surrogate, its own white-box worst case is at least as bad
  as any worst case transferred to it from another model.

Each check allows a relative ``tolerance`` (float noise, stochastic models) and returns a list of
failures ``{"check", "where", "rows", "detail"}`` (empty: passed).

>>> import torch
>>> check_monotone(torch.tensor([[1.0, 2.0], [1.5, 1.0]]), [0.02, 0.05], where="deviation")
[{'check': 'monotone in eps', 'where': 'deviation', 'rows': [(0.05, 1)], 'detail': 'at a larger eps the worst case is less bad than at a smaller one on 1 slice(s) (worst: 1 vs 2)'}]
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["check_monotone", "check_beats_noise", "check_whitebox_beats_transfer", "DEFAULT_TOLERANCE"]

#: relative slack of every check (float rounding, stochastic reconstructions)
DEFAULT_TOLERANCE = 0.01


def _worse(a: Tensor, b: Tensor, higher_is_worse: bool, tolerance: float) -> Tensor:
    """Where ``a`` is clearly *less* bad than ``b`` (beyond the relative tolerance)."""
    slack = tolerance * torch.maximum(a.abs(), b.abs())
    return (a < b - slack) if higher_is_worse else (a > b + slack)


def check_monotone(values: Tensor, eps: Sequence[float], where: str = "", higher_is_worse: bool = True,
                   tolerance: float = DEFAULT_TOLERANCE) -> list[dict[str, Any]]:
    """Worst case non-decreasing in eps: ``values`` ``(K, N)`` (budgets in increasing order x
    slices), compared with the running worst over the smaller budgets."""
    v = torch.as_tensor(values, dtype=torch.float64)
    if v.dim() != 2 or v.shape[0] != len(eps):
        raise ValueError(f"values: expected shape ({len(eps)}, N) (budgets x slices), got {tuple(v.shape)}")
    rows, gaps = [], []
    running = v[0].clone()
    for k in range(1, v.shape[0]):
        bad = _worse(v[k], running, higher_is_worse, tolerance) & torch.isfinite(v[k]) & torch.isfinite(running)
        for j in bad.nonzero().flatten().tolist():
            rows.append((float(eps[k]), j))
            gaps.append((float(v[k, j]), float(running[j])))
        running = torch.maximum(running, v[k]) if higher_is_worse else torch.minimum(running, v[k])
    if not rows:
        return []
    worst = max(gaps, key=lambda g: abs(g[1] - g[0]))
    return [{"check": "monotone in eps", "where": where, "rows": rows,
             "detail": f"at a larger eps the worst case is less bad than at a smaller one on {len(rows)} "
                       f"slice(s) (worst: {worst[0]:.4g} vs {worst[1]:.4g})"}]


def check_beats_noise(attack: Tensor, noise: Tensor, eps: Sequence[float], where: str = "",
                      higher_is_worse: bool = True, tolerance: float = DEFAULT_TOLERANCE) -> list[dict[str, Any]]:
    """The worst case at least as bad as equal-norm noise in its own objective, per budget and
    slice (``(K, N)`` each)."""
    a, n = torch.as_tensor(attack, dtype=torch.float64), torch.as_tensor(noise, dtype=torch.float64)
    if a.shape != n.shape:
        raise ValueError(f"noise: expected the attack's shape {tuple(a.shape)}, got {tuple(n.shape)}")
    bad = _worse(a, n, higher_is_worse, tolerance) & torch.isfinite(a) & torch.isfinite(n)
    rows = [(float(eps[k]), j) for k, j in bad.nonzero().tolist()]
    if not rows:
        return []
    return [{"check": "beats noise", "where": where, "rows": rows,
             "detail": f"equal-norm noise is worse than the worst case on {len(rows)} row(s) in the objective "
                       "the attack maximises: the search is not working there"}]


def check_whitebox_beats_transfer(records: Iterable[Mapping[str, Any]], metric: str = "relative_deviation",
                                  tolerance: float = DEFAULT_TOLERANCE) -> list[dict[str, Any]]:
    """On each surrogate, its white-box worst case at least as bad as every worst case
    transferred to it, per (attack, eps, sample), in ``metric`` (higher = worse).

    ``records``: rows with ``surrogate``, ``target``, ``attack``, ``eps``, ``sample_id`` and
    ``metric`` (the sweep's records)."""
    white: dict[tuple, float] = {}
    transferred: dict[tuple, list[tuple[str, float]]] = defaultdict(list)
    for r in records:
        if metric not in r or r.get("surrogate") in (None, "random"):
            continue
        key = (r["target"], r["attack"], float(r["eps"]), r["sample_id"])
        if r["surrogate"] == r["target"]:
            white[key] = float(r[metric])
        else:
            transferred[key].append((r["surrogate"], float(r[metric])))
    failures: dict[tuple, list] = defaultdict(list)
    for key, own in white.items():
        for source, value in transferred.get(key, []):
            if bool(_worse(torch.tensor(own), torch.tensor(value), True, tolerance)):
                failures[(key[0], key[1], source)].append((key[2], key[3]))
    return [{"check": "white-box >= transferred", "where": f"{target} ({attack}) from {source}", "rows": rows,
             "detail": f"the worst case transferred from {source} moves {target} more than {target}'s own "
                       f"white-box worst case on {len(rows)} row(s): the white-box search is weak there "
                       "(or the gradient is masked)"}
            for (target, attack, source), rows in sorted(failures.items())]
