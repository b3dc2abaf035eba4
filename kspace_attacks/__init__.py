"""kspace-attacks: worst-case k-space perturbations for MRI reconstruction models.

Threat models (:class:`KSpaceL2`, :class:`KSpaceLinf`) bound an additive perturbation of the
measured k-space; physical threat models (:class:`RigidMotion`, :class:`PhaseErrors`,
:class:`Spikes`, :class:`CoilMapMismatch`, :class:`LostLines`) bound a scanner imperfection in
physical units; attacks (:class:`PGD`, :class:`APGD`, :class:`ProjectedAdam`, :class:`FGM`,
:class:`GaussianNoise`) search the ball for the perturbation that changes a reconstructor
``f(y, physics)`` the most; :func:`transfer` evaluates perturbations crafted on surrogates on
other models. Reconstructors for the study's models live in :mod:`kspace_attacks.adapters`.

Names are imported on first use, so that ``import kspace_attacks`` (and the pytest plugin,
which every pytest run in the environment loads) stays cheap until something is needed.

Example:

    >>> import torch, deepinv as dinv
    >>> import kspace_attacks as ka
    >>> mask = torch.zeros(16, 16); mask[:, ::2] = 1
    >>> physics = dinv.physics.MRI(mask=mask, img_size=(16, 16))
    >>> y = physics(torch.rand(1, 2, 16, 16, generator=torch.Generator().manual_seed(0)))
    >>> res = ka.PGD(ka.KSpaceL2(eps=0.02), steps=5)(lambda y, p: p.A_adjoint(y), y, physics)
    >>> res.delta.shape
    torch.Size([1, 2, 16, 16])
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.3.0"

# public name -> module that defines it
_EXPORTS = {
    "Attack": "attacks", "PGD": "attacks", "ProjectedAdam": "attacks", "FGM": "attacks",
    "GaussianNoise": "attacks", "default_attack": "attacks",
    "APGD": "attacks", "WorstCase": "attacks",
    "KSpaceL2": "threat", "KSpaceLinf": "threat", "ThreatModel": "threat", "sampling_mask": "threat",
    "AttackResult": "result",
    "RigidMotion": "physical", "PhaseErrors": "physical", "Spikes": "physical",
    "CoilMapMismatch": "physical", "LostLines": "physical",
    "TransferReport": "study.report",
    "transfer": "study.transfer", "STUDY_EPS": "study.records",
    "evaluate": "testing.card",
    # ``certify`` is the package itself, callable as the function (kspace_attacks.certify): a
    # cached function here would make ``import kspace_attacks.certify`` return the function
    "Certificate": "certify", "SmoothedModel": "certify",
}
_SUBMODULES = ("attacks", "losses", "metrics", "data", "study", "testing", "interop", "io",
               "adapters", "defense", "certify", "measurement", "schema", "hallucination", "physical")
__all__ = sorted({*_EXPORTS, *_SUBMODULES})


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'kspace_attacks' has no attribute {name!r}")
    globals()[name] = value  # cache: later look-ups are plain attribute access
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
