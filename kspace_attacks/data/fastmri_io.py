"""fastMRI ``.h5`` files in and out, converted to deepinv's tensor layout at this boundary.

fastMRI stores one volume per HDF5 file (``S`` slices, ``N`` coils):

* ``kspace``: ``(S, H, W)`` single-coil or ``(S, N, H, W)`` multi-coil, complex64, centred
  (``fastmri.fft2c`` convention, identical to deepinv's centred orthonormal FFT). It is
  **fully sampled** in train/val files; it is undersampled only when a ``mask`` dataset exists
  (test/challenge files).
* ``mask``: ``(W,)`` sampled phase-encode columns (test/challenge files only).
* ``reconstruction_esc`` (single-coil) / ``reconstruction_rss`` (multi-coil): ``(S, 320, 320)``
  float32 magnitude targets (centre crop of ``|ifft(kspace)|`` / coil RSS).
* ``ismrmrd_header``: XML bytes with the encoded / recon matrix sizes and encoding limits.
* attrs ``acquisition``, ``max``, ``norm``, ``patient_id``; test files also ``acceleration``,
  ``num_low_frequency``.

Inside kspace-attacks everything is deepinv layout: real tensors with real/imag in dim 1,
``y`` ``(B, 2, H, W)`` or ``(B, 2, N, H, W)``, ``x`` ``(B, 2, H, W)`` or ``(B, 1, H, W)``,
physics :class:`deepinv.physics.MRI` / :class:`deepinv.physics.MultiCoilMRI`.

Files written here may carry two extensions: the extra datasets of
:func:`write_perturbed_kspace` (``kspace_clean``, ``coil_maps``, ``x_clean``; standard readers
ignore them) and, only when a mask is not a set of full columns, a ``mask`` of shape ``(H, W)``
or ``(S, H, W)`` (read here; fastMRI's and deepinv's transforms only understand ``(W,)``). Writes are atomic: a temporary file in the same
directory is written, fsynced and renamed over the target, so an interrupted run never leaves
a half-written result.

``fastmri`` itself is optional: only :func:`fastmri_slice_dataset` imports it (lazily).
"""

from __future__ import annotations

import json
import os
import platform
import uuid
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import deepinv
import h5py
import numpy as np
import torch
from deepinv.physics import MRI, MultiCoilMRI
from torch import Tensor
from torch.utils.data import Dataset

from kspace_attacks._checks import (
    check_choice,
    check_kspace,
    check_nonneg_float,
    check_positive_int,
    check_tensor,
    describe,
)

__all__ = [
    "CorruptFastMRIFileError",
    "FastMRIFileError",
    "FastMRIFileInfo",
    "FastMRISlices",
    "PerturbedKSpace",
    "deepinv_to_fastmri",
    "estimate_coil_maps",
    "fastmri_slice_dataset",
    "fastmri_to_deepinv",
    "inspect_fastmri_file",
    "make_ismrmrd_header",
    "read_fastmri_slice",
    "read_perturbed_kspace",
    "require_fastmri",
    "write_fastmri_file",
    "write_perturbed_kspace",
]

FASTMRI_INSTALL_HINT = 'pip install "kspace-attacks[fastmri]"'
RECON_KEYS = ("reconstruction_esc", "reconstruction_rss")  # single-coil, multi-coil
NORMALIZE_CHOICES = ("none", "max", "percentile")
TARGET_CHOICES = ("complex", "magnitude", "file")
COIL_MAP_CHOICES = ("auto", "estimate", "file")
PERTURBED_FORMAT = "kspace-attacks/perturbed-kspace/1"
_JSON_ATTRS = "kspace_attacks_json_attrs"  # attr listing which attrs hold JSON text
_MASK_LAYOUT = "kspace_attacks_mask_layout"
_DEFAULT_ACS = 24
_ISMRMRD_NS = "http://www.ismrm.org/ISMRMRD"


# --------------------------------------------------------------------------- errors


class FastMRIFileError(ValueError):
    """A file is not a valid fastMRI volume (missing key, wrong dtype, shape mismatch, ...).

    The message always starts with the file path.
    """


class CorruptFastMRIFileError(FastMRIFileError, OSError):
    """The file cannot be read as HDF5 at all (truncated, corrupt, not HDF5).

    Also an ``OSError``, so code that skips unreadable volumes on ``OSError`` (as deepinv's
    ``FastMRISliceDataset`` does) keeps working.
    """


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


# --------------------------------------------------------------------------- layout


def fastmri_to_deepinv(kspace: np.ndarray | Tensor) -> Tensor:
    """Complex fastMRI k-space ``(S, [N,] H, W)`` -> deepinv layout ``(S, 2, [N,] H, W)`` float32.

    >>> k = np.ones((3, 4, 5), dtype=np.complex64)
    >>> tuple(fastmri_to_deepinv(k).shape)
    (3, 2, 4, 5)
    """
    k = torch.as_tensor(kspace)
    if not k.is_complex():
        raise TypeError(f"kspace: expected a complex array (fastMRI layout), got {describe(k)}")
    return MRI.from_torch_complex(k.to(torch.complex64)).contiguous()


def deepinv_to_fastmri(y: Tensor) -> np.ndarray:
    """deepinv k-space ``(S, 2, [N,] H, W)`` -> complex64 numpy array ``(S, [N,] H, W)``.

    >>> deepinv_to_fastmri(torch.zeros(3, 2, 4, 5)).dtype
    dtype('complex64')
    """
    y = check_kspace("y", y)
    return MRI.to_torch_complex(y.detach().cpu().float()).numpy()


def _center_crop(x: Tensor, size: tuple[int, int]) -> Tensor:
    # Same offsets as fastmri.data.transforms.center_crop, so crops line up with the
    # stored reconstruction_esc / reconstruction_rss targets.
    h, w = size
    top = (x.shape[-2] - h) // 2
    left = (x.shape[-1] - w) // 2
    return x[..., top : top + h, left : left + w]


