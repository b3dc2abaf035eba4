"""The statistics of a robustness card's rows: worst slice, mean and bootstrap CI per budget.

>>> import torch
>>> row = _rows({"delta_ssim": torch.tensor([[-0.1, -0.3]]), "delta_psnr": torch.tensor([[-1.0, -2.0]]),
...              "relative_deviation": torch.tensor([[0.1, 0.2]])}, [0.05],
...             {"level": 0.95, "resamples": 200, "seed": 0}, None)[0]
>>> row["eps"], round(row["delta_ssim"]["worst"], 6), row["delta_ssim"]["worst_slice"]
(0.05, -0.3, 1)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ..measurement import CONTROL
from ..stats import bootstrap_ci

__all__ = ["NOISE", "ATTACK", "CARD_METRICS", "OBJECTIVE_METRIC", "sanity_checks"]

NOISE, ATTACK = CONTROL, "attack"
#: Card metrics and which way is worse.
CARD_METRICS = {"delta_ssim": "min", "delta_psnr": "min", "relative_deviation": "max"}


def _stat(values: Tensor, worse: str, boot: Mapping[str, Any]) -> dict[str, Any]:
    """Worst slice, mean and bootstrap CI of the mean of one metric at one eps."""
    v = values.double()
    ok = torch.isfinite(v)
    nan = float("nan")
    if not bool(ok.any()):
        return {"worst": nan, "worst_slice": None, "mean": nan, "ci95": [nan, nan], "n": 0}
    masked = torch.where(ok, v, float("inf") if worse == "min" else -float("inf"))
    idx = int(masked.argmin() if worse == "min" else masked.argmax())
    lo, hi = bootstrap_ci(v[ok].tolist(), level=boot["level"], resamples=boot["resamples"], seed=boot["seed"])
    return {"worst": float(v[idx]), "worst_slice": idx, "mean": float(v[ok].mean()), "ci95": [lo, hi],
            "n": int(ok.sum())}


def _rows(values: Mapping[str, Tensor], eps: list[float], boot: Mapping[str, Any],
          ratio: Tensor | None) -> list[dict[str, Any]]:
    rows = []
    for i, e in enumerate(eps):
        row: dict[str, Any] = {"eps": e}
        row.update({m: _stat(values[m][i], worse, boot) for m, worse in CARD_METRICS.items()})
        if ratio is not None:
            row["ratio_max"] = float(ratio[i].max())
        if "unreliable" in values:  # an adaptive search's flags: slices whose worst case is unconfirmed
            row["unreliable"] = int(values["unreliable"][i].sum())
        rows.append(row)
    return rows


#: the card metric each objective maximises the harm in, and whether higher is worse
OBJECTIVE_METRIC = {"deviation": ("relative_deviation", True), "ssim": ("delta_ssim", False)}


def sanity_checks(conditions: Mapping[str, Any], eps: list[float]) -> list[dict[str, Any]]:
    """The card's sanity checks (:mod:`kspace_attacks.sanity`) per objective, in the metric it
    maximises: the worst case non-decreasing in eps, and at least as bad as equal-norm noise."""
    from ..sanity import check_beats_noise, check_monotone

    out: list[dict[str, Any]] = []
    noise = conditions.get(NOISE)
    for objective, (metric, higher) in OBJECTIVE_METRIC.items():
        c = conditions.get(objective)
        if c is None or metric not in c.values:
            continue
        out += check_monotone(c.values[metric], eps, where=objective, higher_is_worse=higher)
        if noise is not None:
            out += check_beats_noise(c.values[metric], noise.values[metric], eps, where=objective,
                                     higher_is_worse=higher)
    return out
