"""Per-sample image-quality metrics on magnitude images, with the normalisation named.

Inputs are ``(B, 2, H, W)`` complex images (their modulus is used) or ``(B, 1, H, W)``
magnitude images. Two normalisations:

- ``"minmax"`` (the study): each image is min-max normalised to [0, 1] on its own, data range 1.
- ``"fastmri"``: images are used as they are and the data range is the maximum of the
  reference, per sample (fastMRI's evaluation convention).

PSNR and NMSE are computed with :mod:`deepinv.loss.metric`. SSIM uses torchmetrics' Gaussian
window (11x11, sigma 1.5) and averages the SSIM map over the valid region only (borders of 5
pixels cropped), which matches scikit-image's ``structural_similarity(gaussian_weights=True,
sigma=1.5, use_sample_covariance=False)`` -- the convention of fastMRI and most MRI papers.
deepinv's SSIM also averages the reflect-padded borders and reads higher or lower by up to
~0.1 on small images, so it is not used here.
"""

from __future__ import annotations

from functools import lru_cache

import deepinv as dinv
import torch
from torchmetrics.functional.image import structural_similarity_index_measure
from torch import Tensor

from ._checks import check_choice, check_image
from .losses import magnitude

__all__ = ["psnr", "ssim", "nmse", "NORMALIZATIONS", "metric_table", "deltas"]

NORMALIZATIONS = ("minmax", "fastmri")
_CROP = 5  # (11 - 1) // 2: SSIM map pixels whose window leaves the image are not averaged


def _minmax(x: Tensor) -> Tensor:
    lo = x.flatten(1).amin(dim=1).reshape(-1, 1, 1, 1)
    hi = x.flatten(1).amax(dim=1).reshape(-1, 1, 1, 1)
    return (x - lo) / (hi - lo).clamp_min(1e-12)


def _prepare(x_hat: Tensor, x_ref: Tensor, normalization: str) -> tuple[Tensor, Tensor]:
    check_choice("normalization", normalization, NORMALIZATIONS)
    x_hat = magnitude(check_image("x_hat", x_hat)).detach()
    x_ref = magnitude(check_image("x_ref", x_ref)).detach()
    if x_hat.shape != x_ref.shape:
        raise ValueError(
            f"x_hat: expected the shape of x_ref {tuple(x_ref.shape)} (after taking "
            f"magnitudes), got {tuple(x_hat.shape)}"
        )
    if normalization == "minmax":
        return _minmax(x_hat), _minmax(x_ref)
    return x_hat, x_ref


@lru_cache(maxsize=None)
def _metric(name: str, normalization: str) -> dinv.loss.metric.Metric:
    # fastMRI convention: data range = max of the reference, per sample (max_pixel=None).
    pixel = {"max_pixel": 1.0} if normalization == "minmax" else {"max_pixel": None}
    if name == "psnr":
        return dinv.loss.metric.PSNR(**pixel)
    return dinv.loss.metric.NMSE()


def psnr(x_hat: Tensor, x_ref: Tensor, normalization: str = "minmax") -> Tensor:
    """Peak signal-to-noise ratio in dB per sample, shape ``(B,)``.

    :param torch.Tensor x_hat: reconstruction, ``(B, 1|2, H, W)``.
    :param torch.Tensor x_ref: reference, same shape.
    :param str normalization: ``"minmax"`` or ``"fastmri"`` (see the module docstring).

    :Examples:

        >>> import torch
        >>> x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
        >>> psnr(x, x).shape
        torch.Size([2])
    """
    a, b = _prepare(x_hat, x_ref, normalization)
    return _metric("psnr", normalization)(a, b).reshape(-1)


def ssim(x_hat: Tensor, x_ref: Tensor, normalization: str = "minmax") -> Tensor:
    """Structural similarity per sample, shape ``(B,)`` (Gaussian window 11, sigma 1.5).

    :Examples:

        >>> import torch
        >>> x = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
        >>> round(ssim(x, x).item(), 4)
        1.0
    """
    a, b = _prepare(x_hat, x_ref, normalization)
    if normalization == "minmax":
        data_range = torch.ones(a.shape[0], dtype=a.dtype, device=a.device)
    else:
        data_range = b.flatten(1).amax(dim=1)
    out = []
    for i in range(a.shape[0]):  # torchmetrics takes one data range per call
        _, smap = structural_similarity_index_measure(
            a[i : i + 1], b[i : i + 1], data_range=float(data_range[i]), gaussian_kernel=True,
            sigma=1.5, kernel_size=11, reduction="none", return_full_image=True,
        )
        out.append(smap[..., _CROP:-_CROP, _CROP:-_CROP].mean())
    return torch.stack(out)


def nmse(x_hat: Tensor, x_ref: Tensor, normalization: str = "minmax") -> Tensor:
    r"""Normalised MSE :math:`\|\hat x - x\|^2 / \|x\|^2` per sample, shape ``(B,)``.

    :Examples:

        >>> import torch
        >>> x = torch.ones(1, 1, 4, 4)
        >>> nmse(2 * x, x, normalization="fastmri")
        tensor([1.])
    """
    a, b = _prepare(x_hat, x_ref, normalization)
    return _metric("nmse", normalization)(a, b).reshape(-1)


_FUNCS = {"psnr": psnr, "ssim": ssim, "nmse": nmse}


def metric_table(x_hat: Tensor, x_ref: Tensor, normalization: str = "minmax") -> dict[str, Tensor]:
    """All three metrics as a dict of ``(B,)`` tensors."""
    return {name: f(x_hat, x_ref, normalization) for name, f in _FUNCS.items()}


def deltas(
    x_clean: Tensor,
    x_adv: Tensor,
    x_true: Tensor | None = None,
    normalization: str = "minmax",
) -> dict[str, Tensor]:
    """Change caused by a perturbation, per sample.

    Returns, as ``(B,)`` tensors:

    - ``ssim_vs_clean``, ``psnr_vs_clean``, ``nmse_vs_clean``: the perturbed reconstruction
      compared with the clean reconstruction (no ground truth needed; ``1 - ssim_vs_clean`` is
      the study's Delta SSIM when the clean reconstruction is the reference);
    - with ``x_true``: ``delta_ssim`` = SSIM(x_adv, x_true) - SSIM(x_clean, x_true) and
      ``delta_psnr``, ``delta_nmse`` likewise (negative SSIM/PSNR change = degradation).

    :Examples:

        >>> import torch
        >>> x = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
        >>> d = deltas(x, x + 0.1 * torch.rand_like(x), x_true=x)
        >>> sorted(d)
        ['delta_nmse', 'delta_psnr', 'delta_ssim', 'nmse_vs_clean', 'psnr_vs_clean', 'ssim_vs_clean']
    """
    out = {f"{k}_vs_clean": v for k, v in metric_table(x_adv, x_clean, normalization).items()}
    if x_true is not None:
        adv = metric_table(x_adv, x_true, normalization)
        clean = metric_table(x_clean, x_true, normalization)
        out.update({f"delta_{k}": adv[k] - clean[k] for k in adv})
    return out