def _rss(img: Tensor, coil_dim: int = 1) -> Tensor:
    return img.abs().pow(2).sum(coil_dim).sqrt()


# --------------------------------------------------------------------------- file access


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


def _read_attrs(hf: h5py.File) -> dict[str, Any]:
    """File attrs as plain Python values, JSON-encoded ones decoded."""
    raw = {k: hf.attrs[k] for k in hf.attrs}
    json_keys = set(json.loads(str(raw.pop(_JSON_ATTRS, "[]"))))
    out: dict[str, Any] = {}
    for key, val in raw.items():
        if isinstance(val, bytes):
            val = val.decode()
        elif isinstance(val, np.generic):
            val = val.item()
        elif isinstance(val, np.ndarray):
            val = val.tolist()
        out[key] = json.loads(val) if key in json_keys else val
    return out


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

    >>> import tempfile
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


# --------------------------------------------------------------------------- coil maps


def _hann_block(n: int, width: int) -> Tensor:
    """Length-n window: a Hann taper of ``width`` samples centred on n // 2 (the DC index)."""
    w = torch.zeros(n)
    start = n // 2 - width // 2
    w[start : start + width] = torch.hann_window(width + 2, periodic=False)[1:-1]
    return w


def estimate_coil_maps(y: Tensor, acs: int = _DEFAULT_ACS) -> Tensor:
    """Simple low-resolution coil-sensitivity estimate from the k-space centre.

    Each coil's k-space is multiplied by a separable Hann window covering the central ``acs``
    columns (and a proportional number of rows), inverse-FFT'd to a smooth low-resolution coil
    image ``c_n``, and divided by the RSS of those images: ``S_n = c_n / sqrt(sum_n |c_n|^2)``.
    The maps therefore satisfy ``sum_n |S_n|^2 = 1`` wherever the low-resolution RSS is
    non-zero. This is an *estimate* (no ESPIRiT eigen-analysis, no background masking); pass
    better maps (e.g. ``deepinv.physics.MultiCoilMRI.estimate_coil_maps``, needs sigpy) when
    accuracy matters.

    :param torch.Tensor y: multi-coil k-space ``(B, 2, N, H, W)``; its centre must be sampled.
    :param int acs: number of central phase-encode columns used (clipped to W).
    :return: complex64 maps ``(B, N, H, W)``, as expected by ``MultiCoilMRI(coil_maps=...)``.

    >>> maps = estimate_coil_maps(torch.randn(1, 2, 4, 16, 12), acs=6)
    >>> bool(torch.allclose(maps.abs().pow(2).sum(1), torch.ones(1, 16, 12), atol=1e-5))
    True
    """
    y = check_kspace("y", y)
    if y.dim() != 5:
        raise ValueError(
            f"y: expected multi-coil k-space (B, 2, N, H, W), got shape {tuple(y.shape)}"
        )
    acs = check_positive_int("acs", acs)
    h, w = y.shape[-2:]
    acs_w = min(acs, w)
    acs_h = min(h, max(1, round(acs_w * h / w)))  # same fraction of k-space in both directions
    window = (_hann_block(h, acs_h)[:, None] * _hann_block(w, acs_w)[None, :]).to(y.device)
    low = MRI.ifft(MRI.to_torch_complex(y) * window)  # (B, N, H, W) smooth coil images
    rss = _rss(low, coil_dim=1).unsqueeze(1)
    return (low / rss.clamp_min(torch.finfo(rss.dtype).tiny)).to(torch.complex64)


def _acs_from_mask(mask_hw: Tensor) -> int:
    """Width of the contiguous run of fully sampled columns around the centre column."""
    cols = (mask_hw.min(dim=0).values > 0).tolist()
    c = len(cols) // 2
    if not cols[c]:
        return 0
    left, right = c, c
    while left > 0 and cols[left - 1]:
        left -= 1
    while right < len(cols) - 1 and cols[right + 1]:
        right += 1
    return right - left + 1


# --------------------------------------------------------------------------- reading


def _user_mask_hw(mask: Any, h: int, w: int) -> Tensor:
    """A user mask as float ``(H, W)``: accepts (W,), (H, W) or (1, C, H, W) / (1, H, W)."""
    m = torch.as_tensor(mask).detach().cpu()
    if m.is_complex():
        raise TypeError(f"mask: expected a real 0/1 mask, got {describe(m)}")
    while m.dim() > 2 and m.shape[0] == 1:
        m = m[0]
    if m.dim() == 3 and m.shape[0] == 2:  # deepinv's (2, H, W) real/imag copy
        m = m[0]
    if m.shape == (w,):
        m = m[None, :].expand(h, w)
    if tuple(m.shape) != (h, w):
        raise ValueError(
            f"mask: expected shape (W,)=({w},) or (H, W)=({h}, {w}) (after any crop), "
            f"got {tuple(torch.as_tensor(mask).shape)}"
        )
    m = m.float()
    if not ((m == 0) | (m == 1)).all():
        raise ValueError("mask: expected only 0/1 values")
    return m


def _parse_crop(crop: Any) -> tuple[int, int] | None:
    if crop is None:
        return None
    if isinstance(crop, int) and not isinstance(crop, bool):
        crop = (crop, crop)
    if not (isinstance(crop, Sequence) and len(crop) == 2):
        raise TypeError(f"crop: expected None, an int or a pair (h, w), got {describe(crop)}")
    return (check_positive_int("crop[0]", crop[0]), check_positive_int("crop[1]", crop[1]))


def _check_normalize(normalize: Any) -> str | float:
    if isinstance(normalize, str):
        return check_choice("normalize", normalize, NORMALIZE_CHOICES)
    return check_nonneg_float("normalize", normalize, strictly_positive=True)


