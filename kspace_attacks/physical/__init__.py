"""Physical threat models: what a scanner can do, budgeted in physical units.

Every class is a :class:`~kspace_attacks.ThreatModel`, so every attack, control and report
works on it unchanged:

- :class:`RigidMotion`: per-shot translation (mm) and rotation (degrees);
- :class:`PhaseErrors`: per-line or per-shot phase offsets and readout drift (radians);
- :class:`Spikes`: a few k-space spikes (modulus relative to ``max |y|``);
- :class:`CoilMapMismatch`: smooth relative errors of the coil maps the model is told;
- :class:`LostLines`: whole measured lines dropped (relaxed, then rounded).

>>> import kspace_attacks as ka
>>> ka.RigidMotion(eps=1.0, shots=4)
RigidMotion(eps=1.0, shots=4, ordering='interleaved', pixel_mm=1.0, degrees_per_mm=1.0, reference=None)
"""

from .base import ParametricThreat
from .coil_maps import CoilMapMismatch
from .lost_lines import LostLines
from .motion import RigidMotion
from .phase import PhaseErrors
from .spikes import Spikes

__all__ = ["ParametricThreat", "RigidMotion", "PhaseErrors", "Spikes", "CoilMapMismatch", "LostLines"]
