"""Synthesize brain MR images of several contrasts from tissue probability maps.

Maps are a tensor ``(5, H, W)`` with channels :data:`MAP_CHANNELS` = (t1, gm, wm, csf, brain),
values in [0, 1] (``csf = clip(brain - gm - wm, 0, 1)``). An image is

    m = bias * (1 + texture) * sum_t p_t * s_t            (contrast "t1": m = bias * (1+texture) * t1)

with tissue signals ``s_t`` of the contrast jittered per seed, a smooth multiplicative bias
field and low-amplitude spatially correlated texture inside the brain. The magnitude is
**max-normalized** to [0, 1] (the background is exactly 0, so this equals min-max
normalization). An optional smooth phase makes the image complex.

Example::

    >>> import torch
    >>> from kspace_attacks.data.synth import synthesize
    >>> maps = torch.zeros(5, 32, 32); maps[1:3, 8:24, 8:24] = 0.5; maps[4, 8:24, 8:24] = 1
    >>> x = synthesize(maps, "t2w", generator=torch.Generator().manual_seed(0))
    >>> x.shape, float(x.min()) >= 0, float(x.max())
    (torch.Size([2, 32, 32]), True, 1.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_choice, check_nonneg_float, check_tensor

__all__ = [
    "CONTRASTS",
    "MAP_CHANNELS",
    "TISSUE_SIGNALS",
    "Augmentation",
    "augment",
    "gaussian_blur",
    "synthesize",
]

MAP_CHANNELS = ("t1", "gm", "wm", "csf", "brain")
# Relative steady-state signals (GM, WM, CSF); textbook orderings at 1.5-3 T:
# T1w (MPRAGE-like) WM > GM >> CSF, T2w CSF >> GM > WM, PD CSF > GM > WM, FLAIR GM > WM >> CSF.
TISSUE_SIGNALS: dict[str, tuple[float, float, float]] = {
    "t1w": (0.55, 0.85, 0.12),
    "t2w": (0.60, 0.42, 1.00),
    "pd": (0.82, 0.66, 0.95),
    "flair": (0.78, 0.55, 0.06),
}
CONTRASTS = ("t1",) + tuple(TISSUE_SIGNALS)  # "t1" = the template's own T1 image


def _check_maps(maps: Tensor) -> Tensor:
    maps = check_tensor("maps", maps)
    if maps.dim() != 3 or maps.shape[0] != len(MAP_CHANNELS):
        raise ValueError(
            f"maps: expected a tensor (5, H, W) with channels {MAP_CHANNELS}, "
            f"got shape {tuple(maps.shape)}"
        )
    return maps


def _uniform(g: torch.Generator | None, lo: float, hi: float, n: int = 1) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of the last two dims of ``x`` (..., H, W), zero padded."""
    if sigma <= 0:
        return x
    r = max(1, math.ceil(3 * sigma))
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=x.dtype, device=x.device) / sigma) ** 2)
    k = k / k.sum()
    shape = x.shape
    y = x.reshape(-1, 1, *shape[-2:])
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1))
    return y.reshape(shape)


def _smooth_field(g: torch.Generator | None, h: int, w: int, grid: int) -> Tensor:
    """Zero-mean, unit-std smooth random field (bicubic upsampling of a coarse grid)."""
    coarse = torch.randn(1, 1, grid, grid, generator=g)
    f = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)[0, 0]
    f = f - f.mean()
    return f / f.std().clamp_min(1e-8)


@dataclass(frozen=True)
class Augmentation:
    """Ranges of the deterministic geometric augmentation (drawn per seed).

    :param float flip_prob: probability of a left-right flip.
    :param float max_rotation: maximal in-plane rotation in degrees.
    :param float max_shift: maximal shift as a fraction of the image size.
    :param float max_scale: maximal relative zoom (1 +- max_scale).
    """

    flip_prob: float = 0.5
    max_rotation: float = 6.0
    max_shift: float = 0.04
    max_scale: float = 0.05


