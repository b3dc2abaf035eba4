"""Zero-filled reconstruction ``x = A^H y``: the no-learning baseline."""

from __future__ import annotations

from typing import Any

import torch
from deepinv.models import Reconstructor
from torch import Tensor

from ._base import check_inputs
from ._weights import EMBEDDED


class ZeroFilled(Reconstructor):
    r"""Zero-filled reconstruction :math:`\hat x = A^H y` (adjoint of the physics).

    Has no parameters. For single-coil :class:`deepinv.physics.MRI` this is the inverse
    centred FFT of the zero-filled k-space; for :class:`deepinv.physics.MultiCoilMRI` it is
    the coil combination with the conjugate sensitivity maps.

    Output convention (shared by all reconstructors of ``kspace_attacks.adapters``): a complex
    image ``(B, 2, H, W)`` with real/imaginary parts in dim 1, in the physics' image domain and
    scaled like the ground truth.

    :Example:

    >>> import torch, deepinv as dinv
    >>> from kspace_attacks.adapters.zero_filled import ZeroFilled
    >>> physics = dinv.physics.MRI(mask=torch.ones(16, 16))
    >>> x = torch.rand(2, 2, 16, 16)
    >>> torch.allclose(ZeroFilled()(physics.A(x), physics), x, atol=1e-5)
    True
    """

    def forward(self, y: Tensor, physics: Any, **kwargs: Any) -> Tensor:
        """Return ``physics.A_adjoint(y)`` as a ``(B, 2, H, W)`` complex image."""
        y, physics = check_inputs(y, physics)
        return physics.A_adjoint(y)


def load(weights: Any = EMBEDDED, device: str | torch.device = "cpu", **kwargs: Any) -> ZeroFilled:
    """Registry entry point. ``weights`` must be ``"embedded"`` or ``None`` (no parameters)."""
    if kwargs:
        raise TypeError(f"kwargs: zero_filled takes no options, got {sorted(kwargs)}")
    if weights is not None and weights != EMBEDDED:
        raise ValueError(
            f"weights: zero_filled has no parameters; expected 'embedded' or None, got {weights!r}"
        )
    return ZeroFilled().to(device).eval()
