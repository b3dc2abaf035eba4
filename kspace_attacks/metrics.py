"""Per-sample image-quality metrics on magnitude images, with the normalisation named.

Inputs are ``(B, 2, H, W)`` complex images (their modulus is used) or ``(B, 1, H, W)``
magnitude images. Two normalisations (:data:`NORMALIZATIONS`):

- ``"reference"`` (the records' default, :func:`~kspace_attacks.measurement.row_metrics`): images
  are used as they are and the data range is the maximum of the *reference*, per sample
  (fastMRI's evaluation convention; ``"fastmri"`` is the same, under its earlier name). A
  perturbed reconstruction is scored on the reference's scale, so changing its own extreme
  pixels changes the score only by what those pixels contribute.
- ``"minmax"`` (the original study): each image is min-max normalised to [0, 1] on its own, data
  range 1. An attack can game it: moving the one pixel the normalisation divides by rescales the
  whole image (tests/test_metrics_reference.py shows a one-pixel change that min-max scores as a
  large loss and the reference scaling as almost none). The records keep it as ``*_minmax``
  columns, for comparison with the original study.

The functions' default stays ``"minmax"`` for callers of earlier versions (cards, test helpers);
pass ``normalization="reference"`` for the scores an attack cannot game that way.
:func:`ssim` takes a ``mask`` (e.g. :func:`foreground_mask`) to average the SSIM map over the
foreground only, so that a dark, noisy background does not dominate the score.

PSNR and NMSE are computed with :mod:`deepinv.loss.metric`. SSIM uses torchmetrics' Gaussian
window (11x11, sigma 1.5) and averages the SSIM map over the valid region only (windows inside
the image), which matches scikit-image's ``structural_similarity(gaussian_weights=True,
sigma=1.5, use_sample_covariance=False)`` -- the convention of fastMRI and most MRI papers.
deepinv's SSIM also averages the reflect-padded borders and reads higher or lower by up to
~0.1 on small images, so it is not used here. :func:`differentiable_ssim` is the same SSIM
without detaching its inputs; :func:`ssim` and the attack loss
:class:`~kspace_attacks.losses.SSIMDeviation` both call it.
"""

from __future__ import annotations

from functools import lru_cache

import deepinv as dinv
import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import check_choice, check_image, check_positive_int, describe
from ._image import magnitude

__all__ = ["psnr", "ssim", "differentiable_ssim", "nmse", "NORMALIZATIONS", "metric_table",
           "deltas", "relative_deviation", "squared_deviation", "foreground_mask", "canonical_normalization"]

#: Accepted ``normalization`` values; ``"fastmri"`` is an alias of ``"reference"``.
NORMALIZATIONS = ("reference", "minmax", "fastmri")
_ALIASES = {"fastmri": "reference"}
_WINDOW, _SIGMA, _K1, _K2 = 11, 1.5, 0.01, 0.03  # torchmetrics' / scikit-image's SSIM constants


def _minmax(x: Tensor) -> Tensor:
    lo = x.flatten(1).amin(dim=1).reshape(-1, 1, 1, 1)
    hi = x.flatten(1).amax(dim=1).reshape(-1, 1, 1, 1)
    return (x - lo) / (hi - lo).clamp_min(1e-12)


def canonical_normalization(normalization: str) -> str:
    """The normalisation ``normalization`` means: ``"reference"`` or ``"minmax"``
    (``"fastmri"`` is ``"reference"``); raises on anything else.

    :Examples:

        >>> canonical_normalization("fastmri"), canonical_normalization("minmax")
        ('reference', 'minmax')
    """
    return _ALIASES.get(check_choice("normalization", normalization, NORMALIZATIONS), normalization)


def _prepare(
    x_hat: Tensor, x_ref: Tensor, normalization: str, detach: bool = True
) -> tuple[Tensor, Tensor]:
    normalization = canonical_normalization(normalization)
    x_hat = magnitude(check_image("x_hat", x_hat))
    x_ref = magnitude(check_image("x_ref", x_ref))
    if detach:
        x_hat, x_ref = x_hat.detach(), x_ref.detach()
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
    # reference (fastMRI) convention: data range = max of the reference, per sample (max_pixel=None).
    pixel = {"max_pixel": 1.0} if normalization == "minmax" else {"max_pixel": None}
    if name == "psnr":
        return dinv.loss.metric.PSNR(**pixel)
    return dinv.loss.metric.NMSE()


def psnr(x_hat: Tensor, x_ref: Tensor, normalization: str = "minmax") -> Tensor:
    """Peak signal-to-noise ratio in dB per sample, shape ``(B,)``.

    :param torch.Tensor x_hat: reconstruction, ``(B, 1|2, H, W)``.
    :param torch.Tensor x_ref: reference, same shape.
    :param str normalization: ``"reference"``, ``"minmax"`` or ``"fastmri"`` (an alias of
        ``"reference"``; see the module docstring).

    :Examples:

        >>> import torch
        >>> x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
        >>> psnr(x, x).shape
        torch.Size([2])
    """
    a, b = _prepare(x_hat, x_ref, normalization)
    return _metric("psnr", canonical_normalization(normalization))(a, b).reshape(-1)


