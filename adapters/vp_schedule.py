"""The variance-preserving diffusion schedule of the score-based reconstructor.

:class:`VPSchedule` (cosine or linear VP-SDE) is shared by the sampler
(:mod:`kspace_attacks.adapters.diffusion`, which re-exports it) and its training
(:mod:`kspace_attacks.adapters.training.diffusion`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from kspace_attacks._checks import check_choice

__all__ = ["VPSchedule"]


class VPSchedule:
    r"""Variance-preserving diffusion ``x_t = alpha_t x_0 + sigma_t z`` with alpha_t^2 + sigma_t^2 = 1.

    ``kind="cosine"`` (Nichol & Dhariwal 2021, continuous time) or ``"linear"`` (the VP-SDE of
    Song et al. 2021, beta(t) = beta_min + t (beta_max - beta_min)). ``alpha_bar = alpha_t^2`` is
    clamped to ``[min_alpha_bar, 1]`` so that t = 1 stays finite.

        >>> s = VPSchedule("cosine")
        >>> round(s.alpha_bar(0.0), 6), s.alpha_bar(1.0) < 1e-3
        (1.0, True)
    """

    def __init__(
        self,
        kind: str = "cosine",
        beta_min: float = 0.1,
        beta_max: float = 20.0,
        cosine_s: float = 0.008,
        min_alpha_bar: float = 1e-5,
    ):
        self.kind = check_choice("kind", kind, ("cosine", "linear"))
        self.beta_min, self.beta_max, self.cosine_s = beta_min, beta_max, cosine_s
        self.min_alpha_bar = min_alpha_bar

    def alpha_bar(self, t):
        """alpha_t^2 for float or tensor ``t`` in [0, 1]."""
        lib = torch if isinstance(t, Tensor) else math
        if self.kind == "cosine":
            s = self.cosine_s
            f = lib.cos((t + s) / (1 + s) * math.pi / 2) ** 2
            ab = f / math.cos(s / (1 + s) * math.pi / 2) ** 2
        else:
            ab = lib.exp(-(self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2))
        if isinstance(t, Tensor):
            return ab.clamp(self.min_alpha_bar, 1.0)
        return min(max(ab, self.min_alpha_bar), 1.0)

    def time_of(self, alpha_bar: Tensor) -> Tensor:
        """The time t in [0, 1] with ``self.alpha_bar(t) == alpha_bar`` (the inverse; values
        below ``min_alpha_bar`` map to t = 1), computed in float64 and returned in the dtype of
        ``alpha_bar`` when it is a floating-point tensor.

            >>> s = VPSchedule("cosine")
            >>> t = torch.tensor([0.1, 0.5, 0.9])
            >>> torch.allclose(s.time_of(s.alpha_bar(t)), t, atol=1e-5)
            True
        """
        ab = torch.as_tensor(alpha_bar, dtype=torch.float64).clamp(self.min_alpha_bar, 1.0)
        if self.kind == "cosine":
            s = self.cosine_s
            f0 = math.cos(s / (1 + s) * math.pi / 2) ** 2
            t = torch.acos((ab * f0).sqrt().clamp(max=1.0)) * 2 / math.pi * (1 + s) - s
        else:  # 0.5 (b1 - b0) t^2 + b0 t + log(ab) = 0
            a, b = 0.5 * (self.beta_max - self.beta_min), self.beta_min
            c = torch.log(ab)
            t = (-c / b) if a == 0 else (-b + torch.sqrt(b * b - 4 * a * c)) / (2 * a)
        t = torch.where(ab <= self.min_alpha_bar, torch.ones_like(t), t).clamp(0.0, 1.0)
        if isinstance(alpha_bar, Tensor) and alpha_bar.is_floating_point():
            return t.to(alpha_bar.dtype)
        return t

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "beta_min": self.beta_min,
            "beta_max": self.beta_max,
            "cosine_s": self.cosine_s,
            "min_alpha_bar": self.min_alpha_bar,
        }
