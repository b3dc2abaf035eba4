"""Reading one slice of a fastMRI file as a deepinv ``(x, y, physics)`` triple.

A slice goes through three steps: :func:`_read_raw_slice` reads what is stored (k-space, file
mask, target, coil maps, attrs), :func:`_crop_raw` optionally centre-crops it in image space,
and :func:`_load_slice` applies the user mask, picks or estimates coil maps, forms the target
and normalizes. :class:`~kspace_attacks.data.fastmri.dataset.FastMRISlices` reuses the same
steps per item.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from deepinv.physics import MRI, MultiCoilMRI
from torch import Tensor

from kspace_attacks._checks import check_choice, check_nonneg_float, check_positive_int, describe
from kspace_attacks.data.fastmri.attrs import _read_attrs
from kspace_attacks.data.fastmri.coil_maps import _DEFAULT_ACS, _acs_from_mask, estimate_coil_maps
from kspace_attacks.data.fastmri.errors import FastMRIFileError
from kspace_attacks.data.fastmri.files import (
    RECON_KEYS,
    _kspace_dataset,
    _open_h5,
    _read_file_mask,
)
from kspace_attacks.data.fastmri.layout import _center_crop, _rss, _user_mask_hw

__all__ = ["read_fastmri_slice"]

NORMALIZE_CHOICES = ("none", "max", "percentile")
TARGET_CHOICES = ("complex", "magnitude", "file")
COIL_MAP_CHOICES = ("auto", "estimate", "file")


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
            stacklevel=4,  # _coil_maps_for <- _load_slice <- read_fastmri_slice <- caller
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
    """``MRI`` (no maps) or ``MultiCoilMRI`` for a ``(H, W)`` or ``(B, 1, H, W)`` mask."""
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
    >>> from kspace_attacks.data.fastmri import write_fastmri_file
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
