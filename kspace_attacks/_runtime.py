"""Process-wide numeric settings, scoped so they never leak into the caller's code."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def flush_denormals() -> Iterator[None]:
    """Flush denormal floats to zero inside the block (CPU steps were 10-30x slower with them).

    torch has no getter for the flag, so it is reset to its default (off) afterwards: leaving it
    on would change floating-point results elsewhere in the process.
    """
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def denormals_flushed(fn):
    """Decorator: run ``fn`` inside :func:`flush_denormals`."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with flush_denormals():
            return fn(*args, **kwargs)

    return wrapper


@contextlib.contextmanager
def reproducible_numerics(threads: int) -> Iterator[None]:
    """Fix torch's intra-op thread count to ``threads`` and request deterministic algorithms
    (warnings, not errors, where an operation has none) inside the block; both are restored.

    Float reductions split over a different number of threads round differently, so results
    are a function of the inputs only once the thread count is fixed.
    """
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads: expected an int >= 1, got {threads!r}")
    previous_threads = torch.get_num_threads()
    previous_det = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous_det, warn_only=previous_warn)
        torch.set_num_threads(previous_threads)


def _distribution_version(name: str) -> str:
    """The installed version of distribution ``name`` (``"unknown"`` if it is not installed);
    read from the package metadata, so nothing is imported."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def _package_version() -> str:
    """This package's version as imported (installed metadata can be stale in an editable
    install)."""
    from . import __version__

    return __version__


def runtime_provenance(threads: int | None = None, device: str = "cpu", world_size: int = 1) -> dict:
    """What, besides the configuration and the seed, decides a run's floating-point results.

    :param threads: torch intra-op threads of the run (default: the current count).
    :param device: the torch device the run computes on.
    :param world_size: the number of processes (torchrun ranks) sharing the run.
    :return: a JSON-ready dict: versions of kspace-attacks, torch, deepinv and numpy, python,
        platform and processor, ``threads``, ``deterministic`` (torch's deterministic-algorithms
        mode, as currently set), ``device`` and ``world_size``.
    """
    import os
    import platform

    import numpy

    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads: expected an int >= 1 or None, got {threads!r}")
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size: expected an int >= 1, got {world_size!r}")
    return {
        "kspace_attacks": _package_version(),
        "torch": torch.__version__,
        "deepinv": _distribution_version("deepinv"),
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads() if threads is None else threads,
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "device": str(device),
        "world_size": world_size,
    }
