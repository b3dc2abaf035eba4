"""The exceptions raised when a file is not a usable fastMRI volume."""

from __future__ import annotations

__all__ = ["CorruptFastMRIFileError", "FastMRIFileError"]


class FastMRIFileError(ValueError):
    """A file is not a valid fastMRI volume (missing key, wrong dtype, shape mismatch, ...).

    The message always starts with the file path.
    """


class CorruptFastMRIFileError(FastMRIFileError, OSError):
    """The file cannot be read as HDF5 at all (truncated, corrupt, not HDF5).

    Also an ``OSError``, so code that skips unreadable volumes on ``OSError`` (as deepinv's
    ``FastMRISliceDataset`` does) keeps working.
    """
