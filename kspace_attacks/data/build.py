"""Build the embedded brain data from the MNI ICBM152 2009a template shipped in nilearn.

The template is one skull-stripped, 1 mm, 197x233x189 volume (T1 scaled 0-1 and grey/white
matter probability maps). We take axial slices over the brain, resample each to ``S x S``
with an anti-aliasing filter and store T1, GM, WM and a soft brain mask as ``uint8`` in a
compressed ``.npz``. CSF is derived at load time as ``clip(brain - gm - wm, 0, 1)``.

nilearn is only needed here (at build time), and is never imported: its data folder is
located with :func:`importlib.util.find_spec`.

Example::

    >>> from kspace_attacks.data.build import template_dir
    >>> template_dir() is None or template_dir().is_dir()
    True
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .._checks import check_nonneg_float, check_positive_int

__all__ = [
    "CITATIONS",
    "NOTICE",
    "SPLITS",
    "assign_splits",
    "build_embedded",
    "load_template",
    "resample_slices",
    "save_embedded",
    "tissue_slices",
    "template_dir",
]

SOURCE = (
    "MNI ICBM152 2009a nonlinear symmetric template (nilearn wheel: "
    "nilearn/datasets/data/mni_icbm152_{t1,gm,wm}_tal_nlin_sym_09a_converted.nii.gz)"
)

NOTICE = (
    "Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal "
    "Neurological Institute, McGill University. Permission to use, copy, modify, and "
    "distribute this software and its documentation for any purpose and without fee is "
    "hereby granted, provided that the above copyright notice appear in all copies. The "
    "authors and McGill University make no representations about the suitability of this "
    'software for any purpose. It is provided "as is" without express or implied '
    "warranty. The authors are not responsible for any data loss, equipment damage, "
    "property loss, or injury to subjects or patients resulting from the use or misuse of "
    "this software package."
)

CITATIONS = (
    'V.S. Fonov, A.C. Evans, R.C. McKinstry, C.R. Almli, D.L. Collins, "Unbiased nonlinear '
    'average age-appropriate brain templates from birth to adulthood", NeuroImage 47 (2009) '
    'S102. | V.S. Fonov et al., "Unbiased average age-appropriate atlases for pediatric '
    'studies", NeuroImage 54 (2011) 313-327. | D.L. Collins, A.P. Zijdenbos, W.F.C. Baare, '
    'A.C. Evans, "ANIMAL+INSECT: Improved Cortical Structure Segmentation", IPMI 1999.'
)

FORMAT_VERSION = 1  # bump when the stored arrays change meaning
SPLITS = ("train", "val", "test")
# Contiguous blocks of z, assigned by a repeating pattern; adjacent 1 mm slices are almost
# identical, so blocks (not single slices) keep the splits from sharing anatomy except at
# block boundaries.
BLOCK = 8
PATTERN = ("train", "train", "val", "train", "train", "test")
_FILES = {k: f"mni_icbm152_{k}_tal_nlin_sym_09a_converted.nii.gz" for k in ("t1", "gm", "wm")}


def template_dir() -> Path | None:
    """Folder holding the ICBM152 files inside an installed nilearn, or ``None``."""
    spec = importlib.util.find_spec("nilearn")
    if spec is None or spec.origin is None:
        return None
    d = Path(spec.origin).parent / "datasets" / "data"
    return d if all((d / f).is_file() for f in _FILES.values()) else None


def load_template(directory: str | Path | None = None) -> dict[str, np.ndarray]:
    """Read the T1, GM and WM volumes as float32 in [0, 1], shape (197, 233, 189) (x, y, z)."""
    import nibabel as nib  # build-time dependency only

    d = Path(directory) if directory is not None else template_dir()
    if d is None:
        raise FileNotFoundError(
            "directory: expected the nilearn ICBM152 data folder, got none; install it with "
            "`pip install --no-deps nilearn` or pass directory="
        )
    out = {}
    for key, fname in _FILES.items():
        img = nib.load(str(d / fname))
        vol = np.asarray(img.dataobj, dtype=np.float32)
        out[key] = vol / 255.0 if vol.max() > 1.5 else vol  # uint8 0-255 in the wheel
    return out


def tissue_slices(brain: np.ndarray, min_area_fraction: float = 0.3) -> np.ndarray:
    """z-indices of axial slices whose brain area is >= ``min_area_fraction`` of the largest."""
    check_nonneg_float("min_area_fraction", min_area_fraction)
    area = (brain > 0.5).reshape(-1, brain.shape[-1]).sum(0)
    return np.nonzero(area >= min_area_fraction * area.max())[0]


def assign_splits(z: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """Split code (0 train, 1 val, 2 test) for each slice, by contiguous blocks of z.

    Blocks of ``block`` consecutive kept slices follow the pattern
    train, train, val, train, train, test (about 2/3, 1/6, 1/6).
    """
    check_positive_int("block", block)
    order = np.argsort(np.argsort(z))  # rank along z
    codes = np.array([SPLITS.index(s) for s in PATTERN], dtype=np.uint8)
    return codes[(order // block) % len(PATTERN)]


def resample_slices(slices: np.ndarray, size: int) -> np.ndarray:
    """Resample (N, H, W) slices to (N, size, size): zero-pad to a square, then resize.

    Uses bilinear interpolation with ``antialias=True`` (a triangle filter whose width follows
    the scale factor), so downsampling does not alias.
    """
    check_positive_int("size", size, minimum=4)
    t = torch.from_numpy(np.ascontiguousarray(slices, dtype=np.float32))[:, None]
    h, w = t.shape[-2:]
    m = max(h, w)
    t = F.pad(t, ((m - w) // 2, m - w - (m - w) // 2, (m - h) // 2, m - h - (m - h) // 2))
    t = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return t[:, 0].clamp(0, 1).numpy()


def _axial(vol: np.ndarray, z: np.ndarray) -> np.ndarray:
    # (x, y, z) RAS -> (N, rows=y from anterior to posterior, cols=x from left to right)
    return np.ascontiguousarray(vol[:, :, z].transpose(2, 1, 0)[:, ::-1, :])


def build_embedded(
    size: int = 64, directory: str | Path | None = None, min_area_fraction: float = 0.3
) -> dict[str, np.ndarray]:
    """Build the arrays of the embedded data set at resolution ``size``.

    :returns: dict with ``t1``, ``gm``, ``wm``, ``brain`` (uint8, (N, size, size), value/255),
        ``z`` (int16 slice index in the template), ``split`` (uint8 code into ``split_names``)
        and metadata strings ``source``, ``notice``, ``citations``, ``split_names``.
    """
    check_positive_int("size", size, minimum=4)
    vols = load_template(directory)
    brain = (vols["t1"] > 0).astype(np.float32)  # the template is skull-stripped
    z = tissue_slices(brain, min_area_fraction)
    out: dict[str, np.ndarray] = {}
    for key, vol in (("t1", vols["t1"]), ("gm", vols["gm"]), ("wm", vols["wm"]), ("brain", brain)):
        out[key] = np.round(resample_slices(_axial(vol, z), size) * 255).astype(np.uint8)
    out["z"] = z.astype(np.int16)
    out["split"] = assign_splits(z)
    out["split_names"] = np.array(SPLITS)
    out["source"] = np.array(SOURCE)
    out["notice"] = np.array(NOTICE)
    out["citations"] = np.array(CITATIONS)
    out["size"] = np.array(size, dtype=np.int32)
    out["format_version"] = np.array(FORMAT_VERSION, dtype=np.int32)
    return out


def save_embedded(path: str | Path, size: int = 64, **kwargs) -> Path:
    """Build and write a compressed ``.npz``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = build_embedded(size, **kwargs)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)  # atomic, so concurrent readers never see a partial file
    return path