def ssim(x_hat: Tensor, x_ref: Tensor, normalization: str = "minmax", mask: Tensor | None = None) -> Tensor:
    """Structural similarity per sample, shape ``(B,)`` (Gaussian window 11, sigma 1.5).

    :param torch.Tensor mask: optional ``(H, W)`` or ``(B|1, 1, H, W)`` 0/1 (or bool) region: the
        SSIM map is averaged over the mask's pixels of the valid region only (NaN for a sample
        whose mask leaves none), e.g. :func:`foreground_mask` of the reference.

    :Examples:

        >>> import torch
        >>> x = torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(0))
        >>> round(ssim(x, x).item(), 4)
        1.0
        >>> noisy = x + 0.2 * torch.rand(1, 1, 32, 32, generator=torch.Generator().manual_seed(1))
        >>> left = torch.zeros(32, 32, dtype=torch.bool); left[:, :16] = True
        >>> bool(ssim(noisy, x, "reference", mask=left) < 1)
        True
    """
    a, b = _prepare(x_hat, x_ref, normalization)
    return _ssim(a, b, normalization, _check_mask(mask, a))


def differentiable_ssim(x_hat: Tensor, x_ref: Tensor, normalization: str = "minmax",
                        mask: Tensor | None = None) -> Tensor:
    """:func:`ssim` with gradients: the same values, differentiable w.r.t. both images.

    With ``"minmax"`` each image is scaled by its own min and max, whose gradients go to the
    extreme pixels (subgradients where several pixels tie); with ``"reference"`` the data range
    (the reference's maximum) is a constant.

    :Examples:

        >>> import torch
        >>> x = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
        >>> x_hat = (x + 0.1 * torch.rand_like(x)).requires_grad_(True)
        >>> differentiable_ssim(x_hat, x).sum().backward()
        >>> x_hat.grad.shape
        torch.Size([1, 1, 16, 16])
    """
    a, b = _prepare(x_hat, x_ref, normalization, detach=False)
    return _ssim(a, b, normalization, _check_mask(mask, a))


def _check_mask(mask: Tensor | None, a: Tensor) -> Tensor | None:
    """``mask`` as a ``(B|1, 1, H, W)`` 0/1 tensor of ``a``'s dtype, or ``None``."""
    if mask is None:
        return None
    if not isinstance(mask, Tensor):
        raise TypeError(f"mask: expected a torch.Tensor (0/1 or bool) or None, got {describe(mask)}")
    h, w = a.shape[-2:]
    m = mask[None, None] if mask.dim() == 2 else mask
    if m.dim() != 4 or m.shape[1] != 1 or m.shape[0] not in (1, a.shape[0]) or tuple(m.shape[-2:]) != (h, w):
        raise ValueError(
            f"mask: expected shape ({h}, {w}) or (B|1, 1, {h}, {w}) with B = {a.shape[0]}, got {tuple(mask.shape)}"
        )
    m = m.to(a.dtype)
    if not torch.all((m == 0) | (m == 1)):
        raise ValueError("mask: expected 0/1 (or bool) values, got others")
    return m.to(a.device)


def foreground_mask(x_ref: Tensor, threshold: float = 0.1, dilation: int = 3) -> Tensor:
    """Where the reference shows something: magnitude above ``threshold`` x its maximum (per
    sample), dilated by ``dilation`` pixels; a bool ``(B, 1, H, W)`` mask for :func:`ssim`.

    A dark background carries noise only; averaged over the whole image, its SSIM (whose
    stabilising constant is tiny there) can dominate the score.

    :param torch.Tensor x_ref: the reference, ``(B, 1|2, H, W)``.
    :param float threshold: fraction of the per-sample maximum magnitude, in ``[0, 1)``.
    :param int dilation: pixels the region grows by (a ``2 dilation + 1`` square), ``>= 0``.

    :Examples:

        >>> import torch
        >>> x = torch.zeros(1, 1, 16, 16); x[..., 6:10, 6:10] = 1.0
        >>> int(foreground_mask(x, dilation=0).sum()), int(foreground_mask(x, dilation=1).sum())
        (16, 36)
    """
    x_ref = magnitude(check_image("x_ref", x_ref)).detach()
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold < 1:
        raise ValueError(f"threshold: expected a number in [0, 1), got {describe(threshold)}")
    dilation = check_positive_int("dilation", dilation, minimum=0)
    peak = x_ref.flatten(1).amax(dim=1).reshape(-1, 1, 1, 1)
    fg = (x_ref > threshold * peak).to(x_ref.dtype)
    if dilation:
        fg = F.max_pool2d(fg, 2 * dilation + 1, stride=1, padding=dilation)
    return fg > 0


