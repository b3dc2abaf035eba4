"""Opening and validating fastMRI ``.h5`` files, and the metadata they carry.

Everything that touches a file's structure without decoding slices: path checks, opening with
errors that name the file, validating the ``kspace`` and ``mask`` datasets, the per-file
summary :class:`FastMRIFileInfo` (shape, slice count, target key) and the ISMRMRD XML header.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from kspace_attacks._checks import check_positive_int, describe
from kspace_attacks.data.fastmri.attrs import _read_attrs
from kspace_attacks.data.fastmri.errors import CorruptFastMRIFileError, FastMRIFileError

__all__ = ["FastMRIFileInfo", "inspect_fastmri_file", "make_ismrmrd_header"]

RECON_KEYS = ("reconstruction_esc", "reconstruction_rss")  # single-coil, multi-coil
_ISMRMRD_NS = "http://www.ismrm.org/ISMRMRD"


def _as_path(path: Any, name: str = "path") -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name}: expected a str or os.PathLike, got {describe(path)}")
    return Path(path)


def _existing_file(path: Any) -> Path:
    p = _as_path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file")
    if p.is_dir():
        raise FastMRIFileError(f"{p}: is a directory, expected a fastMRI .h5 file")
    return p


@contextmanager
def _open_h5(path: Any) -> Iterator[tuple[Path, h5py.File]]:
    """Open read-only; turn HDF5 read failures (also lazy ones on truncated data) into errors
    that name the file."""
    p = _existing_file(path)
    try:
        hf = h5py.File(p, "r")
    except OSError as err:
        raise CorruptFastMRIFileError(
            f"{p}: cannot be opened as HDF5 (truncated, corrupt or not an HDF5 file): {err}"
        ) from err
    try:
        yield p, hf
    except OSError as err:
        if isinstance(err, FastMRIFileError):
            raise
        raise CorruptFastMRIFileError(
            f"{p}: reading failed, file truncated or corrupt: {err}"
        ) from err
    finally:
        hf.close()


def _kspace_dataset(hf: h5py.File, path: Path) -> h5py.Dataset:
    if "kspace" not in hf:
        raise FastMRIFileError(
            f"{path}: missing dataset 'kspace' (found {sorted(hf.keys())}); not a fastMRI raw file"
        )
    ds = hf["kspace"]
    if not isinstance(ds, h5py.Dataset):
        raise FastMRIFileError(f"{path}: 'kspace' must be a dataset, found an HDF5 group")
    if not np.issubdtype(ds.dtype, np.complexfloating):
        hint = ""
        if ds.ndim in (4, 5) and ds.shape[-1] == 2:
            hint = "; a trailing axis of 2 suggests real/imag pairs: store them as complex64"
        raise FastMRIFileError(
            f"{path}: dataset 'kspace' must be complex (fastMRI stores complex64), "
            f"found dtype {ds.dtype} with shape {ds.shape}{hint}"
        )
    if ds.ndim not in (3, 4) or 0 in ds.shape:
        raise FastMRIFileError(
            f"{path}: dataset 'kspace' must have shape (slices, H, W) single-coil or "
            f"(slices, coils, H, W) multi-coil, found {ds.shape}"
        )
    return ds


def _mask_shape_ok(mshape: tuple, kshape: tuple) -> bool:
    s, h, w = kshape[0], kshape[-2], kshape[-1]
    return mshape in ((w,), (h, w), (s, h, w))


def _check_file_mask(hf: h5py.File, path: Path, kshape: tuple) -> np.ndarray | None:
    """Validate the optional ``mask`` dataset against the k-space; return its values."""
    if "mask" not in hf:
        return None
    mshape = hf["mask"].shape
    if not _mask_shape_ok(mshape, kshape):
        s, h, w = kshape[0], kshape[-2], kshape[-1]
        raise FastMRIFileError(
            f"{path}: dataset 'mask' has shape {mshape}, which does not match kspace shape "
            f"{kshape}; expected (W,)=({w},), (H, W)=({h}, {w}) or (slices, H, W)=({s}, {h}, {w})"
        )
    m = np.asarray(hf["mask"][()])
    if not np.isin(m, (0, 1)).all():
        raise FastMRIFileError(f"{path}: dataset 'mask' must hold only 0/1 values")
    return m


def _read_file_mask(hf: h5py.File, path: Path, kshape: tuple, slice_idx: int | None) -> np.ndarray:
    """The file's mask as float32 ``(H, W)`` for one slice, or ``(S, H, W)`` if slice_idx is None."""
    m = _check_file_mask(hf, path, kshape).astype(np.float32)
    s, h, w = kshape[0], kshape[-2], kshape[-1]
    if m.ndim == 3:
        return m if slice_idx is None else m[slice_idx]
    m = np.broadcast_to(m, (h, w))  # (W,) columns or (H, W), shared by all slices
    return m if slice_idx is not None else np.broadcast_to(m, (s, h, w))


