"""Wrap any deepinv model or callable ``f(y, physics)`` as a project reconstructor."""

from __future__ import annotations

from typing import Any, Callable

from deepinv.models import ArtifactRemoval, Reconstructor
from torch import Tensor, nn

from ._base import as_complex_image, check_inputs
from kspace_attacks._checks import describe


class DeepinvReconstructor(Reconstructor):
    r"""Adapter that turns a callable ``f(y, physics)`` into a project reconstructor.

    ``model`` may be a :class:`deepinv.models.Reconstructor` (e.g. an unrolled network), any
    ``nn.Module`` or plain function with the signature ``f(y, physics) -> x``. The output is
    checked and normalised: a magnitude image ``(B, 1, H, W)`` becomes a complex image with zero
    imaginary part. Parameters of an ``nn.Module`` ``model`` are registered (``.to(device)``,
    ``.eval()`` and ``.parameters()`` reach them).

    Output convention (shared by all reconstructors of ``kspace_attacks.adapters``): a complex
    image ``(B, 2, H, W)`` with real/imaginary parts in dim 1, in the physics' image domain and
    scaled like the ground truth.

    :param model: callable ``f(y, physics) -> x`` with x ``(B, 1 or 2, H, W)``.

    :Example:

    >>> import torch, deepinv as dinv
    >>> from kspace_attacks.adapters.deepinv_wrapper import DeepinvReconstructor
    >>> physics = dinv.physics.MRI(mask=torch.ones(16, 16))
    >>> y = physics.A(torch.rand(1, 2, 16, 16))
    >>> f = DeepinvReconstructor(lambda y, physics: physics.A_adjoint(y, mag=True))
    >>> f(y, physics).shape
    torch.Size([1, 2, 16, 16])
    """

    def __init__(self, model: Callable[..., Tensor]):
        super().__init__()
        if not callable(model):
            raise TypeError(f"model: expected a callable f(y, physics), got {describe(model)}")
        if isinstance(model, nn.Module):
            self.model = model
        else:
            self._fn = model  # plain function: nothing to register

    def _callable(self) -> Callable[..., Tensor]:
        return self.model if "model" in self._modules else self._fn

    def forward(self, y: Tensor, physics: Any, **kwargs: Any) -> Tensor:
        """Run the wrapped model and return a ``(B, 2, H, W)`` complex image."""
        y, physics = check_inputs(y, physics)
        x = self._callable()(y, physics, **kwargs)
        return as_complex_image("model output", x)


def denoiser_postprocessor(denoiser: nn.Module, mode: str = "adjoint") -> DeepinvReconstructor:
    r"""Reconstructor :math:`\hat x = D(A^H y)` from an image denoiser ``D``.

    Uses :class:`deepinv.models.ArtifactRemoval`; the denoiser receives the 2-channel
    zero-filled complex image (and the physics' noise level as ``sigma``), so it must accept
    2 input channels (e.g. ``deepinv.models.DnCNN(2, 2, pretrained=None)``).

    :Example:

    >>> import torch, deepinv as dinv
    >>> from kspace_attacks.adapters.deepinv_wrapper import denoiser_postprocessor
    >>> physics = dinv.physics.MRI(mask=torch.ones(16, 16))
    >>> y = physics.A(torch.rand(1, 2, 16, 16))
    >>> f = denoiser_postprocessor(dinv.models.DnCNN(2, 2, depth=3, pretrained=None))
    >>> f(y, physics).shape
    torch.Size([1, 2, 16, 16])
    """
    return DeepinvReconstructor(ArtifactRemoval(denoiser, mode=mode))
