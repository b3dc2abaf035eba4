"""Coil-sensitivity mismatch: the model is handed maps that differ smoothly from the true ones."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_positive_int, describe
from .base import ParametricThreat

__all__ = ["CoilMapMismatch"]


class CoilMapMismatch(ParametricThreat):
    r"""The data come from the true coil maps; the model is told maps with a smooth relative error.

    The model receives :math:`S'_c = S_c (1 + e_c)` with :math:`e_c` a complex field bilinearly
    interpolated from a ``basis x basis`` grid of coefficients per coil: ``theta`` is
    ``(B, N, 2, basis, basis)`` (real/imaginary), each entry bounded by ``eps``. Bilinear
    interpolation never exceeds its nodes, so the relative error of every map at every pixel is
    bounded by ``eps`` in its real and imaginary part. The measured k-space is unchanged
    (:meth:`apply` is the identity); :meth:`corrupt` returns the physics with the wrong maps.
    Multi-coil (:class:`deepinv.physics.MultiCoilMRI`) only.

    :param float|torch.Tensor eps: relative error budget of the maps.
    :param int basis: coefficients per axis of the smooth error (2 = bilinear ramps).

    |sep|

    :Examples:

        >>> import torch, deepinv as dinv
        >>> import kspace_attacks as ka
        >>> from kspace_attacks.data.coils import birdcage_maps
        >>> physics = dinv.physics.MultiCoilMRI(coil_maps=birdcage_maps(4, (16, 16)), img_size=(16, 16))
        >>> y = physics(torch.rand(1, 2, 16, 16))
        >>> threat = ka.CoilMapMismatch(eps=0.1)
        >>> theta = threat.sphere(y, physics, generator=torch.Generator().manual_seed(0))
        >>> y_in, told = threat.corrupt(y, theta, physics)
        >>> bool(torch.equal(y_in, y)), bool((told.coil_maps - physics.coil_maps).abs().max() > 0)
        (True, True)
    """

    unit = "relative"

    def __init__(self, eps: float | Tensor = 0.1, basis: int = 4) -> None:
        super().__init__(eps)
        self.basis = check_positive_int("basis", basis, minimum=2)

    def settings(self) -> dict[str, Any]:
        return {"basis": self.basis}

    def parameter_shape(self, y: Tensor) -> tuple[int, ...]:
        if y.dim() != 5:
            raise ValueError(f"y: CoilMapMismatch needs multi-coil k-space (B, 2, N, H, W), got "
                             f"shape {tuple(y.shape)}")
        return (y.shape[0], y.shape[2], 2, self.basis, self.basis)

    def apply(self, y: Tensor, delta: Tensor, physics: Any) -> Tensor:
        self._check_theta(delta, y)
        return y

    def error_field(self, theta: Tensor, size: tuple[int, int]) -> Tensor:
        """The complex relative error ``e`` ``(B, N, H, W)`` of every coil map."""
        b, n = theta.shape[:2]
        field = F.interpolate(theta.reshape(b * n, 2, self.basis, self.basis), size=size,
                              mode="bilinear", align_corners=True)
        field = field.reshape(b, n, 2, *size)
        return torch.complex(field[:, :, 0], field[:, :, 1])

    def corrupt(self, y: Tensor, delta: Tensor, physics: Any) -> tuple[Tensor, Any]:
        theta = self._check_theta(delta, y)
        maps = getattr(physics, "coil_maps", None)
        if not isinstance(maps, Tensor):
            raise TypeError(f"physics: CoilMapMismatch needs a MultiCoilMRI with coil_maps, got "
                            f"{describe(physics)}")
        import deepinv as dinv

        told = maps * (1 + self.error_field(theta, tuple(y.shape[-2:])).to(maps.dtype))
        mask = getattr(physics, "mask", None)
        wrong = dinv.physics.MultiCoilMRI(mask=mask, coil_maps=told, img_size=tuple(y.shape[-2:]),
                                          device=y.device)
        return y, wrong
