"""What both robust losses share: the metric, the clean/robust mixing and its validation."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

from .._checks import check_nonneg_float, describe

Metric = Callable[[Tensor, Tensor], Tensor]


def check_metric(metric: Any) -> Metric:
    """``metric(x_hat, x) -> loss``; default the mean squared error (as deepinv's ``SupLoss``)."""
    if metric is None:
        return torch.nn.MSELoss()
    if not callable(metric):
        raise TypeError(f"metric: expected a callable metric(x_hat, x) -> loss, got {describe(metric)}")
    return metric


def check_mix(mix: Any) -> float:
    """The weight of the perturbed term, in [0, 1]."""
    mix = check_nonneg_float("mix", mix)
    if mix > 1:
        raise ValueError(f"mix: expected a weight in [0, 1] (0: clean loss only, 1: perturbed "
                         f"loss only), got {mix}")
    return mix


def mixed(metric: Metric, mix: float, x_net: Tensor | None, x_pert: Tensor, x: Tensor) -> Tensor:
    """``(1 - mix) * metric(x_net, x) + mix * metric(x_pert, x)`` (the clean term skipped at mix 1)."""
    robust = metric(x_pert, x)
    if mix >= 1 or x_net is None:
        return robust
    return (1 - mix) * metric(x_net, x) + mix * robust


def call_generator(seed: int, calls: int) -> torch.Generator:
    """The generator of the ``calls``-th call: a pure function of (seed, calls), so a training
    run resumed at step k draws what the uninterrupted run drew there."""
    return torch.Generator().manual_seed((seed * 1_000_003 + calls) % (2**63 - 1))
