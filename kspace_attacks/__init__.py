"""kspace-attacks: worst-case k-space perturbations for MRI reconstruction models.

Threat models (:class:`KSpaceL2`, :class:`KSpaceLinf`) bound an additive perturbation of the
measured k-space; attacks (:class:`PGD`, :class:`ProjectedAdam`, :class:`FGM`,
:class:`GaussianNoise`) search the ball for the perturbation that changes a reconstructor
``f(y, physics)`` the most. Reconstructors for the study's models live in
:mod:`kspace_attacks.adapters`.

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

from . import analysis, losses, metrics
from .attacks import FGM, PGD, Attack, GaussianNoise, ProjectedAdam
from .report import TransferReport
from .result import AttackResult
from .threat import KSpaceL2, KSpaceLinf, ThreatModel, sampling_mask
from .transfer import DEFAULT_EPS, transfer

__version__ = "0.1.0"

__all__ = [
    "Attack",
    "AttackResult",
    "DEFAULT_EPS",
    "TransferReport",
    "analysis",
    "transfer",
    "FGM",
    "GaussianNoise",
    "KSpaceL2",
    "KSpaceLinf",
    "PGD",
    "ProjectedAdam",
    "ThreatModel",
    "losses",
    "metrics",
    "sampling_mask",
]