@dataclass(frozen=True)
class _ReadOptions:
    """Validated options of :func:`read_fastmri_slice` (validated once per dataset)."""

    crop: tuple[int, int] | None
    normalize: str | float
    mask: str | Tensor | np.ndarray | None
    coil_maps: str | Tensor
    target: str
    acs: int | None


def _read_options(
    crop: Any = None,
    normalize: Any = "none",
    mask: Any = None,
    coil_maps: Any = "auto",
    target: Any = "complex",
    acs: Any = None,
) -> _ReadOptions:
    if isinstance(coil_maps, str):
        check_choice("coil_maps", coil_maps, COIL_MAP_CHOICES)
    elif not (isinstance(coil_maps, Tensor) and coil_maps.is_complex()):
        raise TypeError(
            f"coil_maps: expected one of {list(COIL_MAP_CHOICES)} or a complex tensor (N, H, W), "
            f"got {describe(coil_maps)}"
        )
    if isinstance(mask, str):
        check_choice("mask", mask, ("file",))
    elif mask is not None and not isinstance(mask, (Tensor, np.ndarray)):
        raise TypeError(f"mask: expected None, 'file' or a 0/1 tensor, got {describe(mask)}")
    return _ReadOptions(
        crop=_parse_crop(crop),
        normalize=_check_normalize(normalize),
        mask=mask,
        coil_maps=coil_maps,
        target=check_choice("target", target, TARGET_CHOICES),
        acs=None if acs is None else check_positive_int("acs", acs),
    )


@dataclass
class _RawSlice:
    """One slice as stored: k-space (1, [N,] H, W) complex64, optional file mask (H, W),
    target (1, 1, h, w) and coil maps (1, N, H, W)."""

    path: Path
    index: int
    k: Tensor
    file_mask: Tensor | None
    recon: Tensor | None
    maps: Tensor | None
    attrs: dict[str, Any]


@dataclass
class _Slice:
    x: Tensor  # (1, C, h, w)
    y: Tensor  # (1, 2, [N,] h, w)
    mask: Tensor  # (h, w) float
    coil_maps: Tensor | None  # (1, N, h, w) complex
    info: dict[str, Any]


def _check_slice_idx(slice_idx: Any, n_slices: int, p: Path) -> int:
    if isinstance(slice_idx, bool) or not isinstance(slice_idx, (int, np.integer)):
        raise TypeError(f"slice_idx: expected an int, got {describe(slice_idx)}")
    if not -n_slices <= slice_idx < n_slices:
        raise IndexError(f"{p}: slice_idx {slice_idx} out of range, the file has {n_slices} slices")
    return int(slice_idx) % n_slices


def _read_target(hf: h5py.File, p: Path, idx: int, multicoil: bool) -> Tensor:
    preferred = RECON_KEYS[1] if multicoil else RECON_KEYS[0]
    key = preferred if preferred in hf else next((k for k in RECON_KEYS if k in hf), None)
    if key is None:
        raise FastMRIFileError(
            f"{p}: target='file' needs a 'reconstruction_esc' or 'reconstruction_rss' dataset "
            f"(test/challenge files have none); use target='complex' or 'magnitude'"
        )
    return torch.from_numpy(np.asarray(hf[key][idx], dtype=np.float32))[None, None]


def _read_coil_maps(
    hf: h5py.File, p: Path, idx: int, kshape: tuple, required: bool
) -> Tensor | None:
    if "coil_maps" not in hf:
        if required:
            raise FastMRIFileError(f"{p}: coil_maps='file' but the file has no 'coil_maps' dataset")
        return None
    ds = hf["coil_maps"]
    if tuple(ds.shape) != kshape or not np.issubdtype(ds.dtype, np.complexfloating):
        raise FastMRIFileError(
            f"{p}: dataset 'coil_maps' must be complex with the kspace shape {kshape}, "
            f"found {ds.dtype} {tuple(ds.shape)}"
        )
    return torch.from_numpy(np.asarray(ds[idx]).astype(np.complex64))[None]


def _read_raw_slice(path: Any, slice_idx: Any, opts: _ReadOptions) -> _RawSlice:
    with _open_h5(path) as (p, hf):
        ds = _kspace_dataset(hf, p)
        kshape = tuple(ds.shape)
        multicoil = len(kshape) == 4
        idx = _check_slice_idx(slice_idx, kshape[0], p)
        file_mask = None
        if "mask" in hf:
            file_mask = torch.from_numpy(_read_file_mask(hf, p, kshape, idx).copy())
        if opts.mask == "file" and file_mask is None:
            raise FastMRIFileError(f"{p}: mask='file' but the file has no 'mask' dataset")
        maps = None
        if multicoil and opts.coil_maps in ("auto", "file"):
            maps = _read_coil_maps(hf, p, idx, kshape, required=opts.coil_maps == "file")
        return _RawSlice(
            path=p,
            index=idx,
            k=torch.from_numpy(np.asarray(ds[idx]).astype(np.complex64))[None],
            file_mask=file_mask,
            recon=_read_target(hf, p, idx, multicoil) if opts.target == "file" else None,
            maps=maps,
            attrs=_read_attrs(hf),
        )


def _crop_raw(raw: _RawSlice, crop: tuple[int, int]) -> _RawSlice:
    """Centre-crop the (coil) images and re-FFT, so k-space, maps and target stay consistent."""
    p = raw.path
    if raw.file_mask is not None:
        raise ValueError(
            f"crop: cannot crop {p}: its k-space is undersampled (the file has a 'mask'), and "
            f"cropping in image space would spread energy into unsampled k-space; use crop=None"
        )
    if crop[0] > raw.k.shape[-2] or crop[1] > raw.k.shape[-1]:
        raise ValueError(
            f"crop: {crop} is larger than the k-space of {p}, {tuple(raw.k.shape[-2:])}"
        )
    recon = raw.recon
    if recon is not None:
        if crop[0] > recon.shape[-2] or crop[1] > recon.shape[-1]:
            raise ValueError(
                f"crop: {crop} is larger than the stored reconstruction of {p}, "
                f"{tuple(recon.shape[-2:])}; use a smaller crop or target='complex'"
            )
        recon = _center_crop(recon, crop)
    k = MRI.fft(_center_crop(MRI.ifft(raw.k), crop))
    maps = None if raw.maps is None else _center_crop(raw.maps, crop)
    return _RawSlice(raw.path, raw.index, k, None, recon, maps, raw.attrs)


