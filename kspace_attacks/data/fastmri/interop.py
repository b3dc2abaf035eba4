"""What talks to the optional ``fastmri`` package itself, which is only ever imported lazily.

Absolute imports only: the tests load this file on its own to check that it imports without
``fastmri`` installed.
"""

from __future__ import annotations

import os
from typing import Any

from kspace_attacks._checks import check_choice
from kspace_attacks.data.fastmri.dataset import FastMRISlices
from kspace_attacks.data.fastmri.files import _as_path, inspect_fastmri_file

__all__ = ["fastmri_slice_dataset", "require_fastmri"]

FASTMRI_INSTALL_HINT = 'pip install "kspace-attacks[fastmri]"'


def require_fastmri() -> Any:
    """Import and return the optional ``fastmri`` package, or explain how to install it.

    >>> try:
    ...     fastmri = require_fastmri()
    ... except ImportError as err:
    ...     assert "kspace-attacks[fastmri]" in str(err)
    """
    try:
        import fastmri  # optional dependency, imported lazily on purpose
    except ImportError as err:
        raise ImportError(
            f"this feature needs the optional 'fastmri' package; install it with "
            f"{FASTMRI_INSTALL_HINT}"
        ) from err
    return fastmri


def fastmri_slice_dataset(
    root: str | os.PathLike, *, challenge: str | None = None, transform: Any = None, **kwargs: Any
) -> Any:
    """``fastmri.data.SliceDataset`` over ``root`` (needs the optional ``fastmri`` package).

    ``challenge`` (``"singlecoil"`` / ``"multicoil"``) is inferred from the first ``.h5`` file
    when omitted. Note fastMRI's dataset lists *every* file in ``root``, not only ``*.h5``.
    """
    require_fastmri()
    from fastmri.data import SliceDataset

    root = _as_path(root, "root")
    if challenge is None:
        first = FastMRISlices._list_files(root)[0]
        challenge = "multicoil" if inspect_fastmri_file(first).multicoil else "singlecoil"
    check_choice("challenge", challenge, ("singlecoil", "multicoil"))
    return SliceDataset(root=root, challenge=challenge, transform=transform, **kwargs)
