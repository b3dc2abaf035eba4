"""The study's attack (Algorithm 1): Adam on the perturbation, rescaled onto the ball."""

from __future__ import annotations

from typing import Any

import torch

from .._checks import check_nonneg_float, check_positive_int
from ..losses import Loss
from ..threat import ThreatModel
from .base import Attack, Problem
from .starts import check_start, spectral_cost, start_points

__all__ = ["ProjectedAdam"]


class ProjectedAdam(Attack):
    r"""Adam ascent on :math:`\delta` with rescaling onto the ball (Han et al. 2024, Alg. 1).

    As in the study's public code (after Darestani et al. 2021): start from a random
    perturbation of norm ``init_scale`` :math:`\|y\|` (per budget unit), take Adam steps of
    learning rate ``lr`` on the negated objective, and whenever the iterate leaves the ball,
    project it back (for l2: rescale onto the sphere). A sample stops after ``max_rescales``
    rescalings, or when its best objective has not improved for ``patience`` steps; the worst
    iterate is kept. ``lr`` is absolute, in k-space units, as in the study.

    Adam's per-entry, sign-like steps followed by a radial rescale make a weaker l2 attack than
    :class:`~kspace_attacks.PGD` per gradient evaluation; use this runner to compare with the
    study's numbers.

    :param kspace_attacks.ThreatModel threat: the allowed perturbations.
    :param float lr: Adam learning rate (k-space units).
    :param int max_steps: steps at most (one gradient evaluation each, ``eot`` with EOT).
    :param int max_rescales: stop a sample after this many projections back onto the ball.
    :param int patience: stop a sample after this many steps without improving its best.
    :param float init_scale: norm of the random start relative to :math:`\|y\|`.
    :param start: direction of the start (scaled to ``init_scale``): ``"sphere"`` (default, a
        random direction, the study's start; ``"uniform"`` is the same here), ``"spectral"``
        (the top singular vector of the Jacobian; adds ``spectral_iterations`` gradient
        evaluations) or a perturbation tensor used as it is (projected onto the ball).
    :param int spectral_iterations: power iterations of the ``"spectral"`` start.
    :param loss: objective to maximise (default: deviation from the clean reconstruction).
    :param int seed: seed of the random start.
    :param int eot: model calls averaged per gradient (stochastic models); each step costs
        ``eot`` gradient evaluations.
    :param bool monotone: reuse smaller budgets' perturbations of the same sample when worse
        (see :class:`~kspace_attacks.Attack`).

    |sep|

    :Examples:

        >>> import torch, deepinv as dinv
        >>> import kspace_attacks as ka
        >>> physics = dinv.physics.MRI(img_size=(16, 16))
        >>> y = physics(torch.rand(1, 2, 16, 16, generator=torch.Generator().manual_seed(0)))
        >>> model = lambda y, physics: physics.A_adjoint(y)
        >>> res = ka.ProjectedAdam(ka.KSpaceL2(eps=0.05), max_steps=20)(model, y, physics)
        >>> res.grad_evals <= 20
        True
    """

    name = "adam"
    steps_param = "max_steps"

    def __init__(
        self,
        threat: ThreatModel,
        lr: float = 0.1,
        max_steps: int = 2000,
        max_rescales: int = 100,
        patience: int = 200,
        init_scale: float = 1e-4,
        start: str | torch.Tensor = "sphere",
        spectral_iterations: int = 4,
        loss: Loss | str | None = None,
        seed: int = 0,
        eot: int = 1,
        monotone: bool = True,
    ) -> None:
        super().__init__(threat, loss, seed, eot, monotone)
        self.lr = check_nonneg_float("lr", lr, strictly_positive=True)
        self.max_steps = check_positive_int("max_steps", max_steps)
        self.max_rescales = check_positive_int("max_rescales", max_rescales)
        self.patience = check_positive_int("patience", patience)
        self.init_scale = check_nonneg_float("init_scale", init_scale, strictly_positive=True)
        self.start = check_start(start)
        if isinstance(self.start, str) and self.start == "zero":
            raise ValueError("start: ProjectedAdam needs a direction to start from; got 'zero'")
        self.spectral_iterations = check_positive_int("spectral_iterations", spectral_iterations)

    def _run(self, problem: Problem, generator: torch.Generator) -> None:
        y, physics, threat = problem.y, problem.physics, self.threat
        problem.begin_start()
        if isinstance(self.start, torch.Tensor):
            (initial,) = start_points(self.start, problem, 1, generator)
        else:
            if self.start == "spectral":
                (given,) = start_points("spectral", problem, 1, generator, self.spectral_iterations)
                direction = threat.steepest_direction(given)
            else:
                direction = threat.steepest_direction(threat.sphere(y, physics, generator=generator))
            scale = self.init_scale * threat.reference_norm(y)  # (B, U)
            # projected: a threat whose set is not a ball (lost lines' flags) starts inside it
            initial = threat.project(direction * threat.broadcast(scale, direction), y, physics)
        delta = torch.nn.Parameter(initial.clone())
        opt = torch.optim.Adam([delta], lr=self.lr)
        b = y.shape[0]
        rescales = torch.zeros(b, dtype=torch.long, device=y.device)
        since_best = torch.zeros(b, dtype=torch.long, device=y.device)
        active = torch.ones(b, dtype=torch.bool, device=y.device)
        view = (-1,) + (1,) * (delta.dim() - 1)
        for _ in range(self.max_steps):
            before = problem.best_loss.clone()
            _, grad, _ = problem.evaluate(delta.detach())
            problem.record()
            since_best = torch.where(problem.best_loss > before, 0, since_best + 1)
            previous = delta.detach().clone()
            delta.grad = -grad  # Adam minimises; we ascend the objective
            opt.step()
            with torch.no_grad():
                left = (threat.unit_norm(delta) > threat.budget_unchecked(y) * (1 + 1e-6)).any(dim=1)
                delta.copy_(threat.project(delta, y, physics))
                # Stopped samples keep their iterate (Adam acts on the whole batch).
                delta.copy_(torch.where(active.view(view), delta, previous))
            rescales += (left & active).long()
            active &= (rescales < self.max_rescales) & (since_best < self.patience)
            if not bool(active.any()):
                break
        problem.evaluate(delta.detach(), grad=False)
        problem.end_start()

    @property
    def max_grad_evals(self) -> int:
        return self.max_steps * self.eot + spectral_cost(self.start, 1, self.spectral_iterations, self.eot)

    def _init_args(self) -> dict[str, Any]:
        return {**self._params(), "start": self.start, "spectral_iterations": self.spectral_iterations}

    def _params(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "max_steps": self.max_steps,
            "max_rescales": self.max_rescales,
            "patience": self.patience,
            "init_scale": self.init_scale,
            **({} if isinstance(self.start, str) and self.start in ("sphere", "uniform") else
               {"start": self.start if isinstance(self.start, str) else "tensor",
                "spectral_iterations": self.spectral_iterations}),
        }