def _coil_maps_for(
    raw: _RawSlice, y: Tensor, m: Tensor, opts: _ReadOptions
) -> tuple[Tensor, str, int | None]:
    """(maps (1, N, H, W), source, acs used): given, from the file, or estimated from y."""
    if isinstance(opts.coil_maps, Tensor):
        maps = opts.coil_maps[None] if opts.coil_maps.dim() == 3 else opts.coil_maps
        if tuple(maps.shape) != (1, *raw.k.shape[1:]):
            raise ValueError(
                f"coil_maps: expected shape (N, H, W)={tuple(raw.k.shape[1:])} (after any crop), "
                f"got {tuple(opts.coil_maps.shape)}"
            )
        return maps.detach().cpu().to(torch.complex64), "given", None
    if raw.maps is not None:
        return raw.maps, "file", None
    undersampled = bool(m.min() == 0)
    mask_acs = _acs_from_mask(m) if undersampled else 0  # a full mask says nothing about ACS
    if undersampled and mask_acs == 0:
        warnings.warn(
            f"{raw.path}: the mask does not sample the k-space centre; poor coil maps",
            stacklevel=4,
        )
    acs = int(opts.acs or raw.attrs.get("num_low_frequency") or mask_acs or _DEFAULT_ACS)
    return estimate_coil_maps(y, acs=acs), "estimated", acs


def _load_slice(path: Any, slice_idx: Any, opts: _ReadOptions) -> _Slice:
    raw = _read_raw_slice(path, slice_idx, opts)
    if opts.crop is not None:
        raw = _crop_raw(raw, opts.crop)
    multicoil = raw.k.dim() == 4
    h, w = raw.k.shape[-2:]

    m = raw.file_mask if raw.file_mask is not None else torch.ones(h, w)
    if isinstance(opts.mask, (Tensor, np.ndarray)):
        m = m * _user_mask_hw(opts.mask, h, w)  # retrospective undersampling on top of the file's
    img = MRI.ifft(raw.k)  # image of the data before any user mask: the reference x
    y = MRI.from_torch_complex(raw.k) * (m[None, None, None] if multicoil else m[None, None])

    maps, maps_source, acs = (None, None, None)
    if multicoil:
        maps, maps_source, acs = _coil_maps_for(raw, y, m, opts)

    if opts.target == "file":
        x = raw.recon
    elif opts.target == "magnitude":
        x = (_rss(img, 1) if multicoil else img.abs()).unsqueeze(1)
    else:
        x = MRI.from_torch_complex((maps.conj() * img).sum(1) if multicoil else img)

    scale = _normalization_scale(opts.normalize, raw.attrs, img, multicoil, raw.path)
    info = {
        "path": raw.path,
        "slice": raw.index,
        "scale": scale,
        "crop": opts.crop,
        "multicoil": multicoil,
        "file_mask": raw.file_mask is not None,
        "coil_maps": maps_source,
        "acs": acs,
        "attrs": raw.attrs,
    }
    return _Slice((x * scale).contiguous(), (y * scale).contiguous(), m, maps, info)


def _normalization_scale(
    normalize: str | float, attrs: dict, img: Tensor, multicoil: bool, p: Path
) -> float:
    if normalize == "none":
        return 1.0
    if isinstance(normalize, float):
        return 1.0 / normalize
    if normalize == "max":
        ref = attrs.get("max")
        if not isinstance(ref, (int, float)) or not np.isfinite(ref) or ref <= 0:
            raise FastMRIFileError(
                f"{p}: normalize='max' needs a positive attrs['max'], found {ref!r}; "
                f"use normalize='percentile'"
            )
        return 1.0 / float(ref)
    mag = _rss(img, 1) if multicoil else img.abs()
    ref = float(torch.quantile(mag.flatten().double(), 0.99))
    if ref <= 0:
        raise FastMRIFileError(f"{p}: normalize='percentile': the image is all zeros")
    return 1.0 / ref


def _build_physics(
    mask: Tensor, coil_maps: Tensor | None, device: torch.device | str
) -> MRI | MultiCoilMRI:
    h, w = mask.shape[-2:]
    m = mask.reshape(-1, 1, h, w)
    if coil_maps is None:
        return MRI(mask=m.to(device), img_size=(h, w), device=device)
    return MultiCoilMRI(
        mask=m.to(device), coil_maps=coil_maps.to(device), img_size=(h, w), device=device
    )


