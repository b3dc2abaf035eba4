"""Rigid in-plane motion between shots, budgeted in mm and degrees per shot."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_choice, check_image, check_nonneg_float, check_positive_int, describe
from .base import ParametricThreat
from .lines import ORDERINGS, frequencies, rotate_phase, shot_index

__all__ = ["RigidMotion"]


class RigidMotion(ParametricThreat):
    r"""The object moves rigidly between shots: per-shot translation (and rotation).

    The phase-encoding lines are grouped into ``shots`` (``ordering``: interleaved or
    sequential); shot ``s`` sees the object shifted by ``(dx_s, dy_s)`` mm and rotated by
    ``r_s`` degrees. ``theta`` is ``(B, shots, 3)``: ``[dx, dy, r]`` per shot, with
    ``|dx|, |dy| <= eps`` mm and ``|r| <= eps * degrees_per_mm``.

    - **Translation** is exact (Fourier shift theorem): the shot's lines are multiplied by
      :math:`e^{-2\pi i (k_x dx + k_y dy)}` (pixel size ``pixel_mm``). An integer-pixel shift of
      a one-shot acquisition is exactly an image shift. Multi-coil: the coil maps move with
      the object (the usual approximation for in-plane motion).
    - **Rotation** needs the image: with a ``reference`` image ``(B, 2, H, W)`` (e.g. the ground
      truth), each shot's lines gain ``A(R_s x_ref) - A(x_ref)`` (bilinear rotation, then the
      shot's shift); without one the rotation budget is zero and the threat is translations
      only.

    :param float|torch.Tensor eps: translation budget in mm per shot and axis.
    :param int shots: number of shots the lines are grouped into.
    :param str ordering: ``"interleaved"`` or ``"sequential"``.
    :param float pixel_mm: pixel size in mm (the embedded 64 x 64 preset: 233 / 64 mm).
    :param float degrees_per_mm: rotation budget per mm of translation budget.
    :param torch.Tensor|None reference: image the rotation is computed from.

    |sep|

    :Examples:

        >>> import torch, deepinv as dinv
        >>> import kspace_attacks as ka
        >>> physics = dinv.physics.MRI(img_size=(8, 8))
        >>> x = torch.rand(1, 2, 8, 8, generator=torch.Generator().manual_seed(0))
        >>> threat = ka.RigidMotion(eps=2.0, shots=1)
        >>> theta = torch.tensor([[[2.0, 0.0, 0.0]]])  # 2 mm = 2 pixels along x
        >>> moved = physics.A_adjoint(threat.apply(physics(x), theta, physics))
        >>> torch.allclose(moved, torch.roll(x, 2, dims=-1), atol=1e-5)
        True
    """

    unit = "mm"

    def __init__(
        self,
        eps: float | Tensor = 1.0,
        shots: int = 8,
        ordering: str = "interleaved",
        pixel_mm: float = 1.0,
        degrees_per_mm: float = 1.0,
        reference: Tensor | None = None,
    ) -> None:
        super().__init__(eps)
        self.shots = check_positive_int("shots", shots)
        self.ordering = check_choice("ordering", ordering, ORDERINGS)
        self.pixel_mm = check_nonneg_float("pixel_mm", pixel_mm, strictly_positive=True)
        self.degrees_per_mm = check_nonneg_float("degrees_per_mm", degrees_per_mm)
        self.reference = None if reference is None else check_image("reference", reference).detach()

    def settings(self) -> dict[str, Any]:
        return {"shots": self.shots, "ordering": self.ordering, "pixel_mm": self.pixel_mm,
                "degrees_per_mm": self.degrees_per_mm, "reference": self.reference}

    def with_reference(self, reference: Tensor | None) -> "RigidMotion":
        """A copy that rotates through ``reference`` (``(B, 2, H, W)``), or translates only."""
        return self.replace(reference=reference)

    def parameter_shape(self, y: Tensor) -> tuple[int, ...]:
        return (y.shape[0], self.shots, 3)

    def weights(self, like: Tensor) -> Tensor:
        rotation = self.degrees_per_mm if self.reference is not None else 0.0
        return torch.tensor([1.0, 1.0, rotation], dtype=like.dtype, device=like.device)

    def apply(self, y: Tensor, delta: Tensor, physics: Any) -> Tensor:
        theta = self._check_theta(delta, y)
        h, w = y.shape[-2:]
        shot = shot_index(w, self.shots, self.ordering).to(y.device)
        per_line = theta[:, shot]  # (B, W, 3): each line's shot's motion
        dx, dy = per_line[..., 0] / self.pixel_mm, per_line[..., 1] / self.pixel_mm  # pixels
        fy, fx = frequencies(h, y), frequencies(w, y)
        # image shifted by +d  <=>  k-space times exp(-2 pi i k d)
        phase = -2 * math.pi * (fx[None, None, :] * dx[:, None, :] + fy[None, :, None] * dy[:, None, :])
        moved = y
        if self.reference is not None and self.degrees_per_mm > 0:
            moved = y + self._rotation_change(theta[..., 2], shot, y, physics)
        return rotate_phase(moved, phase)

    def _rotation_change(self, degrees: Tensor, shot: Tensor, y: Tensor, physics: Any) -> Tensor:
        """Per shot ``A(R_s x_ref) - A(x_ref)`` on that shot's lines (zero where r_s = 0)."""
        ref = self.reference.to(device=y.device, dtype=y.dtype)
        if ref.shape[0] != y.shape[0] or ref.shape[-2:] != y.shape[-2:]:
            raise ValueError(f"reference: expected an image of shape ({y.shape[0]}, 2, "
                             f"{y.shape[-2]}, {y.shape[-1]}) matching y, got {describe(ref)}")
        clean = physics.A(ref)
        change = torch.zeros_like(y)
        for s in range(self.shots):
            lines = (shot == s).to(y.dtype)  # (W,)
            rotated = physics.A(_rotate(ref, degrees[:, s])) - clean
            change = change + rotated * lines
        return change


def _rotate(x: Tensor, degrees: Tensor) -> Tensor:
    """Rotate images ``(B, C, H, W)`` by ``degrees`` ``(B,)`` about the centre (bilinear,
    differentiable in the angle)."""
    a = degrees * (math.pi / 180)
    cos, sin, zero = torch.cos(a), torch.sin(a), torch.zeros_like(a)
    matrix = torch.stack([torch.stack([cos, -sin, zero], -1), torch.stack([sin, cos, zero], -1)], 1)
    grid = F.affine_grid(matrix, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
