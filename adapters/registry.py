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
import inspect
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from kspace_attacks._checks import describe

#: Entry-point group scanned for third-party reconstructors.
ENTRY_POINT_GROUP = "kspace_attacks.reconstructors"

#: Reconstructors that ship with the package (imported lazily, only when loaded).
BUILTIN: dict[str, str] = {
    "diffusion": "kspace_attacks.adapters.diffusion:load",
    "diffusion_3k": "kspace_attacks.adapters.diffusion:load_3k",
    "diffusion_diffpir": "kspace_attacks.adapters.deepinv_solvers:load_diffpir",
    "diffusion_dps": "kspace_attacks.adapters.deepinv_solvers:load_dps",
    "fastmri_unet": "kspace_attacks.adapters.fastmri_models:load_unet",
    "fastmri_varnet": "kspace_attacks.adapters.fastmri_models:load_varnet",
    "irim": "kspace_attacks.adapters.irim:load",
    "irim_adv": "kspace_attacks.adapters.irim:load_adv",
    "irim_jit": "kspace_attacks.adapters.irim:load_jit",
    "irim_noiseless": "kspace_attacks.adapters.irim:load_noiseless",
    "resunetpp": "kspace_attacks.adapters.resunetpp:load",
    "resunetpp_adv": "kspace_attacks.adapters.resunetpp:load_adv",
    "resunetpp_noiseless": "kspace_attacks.adapters.resunetpp:load_noiseless",
    "zero_filled": "kspace_attacks.adapters.zero_filled:load",
}


#: Clean image quality of the shipped models, measured by ``benchmarks/evaluate_reconstructors.py
#: --write-quality`` (PSNR / SSIM per model and data; see that script for the conventions).
QUALITY_FILE = Path(__file__).resolve().parent / "weights" / "quality.json"


def model_quality(name: str) -> dict[str, dict[str, Any]]:
    """The measured clean quality of a shipped model: ``{data: {"ssim": ..., "psnr": ..., ...}}``
    (reference scale; ``*_minmax``: per-image min-max)
    (``data``: ``"test"``, the embedded test split with the preset's 30 dB noise floor;
    ``"unseen"``, the shipped dipy brain); ``{}`` when it was not measured.

    >>> from kspace_attacks.adapters.registry import model_quality
    >>> model_quality("irim")["test"]["ssim"] > model_quality("zero_filled")["test"]["ssim"]
    True
    """
    if not isinstance(name, str):
        raise TypeError(f"name: expected a reconstructor name (str), got {describe(name)}")
    if not QUALITY_FILE.is_file():
        return {}
    import json

    return json.loads(QUALITY_FILE.read_text()).get(name, {})


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


def resolve_model(spec: Any, device: str | torch.device = "cpu", **kwargs: Any) -> Any:
    """A model from a SPEC, as the command line, sweep configs and ``evaluate`` name models.

    SPEC is a registered name (:func:`load_reconstructor`, with ``kwargs``), ``"module:attr"``
    or ``"path/to/file.py:attr"``, or already a model. ``attr`` may be a zero-argument factory
    (a function or a class) returning a model, an ``nn.Module`` instance, or a plain function
    ``f(y, physics) -> x``. An ``nn.Module`` is moved to ``device`` and put in eval mode.

    Errors (``ValueError``, or :class:`UnknownReconstructorError` for an unknown name) name the
    SPEC and suggest the form that would work (e.g. ``mymodel.py:make`` when ``mymodel`` is not
    importable but ``mymodel.py`` is in the current folder).

    >>> from kspace_attacks.adapters.registry import resolve_model
    >>> type(resolve_model("zero_filled")).__name__
    'ZeroFilled'
    >>> resolve_model("math:pi")
    Traceback (most recent call last):
    ...
    ValueError: model: 'math:pi' is float 3.14..., not a model: expected a zero-argument factory, an nn.Module or a function f(y, physics)
    """
    if callable(spec) and not isinstance(spec, str):
        return _as_model(spec, repr(spec), device)
    if not isinstance(spec, str) or not spec.strip():
        raise TypeError(f"model: expected a registered name, 'module:callable', 'file.py:callable' or a "
                        f"model, got {describe(spec)}")
    if ":" not in spec:
        try:
            return load_reconstructor(spec, device=device, **kwargs)
        except UnknownReconstructorError:
            hint = f"; did you mean '{spec}.py:<callable>'?" if Path(f"{spec}.py").is_file() else ""
            raise UnknownReconstructorError(
                f"model: unknown reconstructor {spec!r}; expected a registered name "
                f"({', '.join(list_reconstructors())}) or 'module:callable' / 'file.py:callable' "
                f"returning a model{hint}"
            ) from None
    module, _, attr = spec.rpartition(":")
    if not module or not attr:
        raise ValueError(f"model: expected 'module:callable' or 'file.py:callable', got {spec!r}")
    return _as_model(_load_factory(spec, module, attr), repr(spec), device)


def _required_positional(fn: Any) -> int | None:
    """Number of required positional parameters of ``fn`` (None when it cannot be told)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    return sum(p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
               for p in params)


def _as_model(obj: Any, label: str, device: str | torch.device) -> Any:
    """``obj`` as a model: an nn.Module or f(y, physics) as is, a factory called first."""
    forms = "expected a zero-argument factory, an nn.Module or a function f(y, physics)"
    if isinstance(obj, nn.Module):
        return obj.to(device).eval()
    if not callable(obj):
        raise ValueError(f"model: {label} is {describe(obj)}, not a model: {forms}")
    n = _required_positional(obj)
    if n == 0 or isinstance(obj, type):
        try:
            model = obj()
        except TypeError as e:
            raise ValueError(f"model: {label} could not be called without arguments ({e}); {forms}") from e
        if not callable(model):
            raise ValueError(f"model: {label} returned {describe(model)}, not a model(y, physics)")
        return model.to(device).eval() if isinstance(model, nn.Module) else model
    if n in (None, 2):
        return obj  # a plain function f(y, physics)
    raise ValueError(f"model: {label} takes {n} required arguments; {forms}")


def _load_factory(spec: str, module: str, attr: str) -> Any:
    import importlib.util

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
        hint = (f"; did you mean '{module}.py:{attr}'?" if Path(f"{module}.py").is_file()
                else "; a file is named as 'path/to/file.py:callable'")
        raise ValueError(f"model: {spec!r}: cannot import module {module!r} ({e}){hint}") from e
    obj: Any = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"model: {spec!r}: module {module!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj
