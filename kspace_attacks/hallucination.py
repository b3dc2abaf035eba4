"""What the measurements carry and what the model invents: the measured / null-space split.

A linear acquisition ``A`` (deepinv's MRI physics) sees an image change ``r`` only through
``A r``. Every change splits into two orthogonal parts,

    r = P_meas r + P_null r,     P_meas = A^+ A (the row space of A),  P_null = I - P_meas,

where ``P_meas r`` is what the measurements determine and ``P_null r`` is invisible to them:
any part of a reconstruction's change in the null space was put there by the model, not by
the data. For the change ``r = x_adv - x_clean`` caused by a perturbation, the null fraction
``||P_null r||^2 / ||r||^2`` says how much of it the model invented (0: all of it is carried
by the measurements; 1: none of it is).

- Single-coil :class:`deepinv.physics.MRI` (``A x = M F x``, orthonormal FFT, binary mask
  ``M``): ``P_meas r = A^H A r`` exactly, one FFT pair.
- Multi-coil :class:`deepinv.physics.MultiCoilMRI`: ``P_meas r = A^+ A r`` by deepinv's
  least-squares solver (``physics.A_dagger``, conjugate gradient) in float64 on the
  normalised change, to a relative normal-equation residual ``tol``. A row whose solve does
  not reach it within ``max_iter`` iterations is marked unconverged (``Split.converged``) and
  its numbers are NaN in :func:`split_columns`. Realistic SENSE problems (coils >= the
  acceleration) have a row space that is nearly the whole image but badly conditioned: the
  solver does not converge there and the split is not determined (NaN), by design.

Images are ``(B, 2, H, W)`` complex; a magnitude ``(B, 1, H, W)`` image is the real image with
zero imaginary part (:func:`as_complex`).

Example:

    >>> import torch, deepinv as dinv
    >>> from kspace_attacks.hallucination import split
    >>> mask = torch.zeros(16, 16); mask[:, ::2] = 1
    >>> physics = dinv.physics.MRI(mask=mask, img_size=(16, 16))
    >>> r = torch.randn(1, 2, 16, 16, generator=torch.Generator().manual_seed(0))
    >>> s = split(r, physics)
    >>> torch.allclose(s.measured + s.null, r), round(float(s.null_fraction), 2)
    (True, 0.48)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import deepinv as dinv
import torch
from torch import Tensor

from ._checks import check_image, check_nonneg_float, check_physics, check_positive_int, describe

__all__ = ["Split", "as_complex", "measured_part", "split", "split_columns", "splits", "CG_TOL", "CG_MAX_ITER"]

#: Relative residual of the normal equations the multi-coil solve must reach (about 1e-4
#: relative accuracy of the projection on well-conditioned problems; tests/test_hallucination.py).
CG_TOL = 1e-6
#: Conjugate-gradient iterations of the multi-coil solve (each: one A and one A^H, coils FFTs each);
#: the solve stops at CG_TOL first. 100 left 9 of 1,001 random two-coil maps at 4x unconverged
#: (tests/test_hallucination.py); 200 converges all of them.
CG_MAX_ITER = 300


@dataclass(frozen=True)
class Split:
    """``r = measured + null``: the parts of a change the measurements determine and do not.

    :ivar measured: ``P_meas r``, ``(B, 2, H, W)``.
    :ivar null: ``P_null r = r - P_meas r``, ``(B, 2, H, W)``.
    :ivar converged: ``(B,)`` bool: the projection reached its accuracy (always for single-coil).
    """

    measured: Tensor
    null: Tensor
    converged: Tensor

    @property
    def measured_norm(self) -> Tensor:
        """``||P_meas r||_2`` per sample, ``(B,)``."""
        return self.measured.flatten(1).norm(dim=1)

    @property
    def null_norm(self) -> Tensor:
        """``||P_null r||_2`` per sample, ``(B,)``."""
        return self.null.flatten(1).norm(dim=1)

    @property
    def null_fraction(self) -> Tensor:
        """``||P_null r||^2 / ||r||^2`` per sample, in [0, 1]; NaN where ``r = 0``."""
        total = (self.measured + self.null).flatten(1).pow(2).sum(dim=1)
        frac = (self.null_norm.pow(2) / total).clamp(0.0, 1.0)
        return torch.where(total > 0, frac, torch.full_like(frac, float("nan")))


def as_complex(x: Tensor) -> Tensor:
    """``x`` as a ``(B, 2, H, W)`` complex image: a magnitude ``(B, 1, H, W)`` image becomes the
    real part (imaginary part 0); complex input is returned as it is.

    :Examples:

        >>> import torch
        >>> as_complex(torch.ones(1, 1, 2, 2))[0, :, 0, 0].tolist()
        [1.0, 0.0]
    """
    x = check_image("x", x)
    return x if x.shape[1] == 2 else torch.cat([x, torch.zeros_like(x)], dim=1)


def splits(physics: Any) -> bool:
    """Whether :func:`split` knows the measured subspace of ``physics`` (deepinv's single-coil
    ``MRI`` or ``MultiCoilMRI``).

    :Examples:

        >>> import deepinv as dinv
        >>> splits(dinv.physics.MRI(img_size=(8, 8))), splits(dinv.physics.Denoising())
        (True, False)
    """
    return isinstance(physics, (dinv.physics.MRI, dinv.physics.MultiCoilMRI))


def _check_binary_mask(physics: Any) -> None:
    mask = getattr(physics, "mask", None)
    if not isinstance(mask, Tensor):
        raise TypeError(f"physics.mask: expected the MRI sampling mask (a tensor), got {describe(mask)}")
    if not torch.all((mask == 0) | (mask == 1)):
        raise ValueError(
            "physics.mask: expected a binary (0/1) sampling mask, so that A^H A is the projection "
            f"onto the measured k-space, got values in [{float(mask.min()):.4g}, {float(mask.max()):.4g}]"
        )


def _least_squares(r: Tensor, physics: Any, tol: float, max_iter: int) -> tuple[Tensor, Tensor]:
    """``A^+ A r`` by deepinv's CG (float64, unit-norm rows) and whether each row converged.

    ``physics.A_dagger`` stores the solver settings it is given on the physics; they are put back.
    """
    r = r.detach()  # a measurement: no gradients through the solver
    scale = r.flatten(1).norm(dim=1).reshape(-1, 1, 1, 1)
    u = (r / scale.clamp_min(torch.finfo(r.dtype).tiny)).double()
    saved = (physics.solver, physics.max_iter, physics.tol)
    try:
        # eps: CG's guard added to p^H A p; deepinv's 1e-8 default would stall a unit-norm solve
        p = physics.A_dagger(physics.A(u), solver="CG", max_iter=max_iter, tol=tol, eps=1e-300)
    finally:
        physics.solver, physics.max_iter, physics.tol = saved

    def normal(v: Tensor) -> Tensor:
        return physics.A_adjoint(physics.A(v)).flatten(1).norm(dim=1)

    b = normal(u)
    residual = normal(u - p) / b.clamp_min(1e-300)
    converged = (residual <= 2 * tol) | (b == 0)  # b = 0: r is in the null space, p = 0 exactly
    return (p * scale.double()).to(r.dtype), converged.to(r.device)


def measured_part(r: Tensor, physics: Any, tol: float = CG_TOL,
                  max_iter: int = CG_MAX_ITER) -> tuple[Tensor, Tensor]:
    """``P_meas r``, the part of ``r`` the measurements determine, and per-row convergence.

    :param torch.Tensor r: image change, ``(B, 2, H, W)`` or magnitude ``(B, 1, H, W)``.
    :param physics: :class:`deepinv.physics.MRI` (binary mask; exact) or
        :class:`deepinv.physics.MultiCoilMRI` (least squares, see the module docstring).
    :param float tol: multi-coil: relative normal-equation residual to reach.
    :param int max_iter: multi-coil: conjugate-gradient iterations at most.
    :return: ``(P_meas r as (B, 2, H, W), converged as (B,) bool)``.

    :Examples:

        >>> import torch, deepinv as dinv
        >>> physics = dinv.physics.MRI(img_size=(8, 8))  # fully sampled: everything is measured
        >>> r = torch.rand(1, 2, 8, 8, generator=torch.Generator().manual_seed(0))
        >>> p, ok = measured_part(r, physics)
        >>> torch.allclose(p, r, atol=1e-6), ok.tolist()
        (True, [True])
    """
    r = as_complex(check_image("r", r))
    check_physics("physics", physics)
    tol = check_nonneg_float("tol", tol, strictly_positive=True)
    max_iter = check_positive_int("max_iter", max_iter)
    if isinstance(physics, dinv.physics.MultiCoilMRI):
        return _least_squares(r, physics, tol, max_iter)
    if isinstance(physics, dinv.physics.MRI):
        _check_binary_mask(physics)
        p = physics.A_adjoint(physics.A(r))
        return p, torch.ones(r.shape[0], dtype=torch.bool, device=r.device)
    raise TypeError(
        "physics: expected deepinv.physics.MRI or MultiCoilMRI (the acquisitions whose measured "
        f"subspace is known), got {describe(physics)}"
    )


def split(r: Tensor, physics: Any, tol: float = CG_TOL, max_iter: int = CG_MAX_ITER) -> Split:
    """Split the change ``r`` into its measured and null-space parts (:class:`Split`).

    Arguments as :func:`measured_part`; the null part is ``r - P_meas r``.
    """
    measured, converged = measured_part(r, physics, tol, max_iter)
    return Split(measured, as_complex(r) - measured, converged)


def split_columns(x_adv: Tensor, x_clean: Tensor, physics: Any, x_true: Tensor | None = None,
                  tol: float = CG_TOL, max_iter: int = CG_MAX_ITER) -> dict[str, Tensor]:
    """The records' split columns, ``(B,)`` tensors (NaN where a multi-coil solve did not converge).

    For the change ``r = x_adv - x_clean``: ``delta_measured_norm``, ``delta_null_norm`` and
    ``delta_null_fraction`` (``||P_null r||^2 / ||r||^2``, NaN when ``r = 0``); with ``x_true``,
    the same for the error ``e = x_adv - x_true`` (``error_*``).

    :Examples:

        >>> import torch, deepinv as dinv
        >>> mask = torch.zeros(16, 16); mask[:, ::2] = 1
        >>> physics = dinv.physics.MRI(mask=mask, img_size=(16, 16))
        >>> x = torch.rand(1, 2, 16, 16, generator=torch.Generator().manual_seed(0))
        >>> c = split_columns(physics.A_adjoint(physics.A(x)) + x, x, physics)  # r = A^H A x
        >>> round(float(c["delta_null_fraction"]), 6)
        0.0
    """
    x_adv, x_clean = as_complex(check_image("x_adv", x_adv)), as_complex(check_image("x_clean", x_clean))
    changes = {"delta": x_adv - x_clean}
    if x_true is not None:
        changes["error"] = x_adv - as_complex(check_image("x_true", x_true))
    out = {}
    for name, r in changes.items():
        s = split(r, physics, tol, max_iter)
        nan = torch.where(s.converged, 0.0, float("nan")).to(r.dtype)
        out[f"{name}_measured_norm"] = s.measured_norm + nan
        out[f"{name}_null_norm"] = s.null_norm + nan
        out[f"{name}_null_fraction"] = s.null_fraction + nan
    return out
