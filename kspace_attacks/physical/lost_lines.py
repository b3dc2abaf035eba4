"""Lost lines: up to ``eps`` measured phase-encoding lines are dropped (zeroed)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .._checks import check_kspace
from ..threat import draw
from .base import ParametricThreat
from .lines import measured_lines

__all__ = ["LostLines"]


class LostLines(ParametricThreat):
    r"""Up to ``eps`` measured lines per sample are lost (their data zeroed).

    A discrete threat: ``theta`` is ``(B, W)``, one 0/1 flag per line (1: lost), at most
    ``floor(eps)`` of them, on measured lines only. :meth:`apply` scales line ``l`` by
    ``1 - theta_l``: exact on flags, and its gradient is the relaxation's (a line partly
    lost). :meth:`project` is the exact Euclidean projection onto the flags (keep the
    ``floor(eps)`` largest weights above 1/2, set them to 1): gradient attacks become iterative
    hard thresholding, and every iterate they evaluate is a real acquisition with whole lines
    lost. :meth:`sphere` loses ``floor(eps)`` random measured lines (the random control).

    The relaxation's gradient is a local guide only: where the objective is flat in a kept
    line's direction (the deviation of a linear model is a sum of one term per lost line), the
    search stays at its start; the spectral start (``start="spectral"``) then picks the line
    of largest effect.

    :param float|torch.Tensor eps: number of lines that may be lost (per sample).

    |sep|

    :Examples:

        >>> import torch, deepinv as dinv
        >>> import kspace_attacks as ka
        >>> mask = torch.zeros(8, 8); mask[:, ::2] = 1
        >>> physics = dinv.physics.MRI(mask=mask, img_size=(8, 8))
        >>> y = physics(torch.rand(1, 2, 8, 8))
        >>> threat = ka.LostLines(eps=2)
        >>> theta = threat.sphere(y, physics, generator=torch.Generator().manual_seed(0))
        >>> lost = threat.apply(y, theta, physics)
        >>> int(((lost - y).abs().sum(dim=(0, 1, 2)) > 0).sum())  # two whole lines zeroed
        2
    """

    unit = "lines"

    def __init__(self, eps: float | Tensor = 2.0) -> None:
        super().__init__(eps)

    def parameter_shape(self, y: Tensor) -> tuple[int, ...]:
        return (y.shape[0], y.shape[-1])

    def support_mask(self, y: Tensor, physics: Any) -> Tensor:
        return measured_lines(y, physics)

    def unit_norm(self, t: Tensor) -> Tensor:
        return t.abs().sum(dim=1, keepdim=True)

    def project(self, delta: Tensor, y: Tensor, physics: Any) -> Tensor:
        """Nearest flags: the ``floor(eps)`` largest weights above 1/2 on measured lines."""
        theta = self._check_theta(delta, y) * self.support_mask(y, physics)
        return self.rounded(theta, y)

    def steepest_direction(self, grad: Tensor) -> Tensor:
        # The normalised gradient keeps the ranking of all lines for the projection to choose
        # from (the l1 ball's steepest direction would put everything on one line).
        return grad / grad.abs().amax(dim=1, keepdim=True).clamp_min(1e-30)

    def rounded(self, theta: Tensor, y: Tensor) -> Tensor:
        """0/1 ``(B, W)``: the ``floor(eps)`` lines of largest weight among those above 1/2."""
        k = torch.floor(self.budget_unchecked(y) + 1e-6)  # (B, 1)
        rank = theta.argsort(dim=1, descending=True, stable=True).argsort(dim=1)
        return ((rank < k) & (theta > 0.5)).to(theta.dtype)

    def apply(self, y: Tensor, delta: Tensor, physics: Any) -> Tensor:
        theta = self._check_theta(delta, y)
        shape = (y.shape[0],) + (1,) * (y.dim() - 2) + (y.shape[-1],)
        return y * (1 - theta).reshape(shape)

    def random(self, y: Tensor, physics: Any,
               generator: torch.Generator | Sequence[torch.Generator] | None = None) -> Tensor:
        """Between 0 and ``floor(eps)`` random measured lines, uniformly."""
        y = check_kspace("y", y)
        k = torch.floor(self.budget_unchecked(y) + 1e-6)
        u = draw("rand", (y.shape[0], 1), generator).to(device=y.device, dtype=y.dtype)
        return self._random_lines(y, physics, torch.floor(u * (k + 1)), generator)

    def sphere(self, y: Tensor, physics: Any,
               generator: torch.Generator | Sequence[torch.Generator] | None = None) -> Tensor:
        y = check_kspace("y", y)
        return self._random_lines(y, physics, torch.floor(self.budget_unchecked(y) + 1e-6), generator)

    def _random_lines(self, y: Tensor, physics: Any, k: Tensor, generator: Any) -> Tensor:
        support = self.support_mask(y, physics).expand(y.shape[0], -1)
        score = (draw("rand", (y.shape[0], y.shape[-1]), generator).to(device=y.device, dtype=y.dtype) + 1)
        rank = (score * support).argsort(dim=1, descending=True, stable=True).argsort(dim=1)
        return ((rank < k) & (support > 0)).to(y.dtype)

    def step_scale(self, y: Tensor) -> Tensor:
        # steps in units of one line (a budget of several lines would jump straight to a corner)
        return torch.ones((y.shape[0], 1), dtype=y.dtype, device=y.device)
