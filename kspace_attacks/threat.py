"""K-space threat models: which additive perturbations ``delta`` of the measurements are allowed.

A threat model fixes a norm ball around the measured k-space ``y`` and the support on which
``delta`` may live. Budgets are per sample (the study's convention, ``||delta|| <= eps ||y||``)
or per coil (each coil against its own norm), relative to ``y`` or absolute.

Layout follows deepinv: ``y`` is ``(B, 2, H, W)`` single-coil or ``(B, 2, N, H, W)``
multi-coil with real/imaginary parts in dim 1. The physics object carries the sampling mask.

Two supports:

- ``"measured"``: ``delta`` is zero off the sampling mask; its norm counts sampled entries only.
- ``"full"``: ``delta`` lives on the full Cartesian grid (the study's convention). Its norm
  counts unsampled entries too, but the perturbed measurement is masked by the physics, so
  only sampled entries reach the reconstructor (:meth:`ThreatModel.apply`).
"""

from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ._checks import check_choice, check_kspace, check_tensor, describe

__all__ = ["ThreatModel", "KSpaceL2", "KSpaceLinf", "sampling_mask", "check_eps"]

# Norms smaller than this are treated as zero (avoids 0/0 when normalising directions).
_TINY = 1e-30


def draw(kind: str, shape: tuple[int, ...], generator: Any) -> Tensor:
    """``torch.randn`` / ``torch.rand`` in float64 on the CPU (device-independent draws).

    ``generator`` may be one generator for the whole batch or a sequence of one generator per
    sample (dim 0), so that a sample's draw does not depend on the rest of its batch.
    """
    fn = torch.randn if kind == "randn" else torch.rand
    if generator is None or isinstance(generator, torch.Generator):
        return fn(shape, generator=generator, device="cpu", dtype=torch.float64)
    gens = list(generator)
    if len(gens) != shape[0] or not all(isinstance(g, torch.Generator) for g in gens):
        raise ValueError(
            f"generator: expected a torch.Generator or one per sample ({shape[0]}), got "
            f"{len(gens)} object(s)"
        )
    return torch.cat([fn((1, *shape[1:]), generator=g, device="cpu", dtype=torch.float64) for g in gens])


def sampling_mask(y: Tensor, physics: Any) -> Tensor:
    """The physics' sampling mask as a 0/1 tensor broadcastable to ``y``.

    deepinv stores single-coil masks as ``(1 or B, 2, H, W)`` and multi-coil masks without a
    coil axis; this returns ``(1 or B, 2, H, W)`` for 4-D ``y`` and ``(1 or B, 2, 1, H, W)``
    for 5-D ``y``. A physics without a ``mask`` attribute samples everything.

    :param torch.Tensor y: k-space in deepinv layout.
    :param physics: a deepinv MRI-like physics (anything with an optional ``mask``).

    |sep|

    :Examples:

        >>> import torch, deepinv as dinv
        >>> mask = torch.zeros(8, 8); mask[:, ::2] = 1
        >>> physics = dinv.physics.MRI(mask=mask, img_size=(8, 8))
        >>> y = physics(torch.rand(1, 2, 8, 8))
        >>> sampling_mask(y, physics).shape
        torch.Size([1, 2, 8, 8])
    """
    mask = getattr(physics, "mask", None)
    if mask is None:
        return torch.ones((1,) * y.dim(), dtype=y.dtype, device=y.device)
    if not isinstance(mask, Tensor):
        mask = torch.as_tensor(mask)
    mask = mask.to(device=y.device, dtype=y.dtype)
    if mask.dim() == 2:  # (H, W)
        mask = mask[None, None]
    elif mask.dim() == 3:  # (C, H, W)
        mask = mask[None]
    if y.dim() == 5 and mask.dim() == 4:  # multi-coil: broadcast over the coil axis
        mask = mask.unsqueeze(2)
    if mask.dim() != y.dim():
        raise ValueError(
            f"physics.mask: expected a mask broadcastable to y of shape {tuple(y.shape)}, "
            f"got mask of shape {tuple(mask.shape)}"
        )
    if mask.shape[-2:] != y.shape[-2:]:
        raise ValueError(
            f"y: spatial size {tuple(y.shape[-2:])} does not match the physics' mask size "
            f"{tuple(mask.shape[-2:])}; build the physics for the same image size"
        )
    if mask.shape[0] not in (1, y.shape[0]):
        raise ValueError(
            f"physics.mask: batch size {mask.shape[0]} does not match y's batch size "
            f"{y.shape[0]} (expected 1 or {y.shape[0]})"
        )
    return mask


