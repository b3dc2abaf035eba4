"""The physical threats by name, with the budgets the cards, the study and the docs use.

>>> from kspace_attacks.physical.catalog import build_physical, PHYSICAL_BUDGETS
>>> PHYSICAL_BUDGETS["motion"]
(0.5, 1.0, 2.0)
>>> build_physical("phase", 0.1)
PhaseErrors(eps=0.1, shots=None, ordering='interleaved', drift=True)
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import Tensor

from .._checks import check_choice, describe
from ..threat import ThreatModel
from .coil_maps import CoilMapMismatch
from .lost_lines import LostLines
from .motion import RigidMotion
from .phase import PhaseErrors
from .spikes import Spikes

__all__ = ["PHYSICAL_THREATS", "PHYSICAL_BUDGETS", "EMBEDDED_PIXEL_MM", "build_physical"]

#: physical threat models by the name configurations, cards and the CLI give them
PHYSICAL_THREATS: dict[str, type[ThreatModel]] = {
    "motion": RigidMotion, "phase": PhaseErrors, "spikes": Spikes,
    "coil_maps": CoilMapMismatch, "lost_lines": LostLines,
}

#: the three documented budgets per threat, in its unit (mm per shot, rad, max|y|, relative
#: map error, lines): a fraction of a pixel to about half a pixel of motion at the embedded
#: preset, phase errors of 3-11 degrees, spikes of 2-10 % of the k-space centre
PHYSICAL_BUDGETS: dict[str, tuple[float, ...]] = {
    "motion": (0.5, 1.0, 2.0),
    "phase": (0.05, 0.1, 0.2),
    "spikes": (0.02, 0.05, 0.1),
    "coil_maps": (0.05, 0.1, 0.2),
    "lost_lines": (1.0, 2.0, 4.0),
}

#: pixel size of the embedded 64 x 64 preset: the template's 233 mm field of view / 64
EMBEDDED_PIXEL_MM = 233.0 / 64


def build_physical(name: str, eps: float | Tensor | None = None, **settings: Any) -> ThreatModel:
    """The physical threat ``name`` at budget ``eps`` (default: its middle documented budget).

    ``settings`` are the class's other arguments; keys the class does not take are an error
    (a typo would otherwise silently change nothing).
    """
    name = check_choice("name", name, tuple(PHYSICAL_THREATS))
    cls = PHYSICAL_THREATS[name]
    accepted = set(inspect.signature(cls).parameters) - {"eps"}
    unknown = sorted(set(settings) - accepted)
    if unknown:
        raise TypeError(f"settings: {cls.__name__} takes {sorted(accepted)}, got unknown {unknown}")
    if eps is None:
        eps = PHYSICAL_BUDGETS[name][1]
    if not isinstance(eps, (int, float, Tensor)) or isinstance(eps, bool):
        raise TypeError(f"eps: expected a float or a (B,) tensor, got {describe(eps)}")
    return cls(eps=eps, **settings)
