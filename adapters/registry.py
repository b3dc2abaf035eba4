"""Name -> reconstructor registry, extensible through the ``kspace_attacks.reconstructors``
entry-point group.

Every registered target is a ``"module:callable"`` string whose callable has the signature
``load(weights="embedded", device="cpu", **kwargs) -> Reconstructor``. A third-party package
adds a reconstructor by declaring, in its ``pyproject.toml``::

    [project.entry-points."kspace_attacks.reconstructors"]
    my_model = "my_package.recon:load"
"""

from __future__ import annotations

import importlib
import importlib.metadata
import warnings
from typing import Any, Callable

import torch
from torch import nn

from kspace_attacks._checks import describe

#: Entry-point group scanned for third-party reconstructors.
ENTRY_POINT_GROUP = "kspace_attacks.reconstructors"

#: Reconstructors that ship with the package (imported lazily, only when loaded).
BUILTIN: dict[str, str] = {
    "diffusion": "kspace_attacks.adapters.diffusion:load",
    "fastmri_unet": "kspace_attacks.adapters.fastmri_models:load_unet",
    "fastmri_varnet": "kspace_attacks.adapters.fastmri_models:load_varnet",
    "irim": "kspace_attacks.adapters.irim:load",
    "resunetpp": "kspace_attacks.adapters.resunetpp:load",
    "zero_filled": "kspace_attacks.adapters.zero_filled:load",
}


class UnknownReconstructorError(KeyError):
    """Raised for a name that is neither built in nor provided by an entry point."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0])


def _plugins() -> dict[str, Any]:
    """Entry points of the group, by name; built-in names cannot be shadowed."""
    found = {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    for name in sorted(set(found) & set(BUILTIN)):
        warnings.warn(
            f"entry point {name!r} ({found[name].value}) ignored: the name is built in",
            stacklevel=3,
        )
        del found[name]
    return found


def list_reconstructors() -> list[str]:
    """Sorted names accepted by :func:`load_reconstructor` (built-ins and plugins).

    >>> from kspace_attacks.adapters import list_reconstructors
    >>> {"irim", "resunetpp", "zero_filled", "diffusion"} <= set(list_reconstructors())
    True
    """
    return sorted(set(BUILTIN) | set(_plugins()))


def _import_target(target: str) -> Callable[..., Any]:
    module, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def get_loader(name: str) -> Callable[..., Any]:
    """The ``load`` callable registered under ``name``.

    Raises :class:`UnknownReconstructorError` (a ``KeyError``) listing the available names.
    """
    if not isinstance(name, str):
        raise TypeError(f"name: expected a reconstructor name (str), got {describe(name)}")
    if name in BUILTIN:
        return _import_target(BUILTIN[name])
    plugins = _plugins()
    if name in plugins:
        return plugins[name].load()
    raise UnknownReconstructorError(
        f"name: unknown reconstructor {name!r}; available: {list_reconstructors()}"
    )


def load_reconstructor(name: str, weights: Any = "embedded", device: str | torch.device = "cpu",
                       **kwargs: Any) -> nn.Module:
    """Build the reconstructor ``name`` in eval mode on ``device``.

    :param name: one of :func:`list_reconstructors`.
    :param weights: ``"embedded"`` (weights shipped in ``kspace_attacks/adapters/weights``),
        a path to a weight file, or ``None`` (random initialisation).
    :param device: torch device.
    :param kwargs: model-specific options, passed to the model's ``load``.
    :return: a :class:`deepinv.models.Reconstructor` called as ``model(y, physics)``,
        returning complex images ``(B, 2, H, W)``.

    :Example:

    >>> import torch, deepinv as dinv
    >>> from kspace_attacks.adapters import load_reconstructor
    >>> model = load_reconstructor("zero_filled")
    >>> physics = dinv.physics.MRI(mask=torch.ones(16, 16))
    >>> model(physics.A(torch.rand(1, 2, 16, 16)), physics).shape
    torch.Size([1, 2, 16, 16])
    """
    model = get_loader(name)(weights=weights, device=device, **kwargs)
    if not callable(model):
        raise TypeError(f"{name}: the registered loader returned {describe(model)}, not a model")
    if isinstance(model, nn.Module):
        model.eval()
    return model


def resolve_model(spec: str, device: str | torch.device = "cpu", **kwargs: Any) -> Any:
    """A model from a command-line SPEC: a registered name (:func:`load_reconstructor`, with
    ``kwargs``) or ``"module:callable"`` / ``"path/to/file.py:callable"``, a factory called
    without arguments that returns a model ``model(y, physics) -> x``.

    Raises ``ValueError`` (bad ``module:callable``) or :class:`UnknownReconstructorError` (a
    ``KeyError``; unknown name), each naming the SPEC and what is accepted.

    >>> from kspace_attacks.adapters.registry import resolve_model
    >>> type(resolve_model("zero_filled")).__name__
    'ZeroFilled'
    """
    if not isinstance(spec, str) or not spec.strip():
        raise TypeError(f"model: expected a registered name or 'module:callable', got {describe(spec)}")
    if ":" not in spec:
        try:
            return load_reconstructor(spec, device=device, **kwargs)
        except UnknownReconstructorError:
            raise UnknownReconstructorError(
                f"model: unknown reconstructor {spec!r}; expected a registered name "
                f"({', '.join(list_reconstructors())}) or 'module:callable' returning a model"
            ) from None
    module, _, attr = spec.rpartition(":")
    if not module or not attr:
        raise ValueError(f"model: expected 'module:callable', got {spec!r}")
    factory = _load_factory(spec, module, attr)
    if not callable(factory):
        raise ValueError(f"model: {spec!r} is {describe(factory)}, not a callable returning a model")
    model = factory()
    if not callable(model):
        raise ValueError(f"model: {spec!r} returned {describe(model)}, not a model(y, physics)")
    if isinstance(model, nn.Module):
        model.to(device).eval()
    return model


def _load_factory(spec: str, module: str, attr: str) -> Any:
    import importlib.util
    from pathlib import Path

    try:
        if module.endswith(".py"):
            path = Path(module)
            if not path.is_file():
                raise ValueError(f"model: {spec!r}: file {path} does not exist")
            loader_spec = importlib.util.spec_from_file_location(path.stem, path)
            mod: Any = importlib.util.module_from_spec(loader_spec)
            loader_spec.loader.exec_module(mod)
        else:
            mod = importlib.import_module(module)
    except ImportError as e:
        raise ValueError(f"model: {spec!r}: cannot import module {module!r} ({e})") from e
    obj: Any = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"model: {spec!r}: module {module!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj
