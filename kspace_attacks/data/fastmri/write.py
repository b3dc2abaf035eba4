"""Writing a (simulated) volume as a standard fastMRI ``.h5`` file, atomically.

Besides :func:`write_fastmri_file`, this module holds what every writer here shares:
:func:`_fastmri_payload` (the standard datasets and attrs) and :func:`_write_h5` (the atomic
HDF5 write through :func:`kspace_attacks.io.atomic_path`, so an interrupted run never leaves a
half-written ``.h5`` that folder scanners would pick up).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from deepinv.physics import MRI, MultiCoilMRI
from torch import Tensor

from kspace_attacks._checks import check_choice, check_kspace, describe
from kspace_attacks.data.fastmri.attrs import _encode_attrs
from kspace_attacks.data.fastmri.coil_maps import _acs_from_mask
from kspace_attacks.data.fastmri.files import (
    RECON_KEYS,
    _as_path,
    _header_bytes,
    make_ismrmrd_header,
)
from kspace_attacks.data.fastmri.layout import (
    _center_crop,
    _magnitude_volume,
    _mask_to_stored,
    _rss,
    deepinv_to_fastmri,
)
from kspace_attacks.io import atomic_path

__all__ = ["write_fastmri_file"]

_MASK_LAYOUT = "kspace_attacks_mask_layout"  # attr: "W", "HW" or "SHW", the stored mask layout


def _write_h5(
    path: Path, datasets: Mapping[str, Any], attrs: Mapping[str, Any], overwrite: bool
) -> Path:
    """Write ``datasets`` and ``attrs`` to ``path`` atomically; returns ``path``.

    Raises ``FileExistsError`` if ``path`` exists and not ``overwrite``, ``FileNotFoundError``
    if its folder does not exist (a missing folder is more likely a typo than a request).
    """
    with atomic_path(path, overwrite=overwrite, make_parents=False) as tmp:
        with h5py.File(tmp, "x") as hf:  # "x": the temp name is fresh, never clobber a file
            for key, data in datasets.items():
                hf.create_dataset(key, data=data)
            hf.attrs.update(attrs)
    return path


def _acceleration_attrs(stored_mask: np.ndarray) -> dict[str, Any]:
    """fastMRI's test-file attrs ``acceleration`` / ``num_low_frequency`` for a column mask."""
    if stored_mask.ndim != 1 or not stored_mask.any():
        return {}
    acs = _acs_from_mask(torch.from_numpy(stored_mask[None].astype(np.float32)))
    return {
        "acceleration": round(stored_mask.size / int(stored_mask.sum())),
        "num_low_frequency": acs,
    }


def _auto_reconstruction(k: np.ndarray, recon_size: tuple[int, int]) -> np.ndarray:
    """fastMRI's target of fully sampled k-space: centre-cropped ``|ifft(k)|`` / coil RSS."""
    img = MRI.ifft(torch.from_numpy(k))
    mag = _rss(img, 1) if img.dim() == 4 else img.abs()
    return _center_crop(mag, recon_size).float().numpy()


def _fastmri_payload(
    path: Path,
    kspace_y: Tensor,
    *,
    name: str,
    mask: Any,
    reconstruction: Any,
    recon_size: tuple[int, int] | None,
    attrs: Mapping[str, Any] | None,
    ismrmrd_header: bytes | str | None,
    acquisition: str,
    patient_id: str | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Datasets and attrs of a standard fastMRI file (shared by both writers)."""
    k = deepinv_to_fastmri(check_kspace(name, kspace_y))
    n_slices, h, w = k.shape[0], k.shape[-2], k.shape[-1]
    if not isinstance(acquisition, str):
        raise TypeError(f"acquisition: expected a str, got {describe(acquisition)}")
    if attrs is not None and not isinstance(attrs, Mapping):
        raise TypeError(f"attrs: expected a dict, got {describe(attrs)}")
    datasets: dict[str, Any] = {"kspace": k}
    meta: dict[str, Any] = {
        "acquisition": acquisition,
        "patient_id": patient_id or f"simulated-{path.stem}",
    }

    if mask is not None:
        stored = _mask_to_stored(mask, n_slices, h, w, "mask")
        datasets["mask"] = stored
        meta[_MASK_LAYOUT] = {1: "W", 2: "HW", 3: "SHW"}[stored.ndim]
        meta |= _acceleration_attrs(stored)

    if isinstance(reconstruction, str):
        check_choice("reconstruction", reconstruction, ("auto",))
        if mask is None:  # fully sampled: the target is well defined
            size = recon_size or (min(320, h), min(320, w))
            reconstruction = _auto_reconstruction(k, size)
        else:
            reconstruction = None
    elif reconstruction is not None:
        reconstruction = _magnitude_volume(reconstruction, n_slices, "reconstruction")
    if reconstruction is not None:
        datasets[RECON_KEYS[1] if k.ndim == 4 else RECON_KEYS[0]] = reconstruction
        meta["max"] = float(reconstruction.max())
        meta["norm"] = float(np.linalg.norm(reconstruction))
        recon_size = tuple(reconstruction.shape[-2:])
    recon_size = recon_size or (min(320, h), min(320, w))

    datasets["ismrmrd_header"] = _header_bytes(
        ismrmrd_header, make_ismrmrd_header((h, w), recon_size, num_slices=n_slices)
    )
    return datasets, meta | dict(attrs or {})


def write_fastmri_file(
    path: str | os.PathLike,
    kspace_y: Tensor,
    *,
    mask: Tensor | np.ndarray | MRI | MultiCoilMRI | None = None,
    reconstruction: Tensor | str | None = "auto",
    recon_size: tuple[int, int] | None = None,
    attrs: Mapping[str, Any] | None = None,
    ismrmrd_header: bytes | str | None = None,
    acquisition: str = "CORPD_FBK",
    patient_id: str | None = None,
    overwrite: bool = True,
) -> Path:
    """Write a (simulated) volume as a fastMRI ``.h5`` file, atomically.

    :param kspace_y: deepinv-layout k-space, one batch entry per slice: ``(S, 2, H, W)``
        single-coil or ``(S, 2, N, H, W)`` multi-coil; stored as complex64 ``kspace``
        ``(S, [N,] H, W)`` exactly (no masking, float32 precision).
    :param mask: ``None`` for fully sampled k-space (train/val style) or the sampling mask
        (``(W,)``, ``(H, W)``, deepinv ``(B, C, H, W)`` or a physics) for undersampled data
        (test style). Stored as fastMRI's ``(W,)`` when it is a set of full columns, else as
        ``(H, W)`` / ``(S, H, W)`` (read back here, but not by fastMRI/deepinv transforms).
        A ``(W,)`` mask also sets attrs ``acceleration`` and ``num_low_frequency``.
    :param reconstruction: target stored as ``reconstruction_esc`` (single-coil) or
        ``reconstruction_rss`` (multi-coil): a tensor ``(S, h, w)``, ``(S, 1, h, w)`` or
        complex ``(S, 2, h, w)`` (magnitude taken); ``"auto"`` computes ``|ifft(k)|`` / coil
        RSS centre-cropped to ``recon_size`` (default ``min(320, H) x min(320, W)``) when
        ``mask`` is None, and writes none otherwise; ``None`` writes none. attrs ``max`` and
        ``norm`` (max and l2 norm of the target volume) are set when a target is written.
    :param attrs: extra attrs, overriding the defaults; dict/list values are JSON-encoded.
    :param ismrmrd_header: XML to store; default :func:`make_ismrmrd_header`.
    :return: the path written.

    >>> import tempfile
    >>> y = torch.randn(2, 2, 3, 16, 12)  # 2 slices, 3 coils
    >>> p = write_fastmri_file(Path(tempfile.mkdtemp()) / "mc.h5", y, acquisition="AXT2")
    >>> with h5py.File(p) as hf: print(hf["kspace"].shape, hf["kspace"].dtype, sorted(hf))
    (2, 3, 16, 12) complex64 ['ismrmrd_header', 'kspace', 'reconstruction_rss']
    """
    p = _as_path(path)
    datasets, meta = _fastmri_payload(
        p,
        kspace_y,
        name="kspace_y",
        mask=mask,
        reconstruction=reconstruction,
        recon_size=recon_size,
        attrs=attrs,
        ismrmrd_header=ismrmrd_header,
        acquisition=acquisition,
        patient_id=patient_id,
    )
    return _write_h5(p, datasets, _encode_attrs(meta), overwrite)