def _window(dtype: torch.dtype, device: torch.device) -> Tensor:
    """torchmetrics' 11x11 Gaussian window (sigma 1.5), computed its way, ``(1, 1, 11, 11)``."""
    dist = torch.arange((1 - _WINDOW) / 2, (1 + _WINDOW) / 2, 1, dtype=dtype, device=device)
    gauss = torch.exp(-torch.pow(dist / _SIGMA, 2) / 2)
    g = (gauss / gauss.sum()).unsqueeze(0)
    return torch.matmul(g.t(), g)[None, None]


def _ssim(a: Tensor, b: Tensor, normalization: str, mask: Tensor | None = None) -> Tensor:
    """SSIM of prepared magnitude images ``(B, 1, H, W)``, averaged over the valid region (and
    ``mask``, a checked 0/1 tensor, when given).

    The map is torchmetrics' (reflect-padded input) with its 5-pixel borders cropped, i.e. the
    windows that lie inside the image; the formula is torchmetrics'.
    """
    if min(a.shape[-2:]) < _WINDOW:
        raise ValueError(
            f"x_hat: SSIM needs images of at least {_WINDOW}x{_WINDOW} pixels (its window), got "
            f"spatial size {tuple(a.shape[-2:])}"
        )
    b = b.to(a.dtype)
    if canonical_normalization(normalization) == "minmax":
        data_range = torch.ones(a.shape[0], dtype=torch.float64, device=a.device)
    else:  # reference (fastMRI): the reference's maximum, per sample (a constant for gradients)
        data_range = b.detach().flatten(1).amax(dim=1).double()
    # Constants in float64, then cast: the values torchmetrics gets from Python floats.
    c1 = (_K1 * data_range).pow(2).to(a.dtype).reshape(-1, 1, 1, 1)
    c2 = (_K2 * data_range).pow(2).to(a.dtype).reshape(-1, 1, 1, 1)
    # torchmetrics' reflect padding; only the windows inside the image are averaged below, so
    # padded pixels never count, and the same convolution keeps the values bit-identical.
    pad = (_WINDOW - 1) // 2
    a_p, b_p = (F.pad(t, (pad, pad, pad, pad), mode="reflect") for t in (a, b))
    window = _window(a.dtype, a.device)
    stats = F.conv2d(torch.cat((a_p, b_p, a_p * a_p, b_p * b_p, a_p * b_p)), window)
    mu_a, mu_b, aa, bb, ab = stats.split(a.shape[0])
    mu_aa, mu_bb, mu_ab = mu_a.pow(2), mu_b.pow(2), mu_a * mu_b
    var_a = torch.clamp(aa - mu_aa, min=0.0)
    var_b = torch.clamp(bb - mu_bb, min=0.0)
    upper = 2 * (ab - mu_ab) + c2
    lower = var_a + var_b + c2
    smap = ((2 * mu_ab + c1) * upper) / ((mu_aa + mu_bb + c1) * lower)
    # Reduce the cropped view as it is (a contiguous copy would sum in another order).
    if mask is None:
        return smap[..., pad:-pad, pad:-pad].mean(dim=(1, 2, 3))
    m = mask[..., pad:-pad, pad:-pad].expand_as(smap[..., pad:-pad, pad:-pad])
    return (smap[..., pad:-pad, pad:-pad] * m).sum(dim=(1, 2, 3)) / m.sum(dim=(1, 2, 3))


def nmse(x_hat: Tensor, x_ref: Tensor, normalization: str = "minmax") -> Tensor:
    r"""Normalised MSE :math:`\|\hat x - x\|^2 / \|x\|^2` per sample, shape ``(B,)``.

    :Examples:

        >>> import torch
        >>> x = torch.ones(1, 1, 4, 4)
        >>> nmse(2 * x, x, normalization="reference")
        tensor([1.])
    """
    a, b = _prepare(x_hat, x_ref, normalization)
    return _metric("nmse", canonical_normalization(normalization))(a, b).reshape(-1)


def relative_deviation(x_adv: Tensor, x_clean: Tensor) -> Tensor:
    r"""The deviation: how far a perturbation moved the reconstruction, relative to it,
    :math:`\|x_{adv} - x_{clean}\|_2 / \|x_{clean}\|_2` per sample (complex images, no
    normalisation), ``(B,)``. What "deviation" means in records, cards, verdicts and docs.

    :Examples:

        >>> import torch
        >>> x = torch.ones(1, 2, 4, 4)
        >>> relative_deviation(1.1 * x, x)
        tensor([0.1000])
    """
    return (x_adv - x_clean).flatten(1).norm(dim=1) / x_clean.flatten(1).norm(dim=1).clamp_min(1e-30)


def squared_deviation(x_adv: Tensor, x_clean: Tensor) -> Tensor:
    r""":math:`\|x_{adv} - x_{clean}\|_2^2` per sample (complex images), ``(B,)``: the absolute,
    squared change (the deviation objective's value), in squared image units.

    :Examples:

        >>> import torch
        >>> x = torch.ones(1, 2, 4, 4)
        >>> squared_deviation(x + 0.5, x)
        tensor([8.])
    """
    return (x_adv - x_clean).pow(2).flatten(1).sum(dim=1)


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

