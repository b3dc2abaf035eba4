"""Projected gradient descent (ascent) with normalised steepest-ascent steps."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._checks import check_nonneg_float, check_positive_int, describe
from ..losses import Loss
from ..threat import ThreatModel
from .base import Attack, Problem
from .starts import check_start, random_start, spectral_cost, start_points

__all__ = ["PGD"]


class PGD(Attack):
    r"""Projected steepest ascent in the threat model's norm (l2: normalised gradient steps).

    Each restart draws a random start in the ball, then takes ``steps`` steps
    :math:`\delta \leftarrow \Pi(\delta + \alpha\, b\, g / \|g\|)` where :math:`b` is the budget
    (per sample or per coil) and :math:`\alpha` = ``step_size``. The worst iterate over all steps
    and restarts is kept per sample.

    The default step is ``max(2.5 / steps, 0.25)`` budgets: Madry et al.'s ``2.5 / steps``
    (a path of 2.5 budgets) for short runs, but never below a quarter budget, since the iterate
    mostly moves along the sphere and smaller steps explore too little of it. At this step
    ``benchmarks/bench_strength.py`` measures PGD at 0.79-0.91 of the best-known worst case
    after 20 gradient evaluations and 0.85-0.96 after 100 on the shipped i-RIM (deviation
    objective), below :class:`~kspace_attacks.APGD` (0.84-0.96 and 0.97-1.00), whose adaptive
    step makes it the package's default (``benchmarks/results/strength_optimality.md``).

    :param kspace_attacks.ThreatModel threat: the allowed perturbations.
    :param int steps: steps per restart (one gradient evaluation each, ``eot`` with EOT).
    :param int restarts: independent random starts.
    :param float|None step_size: step as a fraction of the budget; default
        ``max(2.5 / steps, 0.25)``.
    :param bool random_start: start uniformly in the ball (needed for the deviation loss,
        whose gradient vanishes at ``delta = 0``).
    :param start: where each restart starts: ``"uniform"`` (default), ``"sphere"``,
        ``"spectral"`` (top singular vectors of the Jacobian, both signs; adds
        ``spectral_iterations * ceil(restarts / 2)`` gradient evaluations), ``"zero"`` (the same
        as ``random_start=False``) or a perturbation tensor (:mod:`kspace_attacks.attacks.starts`).
    :param int spectral_iterations: power iterations of the ``"spectral"`` start.
    :param int|None early_stop: stop a restart when no sample improved its best objective by
        more than ``1e-4`` (relative) for this many steps; ``None`` never stops early.
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
        >>> res = ka.PGD(ka.KSpaceL2(eps=0.05), steps=5)(model, y, physics)
        >>> res.grad_evals
        5
        >>> bool((res.ratio <= 0.05 + 1e-6).all())
        True
    """

    name = "pgd"
    steps_param = "steps"

    def __init__(
        self,
        threat: ThreatModel,
        steps: int = 50,
        restarts: int = 1,
        step_size: float | None = None,
        random_start: bool = True,
        early_stop: int | None = None,
        start: str | torch.Tensor = "uniform",
        spectral_iterations: int = 4,
        loss: Loss | str | None = None,
        seed: int = 0,
        eot: int = 1,
        monotone: bool = True,
    ) -> None:
        super().__init__(threat, loss, seed, eot, monotone)
        self.steps = check_positive_int("steps", steps)
        self.restarts = check_positive_int("restarts", restarts)
        self._default_step = step_size is None
        self.step_size = (
            self.default_step_size(steps) if step_size is None
            else check_nonneg_float("step_size", step_size, strictly_positive=True)
        )
        if not isinstance(random_start, bool):
            raise TypeError(f"random_start: expected a bool, got {describe(random_start)}")
        self.random_start = random_start
        self.early_stop = None if early_stop is None else check_positive_int("early_stop", early_stop)
        self.start = check_start(start)
        if not random_start and not (isinstance(self.start, str) and self.start in ("uniform", "zero")):
            raise ValueError(f"random_start: False means start='zero'; it contradicts start={describe(self.start)}"
                             if isinstance(self.start, Tensor) else
                             f"random_start: False means start='zero'; it contradicts start={self.start!r}")
        self.spectral_iterations = check_positive_int("spectral_iterations", spectral_iterations)

    @staticmethod
    def default_step_size(steps: int) -> float:
        """``max(2.5 / steps, 0.25)`` budgets (see the class docstring)."""
        return max(2.5 / steps, 0.25)

    def _run(self, problem: Problem, generator: torch.Generator) -> None:
        y, physics, threat = problem.y, problem.physics, self.threat
        kind = self.start if self.random_start else "zero"
        for start in start_points(kind, problem, self.restarts, generator, self.spectral_iterations):
            problem.begin_start()
            delta = random_start(kind, problem, generator) if start is None else start
            stale, last_best = 0, problem.best_loss.clone()
            for _ in range(self.steps):
                _, grad, _ = problem.evaluate(delta)
                problem.record()
                delta = threat.ascent_step(delta, grad, y, physics, self.step_size)
                if self.early_stop is not None:
                    improved = problem.best_loss > last_best + 1e-4 * last_best.abs()
                    stale = 0 if bool(improved.any()) else stale + 1
                    last_best = problem.best_loss.clone()
                    if stale >= self.early_stop:
                        break
            problem.evaluate(delta, grad=False)  # the last step's iterate
            problem.end_start()

    @property
    def max_grad_evals(self) -> int:
        kind = self.start if self.random_start else "zero"
        extra = spectral_cost(kind, self.restarts, self.spectral_iterations, self.eot)
        return self.steps * self.restarts * self.eot + extra

    def _init_args(self) -> dict[str, Any]:
        return {**self._params(), "step_size": None if self._default_step else self.step_size,
                "start": self.start, "spectral_iterations": self.spectral_iterations}

    def _params(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "restarts": self.restarts,
            "step_size": self.step_size,
            "random_start": self.random_start,
            "early_stop": self.early_stop,
            **({} if isinstance(self.start, str) and self.start == "uniform" else
               {"start": self.start if isinstance(self.start, str) else "tensor",
                "spectral_iterations": self.spectral_iterations}),
        }
