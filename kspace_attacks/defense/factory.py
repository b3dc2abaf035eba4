"""Robust losses by name, as the trainer's command line and configs name them."""

from __future__ import annotations

from typing import Any

from .._checks import check_choice
from ..threat import KSpaceL2
from ._mixing import Metric

__all__ = ["ROBUST_LOSSES", "robust_loss"]

#: Names accepted by :func:`robust_loss` (and ``kspace-attacks train --robust``).
ROBUST_LOSSES = ("adversarial", "jitter")


def robust_loss(kind: str, eps: float = 0.05, metric: Metric | None = None, mix: float = 0.5,
                seed: int = 0, **options: Any) -> Any:
    """The robust loss ``kind`` at relative level ``eps``.

    ``"adversarial"``: :class:`AdversarialLoss` on ``KSpaceL2(eps)`` (``options``: ``attack``,
    ``budget``, ``objective``); ``"jitter"``: :class:`JitterLoss` with ``level=eps``
    (``options``: ``kind`` as ``noise``).

    >>> loss = robust_loss("jitter", eps=0.02)
    >>> type(loss).__name__, loss.level, loss.kind
    ('JitterLoss', 0.02, 'equal_norm')
    """
    kind = check_choice("kind", kind, ROBUST_LOSSES)
    if kind == "adversarial":
        from .adversarial import AdversarialLoss

        return AdversarialLoss(KSpaceL2(eps=eps), metric=metric, mix=mix, seed=seed, **options)
    from .jitter import JitterLoss

    noise = options.pop("noise", "equal_norm")
    if options:
        raise ValueError(f"options: unknown option(s) {sorted(options)} for 'jitter'; "
                         f"expected 'noise'")
    return JitterLoss(level=eps, kind=noise, metric=metric, mix=mix, seed=seed)
