"""Birdcage coil sensitivity maps (numpy-free torch port of the classic birdcage model).

Coils sit on a circle of radius ``r`` (in units of the half field of view) around the image;
coil ``c`` has sensitivity ``exp(i (phi_c - 2 pi c / N)) / dist_c`` and the maps are divided
by their root-sum-of-squares, so ``sqrt(sum_c |S_c|^2) == 1`` at every pixel.

Example::

    >>> from kspace_attacks.data.coils import birdcage_maps
    >>> s = birdcage_maps(4, 32)
    >>> s.shape, s.dtype, float((s.abs() ** 2).sum(0).sqrt().sub(1).abs().max()) < 1e-5
    (torch.Size([4, 32, 32]), torch.complex64, True)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._checks import check_nonneg_float, check_positive_int

__all__ = ["birdcage_maps"]


def birdcage_maps(
    n_coils: int,
    size: int | tuple[int, int],
    radius: float = 1.5,
    device: str | torch.device = "cpu",
) -> Tensor:
    """Complex (N, H, W) birdcage maps normalized to unit root-sum-of-squares.

    :param int n_coils: number of coils N.
    :param int, tuple size: image size, ``S`` or ``(H, W)``.
    :param float radius: coil ring radius relative to half the field of view (> 1: outside).
    """
    check_positive_int("n_coils", n_coils)
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    check_positive_int("size", h)
    check_positive_int("size", w)
    check_nonneg_float("radius", radius, strictly_positive=True)
    yy = (torch.arange(h, dtype=torch.float64) - h / 2) / (h / 2)
    xx = (torch.arange(w, dtype=torch.float64) - w / 2) / (w / 2)
    yy, xx = torch.meshgrid(yy, xx, indexing="ij")
    maps = []
    for c in range(n_coils):
        a = 2 * math.pi * c / n_coils
        dx, dy = xx - radius * math.cos(a), yy - radius * math.sin(a)
        dist = torch.sqrt(dx**2 + dy**2).clamp_min(1e-6)
        phi = torch.atan2(dx, -dy) - a
        maps.append(torch.polar(1.0 / dist, phi))
    s = torch.stack(maps)
    s = s / (s.abs() ** 2).sum(0, keepdim=True).sqrt()
    return s.to(device=device, dtype=torch.complex64)
