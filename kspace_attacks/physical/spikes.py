"""K-space spikes (herringbone artefact): a few entries with a large complex amplitude."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .._checks import check_kspace, check_positive_int, check_tensor
from ..threat import KSpaceLinf, draw

__all__ = ["Spikes"]


class Spikes(KSpaceLinf):
    r"""At most ``count`` measured k-space entries per sample gain a spike of modulus at most
    ``eps * max|y|``.

    The perturbation is additive and ``y``-shaped (real/imaginary parts in dim 1); the budget
    is the per-entry modulus of :class:`~kspace_attacks.KSpaceLinf` (relative to the largest
    modulus of ``y``, usually the centre of k-space) *and* a count of non-zero entries.
    :meth:`project` clamps every modulus, then keeps the ``count`` largest: the exact Euclidean
    projection onto this (non-convex) set. :meth:`sphere` puts ``count`` spikes of full modulus
    and random phase at random measured positions: the random control of the same size.

    :param float|torch.Tensor eps: spike modulus relative to ``max |y|`` per sample.
    :param int count: spikes per sample (over all coils).
    :param bool relative: budget relative to ``max |y|`` (default) or absolute.

    |sep|

    :Examples:

        >>> import torch, deepinv as dinv
        >>> import kspace_attacks as ka
        >>> physics = dinv.physics.MRI(img_size=(8, 8))
        >>> y = physics(torch.rand(1, 2, 8, 8))
        >>> threat = ka.Spikes(eps=0.2, count=3)
        >>> d = threat.project(torch.randn_like(y), y, physics)
        >>> int((d.pow(2).sum(1) > 0).sum())
        3
    """

    unit = "max|y|"

    def __init__(self, eps: float | Tensor = 0.2, count: int = 4, relative: bool = True) -> None:
        super().__init__(eps=eps, relative=relative, per="sample", support="measured")
        self.count = check_positive_int("count", count)

    def replace(self, **changes: Any) -> "Spikes":
        args = {"eps": self.eps, "count": self.count, "relative": self.relative}
        unknown = sorted(set(changes) - set(args))
        if unknown:
            raise TypeError(f"replace: unknown argument(s) {unknown}; expected some of {sorted(args)}")
        return type(self)(**{**args, **changes})

    def _keep_largest(self, delta: Tensor) -> Tensor:
        """Zero all but the ``count`` entries of largest modulus per sample."""
        mod = self._modulus(delta).flatten(1)  # (B, entries)
        k = min(self.count, mod.shape[1])
        order = mod.argsort(dim=1, descending=True, stable=True)  # ties: the first entries
        keep = torch.zeros_like(mod, dtype=torch.bool).scatter_(1, order[:, :k], True)
        return delta * keep.reshape(self._modulus(delta).shape).to(delta.dtype)

    def project(self, delta: Tensor, y: Tensor, physics: Any) -> Tensor:
        return self._keep_largest(super().project(check_tensor("delta", delta), y, physics))

    def steepest_direction(self, grad: Tensor) -> Tensor:
        # Gradient steps scaled so that the largest entry moves one budget (iterative hard
        # thresholding): the projection then keeps the entries the gradient ranks highest. The
        # complex sign of KSpaceLinf would move every entry equally and never change positions.
        mod = self._modulus(grad).flatten(1).amax(dim=1).clamp_min(1e-30)
        return grad / mod.reshape(-1, *([1] * (grad.dim() - 1)))

    def _positions(self, y: Tensor, physics: Any, generator: Any) -> Tensor:
        """0/1 ``(B, 1, ...)``: ``count`` random measured positions per sample."""
        support = self.support_mask(y, physics).expand_as(y)[:, :1]
        score = draw("rand", tuple(support.shape), generator).to(device=y.device, dtype=y.dtype)
        score = (score + 1) * support  # unmeasured entries never win
        flat = score.flatten(1)
        k = min(self.count, flat.shape[1])
        keep = torch.zeros_like(flat).scatter_(1, flat.topk(k, dim=1).indices, 1.0)
        return keep.reshape(support.shape) * support

    def random(self, y: Tensor, physics: Any,
               generator: torch.Generator | Sequence[torch.Generator] | None = None) -> Tensor:
        y = check_kspace("y", y)
        return super().random(y, physics, generator) * self._positions(y, physics, generator)

    def sphere(self, y: Tensor, physics: Any,
               generator: torch.Generator | Sequence[torch.Generator] | None = None) -> Tensor:
        y = check_kspace("y", y)
        return super().sphere(y, physics, generator) * self._positions(y, physics, generator)

    def __repr__(self) -> str:
        eps = self.eps.tolist() if isinstance(self.eps, Tensor) else self.eps
        return f"Spikes(eps={eps}, count={self.count}, relative={self.relative})"

