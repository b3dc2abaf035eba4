"""Robust variants of the supervised trainer: the loss, the starting weights, the run's record.

``kspace-attacks train irim --robust adversarial --eps 0.05 --init embedded`` fine-tunes the
shipped i-RIM against worst-case k-space perturbations and writes ``irim_adv.safetensors``;
``--robust jitter`` trains on equal-norm noise instead (``irim_jit``).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Any

from kspace_attacks._checks import check_choice, check_nonneg_float, check_positive_int
from kspace_attacks.defense.factory import ROBUST_LOSSES, robust_loss

__all__ = ["Robust", "SUFFIX"]

#: Name suffix of the weights a robust run writes (``irim`` -> ``irim_adv``).
SUFFIX = {"adversarial": "adv", "jitter": "jit"}


@dataclass(frozen=True)
class Robust:
    """What makes a training run robust (validated).

    :param kind: ``"adversarial"`` or ``"jitter"``.
    :param eps: relative level of the perturbations trained against.
    :param mix: weight of the perturbed term of the loss.
    :param budget: gradient evaluations of the inner attack per step (adversarial).
    :param attack: the inner attack's name (adversarial).
    :param objective: what the inner attack maximises (adversarial).
    :param noise: ``"equal_norm"`` or ``"gaussian"`` (jitter).
    :param init: starting weights: ``"embedded"`` (the shipped standard model, fine-tuning), a
        safetensors path, or ``None`` (random initialisation).
    """

    kind: str
    eps: float = 0.05
    mix: float = 0.5
    budget: int = 4
    attack: str = "apgd"
    objective: str = "deviation"
    noise: str = "equal_norm"
    init: str | os.PathLike | None = "embedded"
    options: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        check_choice("robust", self.kind, ROBUST_LOSSES)
        check_nonneg_float("eps", self.eps, strictly_positive=True)
        check_positive_int("budget", self.budget)

    def loss(self, metric: Any, seed: int) -> Any:
        """The deepinv loss of this run around the model's own training ``metric``."""
        if self.kind == "adversarial":
            opts = {"attack": self.attack, "budget": self.budget, "objective": self.objective}
        else:
            opts = {"noise": self.noise}
        return robust_loss(self.kind, eps=self.eps, metric=metric, mix=self.mix, seed=seed, **opts)

    def weights_name(self, name: str) -> str:
        """Name of the weights this run writes (``irim`` -> ``irim_adv``)."""
        return f"{name}_{SUFFIX[self.kind]}"

    def record(self) -> dict:
        """The robust settings, as the run's JSON records them."""
        rec: dict[str, Any] = {"kind": self.kind, "eps": self.eps, "mix": self.mix,
                               "init": None if self.init is None else str(self.init)}
        if self.kind == "adversarial":
            rec.update(attack=self.attack, budget=self.budget, objective=self.objective,
                       threat="KSpaceL2(eps, per sample, measured k-space)")
        else:
            rec.update(noise=self.noise)
        return rec


def metric_of(loss_fn: Any, kind: str) -> Any:
    """The supervised loss ``loss_fn(kind, x_hat, x)`` as a metric ``m(x_hat, x)``."""
    return functools.partial(loss_fn, kind)
