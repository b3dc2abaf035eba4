"""Fast gradient method: one normalised gradient step of the full budget."""

from __future__ import annotations

from typing import Any

import torch

from .._checks import check_nonneg_float
from ..losses import Loss
from ..threat import ThreatModel
from .base import Attack, Problem

__all__ = ["FGM"]


class FGM(Attack):
    r"""One steepest-ascent step of the full budget from a small random start.

    The deviation objective has zero gradient at :math:`\delta = 0`, so the gradient is taken
    at a random point of norm ``init_scale`` times the budget; the step then uses the whole
    budget: :math:`\delta = \Pi(b\, g / \|g\|)`. One gradient evaluation.

    :param kspace_attacks.ThreatModel threat: the allowed perturbations.
    :param float init_scale: norm of the random start as a fraction of the budget.
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
        >>> res = ka.FGM(ka.KSpaceL2(eps=0.05))(lambda y, p: p.A_adjoint(y), y, physics)
        >>> res.grad_evals
        1
    """

    name = "fgm"

    def __init__(
        self,
        threat: ThreatModel,
        init_scale: float = 1e-3,
        loss: Loss | str | None = None,
        seed: int = 0,
        eot: int = 1,
        monotone: bool = True,
    ) -> None:
        super().__init__(threat, loss, seed, eot, monotone)
        self.init_scale = check_nonneg_float("init_scale", init_scale)

    def _run(self, problem: Problem, generator: torch.Generator) -> None:
        y, physics, threat = problem.y, problem.physics, self.threat
        start = self.init_scale * threat.sphere(y, physics, generator=generator)
        _, grad, _ = problem.evaluate(start)
        problem.record()
        problem.evaluate(threat.ascent_step(threat.zeros(y), grad, y, physics, 1.0), grad=False)

    @property
    def max_grad_evals(self) -> int:
        return self.eot

    def _params(self) -> dict[str, Any]:
        return {"init_scale": self.init_scale}