def read_fastmri_slice(
    path: str | os.PathLike,
    slice_idx: int,
    *,
    crop: int | tuple[int, int] | None = None,
    normalize: str | float = "none",
    mask: str | Tensor | None = None,
    coil_maps: str | Tensor = "auto",
    target: str = "complex",
    acs: int | None = None,
    device: torch.device | str = "cpu",
    return_info: bool = False,
) -> tuple[Tensor, Tensor, MRI | MultiCoilMRI] | tuple[Tensor, Tensor, MRI | MultiCoilMRI, dict]:
    """Read one slice of a fastMRI file as a deepinv ``(x, y, physics)`` triple (batch of 1).

    **k-space.** The stored k-space is treated as fully sampled unless the file has a ``mask``
    dataset (test/challenge files), in which case that mask is used. ``y`` is
    ``(1, 2, H, W)`` single-coil or ``(1, 2, N, H, W)`` multi-coil, float32, already multiplied
    by the mask (so ``y`` lies in the range of ``physics.A``).

    **mask.** ``None`` uses the file's mask if any, else all ones; ``"file"`` requires the file
    mask; a 0/1 tensor ``(W,)`` or ``(H, W)`` (sized after ``crop``) undersamples
    retrospectively, multiplied with the file mask if there is one.

    **x (target).** ``"complex"`` (default): the complex image ``(1, 2, H, W)`` of the k-space
    *before* the user mask: ``ifft(k)`` single-coil, so ``physics.A(x) == y`` up to float error
    for fully sampled data; multi-coil ``sum_n conj(S_n) ifft(k_n)``, so ``physics.A(x)``
    matches ``y`` only as well as the coil maps do. ``"magnitude"``: ``(1, 1, H, W)``, ``|ifft(k)|``
    or coil RSS. ``"file"``: the stored ``reconstruction_esc``/``_rss`` ``(1, 1, 320, 320)``
    (not the same size as ``y`` unless ``crop=320``). For files with a ``mask``, the k-space
    images are zero-filled reconstructions, not ground truth.

    **crop.** ``crop=(h, w)`` (or an int) centre-crops the complex (coil) images
    ``ifft(k)`` with fastMRI's offsets, then re-FFTs, so ``y``, ``x`` and ``physics`` all have
    size ``(h, w)`` and stay consistent (``crop=320`` gives the region of fastMRI's targets
    and drops the 2x readout oversampling). Cropping undersampled files is refused.

    **normalize.** ``"none"``; ``"max"``: divide ``x`` and ``y`` by ``attrs["max"]`` (the max
    of the volume's stored target); ``"percentile"``: divide by the 99th percentile of this
    slice's magnitude / RSS image; or a positive float to divide by. The same factor scales
    ``x`` and ``y``, so ``y = A(x)`` is preserved; it is in ``info["scale"]`` (multiply).

    **coil maps** (multi-coil): a complex tensor ``(N, H, W)``; ``"file"``: the file's
    ``coil_maps`` dataset (written by :func:`write_perturbed_kspace`); ``"estimate"``:
    :func:`estimate_coil_maps` on the measured k-space with ``acs`` central columns (default:
    ``attrs["num_low_frequency"]``, else the mask's fully sampled centre, else 24);
    ``"auto"``: ``"file"`` if present, else ``"estimate"``.

    :return: ``(x, y, physics)`` on ``device``, plus an ``info`` dict (path, slice, scale,
        coil-map source, attrs) if ``return_info``.

    >>> import tempfile
    >>> p = write_fastmri_file(Path(tempfile.mkdtemp()) / "v.h5", torch.randn(2, 2, 16, 12))
    >>> x, y, physics = read_fastmri_slice(p, 1)
    >>> bool(torch.allclose(physics.A(x), y, atol=1e-5))
    True
    >>> x, y, physics = read_fastmri_slice(p, 0, crop=8, target="magnitude")
    >>> tuple(x.shape), tuple(y.shape)
    ((1, 1, 8, 8), (1, 2, 8, 8))
    """
    opts = _read_options(crop, normalize, mask, coil_maps, target, acs)
    s = _load_slice(path, slice_idx, opts)
    physics = _build_physics(s.mask, s.coil_maps, device)
    out = (s.x.to(device), s.y.to(device), physics)
    return out + (s.info,) if return_info else out


