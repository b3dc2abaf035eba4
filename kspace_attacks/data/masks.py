"""Fixed Cartesian sampling masks (H, W) with 0/1 float entries; columns are phase-encoding lines.

The k-space centre is at index ``W // 2`` (deepinv's centred FFT).

Example::

    >>> from kspace_attacks.data.masks import paper_mask
    >>> m = paper_mask()
    >>> m.shape, int(m[0].sum()), bool(m[:, 124:132].all())
    (torch.Size([256, 256]), 32, True)
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .._checks import check_choice, check_nonneg_float, check_positive_int

__all__ = ["MASK_KINDS", "center_block", "deepinv_mask", "paper_mask"]

MASK_KINDS = ("equispaced", "random", "gaussian")


def center_block(size: int, center_lines: int) -> np.ndarray:
    """Indices of the ``center_lines`` contiguous columns around the k-space centre ``size//2``."""
    start = size // 2 - center_lines // 2
    return np.arange(start, start + center_lines)


def paper_mask(
    size: int = 256,
    acceleration: int = 8,
    center_lines: int = 8,
    device: str | torch.device = "cpu",
) -> Tensor:
    """The study's 1D Cartesian mask: a contiguous centre block plus equispaced outer columns.

    Exactly ``size // acceleration`` columns are kept: ``center_lines`` contiguous ones around
    the centre and the rest spread evenly over the remaining columns (evenly in the list of
    non-centre columns, so the pattern is symmetric up to one column and the count is exact).
    With the defaults: 32 of 256 columns, 8 in the centre (124..131).

    :param int size: image size (square, H = W = size).
    :param int acceleration: keep ``size // acceleration`` columns.
    :param int center_lines: number of contiguous centre columns.
    :return: (size, size) float32 tensor of 0/1.
    """
    check_positive_int("size", size, minimum=2)
    check_positive_int("acceleration", acceleration)
    check_positive_int("center_lines", center_lines)
    total = size // acceleration
    if center_lines > total:
        raise ValueError(
            f"center_lines: expected at most size // acceleration = {total}, got {center_lines}"
        )
    centre = center_block(size, center_lines)
    others = np.setdiff1d(np.arange(size), centre)
    n_out = total - center_lines
    pick = np.floor((np.arange(n_out) + 0.5) * len(others) / max(n_out, 1)).astype(int)
    cols = np.concatenate([centre, others[pick]]) if n_out else centre
    mask = torch.zeros(size, size, dtype=torch.float32, device=device)
    mask[:, torch.as_tensor(cols, device=device)] = 1.0
    return mask


def deepinv_mask(
    kind: str = "gaussian",
    size: int = 64,
    acceleration: int = 4,
    center_fraction: float = 0.08,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> Tensor:
    """A fixed (H, W) mask drawn once from one of deepinv's Cartesian mask generators.

    :param str kind: ``"equispaced"``, ``"random"`` or ``"gaussian"``
        (:class:`deepinv.physics.generator.EquispacedMaskGenerator`, ...).
    :param int seed: seed of the generator; same seed, same mask.

    Example::

        >>> from kspace_attacks.data.masks import deepinv_mask
        >>> m = deepinv_mask("random", 64, 4, 0.08, seed=0)
        >>> m.shape, int(m[0].sum())
        (torch.Size([64, 64]), 16)
    """
    from deepinv.physics.generator import (
        EquispacedMaskGenerator,
        GaussianMaskGenerator,
        RandomMaskGenerator,
    )

    check_choice("kind", kind, MASK_KINDS)
    check_positive_int("size", size, minimum=2)
    check_positive_int("acceleration", acceleration)
    check_nonneg_float("center_fraction", center_fraction)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed: expected an int, got {type(seed).__name__} {seed!r}")
    cls = {
        "equispaced": EquispacedMaskGenerator,
        "random": RandomMaskGenerator,
        "gaussian": GaussianMaskGenerator,
    }[kind]
    gen = cls(
        (size, size),
        acceleration=acceleration,
        center_fraction=center_fraction,
        rng=torch.Generator().manual_seed(seed),
    )
    mask = gen.step(batch_size=1, seed=seed)["mask"][0, 0]
    return mask.to(device=device, dtype=torch.float32)
