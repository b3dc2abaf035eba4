"""Input validation shared by the public API.

Every check raises an error whose message names the argument, what was expected and
what was received, so that a user can fix the call without reading the source.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def describe(value: Any) -> str:
    """Short human description of ``value`` for error messages."""
    if isinstance(value, Tensor):
        return f"tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    return f"{type(value).__name__} {value!r}"


def check_tensor(name: str, value: Any) -> Tensor:
    """Raise ``TypeError`` unless ``value`` is a real floating-point tensor."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {describe(value)}")
    if value.is_complex():
        raise TypeError(
            f"{name}: expected a real floating-point tensor with real/imaginary parts in "
            f"dim 1 (deepinv layout), got complex dtype {value.dtype}; "
            f"use torch.view_as_real and move the last axis to dim 1"
        )
    if not value.is_floating_point():
        raise TypeError(
            f"{name}: expected a real floating-point tensor, got dtype {value.dtype}; "
            f"convert with .float()"
        )
    return value


def check_finite(name: str, value: Tensor) -> Tensor:
    """Raise ``ValueError`` if ``value`` holds NaN or Inf."""
    if not torch.isfinite(value).all():
        n_bad = int((~torch.isfinite(value)).sum())
        raise ValueError(f"{name}: expected finite values, got {n_bad} NaN/Inf entries")
    return value


def check_kspace(name: str, y: Any) -> Tensor:
    """Validate a k-space tensor in deepinv layout.

    Single-coil ``(B, 2, H, W)`` or multi-coil ``(B, 2, N, H, W)``, real floating point,
    finite.
    """
    y = check_tensor(name, y)
    if y.dim() not in (4, 5) or y.shape[1] != 2:
        raise ValueError(
            f"{name}: expected k-space in deepinv layout, (B, 2, H, W) single-coil or "
            f"(B, 2, N, H, W) multi-coil with real/imag in dim 1, got shape {tuple(y.shape)}"
        )
    return check_finite(name, y)


def check_image(name: str, x: Any) -> Tensor:
    """Validate an image batch: ``(B, 1, H, W)`` magnitude or ``(B, 2, H, W)`` complex."""
    x = check_tensor(name, x)
    if x.dim() != 4 or x.shape[1] not in (1, 2):
        raise ValueError(
            f"{name}: expected an image batch (B, 1, H, W) magnitude or (B, 2, H, W) "
            f"complex, got shape {tuple(x.shape)}"
        )
    return check_finite(name, x)


def check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    """Raise unless ``value`` is an ``int`` >= ``minimum`` (bools rejected)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an integer >= {minimum}, got {describe(value)}")
    if value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value}")
    return value


def check_nonneg_float(name: str, value: Any, strictly_positive: bool = False) -> float:
    """Raise unless ``value`` is a finite real number >= 0 (or > 0)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a real number, got {describe(value)}")
    value = float(value)
    bad = value <= 0 if strictly_positive else value < 0
    if bad or value != value or value in (float("inf"), float("-inf")):
        rel = "> 0" if strictly_positive else ">= 0"
        raise ValueError(f"{name}: expected a finite number {rel}, got {value}")
    return value


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """Raise unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name}: expected one of {list(choices)}, got {value!r}")
    return value


def check_physics(name: str, physics: Any) -> Any:
    """Raise ``TypeError`` unless ``physics`` is a linear operator with ``A``/``A_adjoint``."""
    if not (callable(getattr(physics, "A", None)) and callable(getattr(physics, "A_adjoint", None))):
        raise TypeError(
            f"{name}: expected a deepinv physics with A and A_adjoint (e.g. "
            f"deepinv.physics.MRI or MultiCoilMRI), got {describe(physics)}"
        )
    return physics