class FastMRISlices(Dataset):
    """Lazy torch Dataset over the slices of one fastMRI file or a directory of ``*.h5`` files.

    Construction only reads each file's shape (validating it); every ``__getitem__`` opens the
    file, reads one slice and closes it again (safe with ``DataLoader(num_workers>0)``).
    Items follow deepinv's dataset convention ``(x, y, params)`` without batch dimension:
    ``x`` ``(C, H, W)``, ``y`` ``(2, [N,] H, W)``, ``params = {"mask": (1, H, W)}`` plus
    ``"coil_maps": (N, H, W)`` for multi-coil, ready for ``physics.update(**params)`` after
    batching. Options are those of :func:`read_fastmri_slice`; :meth:`get` returns the
    batched ``(x, y, physics)`` triple directly.

    :param root: a ``.h5`` file or a directory (non-recursive, sorted by name).
    :param slices: ``"all"``, ``"middle"`` or an int index taken in every volume.
    :param on_error: ``"raise"`` or ``"skip"`` (warn and skip) unreadable/invalid files.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = write_fastmri_file(d / "a.h5", torch.randn(3, 2, 8, 6))
    >>> _ = write_fastmri_file(d / "b.h5", torch.randn(2, 2, 8, 6))
    >>> ds = FastMRISlices(d)
    >>> len(ds), tuple(ds[4][1].shape)
    (5, (2, 8, 6))
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        slices: str | int = "all",
        crop: int | tuple[int, int] | None = None,
        normalize: str | float = "none",
        mask: str | Tensor | None = None,
        coil_maps: str | Tensor = "auto",
        target: str = "complex",
        acs: int | None = None,
        on_error: str = "raise",
    ) -> None:
        root = _as_path(root, "root")
        check_choice("on_error", on_error, ("raise", "skip"))
        if not (isinstance(slices, int) and not isinstance(slices, bool)):
            check_choice("slices", slices, ("all", "middle"))
        # Validate the options once, up front, rather than at the first __getitem__.
        self.options = _read_options(crop, normalize, mask, coil_maps, target, acs)
        self.root = root
        self.files = self._list_files(root)
        self.samples: list[tuple[Path, int]] = []
        for f in self.files:
            try:
                n = inspect_fastmri_file(f).num_slices
            except (FastMRIFileError, OSError) as err:
                if on_error == "raise":
                    raise
                warnings.warn(f"skipping {f}: {err}", stacklevel=2)
                continue
            self.samples += [(f, i) for i in self._pick(slices, n, f)]

    @staticmethod
    def _list_files(root: Path) -> list[Path]:
        if not root.exists():
            raise FileNotFoundError(f"{root}: no such file or directory")
        if root.is_file():
            return [root]
        files = sorted(root.glob("*.h5"))
        if not files:
            raise FastMRIFileError(f"{root}: directory contains no .h5 files")
        return files

    @staticmethod
    def _pick(slices: str | int, n: int, f: Path) -> list[int]:
        if slices == "all":
            return list(range(n))
        if slices == "middle":
            return [n // 2]
        if not -n <= slices < n:
            raise IndexError(f"{f}: slices={slices} out of range, the file has {n} slices")
        return [slices % n]

    def __len__(self) -> int:
        return len(self.samples)

    def _load(self, idx: int) -> _Slice:
        if not -len(self) <= idx < len(self):
            raise IndexError(f"FastMRISlices index {idx} out of range for {len(self)} slices")
        path, slice_idx = self.samples[idx]
        return _load_slice(path, slice_idx, self.options)

    def __getitem__(self, idx: int) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        s = self._load(idx)
        params = {"mask": s.mask[None]}
        if s.coil_maps is not None:
            params["coil_maps"] = s.coil_maps[0]
        return s.x[0], s.y[0], params

    def get(
        self, idx: int, device: torch.device | str = "cpu"
    ) -> tuple[Tensor, Tensor, MRI | MultiCoilMRI]:
        """Item ``idx`` as a batched ``(x, y, physics)`` triple, like :func:`read_fastmri_slice`."""
        s = self._load(idx)
        return s.x.to(device), s.y.to(device), _build_physics(s.mask, s.coil_maps, device)

    def __repr__(self) -> str:
        opts = ", ".join(
            f"{k}={'<tensor>' if isinstance(v, (Tensor, np.ndarray)) else repr(v)}"
            for k, v in vars(self.options).items()
        )
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, files={len(self.files)}, "
            f"slices={len(self)}, {opts})"
        )


# --------------------------------------------------------------------------- writing


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


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (torch.device, torch.dtype)):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _json(name: str, value: Any) -> str:
    try:
        return json.dumps(value, default=_to_jsonable, sort_keys=True, allow_nan=True)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"{name}: must be JSON-serializable to be stored as an HDF5 attr: {err}"
        ) from err


def _encode_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Attr values h5py can store; dicts/lists/tuples/None become JSON text, recorded in
    ``_JSON_ATTRS`` so readers decode exactly those."""
    out: dict[str, Any] = {}
    json_keys = []
    for key, val in attrs.items():
        if not isinstance(key, str):
            raise TypeError(f"attrs: keys must be str, got {describe(key)}")
        if isinstance(val, (str, bool, int, float, np.generic)):
            out[key] = val
        else:
            out[key] = _json(f"attrs[{key!r}]", val)
            json_keys.append(key)
    out[_JSON_ATTRS] = json.dumps(sorted(json_keys))
    return out


def _fsync_dir(directory: Path) -> None:
    with suppress(OSError):  # not supported on every OS / file system
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_h5_atomic(
    path: Path, datasets: Mapping[str, Any], attrs: Mapping[str, Any], overwrite: bool
) -> Path:
    """Write to a hidden temp file next to ``path``, fsync, then ``os.replace`` it into place."""
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: already exists and overwrite=False")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path}: parent directory {path.parent} does not exist")
    # Not *.h5 so directory scanners (deepinv, FastMRISlices) never see a half-written file.
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        with h5py.File(tmp, "x") as hf:
            for key, data in datasets.items():
                hf.create_dataset(key, data=data)
            hf.attrs.update(attrs)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)
    return path


def _mask_to_stored(mask: Any, n_slices: int, h: int, w: int, name: str) -> np.ndarray:
    """Mask -> the most compact layout fastMRI tools can read: (W,) if it is a set of full
    columns shared by all slices, else (H, W), else (S, H, W); bool."""
    if not isinstance(mask, (Tensor, np.ndarray)) and hasattr(mask, "mask"):
        mask = mask.mask  # a deepinv MRI-type physics
    try:
        m = torch.as_tensor(mask).detach().cpu()
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(
            f"{name}: expected a 0/1 mask tensor or an MRI physics, got {describe(mask)}"
        ) from err
    if m.is_complex():
        raise TypeError(f"{name}: expected a real 0/1 mask, got {describe(m)}")
    shape = tuple(m.shape)
    if shape == (w,):
        m = m[None, None, :].expand(1, h, w)
    elif shape == (h, w):
        m = m[None]
    elif (
        m.dim() == 4
        and m.shape[0] in (1, n_slices)
        and m.shape[1] in (1, 2)
        and m.shape[2:] == (h, w)
    ):
        if m.shape[1] == 2 and not torch.equal(m[:, 0], m[:, 1]):
            raise ValueError(f"{name}: the real and imaginary channels of the mask differ")
        m = m[:, 0]
    else:
        raise ValueError(
            f"{name}: expected a mask of shape (W,)=({w},), (H, W)=({h}, {w}) or deepinv's "
            f"(B, C, H, W) with B in (1, {n_slices}) and C in (1, 2), matching the k-space; got {shape}"
        )
    if not ((m == 0) | (m == 1)).all():
        raise ValueError(f"{name}: expected only 0/1 values")
    m = m.bool().numpy()
    if m.shape[0] > 1 and (m == m[:1]).all():
        m = m[:1]
    if m.shape[0] == 1:
        m = m[0]
        if (m == m[:1]).all():  # every row identical: Cartesian columns
            return m[0]
    return m


def _acceleration_attrs(stored_mask: np.ndarray) -> dict[str, Any]:
    if stored_mask.ndim != 1 or not stored_mask.any():
        return {}
    acs = _acs_from_mask(torch.from_numpy(stored_mask[None].astype(np.float32)))
    return {
        "acceleration": round(stored_mask.size / int(stored_mask.sum())),
        "num_low_frequency": acs,
    }


