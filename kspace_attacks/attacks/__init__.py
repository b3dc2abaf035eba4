"""Attacks on reconstructors ``f(y, physics)``: one attack per module.

Every attack has one name (:attr:`Attack.name`), used by sweep configs (``type = "pgd"``),
records (the ``attack`` column's default label), the pytest plugin and the command line;
:func:`attack_class` resolves it (the class names of earlier configs are accepted too).

>>> from kspace_attacks.attacks import attack_class
>>> attack_class("pgd").__name__, attack_class("ProjectedAdam").__name__
('PGD', 'ProjectedAdam')
"""

from __future__ import annotations

from ..threat import KSpaceL2, ThreatModel
from .apgd import APGD
from .base import Attack, Problem
from .fgm import FGM
from .gaussian_noise import GaussianNoise
from .pgd import PGD
from .projected_adam import ProjectedAdam
from .worst_case import WorstCase

__all__ = ["Attack", "Problem", "PGD", "APGD", "ProjectedAdam", "FGM", "GaussianNoise", "WorstCase", "ATTACKS",
           "attack_class", "default_attack", "DEFAULT_ATTACK"]

#: name -> attack class, for every attack of the package.
ATTACKS: dict[str, type[Attack]] = {
    cls.name: cls for cls in (PGD, APGD, ProjectedAdam, FGM, GaussianNoise, WorstCase)
}


def attack_class(name: str) -> type[Attack]:
    """The attack class called ``name`` (``"pgd"``, ``"adam"``, ...; class names accepted)."""
    if isinstance(name, str):
        key = name.strip()
        if key.lower() in ATTACKS:
            return ATTACKS[key.lower()]
        by_class = {cls.__name__: cls for cls in ATTACKS.values()}
        if key in by_class:
            return by_class[key]
    raise ValueError(f"attack: expected one of {sorted(ATTACKS)}, got {name!r}")


#: Name of the default worst-case search: :class:`WorstCase` (diverse starts, successive
#: halving of short APGD runs), which reaches the best-known worst case far more reliably than
#: one APGD run (``benchmarks/bench_strength.py``, ``benchmarks/results/strength_optimality.md``).
#: ``"apgd"`` (20 steps: the v1 protocol's search) stays selectable by name.
DEFAULT_ATTACK = "worst_case"


def default_attack(threat: ThreatModel | None = None, budget: int | None = None) -> Attack:
    """The package's default attack, used by transfer, sweeps and interop.

    :class:`WorstCase` with ``budget`` gradient evaluations per row (default 100) on ``threat``
    (default: l2 ball relative to ||y|| per sample on the measured k-space, eps 0.05).

    >>> default_attack()
    WorstCase(threat=KSpaceL2(eps=0.05, ...), budget=100, preset='default', ...)
    """
    return ATTACKS[DEFAULT_ATTACK](KSpaceL2() if threat is None else threat, budget=budget)
