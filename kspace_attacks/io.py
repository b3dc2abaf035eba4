"""File writes that never lose a user's results, and JSON that every parser accepts.

Every file the package writes goes through :func:`atomic_path`: the content is written to a
hidden temporary file in the destination folder, flushed to disk, then renamed over the
destination in one step, so a crash or a kill leaves either the old file or the new one, never
a truncated one. The temporary name does not end in the destination's suffix, so folder
scanners (``*.h5``, ``*.csv``) never pick up a half-written file.

Example:

    >>> import tempfile, pathlib
    >>> from kspace_attacks.io import atomic_write_json, read_json
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = atomic_write_json(d / "a.json", {"x": float("nan"), "y": [1.5]})
    >>> read_json(d / "a.json")
    {'x': None, 'y': [1.5]}
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_path",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_torch_save",
    "strict_json",
    "dumps_strict",
    "read_json",
    "fsync_dir",
]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(directory: str | os.PathLike) -> None:
    """Flush a folder's entries to disk (makes a rename durable); a no-op where unsupported."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike, overwrite: bool = True, make_parents: bool = True
) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` in one rename.

    :param path: the destination.
    :param bool overwrite: if ``False``, raise ``FileExistsError`` when ``path`` exists.
    :param bool make_parents: create missing parent folders (else ``FileNotFoundError``).

    The writer may create the temporary file itself (h5py, safetensors, torch.save). Its
    permissions follow the umask (``mkstemp``-style 0600 would hide shared results).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: already exists and overwrite=False")
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.parent.is_dir():
        raise FileNotFoundError(f"{path}: parent directory {path.parent} does not exist")
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8, newlines untranslated) to ``path`` atomically; returns the path."""
    if not isinstance(text, str):
        raise TypeError(f"text: expected a str, got {type(text).__name__}")
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
    return Path(path)


def strict_json(value: Any) -> Any:
    """A copy of ``value`` in which NaN and infinities are ``None`` (standard JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def dumps_strict(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` of :func:`strict_json` ``(value)`` that refuses NaN (standard JSON)."""
    return json.dumps(strict_json(value), allow_nan=False, **kwargs)


def atomic_write_json(path: str | os.PathLike, value: Any, indent: int | None = 1,
                      default: Any = str) -> Path:
    """Write ``value`` as standard JSON (NaN/inf -> null) atomically, with a final newline."""
    return atomic_write_text(path, dumps_strict(value, indent=indent, default=default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file, naming the file in the error if it is not valid JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` to ``path`` atomically (a crash never leaves a truncated checkpoint)."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)
