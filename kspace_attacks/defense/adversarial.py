"""Adversarial training loss: the model is trained on the worst perturbation found within a budget."""

from __future__ import annotations

from typing import Any

import deepinv
from torch import Tensor

from .._checks import check_positive_int, describe
from ..attacks import ATTACKS, Attack, attack_class
from ..threat import KSpaceL2, ThreatModel
from ._mixing import Metric, call_generator, check_metric, check_mix, mixed

__all__ = ["AdversarialLoss"]


class AdversarialLoss(deepinv.loss.Loss):
    r"""Adversarial training (Madry et al.) on k-space perturbations, as a deepinv loss.

    Each call runs ``attack`` on the model at the batch's measurements (inner maximisation of
    ``objective``, the model frozen), then returns

    .. math::

        (1 - \text{mix})\, m(f(y), x) + \text{mix}\, m(f(y + M\delta^\star), x),
        \qquad \delta^\star \approx \arg\max_{\delta \in B_\epsilon(y)} \ell(f(y + M\delta), x),

    so the gradient w.r.t. the weights flows through both reconstructions (not through
    :math:`\delta^\star`, as usual).

    :param threat: the perturbations trained against (default ``KSpaceL2(eps=0.05)``: l2 ball
        of radius 0.05 ||y|| per sample on the measured k-space).
    :param attack: an attack name (``"apgd"``, ``"pgd"``, ``"worst_case"``, ...) or an
        :class:`~kspace_attacks.Attack` instance (its threat is used, ``threat`` ignored).
    :param budget: gradient evaluations of the inner attack per call (its steps or budget);
        an attack instance must not cost more. Each costs about one training step's forward
        and backward pass, so a step costs about ``budget + 2`` clean ones.
    :param objective: what the inner attack maximises: ``"deviation"`` (the change of the
        output, the quantity the package's worst case reports), ``"ssim"``, or
        ``"ground_truth"`` (the error w.r.t. the training target, Madry et al.'s choice). On the
        shipped i-RIM (eps 0.05, 8 test slices) 4 APGD steps on ``"deviation"`` cost -0.136
        SSIM, on ``"ssim"`` -0.191, on ``"ground_truth"`` -0.019, no more than equal-norm
        noise (-0.018): ``benchmarks/bench_robust.py objective``.
    :param metric: training metric ``metric(x_hat, x)`` (default mean squared error).
    :param mix: weight of the perturbed term (0: clean training, 1: perturbed only).
    :param seed: seeds the inner attack's random starts; call ``k`` uses a generator that is a
        function of ``(seed, k)`` only (:attr:`calls` counts calls; set it when resuming).

    After a call, :attr:`last_grad_evals` holds the inner attack's gradient evaluations and
    :attr:`last_ratio` the perturbations' relative norms.

    |sep|

    :Examples:

        >>> import torch, deepinv as dinv
        >>> import kspace_attacks as ka
        >>> from kspace_attacks.defense import AdversarialLoss
        >>> physics = dinv.physics.MRI(img_size=(16, 16))
        >>> x = torch.rand(2, 2, 16, 16, generator=torch.Generator().manual_seed(0))
        >>> y = physics(x)
        >>> model = dinv.models.ArtifactRemoval(dinv.models.UNet(2, 2, scales=2))
        >>> loss = AdversarialLoss(ka.KSpaceL2(eps=0.05), budget=3)
        >>> value = loss(model(y, physics), x, y, physics, model)
        >>> value.backward(); loss.last_grad_evals <= 3
        True
    """

    def __init__(
        self,
        threat: ThreatModel | None = None,
        attack: str | Attack = "apgd",
        budget: int = 4,
        objective: str = "deviation",
        metric: Metric | None = None,
        mix: float = 0.5,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.budget = check_positive_int("budget", budget)
        self.attack = self._attack(attack, threat, objective, seed)
        self.metric = check_metric(metric)
        self.mix = check_mix(mix)
        self.seed = check_positive_int("seed", seed, minimum=0)
        self.calls = 0
        self.last_grad_evals = 0
        self.last_ratio: Tensor | None = None

    def _attack(self, attack: Any, threat: Any, objective: Any, seed: Any) -> Attack:
        if isinstance(attack, Attack):
            if attack.max_grad_evals > self.budget:
                raise ValueError(f"attack: {attack!r} may take {attack.max_grad_evals} gradient "
                                 f"evaluations, over budget={self.budget}")
            return attack
        if not isinstance(attack, str):
            raise TypeError(f"attack: expected an attack name ({', '.join(sorted(ATTACKS))}) or "
                            f"an Attack, got {describe(attack)}")
        cls = attack_class(attack)
        if cls.steps_param is None:
            raise ValueError(f"attack: {attack!r} takes no gradient steps; expected an iterative "
                             f"attack such as 'apgd', 'pgd' or 'worst_case'")
        threat = KSpaceL2() if threat is None else threat
        return cls(threat, loss=objective, seed=seed, **{cls.steps_param: self.budget})

    @property
    def threat(self) -> ThreatModel:
        """The threat model trained against."""
        return self.attack.threat

    def forward(self, x_net: Tensor, x: Tensor, y: Tensor, physics: Any, model: Any,
                **kwargs: Any) -> Tensor:
        """The mixed loss; ``x_net = model(y, physics)`` with the graph to the weights."""
        result = self.attack(model, y.detach(), physics, x_true=x.detach(),
                             x_clean=x_net.detach(), generator=call_generator(self.seed, self.calls))
        self.calls += 1
        self.last_grad_evals, self.last_ratio = result.grad_evals, result.ratio
        return mixed(self.metric, self.mix, x_net, model(result.y_adv.detach(), physics), x)

    def extra_repr(self) -> str:
        return f"attack={self.attack!r}, mix={self.mix}, seed={self.seed}"
