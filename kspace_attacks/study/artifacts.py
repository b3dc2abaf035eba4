"""Artifact analysis: is a reconstruction's change noise-like or structured?

The study's second claim is that at larger budgets diffusion reconstructions show
Gaussian-noise-like artifacts, unlike supervised models. These statistics quantify that for
the residual ``r = |x_adv| - |x_clean|`` (magnitudes):

- :func:`spectral_flatness`: geometric over arithmetic mean of the power spectrum of ``r``
  (about exp(-0.577) = 0.56 for white Gaussian noise, whose periodogram is exponentially
  distributed; near 0 for smooth structure).
- :func:`excess_kurtosis`: 0 for Gaussian values; large for sparse, heavy-tailed changes.
- :func:`hallucination_map`: where the residual, smoothed with a Gaussian (which averages white
  noise away), is larger than smoothed white noise of the same variance could plausibly be
  (``threshold`` standard deviations). Its area fraction is :func:`hallucination_fraction`:
  about 0.3 % for white noise at 3 sigma, much more for structured changes (false tissue).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._checks import check_image, check_nonneg_float
from ..losses import magnitude

__all__ = [
    "residual",
    "spectral_flatness",
    "excess_kurtosis",
    "hallucination_map",
    "hallucination_fraction",
    "artifact_stats",
]


def residual(x_adv: Tensor, x_clean: Tensor) -> Tensor:
    """Magnitude residual ``|x_adv| - |x_clean|`` as ``(B, 1, H, W)``."""
    a = magnitude(check_image("x_adv", x_adv))
    b = magnitude(check_image("x_clean", x_clean))
    if a.shape != b.shape:
        raise ValueError(f"x_adv: expected the shape of x_clean {tuple(b.shape)}, got {tuple(a.shape)}")
    return (a - b).detach()


def spectral_flatness(r: Tensor) -> Tensor:
    """Spectral flatness of each residual image (DC excluded), shape ``(B,)``.

    :Examples:

        >>> import torch
        >>> noise = torch.randn(4, 1, 64, 64, generator=torch.Generator().manual_seed(0))
        >>> bool((spectral_flatness(noise) > 0.5).all())
        True
    """
    r = check_image("r", r)
    r = r - r.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(r.double()).abs().pow(2).flatten(1)[:, 1:]  # drop the DC term
    power = power + 1e-30
    return (power.log().mean(dim=1).exp() / power.mean(dim=1)).to(r.dtype)


def excess_kurtosis(r: Tensor) -> Tensor:
    """Excess kurtosis of each residual's values, shape ``(B,)`` (0 for Gaussian).

    :Examples:

        >>> import torch
        >>> noise = torch.randn(2, 1, 128, 128, generator=torch.Generator().manual_seed(0))
        >>> bool((excess_kurtosis(noise).abs() < 0.2).all())
        True
    """
    r = check_image("r", r).flatten(1).double()
    c = r - r.mean(dim=1, keepdim=True)
    var = c.pow(2).mean(dim=1)
    return (c.pow(4).mean(dim=1) / var.pow(2).clamp_min(1e-30) - 3.0).float()


def _gaussian_kernel(sigma: float, device, dtype) -> Tensor:
    radius = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def hallucination_map(r: Tensor, sigma: float = 1.5, threshold: float = 3.0) -> Tensor:
    """Boolean ``(B, 1, H, W)`` map of structured change in the residual ``r``.

    A pixel is flagged when the Gaussian-smoothed residual exceeds ``threshold`` times the
    standard deviation that smoothed white noise of the residual's own variance would have.
    White-noise-like residuals flag about ``P(|N(0,1)| > threshold)`` of the pixels; coherent
    structures (a false lesion, a line) flag their whole extent.

    :param torch.Tensor r: residual images ``(B, 1, H, W)``.
    :param float sigma: smoothing width in pixels.
    :param float threshold: detection level in standard deviations.
    """
    r = check_image("r", r)
    sigma = check_nonneg_float("sigma", sigma, strictly_positive=True)
    threshold = check_nonneg_float("threshold", threshold, strictly_positive=True)
    k = _gaussian_kernel(sigma, r.device, r.dtype)
    pad = k.numel() // 2
    # Separable blur with circular borders: blurred white noise then has the same variance at
    # every pixel (reflection would correlate border pixels and raise false alarms there).
    s = torch.nn.functional.pad(r, (pad, pad, pad, pad), mode="circular")
    s = torch.nn.functional.conv2d(s, k.view(1, 1, 1, -1))
    s = torch.nn.functional.conv2d(s, k.view(1, 1, -1, 1))
    noise_std = r.flatten(1).std(dim=1) * k.pow(2).sum()  # ||k2d||_2 = ||k1d||_2^2
    return s.abs() > threshold * noise_std.view(-1, 1, 1, 1).clamp_min(torch.finfo(r.dtype).tiny)


def hallucination_fraction(r: Tensor, sigma: float = 1.5, threshold: float = 3.0) -> Tensor:
    """Area fraction of :func:`hallucination_map`, shape ``(B,)``."""
    return hallucination_map(r, sigma, threshold).float().flatten(1).mean(dim=1)


def artifact_stats(x_adv: Tensor, x_clean: Tensor) -> dict[str, Tensor]:
    """All artifact statistics of the change from ``x_clean`` to ``x_adv``, as ``(B,)`` tensors.

    :Examples:

        >>> import torch
        >>> x = torch.rand(2, 2, 32, 32, generator=torch.Generator().manual_seed(0))
        >>> sorted(artifact_stats(x + 0.01 * torch.randn_like(x), x))
        ['excess_kurtosis', 'hallucination_fraction', 'residual_rms', 'spectral_flatness']
    """
    r = residual(x_adv, x_clean)
    rms = r.flatten(1).pow(2).mean(dim=1).sqrt()
    # Shape statistics of an all-zero residual (eps = 0) are undefined, not "white".
    undefined = torch.where(rms > 0, 0.0, float("nan"))
    return {
        "residual_rms": rms,
        "spectral_flatness": spectral_flatness(r) + undefined,
        "excess_kurtosis": excess_kurtosis(r) + undefined,
        "hallucination_fraction": hallucination_fraction(r),
    }