@dataclass(frozen=True)
class FastMRIFileInfo:
    """Shape and metadata of one fastMRI file, read without loading k-space.

    ``mask_shape`` is ``None`` for fully sampled (train/val) files; ``recon_key`` is the target
    dataset present (``None`` for test/challenge files).
    """

    path: Path
    kspace_shape: tuple[int, ...]
    mask_shape: tuple[int, ...] | None
    recon_key: str | None
    has_coil_maps: bool
    attrs: dict[str, Any] = field(repr=False)

    @property
    def num_slices(self) -> int:
        return self.kspace_shape[0]

    @property
    def multicoil(self) -> bool:
        return len(self.kspace_shape) == 4

    @property
    def num_coils(self) -> int | None:
        return self.kspace_shape[1] if self.multicoil else None

    @property
    def img_size(self) -> tuple[int, int]:
        return self.kspace_shape[-2], self.kspace_shape[-1]


def inspect_fastmri_file(path: str | os.PathLike) -> FastMRIFileInfo:
    """Validate a fastMRI file's structure and return its shapes and attrs (no k-space read).

    Raises ``FileNotFoundError`` for a missing path, :class:`CorruptFastMRIFileError` for
    unreadable files and :class:`FastMRIFileError` for structural problems.

    >>> import tempfile, torch
    >>> from kspace_attacks.data.fastmri import write_fastmri_file
    >>> p = write_fastmri_file(Path(tempfile.mkdtemp()) / "v.h5", torch.randn(3, 2, 8, 6))
    >>> inspect_fastmri_file(p).kspace_shape
    (3, 8, 6)
    """
    with _open_h5(path) as (p, hf):
        kshape = tuple(_kspace_dataset(hf, p).shape)
        _check_file_mask(hf, p, kshape)
        recon_key = next((k for k in RECON_KEYS if k in hf), None)
        return FastMRIFileInfo(
            path=p,
            kspace_shape=kshape,
            mask_shape=tuple(hf["mask"].shape) if "mask" in hf else None,
            recon_key=recon_key,
            has_coil_maps="coil_maps" in hf,
            attrs=_read_attrs(hf),
        )


def make_ismrmrd_header(
    kspace_size: tuple[int, int],
    recon_size: tuple[int, int],
    *,
    num_slices: int = 1,
) -> bytes:
    """A minimal ISMRMRD XML header for a Cartesian 2D acquisition of matrix ``(H, W)``.

    Holds what ``fastmri.data.SliceDataset`` parses (``encodedSpace`` / ``reconSpace``
    ``matrixSize`` with x = H readout, y = W phase encode, z = 1; ``encodingLimits``
    ``kspace_encoding_step_1`` with ``center = W // 2`` and ``maximum = W - 1``, i.e. no
    zero-padded columns) plus the elements the ISMRMRD schema requires (nominal 1 mm pixels,
    3 T resonance frequency, ``cartesian`` trajectory).

    >>> b"<x>640</x>" in make_ismrmrd_header((640, 368), (320, 320))
    True
    """
    h, w = (check_positive_int("kspace_size", int(v)) for v in kspace_size)
    rh, rw = (check_positive_int("recon_size", int(v)) for v in recon_size)
    num_slices = check_positive_int("num_slices", num_slices)

    def space(tag: str, x: int, y: int) -> str:
        return (
            f"<{tag}><matrixSize><x>{x}</x><y>{y}</y><z>1</z></matrixSize>"
            f"<fieldOfView_mm><x>{x}</x><y>{y}</y><z>1</z></fieldOfView_mm></{tag}>"
        )

    def limit(tag: str, maximum: int, center: int) -> str:
        return f"<{tag}><minimum>0</minimum><maximum>{maximum}</maximum><center>{center}</center></{tag}>"

    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<ismrmrdHeader xmlns="{_ISMRMRD_NS}" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'xsi:schemaLocation="{_ISMRMRD_NS} ismrmrd.xsd">'
        "<experimentalConditions><H1resonanceFrequency_Hz>127740000</H1resonanceFrequency_Hz>"
        "</experimentalConditions>"
        "<encoding>"
        + space("encodedSpace", h, w)
        + space("reconSpace", rh, rw)
        + "<encodingLimits>"
        + limit("kspace_encoding_step_1", w - 1, w // 2)
        + limit("kspace_encoding_step_2", 0, 0)
        + limit("slice", num_slices - 1, num_slices // 2)
        + "</encodingLimits><trajectory>cartesian</trajectory></encoding></ismrmrdHeader>"
    ).encode()


def _header_bytes(header: bytes | str | None, default: bytes) -> bytes:
    """A user-given ISMRMRD header as bytes (checked to be well-formed XML), else ``default``."""
    if header is None:
        return default
    if isinstance(header, str):
        header = header.encode()
    if not isinstance(header, bytes):
        raise TypeError(f"ismrmrd_header: expected bytes or str XML, got {describe(header)}")
    try:
        ET.fromstring(header)
    except ET.ParseError as err:
        raise ValueError(f"ismrmrd_header: not well-formed XML: {err}") from err
    return header
