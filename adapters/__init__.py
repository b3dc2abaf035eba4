"""Reconstructors made attackable: every model is ``model(y, physics) -> x``.

Installed as ``kspace_attacks.adapters``. All reconstructors are
:class:`deepinv.models.Reconstructor` subclasses returning complex images ``(B, 2, H, W)``
(real/imaginary in dim 1) in the physics' image domain, scaled like the ground truth.

>>> from kspace_attacks.adapters import list_reconstructors, load_reconstructor
>>> model = load_reconstructor("zero_filled")

Model modules (``irim``, ``resunetpp``, ``diffusion``, ...) are imported lazily, when a
reconstructor is loaded.
"""

from .registry import (
    ENTRY_POINT_GROUP,
    UnknownReconstructorError,
    list_reconstructors,
    load_reconstructor,
    resolve_model,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "UnknownReconstructorError",
    "list_reconstructors",
    "load_reconstructor",
    "resolve_model",
]
