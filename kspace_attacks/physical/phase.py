"""Phase errors: per-line (or per-shot) phase offsets and a B0-like drift along the readout."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._checks import check_choice, check_positive_int, describe
from .base import ParametricThreat
from .lines import ORDERINGS, rotate_phase, shot_index

__all__ = ["PhaseErrors"]


class PhaseErrors(ParametricThreat):
    r"""Each line (or shot) is acquired with a phase offset and a linear phase along the readout.

    Line ``l`` in group ``g(l)`` (a line of its own, or its shot) is multiplied by
    :math:`e^{i(a_g + b_g\, \kappa)}` with :math:`\kappa = (k - H/2) / (H/2) \in [-1, 1)` the
    readout position: ``a`` is a constant phase error (eddy currents, RF phase), ``b`` the phase
    reached at the edge of the readout by an off-resonance (B0) drift during it. ``theta`` is
    ``(B, 2, G)`` (``[a; b]`` per group), every entry bounded by ``eps`` radians (``drift=False``:
    ``b = 0``). deepinv's :class:`~deepinv.transform.RandomPhaseError` draws the pattern with
    ``b = 0`` and one offset for even and one for odd lines (as an augmentation; on real/imaginary
    stacked k-space it multiplies the parts separately, which changes ``|y|``; here the
    modulus is kept exactly).

    :param float|torch.Tensor eps: phase budget in radians.
    :param int|None shots: group lines into this many shots (``None``: every line its own).
    :param str ordering: how lines are assigned to shots (``"interleaved"``/``"sequential"``).
    :param bool drift: include the readout drift ``b``.

    |sep|

    :Examples:

        >>> import torch, deepinv as dinv
        >>> import kspace_attacks as ka
        >>> physics = dinv.physics.MRI(img_size=(8, 8))
        >>> y = physics(torch.rand(1, 2, 8, 8))
        >>> threat = ka.PhaseErrors(eps=0.1)
        >>> theta = threat.sphere(y, physics, generator=torch.Generator().manual_seed(0))
        >>> round(threat.ratio(theta, y).item(), 3)
        0.1
        >>> torch.allclose(threat.apply(y, threat.zeros(y), physics), y)
        True
    """

    unit = "rad"

    def __init__(self, eps: float | Tensor = 0.1, shots: int | None = None,
                 ordering: str = "interleaved", drift: bool = True) -> None:
        super().__init__(eps)
        self.shots = None if shots is None else check_positive_int("shots", shots)
        self.ordering = check_choice("ordering", ordering, ORDERINGS)
        if not isinstance(drift, bool):
            raise TypeError(f"drift: expected a bool, got {describe(drift)}")
        self.drift = drift

    def settings(self) -> dict[str, Any]:
        return {"shots": self.shots, "ordering": self.ordering, "drift": self.drift}

    def parameter_shape(self, y: Tensor) -> tuple[int, ...]:
        return (y.shape[0], 2, y.shape[-1] if self.shots is None else self.shots)

    def weights(self, like: Tensor) -> Tensor:
        return torch.tensor([1.0, 1.0 if self.drift else 0.0], dtype=like.dtype,
                            device=like.device).reshape(1, 2, 1)

    def apply(self, y: Tensor, delta: Tensor, physics: Any) -> Tensor:
        theta = self._check_theta(delta, y)
        h, w = y.shape[-2:]
        if self.shots is not None:
            theta = theta[:, :, shot_index(w, self.shots, self.ordering).to(y.device)]  # (B, 2, W)
        readout = (torch.arange(h, device=y.device, dtype=y.dtype) - h // 2) / (h / 2)
        phase = theta[:, 0, None, :] + theta[:, 1, None, :] * readout[None, :, None]  # (B, H, W)
        return rotate_phase(y, phase)
