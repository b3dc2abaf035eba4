"""Auto-PGD: projected steepest ascent with momentum and an adaptive step (Croce & Hein 2020)."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import torch
from torch import Tensor

from .._checks import check_nonneg_float, check_positive_int, describe
from ..losses import Loss
from ..threat import ThreatModel
from .base import Attack, Problem
from .starts import check_start, random_start, spectral_cost, start_points

__all__ = ["APGD", "apgd_checkpoints"]


def apgd_checkpoints(steps: int) -> list[int]:
    r"""Iterations at which APGD checks its progress: :math:`w_j = \lceil p_j N \rceil < N`.

    AutoAttack's schedule: :math:`p_0 = 0`, :math:`p_1 = 0.22` and
    :math:`p_{j+1} = p_j + \max(p_j - p_{j-1} - 0.03,\ 0.06)`, so the first interval is 22 % of
    the run and each next one 3 % shorter, down to 6 %. Computed in exact fractions (no
    floating-point rounding); checkpoints that round to the same iteration are merged.
    (AutoAttack's code rounds the intervals down instead; the two agree for ``N = 100``.)

    >>> apgd_checkpoints(100)
    [0, 22, 41, 57, 70, 80, 87, 93, 99]
    """
    steps = check_positive_int("steps", steps)
    points, prev, p = [0], Fraction(0), Fraction(22, 100)
    while math.ceil(p * steps) < steps:
        if math.ceil(p * steps) > points[-1]:
            points.append(math.ceil(p * steps))
        prev, p = p, p + max(p - prev - Fraction(3, 100), Fraction(6, 100))
    return points


def checkpoint_reduce(
    increases: Tensor, interval: int, best: Tensor, best_at_last: Tensor, reduced_at_last: Tensor,
    rho: float = 0.75,
) -> Tensor:
    """Per sample, whether APGD halves its step (and restarts from its best point) now.

    Condition 1: the objective increased in at most ``rho`` of the ``interval`` steps since the
    last checkpoint. Condition 2: the step was not reduced at the last checkpoint and the best
    objective has not improved since.

    :param torch.Tensor increases: ``(B,)`` count of steps that increased the objective.
    :param int interval: steps since the last checkpoint.
    :param torch.Tensor best: ``(B,)`` best objective of this restart now.
    :param torch.Tensor best_at_last: ``(B,)`` best objective at the last checkpoint.
    :param torch.Tensor reduced_at_last: ``(B,)`` bool, step reduced at the last checkpoint.

    >>> import torch
    >>> checkpoint_reduce(torch.tensor([22, 10]), 22, torch.ones(2), torch.zeros(2),
    ...                   torch.ones(2, dtype=torch.bool)).tolist()
    [False, True]
    """
    oscillating = increases <= rho * interval
    stalled = ~reduced_at_last & (best <= best_at_last)
    return oscillating | stalled


class APGD(Attack):
    r"""Auto-PGD (Croce & Hein 2020) in a k-space threat model, for any loss (maximised).

    Each restart starts uniformly in the ball and takes steps of ``eta`` budgets along the
    steepest-ascent direction of the threat model's norm, with momentum ``alpha``:

    .. math::

        z = \Pi(\delta_k + \eta\, b\, d(g_k)), \qquad
        \delta_{k+1} = \Pi(\delta_k + \alpha (z - \delta_k) + (1 - \alpha)(\delta_k - \delta_{k-1}))

    (:math:`b` the budget per sample or coil, :math:`d` the unit steepest direction, the first
    step without momentum). The step starts at ``initial_step`` budgets and is halved, per
    sample, at the checkpoints of :func:`apgd_checkpoints` when progress stalls (see
    :func:`checkpoint_reduce`); the iterate then restarts, without momentum, from the best
    point of the restart. The worst iterate over all steps and restarts is kept per sample.
    Unlike PGD no step size needs tuning: a large first step explores the ball, later halvings
    refine.

    Cost: ``steps * restarts * eot`` gradient evaluations (:attr:`max_grad_evals`) and one
    forward evaluation (``eot`` with EOT) per restart for its last iterate.

    :param kspace_attacks.ThreatModel threat: the allowed perturbations.
    :param int steps: gradient evaluations per restart (``N`` of the schedule).
    :param int restarts: independent random starts.
    :param float initial_step: first step, in budgets (AutoAttack: 2).
    :param float momentum: ``alpha`` in (0, 1]; 1 means no momentum (AutoAttack: 0.75).
    :param float rho: fraction of increasing steps below which the step is halved (0.75).
    :param start: where each restart starts: ``"uniform"`` (default, uniform in the ball),
        ``"sphere"``, ``"spectral"`` (top singular vectors of the Jacobian, both signs;
        adds ``spectral_iterations * ceil(restarts / 2)`` gradient evaluations), ``"zero"`` or
        a perturbation tensor (see :mod:`kspace_attacks.attacks.starts`).
    :param int spectral_iterations: power iterations of the ``"spectral"`` start.
    :param loss: objective to maximise (default: deviation from the clean reconstruction).
    :param int seed: seed of the random starts.
    :param int eot: model calls averaged per gradient (stochastic models); each step costs
        ``eot`` gradient evaluations.
    :param bool monotone: reuse smaller budgets' perturbations of the same sample when worse
        (see :class:`~kspace_attacks.Attack`).

    |sep|

    :Examples:

        >>> import torch, deepinv as dinv
        >>> import kspace_attacks as ka
        >>> mask = torch.zeros(16, 16); mask[:, ::2] = 1
        >>> physics = dinv.physics.MRI(mask=mask, img_size=(16, 16))
        >>> y = physics(torch.rand(2, 2, 16, 16, generator=torch.Generator().manual_seed(0)))
        >>> model = lambda y, physics: physics.A_adjoint(y)  # zero-filled reconstruction
        >>> res = ka.APGD(ka.KSpaceL2(eps=0.05), steps=10)(model, y, physics)
        >>> res.grad_evals
        10
        >>> bool((res.ratio <= 0.05 + 1e-6).all())
        True
    """

    name = "apgd"
    steps_param = "steps"

    def __init__(
        self,
        threat: ThreatModel,
        steps: int = 100,
        restarts: int = 1,
        initial_step: float = 2.0,
        momentum: float = 0.75,
        rho: float = 0.75,
        start: str | Tensor = "uniform",
        spectral_iterations: int = 4,
        loss: Loss | str | None = None,
        seed: int = 0,
        eot: int = 1,
        monotone: bool = True,
    ) -> None:
        super().__init__(threat, loss, seed, eot, monotone)
        self.steps = check_positive_int("steps", steps)
        self.restarts = check_positive_int("restarts", restarts)
        self.initial_step = check_nonneg_float("initial_step", initial_step, strictly_positive=True)
        self.momentum = _check_fraction("momentum", momentum, allow_zero=False)
        self.rho = _check_fraction("rho", rho, allow_zero=True)
        self.start = check_start(start)
        self.spectral_iterations = check_positive_int("spectral_iterations", spectral_iterations)

    def _run(self, problem: Problem, generator: torch.Generator) -> None:
        starts = start_points(self.start, problem, self.restarts, generator, self.spectral_iterations)
        for start in starts:
            problem.begin_start()
            self.run_restart(problem, generator, start)
            problem.end_start()

    def run_restart(
        self, problem: Problem, generator: torch.Generator, start: Tensor | None = None,
        initial_step: float | Tensor | None = None,
    ) -> Tensor:
        """One restart from ``start`` (default: a draw of the ``start`` kind from ``generator``);
        returns the step (budgets) taken after each evaluation, ``(steps, B)``.

        ``initial_step`` overrides the first step (a float or one per row, in budgets)."""
        checkpoints = set(apgd_checkpoints(self.steps)[1:])
        x = random_start(self.start, problem, generator) if start is None else start
        x_prev = x
        value, grad, _ = problem.evaluate(x)
        problem.record()
        first = self.initial_step if initial_step is None else initial_step
        eta = torch.full_like(value, 1.0) * (first.to(value) if isinstance(first, Tensor) else first)
        best, best_x, best_grad = value.clone(), x.clone(), grad.clone()
        last_value, increases = value, torch.zeros_like(value)
        best_at_last, reduced_at_last, last_check = best.clone(), torch.ones_like(value).bool(), 0
        etas = [eta.clone()]
        for t in range(1, self.steps):
            x, x_prev = self._step(problem, x, x_prev, grad, eta, first=t == 1), x
            value, grad, _ = problem.evaluate(x)
            problem.record()
            increases += (value > last_value).to(value.dtype)
            last_value = value
            better = value > best
            best = torch.where(better, value, best)
            best_x, best_grad = _where(better, x, best_x), _where(better, grad, best_grad)
            if t in checkpoints:
                reduce = checkpoint_reduce(
                    increases, t - last_check, best, best_at_last, reduced_at_last, self.rho
                )
                eta = torch.where(reduce, eta / 2, eta)
                # Reduced samples restart from their best point, without momentum (x_prev = x).
                x_prev = _where(reduce, best_x, x_prev)
                x = _where(reduce, best_x, x)
                grad = _where(reduce, best_grad, grad)
                last_value = torch.where(reduce, best, last_value)
                best_at_last, reduced_at_last = best.clone(), reduce
                increases.zero_()
                last_check = t
            etas.append(eta.clone())
        last = self._step(problem, x, x_prev, grad, eta, first=self.steps == 1)
        problem.evaluate(last, grad=False)  # the last step's iterate
        return torch.stack(etas)

    def _step(
        self, problem: Problem, x: Tensor, x_prev: Tensor, grad: Tensor, eta: Tensor, first: bool
    ) -> Tensor:
        """One momentum step from ``x`` (``grad`` is already zero off the support)."""
        threat, y, physics = self.threat, problem.y, problem.physics
        scale = threat.step_scale(y) * eta.reshape((-1,) + (1,) * (x.dim() - 1))
        z = threat.project(x + scale * threat.steepest_direction(grad), y, physics)
        if first or self.momentum == 1.0:
            return z
        a = self.momentum
        return threat.project(x + a * (z - x) + (1 - a) * (x - x_prev), y, physics)

    @property
    def max_grad_evals(self) -> int:
        extra = spectral_cost(self.start, self.restarts, self.spectral_iterations, self.eot)
        return self.steps * self.restarts * self.eot + extra

    def _params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "steps": self.steps,
            "restarts": self.restarts,
            "initial_step": self.initial_step,
            "momentum": self.momentum,
            "rho": self.rho,
        }
        # Shown only when not the default, so that v1 records' attack strings stay as they were.
        if not (isinstance(self.start, str) and self.start == "uniform"):
            params["start"] = self.start if isinstance(self.start, str) else "tensor"
            params["spectral_iterations"] = self.spectral_iterations
        return params

    def _init_args(self) -> dict[str, Any]:
        return {**self._params(), "start": self.start, "spectral_iterations": self.spectral_iterations}


def _where(cond: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """``torch.where`` with a per-sample ``(B,)`` condition."""
    return torch.where(cond.reshape((-1,) + (1,) * (a.dim() - 1)), a, b)


def _check_fraction(name: str, value: Any, allow_zero: bool) -> float:
    """A real number in (0, 1] (or [0, 1])."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a real number, got {describe(value)}")
    value = float(value)
    low_ok = value >= 0 if allow_zero else value > 0
    if not (low_ok and value <= 1):
        interval = "[0, 1]" if allow_zero else "(0, 1]"
        raise ValueError(f"{name}: expected a number in {interval}, got {value}")
    return value