def augment(
    maps: Tensor, generator: torch.Generator | None = None, params: Augmentation | None = None
) -> Tensor:
    """Apply one random flip / rotation / shift / zoom (same for all channels).

    :param torch.Tensor maps: (C, H, W) maps.
    :param torch.Generator generator: source of randomness (same seed, same transform).
    :param Augmentation params: ranges (default :class:`Augmentation`).
    :return: (C, H, W) tensor (bilinear resampling, zero outside).

    Example::

        >>> import torch
        >>> m = torch.rand(5, 16, 16)
        >>> a = augment(m, torch.Generator().manual_seed(1))
        >>> b = augment(m, torch.Generator().manual_seed(1))
        >>> bool((a == b).all()), a.shape
        (True, torch.Size([5, 16, 16]))
    """
    maps = check_tensor("maps", maps)
    if maps.dim() != 3:
        raise ValueError(f"maps: expected a tensor (C, H, W), got shape {tuple(maps.shape)}")
    params = Augmentation() if params is None else params
    g = generator
    flip = bool(torch.rand(1, generator=g) < params.flip_prob)
    ang = math.radians(float(_uniform(g, -params.max_rotation, params.max_rotation)))
    sx, sy = (float(v) for v in _uniform(g, -params.max_shift, params.max_shift, 2) * 2)
    zoom = float(_uniform(g, 1 - params.max_scale, 1 + params.max_scale))
    c, s = math.cos(ang) / zoom, math.sin(ang) / zoom
    fx = -1.0 if flip else 1.0
    theta = torch.tensor([[fx * c, -s, sx], [fx * s, c, sy]], dtype=maps.dtype)
    grid = F.affine_grid(theta[None], [1, *maps.shape], align_corners=False)
    out = F.grid_sample(
        maps[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )[0]
    return out.clamp(0, 1)


def synthesize(
    maps: Tensor,
    contrast: str = "t1w",
    generator: torch.Generator | None = None,
    *,
    jitter: float = 0.08,
    bias: float = 0.12,
    texture: float = 0.03,
    texture_sigma: float | None = None,
    phase: float = 0.0,
) -> Tensor:
    """Make one brain image ``(2, H, W)`` (real, imag) with magnitude in [0, 1].

    :param torch.Tensor maps: (5, H, W) tissue maps, channels :data:`MAP_CHANNELS`.
    :param str contrast: one of :data:`CONTRASTS`.
    :param torch.Generator generator: randomness (tissue jitter, bias, texture, phase).
    :param float jitter: relative random change of each tissue signal (uniform +-jitter).
    :param float bias: std of the log bias field (smooth, multiplicative).
    :param float texture: relative std of the correlated texture inside the brain.
    :param float texture_sigma: correlation length of the texture in pixels
        (default ``0.6 * H / 64``, i.e. a fixed fraction of the field of view).
    :param float phase: peak amplitude (radians / pi) of a smooth random phase; 0 = real image.
    :return: (2, H, W) float32 tensor; imag is 0 when ``phase == 0``.
    """
    maps = _check_maps(maps)
    check_choice("contrast", contrast, CONTRASTS)
    for name, v in (("jitter", jitter), ("bias", bias), ("texture", texture), ("phase", phase)):
        check_nonneg_float(name, v)
    g = generator
    _, h, w = maps.shape
    t1, gm, wm, csf, brain = maps
    if contrast == "t1":
        img = t1 * float(_uniform(g, 1 - jitter, 1 + jitter))
    else:
        sig = torch.tensor(TISSUE_SIGNALS[contrast]) * _uniform(g, 1 - jitter, 1 + jitter, 3)
        img = gm * sig[0] + wm * sig[1] + csf * sig[2]
    sigma = 0.6 * h / 64 if texture_sigma is None else texture_sigma
    noise = gaussian_blur(torch.randn(h, w, generator=g), sigma)
    noise = noise / noise.std().clamp_min(1e-8)
    img = img * (1 + texture * noise * brain)
    img = img * torch.exp(bias * _smooth_field(g, h, w, grid=4))
    img = img.clamp_min(0)
    img = img / img.max().clamp_min(1e-8)
    if phase > 0:
        ph = math.pi * phase * _smooth_field(g, h, w, grid=3) / 3  # |field| rarely > 3 std
        return torch.stack([img * torch.cos(ph), img * torch.sin(ph)]).float()
    return torch.stack([img, torch.zeros_like(img)]).float()