def _magnitude_volume(x: Any, n_slices: int, name: str) -> np.ndarray:
    """(S, h, w) / (S, 1, h, w) magnitude or (S, 2, h, w) complex -> float32 (S, h, w)."""
    x = check_tensor(name, x).detach().cpu().float()
    if x.dim() == 3:
        x = x[:, None]
    if x.dim() != 4 or x.shape[1] not in (1, 2) or x.shape[0] != n_slices:
        raise ValueError(
            f"{name}: expected ({n_slices}, h, w) or ({n_slices}, 1|2, h, w) with one image per "
            f"k-space slice, got shape {tuple(x.shape)}"
        )
    return (x.pow(2).sum(1).sqrt() if x.shape[1] == 2 else x[:, 0]).numpy()


def _auto_reconstruction(k: np.ndarray, recon_size: tuple[int, int]) -> np.ndarray:
    img = MRI.ifft(torch.from_numpy(k))
    mag = _rss(img, 1) if img.dim() == 4 else img.abs()
    return _center_crop(mag, recon_size).float().numpy()


def _header_bytes(header: bytes | str | None, default: bytes) -> bytes:
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
    return _write_h5_atomic(p, datasets, _encode_attrs(meta), overwrite)


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("kspace-attacks")
    except Exception:  # noqa: BLE001 - provenance must never make a write fail
        return "unknown"


def default_provenance(seed: int | None = None) -> dict[str, Any]:
    """Package/library versions, UTC time and seed recorded with every perturbed file."""
    return {
        "package": "kspace-attacks",
        "version": _package_version(),
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "deepinv": deepinv.__version__,
        "python": platform.python_version(),
        "seed": seed,
    }


def _eps_value(eps: Any, n_slices: int) -> float | list[float]:
    if isinstance(eps, Tensor):
        check_tensor("eps", eps)
        if eps.dim() == 0:
            eps = float(eps)
        elif eps.shape != (n_slices,):
            raise ValueError(
                f"eps: expected a float or a tensor of shape ({n_slices},), got {describe(eps)}"
            )
        else:
            if not (torch.isfinite(eps).all() and (eps >= 0).all()):
                raise ValueError("eps: expected finite values >= 0")
            return [float(e) for e in eps.detach().cpu()]
    return check_nonneg_float("eps", eps)


def _coil_maps_volume(physics: MultiCoilMRI, y: Tensor) -> np.ndarray:
    maps = physics.coil_maps.detach().cpu().to(torch.complex64)
    n_slices, n_coils = y.shape[0], y.shape[2]
    if maps.shape[0] not in (1, n_slices) or tuple(maps.shape[1:]) != (n_coils, *y.shape[-2:]):
        raise ValueError(
            f"physics_or_mask: coil_maps of shape {tuple(maps.shape)} do not match the k-space "
            f"{tuple(y.shape)}; expected (1 or {n_slices}, {n_coils}, {y.shape[-2]}, {y.shape[-1]})"
        )
    return maps.expand(n_slices, *maps.shape[1:]).numpy()


def write_perturbed_kspace(
    path: str | os.PathLike,
    y_clean: Tensor,
    y_adv: Tensor,
    physics_or_mask: MRI | MultiCoilMRI | Tensor | np.ndarray,
    *,
    eps: float | Tensor,
    attack_settings: Mapping[str, Any],
    provenance: Mapping[str, Any] | None = None,
    x_clean: Tensor | None = None,
    seed: int | None = None,
    attrs: Mapping[str, Any] | None = None,
    acquisition: str = "CORPD_FBK",
    patient_id: str | None = None,
    overwrite: bool = True,
) -> Path:
    """Save an attacked batch as a fastMRI file whose ``kspace`` is the *adversarial* k-space.

    Standard readers (fastMRI ``SliceDataset``, deepinv ``FastMRISliceDataset``,
    :func:`read_fastmri_slice`) therefore read the attacked data. Also stored: ``kspace_clean``
    (complex64, same shape), ``mask`` (see :func:`write_fastmri_file`), ``coil_maps`` (complex64
    ``(S, N, H, W)``, multi-coil physics only, so the exact physics can be rebuilt),
    ``x_clean`` (float32, deepinv layout, as given) with its magnitude as the
    ``reconstruction_esc``/``_rss`` target, and attrs ``eps`` (float or per-slice list),
    ``attack_settings`` and ``provenance`` (JSON; provenance defaults to package/torch/deepinv
    versions, UTC time and ``seed``, overridden by the given dict), ``perturbation_l2`` and
    ``clean_l2`` (per-slice l2 norms of ``y_adv - y_clean`` and ``y_clean``).

    :param y_clean, y_adv: deepinv-layout k-space ``(S, 2, [N,] H, W)``, same shape.
    :param physics_or_mask: the attacked ``MRI`` / ``MultiCoilMRI`` or its mask.

    >>> import tempfile
    >>> y = torch.randn(2, 2, 16, 12); mask = (torch.rand(12) > 0.5).float()
    >>> p = write_perturbed_kspace(Path(tempfile.mkdtemp()) / "adv.h5", y * mask, (y + 0.1) * mask,
    ...                            mask, eps=0.05, attack_settings={"attack": "PGD", "steps": 10})
    >>> r = read_perturbed_kspace(p)
    >>> bool(torch.equal(r.y_adv, (y + 0.1) * mask)), r.attack_settings["steps"]
    (True, 10)
    """
    p = _as_path(path)
    y_clean = check_kspace("y_clean", y_clean)
    y_adv = check_kspace("y_adv", y_adv)
    if y_clean.shape != y_adv.shape:
        raise ValueError(
            f"y_adv: expected the shape of y_clean {tuple(y_clean.shape)}, got {tuple(y_adv.shape)}"
        )
    if not isinstance(attack_settings, Mapping):
        raise TypeError(f"attack_settings: expected a dict, got {describe(attack_settings)}")
    if provenance is not None and not isinstance(provenance, Mapping):
        raise TypeError(f"provenance: expected a dict or None, got {describe(provenance)}")
    multicoil = y_adv.dim() == 5
    if isinstance(physics_or_mask, MultiCoilMRI) != multicoil and isinstance(
        physics_or_mask, (MRI, MultiCoilMRI)
    ):
        raise ValueError(
            f"physics_or_mask: {type(physics_or_mask).__name__} does not match "
            f"{'multi' if multicoil else 'single'}-coil k-space of shape {tuple(y_adv.shape)}"
        )
    n_slices = y_adv.shape[0]
    eps_val = _eps_value(eps, n_slices)

    recon = None if x_clean is None else _magnitude_volume(x_clean, n_slices, "x_clean")
    datasets, meta = _fastmri_payload(
        p,
        y_adv,
        name="y_adv",
        mask=physics_or_mask,
        reconstruction=None,
        recon_size=None,
        attrs=None,
        ismrmrd_header=None,
        acquisition=acquisition,
        patient_id=patient_id,
    )
    datasets["kspace_clean"] = deepinv_to_fastmri(y_clean)
    if isinstance(physics_or_mask, MultiCoilMRI):
        datasets["coil_maps"] = _coil_maps_volume(physics_or_mask, y_adv)
    if recon is not None:
        datasets[RECON_KEYS[1] if multicoil else RECON_KEYS[0]] = recon
        datasets["x_clean"] = x_clean.detach().cpu().float().numpy()
        meta["max"], meta["norm"] = float(recon.max()), float(np.linalg.norm(recon))

    def l2(v: Tensor) -> list[float]:  # per-slice l2 norm over everything but dim 0
        return v.detach().double().flatten(1).norm(dim=1).cpu().tolist()

    meta |= {
        "kspace_attacks_format": PERTURBED_FORMAT,
        "eps": eps_val,
        "attack_settings": json.loads(_json("attack_settings", dict(attack_settings))),
        "provenance": json.loads(
            _json("provenance", default_provenance(seed) | dict(provenance or {}))
        ),
        "perturbation_l2": l2(y_adv - y_clean),
        "clean_l2": l2(y_clean),
    }
    meta |= dict(attrs or {})
    return _write_h5_atomic(p, datasets, _encode_attrs(meta), overwrite)