class ThreatModel(ABC):
    """Base class of k-space threat models.

    Subclasses define the norm through :meth:`unit_norm`, :meth:`budget`, :meth:`project`,
    :meth:`random` and :meth:`steepest_direction`; everything else is shared.

    :param float|torch.Tensor eps: budget, a float or a per-sample tensor of shape ``(B,)``
        (several budgets in one batch). Relative to the norm of ``y`` when ``relative``.
    :param bool relative: budget relative to ``y`` (default) or absolute.
    :param str per: ``"sample"`` (one budget for the whole sample) or ``"coil"`` (one per coil,
        relative to that coil's own norm; single-coil data has one coil).
    :param str support: ``"measured"`` or ``"full"`` (see the module docstring).
    """

    norm_name: str = ""

    def __init__(
        self,
        eps: float | Tensor = 0.05,
        relative: bool = True,
        per: str = "sample",
        support: str = "measured",
    ) -> None:
        self.eps = check_eps(eps)
        if not isinstance(relative, bool):
            raise TypeError(f"relative: expected a bool, got {describe(relative)}")
        self.relative = relative
        self.per = check_choice("per", per, ("sample", "coil"))
        self.support = check_choice("support", support, ("measured", "full"))

    def with_eps(self, eps: float | Tensor) -> "ThreatModel":
        """A copy of this threat model with budget ``eps`` (float or per-sample ``(B,)``).

        The one public way to change a budget: the copy is validated like a new threat model,
        and ``self`` is left untouched.

        >>> import kspace_attacks as ka
        >>> ka.KSpaceL2(eps=0.05, per="coil").with_eps(0.01)
        KSpaceL2(eps=0.01, relative=True, per='coil', support='measured')
        """
        new = copy.copy(self)
        new.eps = check_eps(eps)
        return new

    def replace(self, **changes: Any) -> "ThreatModel":
        """A new threat model of the same class with some of ``eps``, ``relative``, ``per``,
        ``support`` changed (validated anew).

        >>> import kspace_attacks as ka
        >>> ka.KSpaceL2(eps=0.05, support="full").replace(support="measured").support
        'measured'
        """
        args = {"eps": self.eps, "relative": self.relative, "per": self.per, "support": self.support}
        unknown = sorted(set(changes) - set(args))
        if unknown:
            raise TypeError(f"replace: unknown argument(s) {unknown}; expected some of {sorted(args)}")
        return type(self)(**{**args, **changes})

    # ----------------------------------------------------------------------------- helpers
    def _units(self, t: Tensor) -> Tensor:
        """View ``t`` as ``(B, U, n)``: U budget units (1 per sample or N per coil)."""
        if self.per == "coil" and t.dim() == 5:
            return t.transpose(1, 2).flatten(2)  # (B, N, 2*H*W)
        return t.flatten(1).unsqueeze(1)  # (B, 1, numel)

    def _eps_tensor(self, y: Tensor) -> Tensor:
        """``eps`` as a ``(B, 1)`` tensor on y's device (validated against the batch size)."""
        eps = self.eps
        if isinstance(eps, Tensor):
            if eps.dim() == 1 and eps.shape[0] not in (1, y.shape[0]):
                raise ValueError(
                    f"eps: expected a float or a tensor of shape ({y.shape[0]},) matching the "
                    f"batch size of y, got shape {tuple(eps.shape)}"
                )
            return eps.to(device=y.device, dtype=y.dtype).reshape(-1, 1).expand(y.shape[0], 1)
        return torch.full((y.shape[0], 1), float(eps), device=y.device, dtype=y.dtype)

    def broadcast(self, per_unit: Tensor, like: Tensor) -> Tensor:
        """Reshape a ``(B, U)`` per-unit tensor so that it broadcasts against ``like``."""
        if self.per == "coil" and like.dim() == 5:
            return per_unit[:, None, :, None, None]
        return per_unit.reshape(per_unit.shape[0], *([1] * (like.dim() - 1)))

    def eps_per_sample(self, y: Tensor) -> Tensor:
        """``eps`` as a float64 ``(B,)`` tensor for the batch ``y`` (exact, for reporting)."""
        if isinstance(self.eps, Tensor):
            return self.eps.to(y.device).expand(y.shape[0]).clone()
        return torch.full((y.shape[0],), self.eps, dtype=torch.float64, device=y.device)

    def support_mask(self, y: Tensor, physics: Any) -> Tensor:
        """0/1 tensor broadcastable to ``y``: where ``delta`` may be non-zero."""
        if self.support == "full":
            return torch.ones((1,) * y.dim(), dtype=y.dtype, device=y.device)
        return sampling_mask(y, physics)

    def check(self, y: Any, physics: Any, name: str = "y") -> Tensor:
        """Validate ``y`` (layout, dtype, finiteness) against ``physics`` and ``eps``."""
        y = check_kspace(name, y)
        sampling_mask(y, physics)  # raises on size mismatch
        self._eps_tensor(y)
        return y

    def zeros(self, y: Tensor) -> Tensor:
        """The zero perturbation (no corruption) for the batch ``y``.

        A perturbation lives in the threat model's own space: ``y``'s shape for additive
        threats, a parameter vector for physical ones (:mod:`kspace_attacks.physical`).
        """
        return torch.zeros_like(y)

    def corrupt(self, y: Tensor, delta: Tensor, physics: Any) -> tuple[Tensor, Any]:
        """What the reconstructor is handed: ``(apply(y, delta, physics), physics)``.

        Threats that change what the model is told about the acquisition (coil maps) return a
        different physics; every other threat changes the measurement only.
        """
        return self.apply(y, delta, physics), physics

    def apply(self, y: Tensor, delta: Tensor, physics: Any) -> Tensor:
        """The perturbed measurement ``y + M delta``.

        Masking by the physics' sampling mask means unsampled entries of a ``"full"``-support
        perturbation never reach the reconstructor, as in an acquisition.
        """
        return y + sampling_mask(y, physics) * delta

    # ----------------------------------------------------------------------------- interface
    @abstractmethod
    def unit_norm(self, t: Tensor) -> Tensor:
        """Norm of ``t`` per budget unit, shape ``(B, U)``."""

    def reference_norm(self, y: Tensor) -> Tensor:
        """Norm of ``y`` per budget unit, shape ``(B, U)`` (what relative budgets scale)."""
        return self.unit_norm(y)

    def budget(self, y: Tensor) -> Tensor:
        """Allowed norm per budget unit, shape ``(B, U)``; U = 1 (per sample) or N (per coil).

        :param torch.Tensor y: clean k-space in deepinv layout.
        """
        return self.budget_unchecked(check_kspace("y", y))

    def budget_unchecked(self, y: Tensor) -> Tensor:
        """:meth:`budget` without input validation (for inner loops of attacks)."""
        eps = self._eps_tensor(y)
        if self.relative:
            return eps * self.reference_norm(y)
        return eps.expand(-1, self._units(y).shape[1])

    @abstractmethod
    def project(self, delta: Tensor, y: Tensor, physics: Any) -> Tensor:
        """Project ``delta`` onto the support and the ball (the Euclidean projection)."""

    @abstractmethod
    def random(
        self, y: Tensor, physics: Any, generator: torch.Generator | Sequence[torch.Generator] | None = None
    ) -> Tensor:
        """A perturbation drawn uniformly from the ball (on the support)."""

    @abstractmethod
    def sphere(
        self, y: Tensor, physics: Any, generator: torch.Generator | Sequence[torch.Generator] | None = None
    ) -> Tensor:
        """A random perturbation on the boundary of the ball (uses the whole budget).

        ``generator``: one for the batch, or one per sample (its draw then does not depend on
        the rest of the batch)."""

    @abstractmethod
    def steepest_direction(self, grad: Tensor) -> Tensor:
        """Steepest-ascent direction of unit norm per budget unit for gradient ``grad``."""

    @abstractmethod
    def step_scale(self, y: Tensor) -> Tensor:
        """Budget broadcastable to ``y``: a unit steepest direction times this uses it all."""

    def ascent_step(
        self, delta: Tensor, grad: Tensor, y: Tensor, physics: Any, step_size: float
    ) -> Tensor:
        """One projected steepest-ascent step of ``step_size`` budgets along ``grad``."""
        direction = self.steepest_direction(grad * self.support_mask(y, physics))
        return self.project(delta + step_size * self.step_scale(y) * direction, y, physics)

    def ratio(self, delta: Tensor, y: Tensor) -> Tensor:
        """``||delta|| / ||y||`` per sample in this threat model's norm, shape ``(B,)``."""
        d = self.unit_norm(delta).amax(dim=1) if self.per == "coil" else self.unit_norm(delta)[:, 0]
        r = self.reference_norm(y).amax(dim=1) if self.per == "coil" else self.reference_norm(y)[:, 0]
        return d / r.clamp_min(_TINY)

    def __repr__(self) -> str:
        eps = self.eps.tolist() if isinstance(self.eps, Tensor) else self.eps
        return (
            f"{type(self).__name__}(eps={eps}, relative={self.relative}, per={self.per!r}, "
            f"support={self.support!r})"
        )


