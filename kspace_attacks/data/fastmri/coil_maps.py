"""Coil-sensitivity maps estimated from the fully sampled k-space centre (auto-calibration).

Used when a multi-coil file carries no ``coil_maps`` dataset; also measures the width of a
mask's fully sampled centre (the ACS region), which fastMRI records as ``num_low_frequency``.
"""

from __future__ import annotations

import torch
from deepinv.physics import MRI
from torch import Tensor

from kspace_attacks._checks import check_kspace, check_positive_int
from kspace_attacks.data.fastmri.layout import _rss

__all__ = ["estimate_coil_maps"]

_DEFAULT_ACS = 24


def _hann_block(n: int, width: int) -> Tensor:
    """Length-n window: a Hann taper of ``width`` samples centred on n // 2 (the DC index)."""
    w = torch.zeros(n)
    start = n // 2 - width // 2
    w[start : start + width] = torch.hann_window(width + 2, periodic=False)[1:-1]
    return w


def estimate_coil_maps(y: Tensor, acs: int = _DEFAULT_ACS) -> Tensor:
    """Simple low-resolution coil-sensitivity estimate from the k-space centre.

    Each coil's k-space is multiplied by a separable Hann window covering the central ``acs``
    columns (and a proportional number of rows), inverse-FFT'd to a smooth low-resolution coil
    image ``c_n``, and divided by the RSS of those images: ``S_n = c_n / sqrt(sum_n |c_n|^2)``.
    The maps therefore satisfy ``sum_n |S_n|^2 = 1`` wherever the low-resolution RSS is
    non-zero. This is an *estimate* (no ESPIRiT eigen-analysis, no background masking); pass
    better maps (e.g. ``deepinv.physics.MultiCoilMRI.estimate_coil_maps``, needs sigpy) when
    accuracy matters.

    :param torch.Tensor y: multi-coil k-space ``(B, 2, N, H, W)``; its centre must be sampled.
    :param int acs: number of central phase-encode columns used (clipped to W).
    :return: complex64 maps ``(B, N, H, W)``, as expected by ``MultiCoilMRI(coil_maps=...)``.

    >>> maps = estimate_coil_maps(torch.randn(1, 2, 4, 16, 12), acs=6)
    >>> bool(torch.allclose(maps.abs().pow(2).sum(1), torch.ones(1, 16, 12), atol=1e-5))
    True
    """
    y = check_kspace("y", y)
    if y.dim() != 5:
        raise ValueError(
            f"y: expected multi-coil k-space (B, 2, N, H, W), got shape {tuple(y.shape)}"
        )
    acs = check_positive_int("acs", acs)
    h, w = y.shape[-2:]
    acs_w = min(acs, w)
    acs_h = min(h, max(1, round(acs_w * h / w)))  # same fraction of k-space in both directions
    window = (_hann_block(h, acs_h)[:, None] * _hann_block(w, acs_w)[None, :]).to(y.device)
    low = MRI.ifft(MRI.to_torch_complex(y) * window)  # (B, N, H, W) smooth coil images
    rss = _rss(low, coil_dim=1).unsqueeze(1)
    return (low / rss.clamp_min(torch.finfo(rss.dtype).tiny)).to(torch.complex64)


def _acs_from_mask(mask_hw: Tensor) -> int:
    """Width of the contiguous run of fully sampled columns around the centre column."""
    cols = (mask_hw.min(dim=0).values > 0).tolist()
    c = len(cols) // 2
    if not cols[c]:
        return 0
    left, right = c, c
    while left > 0 and cols[left - 1]:
        left -= 1
    while right < len(cols) - 1 and cols[right + 1]:
        right += 1
    return right - left + 1
