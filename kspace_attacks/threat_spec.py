"""The threat model as a configuration table (sweeps, the study, card protocols).

``type`` names an additive norm ball (``KSpaceL2``, ``KSpaceLinf``: ``relative``, ``per`` and
``support`` apply) or a physical threat (``motion``, ``phase``, ``spikes``, ``coil_maps``,
``lost_lines``: :mod:`kspace_attacks.physical`, with their own keys below). A key that does not
apply to the chosen type must keep its default: a setting that would silently change nothing
is an error.

Example:

    >>> from kspace_attacks.threat_spec import ThreatSpec
    >>> spec = ThreatSpec.from_mapping({"type": "KSpaceL2", "support": "full"})
    >>> spec.build(0.05)
    KSpaceL2(eps=0.05, relative=True, per='sample', support='full')
    >>> ThreatSpec.from_mapping({"type": "motion", "shots": 4}).build(1.0)
    RigidMotion(eps=1.0, shots=4, ordering='interleaved', pixel_mm=3.640625, degrees_per_mm=0.0, reference=None)
    >>> ThreatSpec.from_mapping({"type": "spikes", "shots": 4})
    Traceback (most recent call last):
    ...
    kspace_attacks.schema.ConfigError: threat: shots = 4 does not apply to type 'spikes' (its keys: count, relative)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor

from .physical.catalog import EMBEDDED_PIXEL_MM, PHYSICAL_THREATS, build_physical
from .schema import ConfigError, Table, setting
from .threat import KSpaceL2, KSpaceLinf, ThreatModel

__all__ = ["THREATS", "ThreatSpec", "THREAT_KEYS", "resolve_threat"]

#: additive threat models by the name a configuration gives them
THREATS: dict[str, type[ThreatModel]] = {"KSpaceL2": KSpaceL2, "KSpaceLinf": KSpaceLinf}

#: the keys (besides ``type``) that apply to each threat type
THREAT_KEYS: dict[str, tuple[str, ...]] = {
    "KSpaceL2": ("relative", "per", "support"),
    "KSpaceLinf": ("relative", "per", "support"),
    "motion": ("shots", "ordering", "pixel_mm", "degrees_per_mm"),
    "phase": ("shots", "ordering", "drift"),
    "spikes": ("count", "relative"),
    "coil_maps": ("basis",),
    "lost_lines": (),
}


@dataclass(frozen=True)
class ThreatSpec(Table):
    """``[threat]``: where perturbations live (their budget comes from ``eps``)."""

    TABLE: ClassVar[str] = "threat"

    type: str = setting("KSpaceL2", "an additive norm ball (KSpaceL2: l2; KSpaceLinf: per-entry modulus) or a "
                        "physical threat (eps in its unit: motion mm per shot, phase rad, spikes max|y|, "
                        "coil_maps relative map error, lost_lines lines)",
                        choices=(*THREATS, *PHYSICAL_THREATS))
    relative: bool = setting(True, "budgets relative to ||y|| (KSpaceL2/KSpaceLinf) or max|y| (spikes); false: "
                             "absolute")
    per: str = setting("sample", "one budget per sample, or per coil (relative to each coil's norm)",
                       choices=("sample", "coil"))
    support: str = setting("measured", "perturb the measured entries only, or the full grid (masked by "
                           "the physics)", choices=("measured", "full"))
    shots: int = setting(8, "motion, phase: shots the phase-encoding lines are grouped into (phase: 0 = "
                         "every line its own offset)", minimum=0)
    ordering: str = setting("interleaved", "motion, phase: how lines are assigned to shots",
                            choices=("interleaved", "sequential"))
    pixel_mm: float = setting(EMBEDDED_PIXEL_MM, "motion: pixel size in mm (default: the embedded 64 x 64 "
                              "preset's, 233 mm / 64)", minimum=1e-9)
    degrees_per_mm: float = setting(0.0, "motion: rotation budget per mm (needs a reference image: Python "
                                    "API RigidMotion(reference=x); configurations translate only)", minimum=0.0)
    drift: bool = setting(True, "phase: also a linear phase along the readout (B0 drift)")
    count: int = setting(4, "spikes: spikes per sample", minimum=1)
    basis: int = setting(4, "coil_maps: coefficients per axis of the smooth map error", minimum=2)

    def _check(self, where: str) -> None:
        super()._check(where)
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        applies = THREAT_KEYS[self.type]
        for key in defaults:
            if key != "type" and key not in applies and getattr(self, key) != defaults[key]:
                raise ConfigError(f"{where}: {key} = {getattr(self, key)!r} does not apply to type "
                                  f"{self.type!r} (its keys: {', '.join(applies) or 'none'})")
        if self.type == "motion" and self.shots < 1:
            raise ConfigError(f"{where}.shots: expected an integer >= 1 for motion, got 0")
        if self.degrees_per_mm > 0:
            raise ConfigError(f"{where}.degrees_per_mm: rotations need the object as a reference image, "
                              "which a configuration cannot give; use RigidMotion(reference=x) in Python")

    @property
    def physical(self) -> bool:
        """Whether ``type`` is a physical threat (eps in its own unit, not relative to ||y||)."""
        return self.type in PHYSICAL_THREATS

    def build(self, eps: float | Tensor | None = None) -> ThreatModel:
        """The threat model at budget(s) ``eps`` (default: 0.05 for a norm ball, the middle
        documented budget of a physical threat)."""
        if not self.physical:
            return THREATS[self.type](eps=0.05 if eps is None else eps, relative=self.relative,
                                      per=self.per, support=self.support)
        settings: dict[str, Any] = {k: getattr(self, k) for k in THREAT_KEYS[self.type]}
        if self.type == "phase":
            settings["shots"] = settings["shots"] or None
        return build_physical(self.type, eps, **settings)


def resolve_threat(threat: str | ThreatModel, eps: float | Tensor | None = None) -> ThreatModel:
    """A threat model from a name (``"motion"``, ``"KSpaceL2"``, ...) or a :class:`ThreatModel`,
    at budget ``eps`` (``None``: a given model's own, a name's default).

    >>> resolve_threat("lost_lines", 4)
    LostLines(eps=4.0)
    """
    if isinstance(threat, ThreatModel):
        return threat if eps is None else threat.with_eps(eps)
    if not isinstance(threat, str):
        raise TypeError(f"threat: expected a threat name or a ThreatModel, got {type(threat).__name__}")
    try:
        return ThreatSpec.from_mapping({"type": threat}, "threat").build(eps)
    except ConfigError as e:
        raise ValueError(str(e)) from None