class KSpaceL2(ThreatModel):
    r"""l2 ball in k-space: :math:`\|\delta\|_2 \le \epsilon \|y\|_2` (the study's Eq. 5).

    :param float|torch.Tensor eps: budget (float or per-sample ``(B,)`` tensor).
    :param bool relative: budget relative to :math:`\|y\|_2` (default) or absolute.
    :param str per: ``"sample"`` or ``"coil"``.
    :param str support: ``"measured"`` or ``"full"``.

    |sep|

    :Examples:

        >>> import torch, deepinv as dinv
        >>> import kspace_attacks as ka
        >>> mask = torch.zeros(16, 16); mask[:, ::2] = 1
        >>> physics = dinv.physics.MRI(mask=mask, img_size=(16, 16))
        >>> y = physics(torch.rand(2, 2, 16, 16))
        >>> threat = ka.KSpaceL2(eps=0.05)
        >>> delta = threat.random(y, physics, generator=torch.Generator().manual_seed(0))
        >>> bool((threat.ratio(delta, y) <= 0.05 + 1e-6).all())
        True
    """

    norm_name = "l2"

    def unit_norm(self, t: Tensor) -> Tensor:
        return self._units(t).norm(dim=2)

    def project(self, delta: Tensor, y: Tensor, physics: Any) -> Tensor:
        delta = check_tensor("delta", delta)
        if delta.shape != y.shape:
            raise ValueError(
                f"delta: expected the shape of y {tuple(y.shape)}, got {tuple(delta.shape)}"
            )
        # Zeroing off the support then shrinking radially is the exact Euclidean projection
        # onto (subspace ∩ ball), since the ball is centred at 0, which lies in the subspace.
        delta = delta * self.support_mask(y, physics)
        norm = self.unit_norm(delta)
        scale = (self.budget_unchecked(y) / norm.clamp_min(_TINY)).clamp(max=1.0)
        return delta * self.broadcast(scale, delta)

    def random(
        self, y: Tensor, physics: Any, generator: torch.Generator | Sequence[torch.Generator] | None = None
    ) -> Tensor:
        y = check_kspace("y", y)
        direction = self._gaussian(y, physics, generator)
        # Uniform in the d-ball: radius ~ budget * U^(1/d) with d the free dimension.
        support = self.support_mask(y, physics).expand_as(y)
        dim = self._units(support).sum(dim=2).clamp_min(1.0)
        u = draw("rand", tuple(dim.shape), generator)
        radius = self.budget_unchecked(y) * u.to(y.device).pow(1.0 / dim.double()).to(y.dtype)
        return direction * self.broadcast(radius, y)

    def sphere(
        self, y: Tensor, physics: Any, generator: torch.Generator | Sequence[torch.Generator] | None = None
    ) -> Tensor:
        """Gaussian direction scaled to exactly the budget (the equal-norm noise baseline)."""
        y = check_kspace("y", y)
        return self._gaussian(y, physics, generator) * self.broadcast(self.budget_unchecked(y), y)

    def step_scale(self, y: Tensor) -> Tensor:
        return self.broadcast(self.budget_unchecked(y), y)

    def steepest_direction(self, grad: Tensor) -> Tensor:
        norm = self.unit_norm(grad)
        return grad / self.broadcast(norm.clamp_min(_TINY), grad)

    # ----------------------------------------------------------------------------- private
    def _gaussian(self, y: Tensor, physics: Any, generator: Any) -> Tensor:
        """Unit-norm (per unit) Gaussian direction on the support; drawn on CPU for
        device-independent determinism."""
        g = draw("randn", tuple(y.shape), generator)
        g = g.to(device=y.device, dtype=y.dtype) * self.support_mask(y, physics)
        return self.steepest_direction(g)


