"""Jittering: training on measurements with noise of a given level relative to ||y||."""

from __future__ import annotations

from typing import Any

import deepinv
import torch
from torch import Tensor

from .._checks import check_choice, check_kspace, check_nonneg_float, check_positive_int
from ..threat import sampling_mask
from ._mixing import Metric, call_generator, check_metric, check_mix, mixed

__all__ = ["JitterLoss", "JITTER_KINDS"]

#: ``"equal_norm"``: noise of norm exactly ``level ||y||`` per sample; ``"gaussian"``: i.i.d.
#: Gaussian entries whose expected squared norm is ``(level ||y||)^2``.
JITTER_KINDS = ("equal_norm", "gaussian")


class JitterLoss(deepinv.loss.Loss):
    r"""Jittering (Krainovic, Soltanolkotabi and Heckel, 2023) in k-space, as a deepinv loss.

    Each call draws noise :math:`w` on the entries the model sees (the sampling mask), of
    relative level ``level`` per sample, and returns

    .. math:: (1 - \text{mix})\, m(f(y), x) + \text{mix}\, m(f(y + w), x).

    Jittering costs one extra forward and backward pass per step (no inner attack) and is the
    worst-case robust choice for linear estimators; for deep networks it is the cheap
    alternative to :class:`~kspace_attacks.defense.AdversarialLoss`.

    :param level: noise norm relative to ``||y||`` (the same scale as the threat models' eps).
    :param kind: ``"equal_norm"`` (exactly ``level ||y||``, the equal-norm control of the
        attacks) or ``"gaussian"`` (that norm in expectation).
    :param metric: training metric ``metric(x_hat, x)`` (default mean squared error).
    :param mix: weight of the jittered term (0: clean training, 1: jittered only).
    :param seed: call ``k`` draws from a generator that is a function of ``(seed, k)`` only
        (:attr:`calls` counts calls; set it when resuming).

    |sep|

    :Examples:

        >>> import torch, deepinv as dinv
        >>> from kspace_attacks.defense import JitterLoss
        >>> physics = dinv.physics.MRI(img_size=(16, 16))
        >>> x = torch.rand(2, 2, 16, 16, generator=torch.Generator().manual_seed(0))
        >>> y = physics(x)
        >>> model = dinv.models.ArtifactRemoval(dinv.models.UNet(2, 2, scales=2))
        >>> loss = JitterLoss(level=0.05)
        >>> loss(model(y, physics), x, y, physics, model).backward()
        >>> [round(r, 4) for r in loss.last_ratio.tolist()]
        [0.05, 0.05]
    """

    def __init__(self, level: float = 0.05, kind: str = "equal_norm", metric: Metric | None = None,
                 mix: float = 0.5, seed: int = 0) -> None:
        super().__init__()
        self.level = check_nonneg_float("level", level)
        self.kind = check_choice("kind", kind, JITTER_KINDS)
        self.metric = check_metric(metric)
        self.mix = check_mix(mix)
        self.seed = check_positive_int("seed", seed, minimum=0)
        self.calls = 0
        self.last_ratio: Tensor | None = None

    def noise(self, y: Tensor, physics: Any, generator: torch.Generator | None = None) -> Tensor:
        """Noise of this loss's level and kind for measurements ``y`` (zero off the mask)."""
        y = check_kspace("y", y)
        support = sampling_mask(y, physics).expand_as(y)
        w = torch.randn(y.shape, generator=generator, dtype=y.dtype).to(y.device) * support
        dims = tuple(range(1, y.dim()))
        y_norm = y.flatten(1).norm(dim=1).view(-1, *(1,) * (y.dim() - 1))
        if self.kind == "equal_norm":
            scale = self.level * y_norm / w.flatten(1).norm(dim=1).clamp_min(1e-30).view_as(y_norm)
        else:  # E||w||^2 = sigma^2 * (real entries on the support) = (level ||y||)^2
            n = support.sum(dim=dims).clamp_min(1).view_as(y_norm)
            scale = self.level * y_norm / n.sqrt()
        return w * scale

    def forward(self, x_net: Tensor, x: Tensor, y: Tensor, physics: Any, model: Any,
                **kwargs: Any) -> Tensor:
        """The mixed loss; ``x_net = model(y, physics)`` with the graph to the weights."""
        w = self.noise(y.detach(), physics, call_generator(self.seed, self.calls))
        self.calls += 1
        y_norm = y.detach().flatten(1).norm(dim=1)
        self.last_ratio = w.flatten(1).norm(dim=1) / y_norm.clamp_min(1e-30)
        return mixed(self.metric, self.mix, x_net, model(y.detach() + w, physics), x)

    def extra_repr(self) -> str:
        return f"level={self.level}, kind={self.kind!r}, mix={self.mix}, seed={self.seed}"
