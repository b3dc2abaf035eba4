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