class KSpaceLinf(ThreatModel):
    r"""Entry-wise bound on the complex modulus: :math:`|\delta_k| \le \epsilon \max_k |y_k|`.

    Each k-space entry is a complex number (real/imag in dim 1); its modulus is bounded, which
    treats real and imaginary parts jointly (rotation invariant), unlike a box on each part.
    Relative budgets scale with the largest modulus of ``y`` per sample or per coil.

    |sep|

    :Examples:

        >>> import torch, deepinv as dinv
        >>> import kspace_attacks as ka
        >>> physics = dinv.physics.MRI(img_size=(8, 8))
        >>> y = physics(torch.rand(1, 2, 8, 8))
        >>> threat = ka.KSpaceLinf(eps=0.01)
        >>> delta = threat.project(torch.randn_like(y), y, physics)
        >>> bool((threat.unit_norm(delta) <= threat.budget(y) * (1 + 1e-6)).all())
        True
    """

    norm_name = "linf"

    @staticmethod
    def _modulus(t: Tensor) -> Tensor:
        return t.pow(2).sum(dim=1, keepdim=True).sqrt()  # (B, 1, ...)

    def unit_norm(self, t: Tensor) -> Tensor:
        return self._units(self._modulus(t).expand_as(t)).amax(dim=2)

    def _entry_budget(self, y: Tensor) -> Tensor:
        return self.broadcast(self.budget_unchecked(y), y)

    def project(self, delta: Tensor, y: Tensor, physics: Any) -> Tensor:
        delta = check_tensor("delta", delta)
        if delta.shape != y.shape:
            raise ValueError(
                f"delta: expected the shape of y {tuple(y.shape)}, got {tuple(delta.shape)}"
            )
        delta = delta * self.support_mask(y, physics)
        mod = self._modulus(delta)
        scale = (self._entry_budget(y) / mod.clamp_min(_TINY)).clamp(max=1.0)
        return delta * scale

    def random(
        self, y: Tensor, physics: Any, generator: torch.Generator | Sequence[torch.Generator] | None = None
    ) -> Tensor:
        y = check_kspace("y", y)
        shape = (y.shape[0], 1, *y.shape[2:])
        # Uniform in each complex disc: radius ~ sqrt(U), phase ~ U[0, 2 pi).
        r = draw("rand", shape, generator).sqrt()
        phase = draw("rand", shape, generator) * (2 * math.pi)
        d = torch.cat([r * torch.cos(phase), r * torch.sin(phase)], dim=1)
        d = d.to(device=y.device, dtype=y.dtype) * self._entry_budget(y)
        return d * self.support_mask(y, physics)

    def sphere(
        self, y: Tensor, physics: Any, generator: torch.Generator | Sequence[torch.Generator] | None = None
    ) -> Tensor:
        """Every supported entry at the full budget modulus with a uniform random phase."""
        y = check_kspace("y", y)
        shape = (y.shape[0], 1, *y.shape[2:])
        phase = draw("rand", shape, generator) * (2 * math.pi)
        d = torch.cat([torch.cos(phase), torch.sin(phase)], dim=1)
        d = d.to(device=y.device, dtype=y.dtype) * self._entry_budget(y)
        return d * self.support_mask(y, physics)

    def step_scale(self, y: Tensor) -> Tensor:
        return self._entry_budget(y)

    def steepest_direction(self, grad: Tensor) -> Tensor:
        # The complex sign: the maximiser of <g, d> over |d_k| <= 1.
        return grad / self._modulus(grad).clamp_min(_TINY)


def check_eps(eps: Any) -> float | Tensor:
    """Validate a budget: a finite float >= 0 or a real ``(B,)`` tensor of them (as float64)."""
    if isinstance(eps, Tensor):
        if eps.is_complex() or not (eps.is_floating_point() or eps.dtype in (torch.int64, torch.int32)):
            raise TypeError(f"eps: expected a float or a real tensor of shape (B,), got {describe(eps)}")
        if eps.dim() > 1:
            raise ValueError(f"eps: expected a float or a tensor of shape (B,), got shape {tuple(eps.shape)}")
        eps = eps.detach().double().reshape(-1)
        if not torch.isfinite(eps).all() or (eps < 0).any():
            raise ValueError(f"eps: expected finite values >= 0, got {eps.tolist()}")
        return eps
    if isinstance(eps, bool) or not isinstance(eps, (int, float)):
        raise TypeError(f"eps: expected a float or a tensor of shape (B,), got {describe(eps)}")
    if not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps: expected a finite number >= 0, got {eps}")
    return float(eps)
