"""Image helpers shared by the losses and the metrics (a module of its own, so that
:mod:`kspace_attacks.losses` can use the metrics' SSIM without an import cycle)."""

from __future__ import annotations

from torch import Tensor

__all__ = ["magnitude"]


def magnitude(x: Tensor) -> Tensor:
    """Modulus of a ``(B, 2, ...)`` complex image as ``(B, 1, ...)``; 1-channel input unchanged.

    A tiny offset keeps the gradient finite where the image is exactly zero.

    >>> import torch
    >>> magnitude(torch.tensor([[[3.0]], [[4.0]]])[None]).flatten().tolist()
    [5.0]
    """
    if x.shape[1] == 1:
        return x
    return (x.pow(2).sum(dim=1, keepdim=True) + 1e-12).sqrt()
