"""Attack objectives: per-sample losses that an attack *maximises*.

Every loss is called as ``loss(x_adv, x_clean, x_true=None, target=None)`` and returns one
value per sample, shape ``(B,)``. Images are ``(B, 2, H, W)`` complex (real/imag in dim 1) or
``(B, 1, H, W)`` magnitude. Each loss compares either

- ``domain="complex"``: the complex images (both must have 2 channels), or
- ``domain="magnitude"``: their magnitudes (a 2-channel image is turned into its modulus).

An optional ``roi`` weight map (``(H, W)`` or ``(B, 1, H, W)``, non-negative) restricts or
weights the comparison to a region, e.g. a pathology box (see :func:`roi_box`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import Tensor

from ._checks import check_choice, check_tensor, describe
from ._image import magnitude  # public here too: losses.magnitude

__all__ = ["Loss", "ReconDeviation", "GroundTruthDeviation", "TargetedLoss", "SSIMDeviation",
           "LOSSES", "resolve_loss", "roi_box", "magnitude"]


def roi_box(
    size: tuple[int, int], rows: tuple[int, int], cols: tuple[int, int], weight: float = 1.0
) -> Tensor:
    """A ``(H, W)`` 0/``weight`` map that is non-zero on ``rows[0]:rows[1], cols[0]:cols[1]``.

    :Examples:

        >>> roi_box((8, 8), rows=(2, 4), cols=(2, 6)).sum().item()
        8.0
    """
    h, w = size
    r0, r1 = rows
    c0, c1 = cols
    if not (0 <= r0 < r1 <= h and 0 <= c0 < c1 <= w):
        raise ValueError(
            f"rows/cols: expected 0 <= start < stop <= size for size {size}, got rows={rows}, "
            f"cols={cols}"
        )
    m = torch.zeros(h, w)
    m[r0:r1, c0:c1] = weight
    return m


class Loss(ABC):
    """Base class: a weighted squared distance between two images, per sample.

    :param str domain: ``"complex"`` or ``"magnitude"``.
    :param torch.Tensor|None roi: non-negative weight map, ``(H, W)`` or ``(B, 1, H, W)``.
    """

    def __init__(self, domain: str = "complex", roi: Tensor | None = None) -> None:
        self.domain = check_choice("domain", domain, ("complex", "magnitude"))
        if roi is not None:
            roi = check_tensor("roi", roi)
            if roi.dim() not in (2, 4) or (roi < 0).any():
                raise ValueError(
                    f"roi: expected a non-negative weight map of shape (H, W) or (B, 1, H, W), "
                    f"got {describe(roi)}"
                )
        self.roi = roi

    def _prepare(self, name: str, a: Tensor) -> Tensor:
        if self.domain == "magnitude":
            return magnitude(a)
        if a.shape[1] != 2:
            raise ValueError(
                f"{name}: domain='complex' needs (B, 2, H, W) complex images, got shape "
                f"{tuple(a.shape)}; use domain='magnitude' for magnitude images"
            )
        return a

    def sq_distance(self, a: Tensor, b: Tensor, name: str = "reference") -> Tensor:
        """Per-sample weighted squared distance ``sum roi * |a - b|^2``."""
        a = self._prepare("x_adv", a)
        b = self._prepare(name, b)
        if a.shape[-2:] != b.shape[-2:]:
            raise ValueError(
                f"{name}: expected spatial size {tuple(a.shape[-2:])}, got {tuple(b.shape[-2:])}"
            )
        d = (a - b).pow(2)
        if self.roi is not None:
            d = d * self.roi.to(device=d.device, dtype=d.dtype)
        return d.flatten(1).sum(dim=1)

    @abstractmethod
    def __call__(
        self,
        x_adv: Tensor,
        x_clean: Tensor,
        x_true: Tensor | None = None,
        target: Tensor | None = None,
    ) -> Tensor:
        """Per-sample value to maximise, shape ``(B,)``."""

    @property
    def needs(self) -> tuple[str, ...]:
        """Names of the optional inputs this loss requires (``x_true``, ``target``)."""
        return ()

    def __repr__(self) -> str:
        roi = None if self.roi is None else f"<map {tuple(self.roi.shape)}>"
        return f"{type(self).__name__}(domain={self.domain!r}, roi={roi})"


class ReconDeviation(Loss):
    r"""Deviation from the clean reconstruction, :math:`\|f(y+\delta) - f(y)\|_2^2`.

    The study's objective (Eq. 5): it needs no ground truth.

    :Examples:

        >>> import torch
        >>> loss = ReconDeviation()
        >>> x = torch.zeros(2, 2, 4, 4)
        >>> loss(x + 1, x)
        tensor([32., 32.])
    """

    def __call__(self, x_adv, x_clean, x_true=None, target=None):
        return self.sq_distance(x_adv, x_clean, "x_clean")


class GroundTruthDeviation(Loss):
    r"""Error against the ground truth, :math:`\|f(y+\delta) - x\|_2^2`.

    :Examples:

        >>> import torch
        >>> loss = GroundTruthDeviation(domain="magnitude")
        >>> x = torch.zeros(1, 1, 4, 4)
        >>> loss(x + 0.5, x, x_true=x)
        tensor([4.])
    """

    @property
    def needs(self):
        return ("x_true",)

    def __call__(self, x_adv, x_clean, x_true=None, target=None):
        if x_true is None:
            raise ValueError("x_true: GroundTruthDeviation needs the ground-truth image, got None")
        return self.sq_distance(x_adv, x_true, "x_true")


class TargetedLoss(Loss):
    r"""Pull the reconstruction towards a target image: :math:`-\|f(y+\delta) - t\|_2^2`.

    Used to insert a structure (a line, a blob) that is not in the clean reconstruction; pair it
    with an ``roi`` around the structure to focus the budget there.

    :Examples:

        >>> import torch
        >>> loss = TargetedLoss()
        >>> x = torch.zeros(1, 2, 4, 4)
        >>> loss(x, x, target=x + 1)
        tensor([-32.])
    """

    @property
    def needs(self):
        return ("target",)

    def __call__(self, x_adv, x_clean, x_true=None, target=None):
        if target is None:
            raise ValueError("target: TargetedLoss needs a target image, got None")
        return -self.sq_distance(x_adv, target, "target")


class SSIMDeviation(Loss):
    r"""Structural change of the reconstruction: :math:`1 - \mathrm{SSIM}(|f(y+\delta)|, |f(y)|)`.

    The same SSIM as :func:`kspace_attacks.metrics.ssim` (11x11 Gaussian window, sigma 1.5,
    averaged over the windows inside the image, the named normalisation), computed by the one
    differentiable function behind both, :func:`kspace_attacks.metrics.differentiable_ssim`;
    so the value an attack maximises is the study's Delta SSIM against the clean
    reconstruction. Images need at least 11x11 pixels.

    With ``normalization="minmax"`` each image is scaled by its own min and max: the loss
    ignores affine intensity changes, and the gradient through the extremes is a subgradient.

    :param str normalization: ``"minmax"`` (default, the study) or ``"fastmri"``.

    :Examples:

        >>> import torch
        >>> x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
        >>> loss = SSIMDeviation()
        >>> loss(x, x).abs().max().item() < 1e-6
        True
        >>> bool((loss(x + 0.3 * torch.rand_like(x), x) > 0).all())
        True
    """

    def __init__(self, normalization: str = "minmax") -> None:
        super().__init__(domain="magnitude")
        self.normalization = check_choice("normalization", normalization, ("minmax", "fastmri"))

    def __call__(self, x_adv, x_clean, x_true=None, target=None):
        from .metrics import differentiable_ssim  # metrics imports this module

        return 1 - differentiable_ssim(x_adv, x_clean, self.normalization)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(normalization={self.normalization!r})"


#: Loss names accepted wherever a loss is expected (``PGD(threat, loss="ssim")``).
LOSSES: dict[str, type[Loss]] = {
    "deviation": ReconDeviation,
    "ssim": SSIMDeviation,
    "ground_truth": GroundTruthDeviation,
    "targeted": TargetedLoss,
}


def resolve_loss(loss: Any) -> Loss:
    """``None`` means :class:`ReconDeviation`; a name from :data:`LOSSES` builds that loss with
    its defaults; anything else must be callable.

    >>> resolve_loss("ssim")
    SSIMDeviation(normalization='minmax')
    """
    if loss is None:
        return ReconDeviation()
    if isinstance(loss, str):
        key = loss.strip().lower()
        if key not in LOSSES:
            raise ValueError(
                f"loss: expected a callable loss(x_adv, x_clean, x_true, target) -> (B,) or one "
                f"of {sorted(LOSSES)}, got {loss!r}"
            )
        return LOSSES[key]()
    if not callable(loss):
        raise TypeError(
            f"loss: expected a callable loss(x_adv, x_clean, x_true, target) -> (B,) or one of "
            f"{sorted(LOSSES)}, got {describe(loss)}"
        )
    return loss

