"""Robust training: losses that make a reconstructor withstand k-space perturbations.

- :class:`AdversarialLoss`: adversarial training, the inner maximisation run by any of the
  package's attacks under any threat model, within a budget of gradient evaluations;
- :class:`JitterLoss`: jittering, training on measurements with equal-norm or Gaussian noise
  of a given level relative to ``||y||``.

Both are :class:`deepinv.loss.Loss` objects: they plug into :class:`deepinv.Trainer` and into
the package's own trainer (``kspace-attacks train NAME --robust adversarial|jitter``).

Imported on first use, like the rest of the package.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["AdversarialLoss", "JitterLoss", "ROBUST_LOSSES", "robust_loss"]

_EXPORTS = {"AdversarialLoss": "adversarial", "JitterLoss": "jitter",
            "ROBUST_LOSSES": "factory", "robust_loss": "factory"}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
