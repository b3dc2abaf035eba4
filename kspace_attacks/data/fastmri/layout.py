"""Array layout conversions between fastMRI's storage and deepinv's tensors.

fastMRI stores complex k-space ``(S, [N,] H, W)`` and masks as ``(W,)`` columns; deepinv uses
real tensors with real/imag in dim 1 (``(B, 2, [N,] H, W)``) and masks ``(B, C, H, W)``.
Every conversion between the two, and the image-space helpers that must use fastMRI's exact
conventions (centre-crop offsets, coil RSS), lives here.

    >>> k = np.ones((3, 4, 5), dtype=np.complex64)
    >>> bool(np.array_equal(deepinv_to_fastmri(fastmri_to_deepinv(k)), k))
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from deepinv.physics import MRI
from torch import Tensor

from kspace_attacks._checks import check_kspace, check_tensor, describe

__all__ = ["deepinv_to_fastmri", "fastmri_to_deepinv"]


def fastmri_to_deepinv(kspace: np.ndarray | Tensor) -> Tensor:
    """Complex fastMRI k-space ``(S, [N,] H, W)`` -> deepinv layout ``(S, 2, [N,] H, W)`` float32.

    >>> k = np.ones((3, 4, 5), dtype=np.complex64)
    >>> tuple(fastmri_to_deepinv(k).shape)
    (3, 2, 4, 5)
    """
    k = torch.as_tensor(kspace)
    if not k.is_complex():
        raise TypeError(f"kspace: expected a complex array (fastMRI layout), got {describe(k)}")
    return MRI.from_torch_complex(k.to(torch.complex64)).contiguous()


def deepinv_to_fastmri(y: Tensor) -> np.ndarray:
    """deepinv k-space ``(S, 2, [N,] H, W)`` -> complex64 numpy array ``(S, [N,] H, W)``.

    >>> deepinv_to_fastmri(torch.zeros(3, 2, 4, 5)).dtype
    dtype('complex64')
    """
    y = check_kspace("y", y)
    return MRI.to_torch_complex(y.detach().cpu().float()).numpy()


def _center_crop(x: Tensor, size: tuple[int, int]) -> Tensor:
    # Same offsets as fastmri.data.transforms.center_crop, so crops line up with the
    # stored reconstruction_esc / reconstruction_rss targets.
    h, w = size
    top = (x.shape[-2] - h) // 2
    left = (x.shape[-1] - w) // 2
    return x[..., top : top + h, left : left + w]


def _rss(img: Tensor, coil_dim: int = 1) -> Tensor:
    """Root-sum-of-squares coil combination, fastMRI's multi-coil target."""
    return img.abs().pow(2).sum(coil_dim).sqrt()


def _magnitude_volume(x: Any, n_slices: int, name: str) -> np.ndarray:
    """(S, h, w) / (S, 1, h, w) magnitude or (S, 2, h, w) complex -> float32 (S, h, w)."""
    x = check_tensor(name, x).detach().cpu().float()
    if x.dim() == 3:
        x = x[:, None]
    if x.dim() != 4 or x.shape[1] not in (1, 2) or x.shape[0] != n_slices:
        raise ValueError(
            f"{name}: expected ({n_slices}, h, w) or ({n_slices}, 1|2, h, w) with one image per "
            f"k-space slice, got shape {tuple(x.shape)}"
        )
    return (x.pow(2).sum(1).sqrt() if x.shape[1] == 2 else x[:, 0]).numpy()


def _user_mask_hw(mask: Any, h: int, w: int) -> Tensor:
    """A user mask as float ``(H, W)``: accepts (W,), (H, W) or (1, C, H, W) / (1, H, W)."""
    m = torch.as_tensor(mask).detach().cpu()
    if m.is_complex():
        raise TypeError(f"mask: expected a real 0/1 mask, got {describe(m)}")
    while m.dim() > 2 and m.shape[0] == 1:
        m = m[0]
    if m.dim() == 3 and m.shape[0] == 2:  # deepinv's (2, H, W) real/imag copy
        m = m[0]
    if m.shape == (w,):
        m = m[None, :].expand(h, w)
    if tuple(m.shape) != (h, w):
        raise ValueError(
            f"mask: expected shape (W,)=({w},) or (H, W)=({h}, {w}) (after any crop), "
            f"got {tuple(torch.as_tensor(mask).shape)}"
        )
    m = m.float()
    if not ((m == 0) | (m == 1)).all():
        raise ValueError("mask: expected only 0/1 values")
    return m


def _mask_as_shw(mask: Any, n_slices: int, h: int, w: int, name: str) -> Tensor:
    """A mask (tensor, array or MRI physics) as a real ``(1 or S, H, W)`` tensor."""
    if not isinstance(mask, (Tensor, np.ndarray)) and hasattr(mask, "mask"):
        mask = mask.mask  # a deepinv MRI-type physics
    try:
        m = torch.as_tensor(mask).detach().cpu()
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(
            f"{name}: expected a 0/1 mask tensor or an MRI physics, got {describe(mask)}"
        ) from err
    if m.is_complex():
        raise TypeError(f"{name}: expected a real 0/1 mask, got {describe(m)}")
    shape = tuple(m.shape)
    if shape == (w,):
        return m[None, None, :].expand(1, h, w)
    if shape == (h, w):
        return m[None]
    if (
        m.dim() == 4
        and m.shape[0] in (1, n_slices)
        and m.shape[1] in (1, 2)
        and m.shape[2:] == (h, w)
    ):
        if m.shape[1] == 2 and not torch.equal(m[:, 0], m[:, 1]):
            raise ValueError(f"{name}: the real and imaginary channels of the mask differ")
        return m[:, 0]
    raise ValueError(
        f"{name}: expected a mask of shape (W,)=({w},), (H, W)=({h}, {w}) or deepinv's "
        f"(B, C, H, W) with B in (1, {n_slices}) and C in (1, 2), matching the k-space; got {shape}"
    )


def _mask_to_stored(mask: Any, n_slices: int, h: int, w: int, name: str) -> np.ndarray:
    """Mask -> the most compact layout fastMRI tools can read: (W,) if it is a set of full
    columns shared by all slices, else (H, W), else (S, H, W); bool."""
    m = _mask_as_shw(mask, n_slices, h, w, name)
    if not ((m == 0) | (m == 1)).all():
        raise ValueError(f"{name}: expected only 0/1 values")
    m = m.bool().numpy()
    if m.shape[0] > 1 and (m == m[:1]).all():
        m = m[:1]
    if m.shape[0] == 1:
        m = m[0]
        if (m == m[:1]).all():  # every row identical: Cartesian columns
            return m[0]
    return m
