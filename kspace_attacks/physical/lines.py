"""K-space geometry shared by the physical threats: lines, shots, frequencies, phase factors.

Convention (deepinv's, and the package's masks): k-space is centred (``fftshift``), lines are
the columns (last axis, phase encoding), the readout runs along the rows (axis ``-2``).

>>> shot_index(8, 2, "interleaved").tolist()
[0, 1, 0, 1, 0, 1, 0, 1]
>>> shot_index(8, 2, "sequential").tolist()
[0, 0, 0, 0, 1, 1, 1, 1]
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._checks import check_choice, check_positive_int

__all__ = ["ORDERINGS", "shot_index", "frequencies", "rotate_phase", "measured_lines"]

#: how phase-encoding lines are assigned to shots
ORDERINGS = ("interleaved", "sequential")


def shot_index(lines: int, shots: int, ordering: str = "interleaved") -> Tensor:
    """Shot of every line, ``(lines,)``: interleaved (line ``l`` in shot ``l mod shots``) or
    sequential (contiguous blocks, the centre of k-space in the middle shot)."""
    lines = check_positive_int("lines", lines)
    shots = check_positive_int("shots", shots)
    if shots > lines:
        raise ValueError(f"shots: expected at most one shot per line ({lines} lines), got {shots}")
    ordering = check_choice("ordering", ordering, ORDERINGS)
    index = torch.arange(lines)
    return index % shots if ordering == "interleaved" else index * shots // lines


def frequencies(n: int, like: Tensor) -> Tensor:
    """Centred frequencies in cycles per pixel, ``(k - n // 2) / n`` for ``k < n``."""
    return (torch.arange(n, device=like.device, dtype=like.dtype) - n // 2) / n


def rotate_phase(y: Tensor, phase: Tensor) -> Tensor:
    """``y * exp(i phase)`` for k-space ``y`` in deepinv layout (real/imag in dim 1).

    ``phase`` is ``(B, H, W)`` (or broadcastable) and is shared by all coils of 5-D ``y``.
    """
    if y.dim() == 5:
        phase = phase.unsqueeze(1)  # over coils
    cos, sin = torch.cos(phase), torch.sin(phase)
    re, im = y[:, 0], y[:, 1]
    return torch.stack([re * cos - im * sin, re * sin + im * cos], dim=1)


def measured_lines(y: Tensor, physics: Any) -> Tensor:
    """0/1 per line, ``(1 or B, W)``: the lines the physics' mask samples at all."""
    from ..threat import sampling_mask

    mask = sampling_mask(y, physics)
    return (mask.flatten(1, -2).amax(dim=1) > 0).to(y.dtype)
