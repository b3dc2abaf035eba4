"""Certified upper bounds on the output deviation: center smoothing (Kumar & Goldstein, 2021).

Every number an attack reports is a lower bound: the worst perturbation it found. This package
gives the other side, for a smoothed version of the model: :class:`SmoothedModel` is the
center of the model's reconstructions under Gaussian k-space noise on the measured entries,
and :func:`certify` bounds, with probability ``1 - alpha``, how far any perturbation
``||delta|| <= eps ||y||`` can move that smoothed reconstruction (``Certificate.radius``).
With ``attack_budget`` it also attacks the smoothed model, so ``lower <= radius`` brackets its
true worst case. Nothing is certified about the base model.

Modules: :mod:`.smoothing` (the smoothed model and its keyed noise), :mod:`.center` (the sample
center), :mod:`.bound` (the certificate's formulas and their sources), :mod:`.api`
(:func:`certify`), :mod:`.certificate` (:class:`Certificate`), :mod:`.command` (the
``kspace-attacks certify`` subcommand).

Example:

    >>> import torch, deepinv as dinv
    >>> import kspace_attacks.certify as kc
    >>> mask = torch.zeros(16, 16); mask[:, ::2] = 1
    >>> physics = dinv.physics.MRI(mask=mask, img_size=(16, 16))
    >>> y = physics(torch.rand(1, 2, 16, 16, generator=torch.Generator().manual_seed(0)))
    >>> cert = kc.certify(lambda y, p: p.A_adjoint(y), y, physics, eps=0.01, sigma=0.01,
    ...                   n_pred=400, n_cert=1000, delta=0.2, attack_budget=6)
    >>> cert.abstained.tolist(), bool(cert.lower <= cert.radius)
    ([False], True)
    >>> print(cert.statement)  # doctest: +ELLIPSIS
    With probability >= 0.99 (over the smoothing noise), for every k-space perturbation ...
      eps 0.01: R median ... x ||smoothed(y)||); abstained on 0 of 1 samples
    Nothing is certified about the base model: its worst case is only bounded below, by attacks.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from .._lazy import lazy_exports

# public name -> module that defines it; imported on first use, so that the command line can
# declare the subcommand (``command.add_parser``) without importing torch
_EXPORTS = {"certify": "api", "Certificate": "certificate", "SmoothedModel": "smoothing"}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(globals(), __name__, _EXPORTS)


class _CallableModule(types.ModuleType):
    """Importing this package sets ``kspace_attacks.certify`` to the module, which would hide
    the function of the same name exported at the top level (``ka.certify(...)``); a call on
    the module is the call of the function, so both spellings work in any import order."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return __getattr__("certify")(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
