"""Physical threat models: a parameter vector ``theta`` with a budget in physical units.

A physical threat model is a :class:`~kspace_attacks.ThreatModel` whose perturbation is not an
additive k-space tensor but the parameters of an imperfection (shifts in mm, phases in radians,
dropped lines). The contract is the same, so every attack runs on it unchanged:

- :meth:`~ParametricThreat.zeros` gives ``theta = 0`` (no imperfection) in the parameter shape;
- :meth:`~kspace_attacks.ThreatModel.apply` maps ``theta`` to the corrupted k-space (``theta
  = 0`` is the identity), differentiably;
- the budget is a weighted box, ``|theta_i| <= eps * w_i`` (``w_i`` converts the one budget
  ``eps`` into each parameter's unit, e.g. degrees per mm); :meth:`project` clamps to it (the
  exact Euclidean projection), :meth:`steepest_direction` is the weighted sign;
- :meth:`random` draws uniformly in the box; :meth:`sphere` draws a random corner (every
  parameter at its full size with a random sign): the random imperfection *of the same
  physical size* that a worst case is compared with.

``ratio`` reports the size used, ``max_i |theta_i| / w_i``, in the budget's unit (mm, rad).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .._checks import check_kspace, check_tensor, describe
from ..threat import ThreatModel, check_eps, draw

__all__ = ["ParametricThreat"]


class ParametricThreat(ThreatModel):
    """Base class of physical threat models: ``theta`` in the box ``|theta_i| <= eps w_i``.

    Subclasses define :meth:`parameter_shape`, :meth:`apply` and, if some parameters are
    weighted differently, :meth:`weights`. Budgets are absolute (in the threat's physical unit)
    and per sample; ``eps`` may be a per-sample ``(B,)`` tensor (several budgets in one batch).

    :param float|torch.Tensor eps: the budget in the threat's unit (see the subclass).
    """

    #: what ``eps`` is measured in (shown in reports)
    unit: str = ""

    def __init__(self, eps: float | Tensor = 1.0) -> None:
        self.eps = check_eps(eps)
        self.relative = False
        self.per = "sample"
        self.support = "parameters"

    # ------------------------------------------------------------------------ subclass hooks
    @abstractmethod
    def parameter_shape(self, y: Tensor) -> tuple[int, ...]:
        """Shape of ``theta`` for the batch ``y`` (first dimension: the batch)."""

    def weights(self, like: Tensor) -> Tensor:
        """Per-parameter size of one unit of budget, broadcastable to ``theta`` (default 1)."""
        return torch.ones((1,) * like.dim(), dtype=like.dtype, device=like.device)

    def settings(self) -> dict[str, Any]:
        """Constructor arguments besides ``eps`` (for :meth:`replace` and ``repr``)."""
        return {}

    # ------------------------------------------------------------------------ the contract
    def zeros(self, y: Tensor) -> Tensor:
        return torch.zeros(self.parameter_shape(y), dtype=y.dtype, device=y.device)

    def support_mask(self, y: Tensor, physics: Any) -> Tensor:
        return torch.ones((1,) * len(self.parameter_shape(y)), dtype=y.dtype, device=y.device)

    def reference_norm(self, y: Tensor) -> Tensor:
        # absolute budgets: one unit of eps is one physical unit
        return torch.ones((y.shape[0], 1), dtype=y.dtype, device=y.device)

    def unit_norm(self, t: Tensor) -> Tensor:
        return (t.abs() / self.weights(t).clamp_min(1e-30)).flatten(1).amax(dim=1, keepdim=True)

    def _box(self, y: Tensor, like: Tensor) -> Tensor:
        """The box's half-widths ``eps w`` broadcast to ``like`` (zero where w = 0)."""
        return self.broadcast(self.budget_unchecked(y), like) * self.weights(like)

    def _check_theta(self, theta: Any, y: Tensor) -> Tensor:
        theta = check_tensor("theta", theta)
        shape = self.parameter_shape(y)
        if tuple(theta.shape) != tuple(shape):
            raise ValueError(f"theta: expected parameters of shape {tuple(shape)} for y of shape "
                             f"{tuple(y.shape)} ({type(self).__name__}), got {tuple(theta.shape)}")
        return theta

    def project(self, delta: Tensor, y: Tensor, physics: Any) -> Tensor:
        theta = self._check_theta(delta, y) * self.support_mask(y, physics)
        box = self._box(y, theta)
        return torch.maximum(torch.minimum(theta, box), -box)

    def random(self, y: Tensor, physics: Any,
               generator: torch.Generator | Sequence[torch.Generator] | None = None) -> Tensor:
        y = check_kspace("y", y)
        u = draw("rand", self.parameter_shape(y), generator).to(device=y.device, dtype=y.dtype)
        theta = (2 * u - 1) * self.support_mask(y, physics)
        return theta * self._box(y, theta)

    def sphere(self, y: Tensor, physics: Any,
               generator: torch.Generator | Sequence[torch.Generator] | None = None) -> Tensor:
        """A random corner of the box: every parameter at its full size, random signs."""
        y = check_kspace("y", y)
        u = draw("rand", self.parameter_shape(y), generator).to(device=y.device, dtype=y.dtype)
        theta = torch.where(u < 0.5, -1.0, 1.0).to(y.dtype) * self.support_mask(y, physics)
        return theta * self._box(y, theta)

    def steepest_direction(self, grad: Tensor) -> Tensor:
        return torch.sign(grad) * self.weights(grad)

    def step_scale(self, y: Tensor) -> Tensor:
        return self.budget_unchecked(y).reshape(y.shape[0], *([1] * (len(self.parameter_shape(y)) - 1)))

    def ratio(self, delta: Tensor, y: Tensor) -> Tensor:
        return self.unit_norm(delta)[:, 0]

    @abstractmethod
    def apply(self, y: Tensor, delta: Tensor, physics: Any) -> Tensor:
        """The corrupted k-space for parameters ``delta`` (``theta``); 0 is the identity."""

    # ------------------------------------------------------------------------ copies, repr
    def replace(self, **changes: Any) -> "ParametricThreat":
        args = {"eps": self.eps, **self.settings()}
        unknown = sorted(set(changes) - set(args))
        if unknown:
            raise TypeError(f"replace: unknown argument(s) {unknown}; expected some of {sorted(args)}")
        return type(self)(**{**args, **changes})

    def __repr__(self) -> str:
        eps = self.eps.tolist() if isinstance(self.eps, Tensor) else self.eps
        inner = ", ".join(f"{k}={describe(v) if isinstance(v, Tensor) else repr(v)}"
                          for k, v in self.settings().items())
        return f"{type(self).__name__}(eps={eps}{', ' if inner else ''}{inner})"
