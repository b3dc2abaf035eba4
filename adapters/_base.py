"""Helpers shared by the adapters' reconstructors: input checks and scale normalisation."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from kspace_attacks._checks import check_image, check_kspace, check_physics

__all__ = ["check_physics", "check_inputs", "as_complex_image", "sample_scale"]


def check_inputs(y: Any, physics: Any) -> tuple[Tensor, Any]:
    """Validate ``(y, physics)`` as passed to a reconstructor's ``forward``."""
    return check_kspace("y", y), check_physics("physics", physics)


def as_complex_image(name: str, x: Tensor) -> Tensor:
    """Bring a reconstruction to the project's ``(B, 2, H, W)`` complex-image convention.

    A magnitude image ``(B, 1, H, W)`` becomes a complex image with zero imaginary part.
    """
    x = check_image(name, x)
    if x.shape[1] == 1:
        x = torch.cat([x, torch.zeros_like(x)], dim=1)
    return x


def sample_scale(x: Tensor, eps: float = 1e-8) -> Tensor:
    """Per-sample RMS magnitude of a complex image batch, shape ``(B, 1, 1, 1)``.

    Dividing a network's input by it (and multiplying the output back) makes the
    reconstructor positively homogeneous, ``f(c y) = c f(y)``, so it does not depend on the
    arbitrary intensity scale of a scanner or data set. The RMS is smooth in ``y``, unlike the
    maximum, which keeps gradient-based attacks well behaved.
    """
    rms = x.pow(2).sum(dim=1, keepdim=True).mean(dim=(-2, -1), keepdim=True).sqrt()
    return rms.clamp_min(eps)
