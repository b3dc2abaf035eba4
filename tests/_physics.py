"""Small deepinv physics builders shared by the core tests (no dependence on kspace_attacks.data)."""

from __future__ import annotations

import deepinv as dinv
import torch


def column_mask(size: int = 16, every: int = 2, center: int = 2) -> torch.Tensor:
    """1D Cartesian column mask: every ``every``-th column plus ``center`` centre columns."""
    m = torch.zeros(size, size)
    m[:, ::every] = 1
    c = size // 2
    m[:, c - center // 2 : c + (center - center // 2)] = 1
    return m


def single_coil(size: int = 16, batch: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    physics = dinv.physics.MRI(mask=column_mask(size), img_size=(size, size))
    x = torch.rand(batch, 2, size, size, generator=g)
    return x, physics(x), physics


def smooth_coil_maps(coils: int, size: int, seed: int = 0) -> torch.Tensor:
    """Random smooth complex maps normalised to root-sum-of-squares 1."""
    g = torch.Generator().manual_seed(seed)
    lo = torch.randn(coils, 2, 4, 4, generator=g)
    maps = torch.nn.functional.interpolate(lo, size=(size, size), mode="bicubic", align_corners=True)
    maps = torch.complex(maps[:, 0], maps[:, 1]) + 1.5
    return maps / maps.abs().pow(2).sum(0, keepdim=True).sqrt()


def multi_coil(size: int = 16, batch: int = 2, coils: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    physics = dinv.physics.MultiCoilMRI(
        mask=column_mask(size), coil_maps=smooth_coil_maps(coils, size, seed), img_size=(size, size)
    )
    x = torch.rand(batch, 2, size, size, generator=g)
    return x, physics(x), physics


def zero_filled(y, physics):
    return physics.A_adjoint(y)
