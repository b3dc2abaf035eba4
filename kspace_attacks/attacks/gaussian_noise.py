"""Equal-norm random baseline: noise that uses the whole budget."""

from __future__ import annotations

from typing import Any

import torch

from .._checks import check_positive_int
from ..losses import Loss
from ..threat import ThreatModel
from .base import Attack, Problem

__all__ = ["GaussianNoise"]


class GaussianNoise(Attack):
    r"""Random perturbation on the boundary of the ball: the equal-norm baseline.

    For :class:`~kspace_attacks.KSpaceL2` a Gaussian direction on the entries the model sees
    scaled to exactly the budget (Genzel et al.'s baseline; :attr:`draw_threat`); for :class:`~kspace_attacks.KSpaceLinf` every
    supported entry at the full modulus with a random phase. With ``draws > 1`` the worst of
    several draws is kept (random search). No gradients.

    :param kspace_attacks.ThreatModel threat: the allowed perturbations.
    :param int draws: random draws per sample; the worst is kept.
    :param loss: objective used to rank draws and reported in the result.
    :param int seed: seed of the draws.
    :param int eot: model calls averaged per draw's evaluation (stochastic models); costs
        ``eot`` forward evaluations per draw.
    :param bool monotone: off by default here: the baseline is noise of exactly the budget's
        norm, which the envelope would replace by a smaller budget's noise where it is worse.

    |sep|

    :Examples:

        >>> import torch, deepinv as dinv
        >>> import kspace_attacks as ka
        >>> physics = dinv.physics.MRI(img_size=(16, 16))
        >>> y = physics(torch.rand(1, 2, 16, 16, generator=torch.Generator().manual_seed(0)))
        >>> res = ka.GaussianNoise(ka.KSpaceL2(eps=0.05))(lambda y, p: p.A_adjoint(y), y, physics)
        >>> round(res.ratio.item(), 4)
        0.05
    """

    name = "noise"

    def __init__(
        self,
        threat: ThreatModel,
        draws: int = 1,
        loss: Loss | str | None = None,
        seed: int = 0,
        eot: int = 1,
        monotone: bool = False,
    ) -> None:
        super().__init__(threat, loss, seed, eot, monotone)
        self.draws = check_positive_int("draws", draws)

    @property
    def draw_threat(self) -> ThreatModel:
        """The threat model the noise is drawn in: with ``support="full"`` the measured entries
        only, at the full budget.

        A draw over the whole grid would be masked by the physics and reach the model with about
        1/acceleration of its energy, while an attack puts its whole budget where the model
        looks (the gradient is zero elsewhere): the control would run at a fraction of the
        attack's strength. Drawn on the measured entries, both deliver ``eps ||y||``, and the
        draw is still in the threat model's ball, on its boundary.
        """
        t = self.threat
        return t.replace(support="measured") if t.support == "full" else t

    def _run(self, problem: Problem, generator: torch.Generator) -> None:
        threat = self.draw_threat
        for _ in range(self.draws):
            problem.evaluate(threat.sphere(problem.y, problem.physics, generator), grad=False)

    def _params(self) -> dict[str, Any]:
        return {"draws": self.draws}
