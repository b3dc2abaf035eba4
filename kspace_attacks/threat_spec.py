"""The threat model as a configuration table (sweeps, the study, card protocols).

Example:

    >>> from kspace_attacks.threat_spec import ThreatSpec
    >>> spec = ThreatSpec.from_mapping({"type": "KSpaceL2", "support": "full"})
    >>> spec.build(0.05)
    KSpaceL2(eps=0.05, relative=True, per='sample', support='full')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from .schema import Table, setting
from .threat import KSpaceL2, KSpaceLinf, ThreatModel

__all__ = ["THREATS", "ThreatSpec"]

#: threat models by the name a configuration gives them
THREATS: dict[str, type[ThreatModel]] = {"KSpaceL2": KSpaceL2, "KSpaceLinf": KSpaceLinf}


@dataclass(frozen=True)
class ThreatSpec(Table):
    """``[threat]``: the norm ball perturbations live in (its budget comes from ``eps``)."""

    TABLE: ClassVar[str] = "threat"

    type: str = setting("KSpaceL2", "the norm: l2 (KSpaceL2) or per-entry modulus (KSpaceLinf)",
                        choices=tuple(THREATS))
    relative: bool = setting(True, "budgets relative to ||y|| (false: absolute)")
    per: str = setting("sample", "one budget per sample, or per coil (relative to each coil's norm)",
                       choices=("sample", "coil"))
    support: str = setting("measured", "perturb the measured entries only, or the full grid (masked by "
                           "the physics)", choices=("measured", "full"))

    def build(self, eps: float | Tensor = 0.05) -> ThreatModel:
        """The threat model at budget(s) ``eps``."""
        return THREATS[self.type](eps=eps, relative=self.relative, per=self.per, support=self.support)