@dataclass
class PerturbedKSpace:
    """Contents of a file written by :func:`write_perturbed_kspace` (deepinv layout).

    ``mask`` is ``(S, 1, H, W)`` float32 (ones if the file has none), ``coil_maps``
    ``(S, N, H, W)`` complex64 or ``None``, ``eps`` a float or an ``(S,)`` tensor.
    """

    path: Path
    y_clean: Tensor
    y_adv: Tensor
    mask: Tensor
    coil_maps: Tensor | None
    x_clean: Tensor | None
    eps: float | Tensor
    attack_settings: dict[str, Any]
    provenance: dict[str, Any]
    attrs: dict[str, Any] = field(repr=False)

    @property
    def delta(self) -> Tensor:
        """The stored perturbation ``y_adv - y_clean``."""
        return self.y_adv - self.y_clean

    def physics(self, device: torch.device | str = "cpu") -> MRI | MultiCoilMRI:
        """Rebuild the attacked physics (mask and, for multi-coil, the stored coil maps)."""
        if self.y_adv.dim() == 5 and self.coil_maps is None:
            raise FastMRIFileError(
                f"{self.path}: multi-coil file without 'coil_maps'; cannot rebuild physics"
            )
        return _build_physics(self.mask, self.coil_maps, device)


def read_perturbed_kspace(path: str | os.PathLike) -> PerturbedKSpace:
    """Read a file written by :func:`write_perturbed_kspace` (see its example).

    Raises :class:`FastMRIFileError` if ``kspace_clean`` is missing or its shape or dtype
    differs from ``kspace``.
    """
    with _open_h5(path) as (p, hf):
        ds = _kspace_dataset(hf, p)
        kshape = tuple(ds.shape)
        if "kspace_clean" not in hf:
            raise FastMRIFileError(
                f"{p}: missing dataset 'kspace_clean'; not written by write_perturbed_kspace"
            )
        clean = hf["kspace_clean"]
        if tuple(clean.shape) != kshape or not np.issubdtype(clean.dtype, np.complexfloating):
            raise FastMRIFileError(
                f"{p}: dataset 'kspace_clean' must be complex with the kspace shape {kshape}, "
                f"found {clean.dtype} {tuple(clean.shape)}"
            )
        y_adv = fastmri_to_deepinv(np.asarray(ds[()]))
        y_clean = fastmri_to_deepinv(np.asarray(clean[()]))
        if "mask" in hf:
            mask = torch.from_numpy(_read_file_mask(hf, p, kshape, None).copy())[:, None]
        else:
            mask = torch.ones(kshape[0], 1, *kshape[-2:])
        maps = None
        if "coil_maps" in hf:
            if tuple(hf["coil_maps"].shape) != kshape:
                raise FastMRIFileError(
                    f"{p}: dataset 'coil_maps' has shape {hf['coil_maps'].shape}, expected {kshape}"
                )
            maps = torch.from_numpy(np.asarray(hf["coil_maps"][()]).astype(np.complex64))
        x_clean = torch.from_numpy(np.asarray(hf["x_clean"][()])) if "x_clean" in hf else None
        attrs = _read_attrs(hf)
    eps = attrs.get("eps")
    return PerturbedKSpace(
        path=p,
        y_clean=y_clean,
        y_adv=y_adv,
        mask=mask,
        coil_maps=maps,
        x_clean=x_clean,
        eps=torch.tensor(eps) if isinstance(eps, list) else eps,
        attack_settings=attrs.get("attack_settings", {}),
        provenance=attrs.get("provenance", {}),
        attrs=attrs,
    )


# --------------------------------------------------------------------------- fastmri interop


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
