"""Artifact statistics calibrated against an empirical null: the same target's response to noise.

Whether a change "looks like noise" depends on the reconstructor: a diffusion sampler turns
white k-space noise into correlated image noise, a U-Net into smooth blotches. So structure is
measured against the target's own response to ``K`` draws of equal-norm noise in the same threat
model, at the same budget and on the same slice (the *null*):

- :func:`fit_null` smooths each null residual ``|x_noise| - |x_clean|`` with a Gaussian, takes
  a per-pixel scale (RMS over the draws) and a detection threshold: the ``1 - level`` quantile
  of the standardised null values, each draw scored against the other draws' scale
  (leave-one-out, so a fresh noise draw exceeds it at about ``level`` of the pixels);
- :func:`structure_fraction`: the area where a residual exceeds that null (equal-norm noise
  scores about ``level``; a coherent false structure scores its area);
- :func:`spectrum_distance` and :func:`value_distance`: how far a residual's radial power
  spectrum and value distribution are from the null residuals' (0 = like noise on this target).

Example:

    >>> import torch
    >>> from kspace_attacks.study.null import fit_null, structure_fraction
    >>> g = torch.Generator().manual_seed(0)
    >>> null = fit_null(torch.randn(8, 2, 1, 32, 32, generator=g))
    >>> fresh = torch.randn(2, 1, 32, 32, generator=g)
    >>> bool((structure_fraction(fresh, null) < 0.03).all())
    True
    >>> blob = fresh.clone(); blob[:, :, 8:16, 8:16] += 3.0
    >>> bool((structure_fraction(blob, null) > 0.05).all())
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_nonneg_float, check_tensor

__all__ = ["Null", "fit_null", "structure_map", "structure_fraction", "spectrum_distance",
           "value_distance", "radial_spectrum"]

_TINY = 1e-12


def _smooth(r: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur with circular borders (stationary for stationary input)."""
    radius = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, device=r.device, dtype=r.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    lead = r.shape[:-2]
    x = r.reshape(-1, 1, *r.shape[-2:])
    x = F.pad(x, (radius, radius, radius, radius), mode="circular")
    x = F.conv2d(x, k.view(1, 1, 1, -1))
    x = F.conv2d(x, k.view(1, 1, -1, 1))
    return x.reshape(*lead, *r.shape[-2:])


@dataclass
class Null:
    """A fitted null per sample: per-pixel scale ``(B, 1, H, W)``, threshold ``(B,)``, the mean
    radial spectrum ``(B, R)`` and the pooled standardised null values ``(B, N)`` (sorted)."""

    scale: Tensor
    threshold: Tensor
    spectrum: Tensor
    values: Tensor
    sigma: float
    level: float
    draws: int


def fit_null(null_residuals: Tensor, sigma: float = 1.5, level: float = 0.01) -> Null:
    """Fit the null from ``K`` residuals of equal-norm noise, ``(K, B, 1, H, W)``.

    :param torch.Tensor null_residuals: magnitude residuals of ``K >= 2`` noise draws per sample.
    :param float sigma: Gaussian smoothing width in pixels (averages pixel noise away).
    :param float level: fraction of a fresh noise draw's pixels expected above the threshold.
    """
    r = check_tensor("null_residuals", null_residuals)
    if r.dim() != 5 or r.shape[0] < 2 or r.shape[2] != 1:
        raise ValueError(f"null_residuals: expected (K >= 2, B, 1, H, W), got shape {tuple(r.shape)}")
    sigma = check_nonneg_float("sigma", sigma, strictly_positive=True)
    level = check_nonneg_float("level", level, strictly_positive=True)
    if level >= 0.5:
        raise ValueError(f"level: expected a number in (0, 0.5), got {level}")
    k = r.shape[0]
    s = _smooth(r.double(), sigma)  # (K, B, 1, H, W)
    sq = s.pow(2)
    total = sq.sum(dim=0, keepdim=True)
    loo_scale = ((total - sq) / (k - 1)).clamp_min(_TINY).sqrt()  # leave-one-out per-pixel scale
    z = (s.abs() / loo_scale).permute(1, 0, 2, 3, 4).flatten(1)  # (B, K*H*W)
    threshold = torch.quantile(z, 1 - level, dim=1)
    scale = (total[0] / k).clamp_min(_TINY).sqrt()
    spectrum = radial_spectrum(r.flatten(0, 1)).view(k, r.shape[1], -1).mean(dim=0)
    std = r.flatten(2).std(dim=2, keepdim=True).clamp_min(_TINY)  # (K, B, 1)
    values = (r.flatten(2) / std).permute(1, 0, 2).flatten(1).sort(dim=1).values
    return Null(scale.to(r.dtype), threshold.to(r.dtype), spectrum, values.to(r.dtype), sigma, level, k)


def structure_map(r: Tensor, null: Null) -> Tensor:
    """Boolean ``(B, 1, H, W)``: where the smoothed residual exceeds the target's noise null."""
    r = check_tensor("r", r)
    if r.shape != null.scale.shape:
        raise ValueError(f"r: expected residuals of shape {tuple(null.scale.shape)}, got {tuple(r.shape)}")
    z = _smooth(r.double(), null.sigma).abs() / null.scale.double()
    return z > null.threshold.double().view(-1, 1, 1, 1)


def structure_fraction(r: Tensor, null: Null) -> Tensor:
    """Area fraction of :func:`structure_map`, ``(B,)`` (about ``null.level`` for noise)."""
    return structure_map(r, null).float().flatten(1).mean(dim=1).to(r.dtype)


def radial_spectrum(r: Tensor, bins: int = 16) -> Tensor:
    """Normalised radial power spectrum of residuals ``(B, 1, H, W)`` -> ``(B, bins)`` (sums to 1;
    DC excluded)."""
    p = torch.fft.fftshift(torch.fft.fft2(r.double()), dim=(-2, -1)).abs().pow(2)[:, 0]
    h, w = p.shape[-2:]
    yy, xx = torch.meshgrid(torch.arange(h, device=r.device) - h // 2,
                            torch.arange(w, device=r.device) - w // 2, indexing="ij")
    rad = (yy.double() ** 2 + xx.double() ** 2).sqrt() / (min(h, w) / 2)
    idx = (rad * bins).long().clamp(max=bins - 1)
    idx[h // 2, w // 2] = bins  # DC out
    out = torch.zeros(p.shape[0], bins + 1, dtype=torch.float64, device=r.device)
    out.index_add_(1, idx.flatten(), p.flatten(1))
    out = out[:, :bins]
    return out / out.sum(dim=1, keepdim=True).clamp_min(_TINY)


def spectrum_distance(r: Tensor, null: Null) -> Tensor:
    """Total-variation distance (0..1) between the residual's radial spectrum and the null's."""
    return (0.5 * (radial_spectrum(r) - null.spectrum).abs().sum(dim=1)).to(r.dtype)


def value_distance(r: Tensor, null: Null) -> Tensor:
    """Kolmogorov-Smirnov distance (0..1) between the residual's standardised values and the
    null residuals' pooled standardised values."""
    v = r.flatten(1).double()
    v = (v / v.std(dim=1, keepdim=True).clamp_min(_TINY)).sort(dim=1).values
    ref = null.values.double()
    grid = torch.cat([v, ref], dim=1).sort(dim=1).values
    cdf_v = torch.searchsorted(v.contiguous(), grid.contiguous(), right=True) / v.shape[1]
    cdf_r = torch.searchsorted(ref.contiguous(), grid.contiguous(), right=True) / ref.shape[1]
    return (cdf_v - cdf_r).abs().amax(dim=1).to(r.dtype)
