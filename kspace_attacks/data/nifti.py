"""Turn any NIfTI volume into normalized 2D slices (and simulated k-space).

Slices are taken along ``axis`` of the (by default RAS-reoriented) volume, resampled to square
``size x size`` pixels in physical units (voxel sizes respected, zero-padded to a square field
of view, anti-aliased bilinear resize) and min-max normalized to [0, 1] per slice (the study's
convention) or per volume. Display orientation for ``axis=2`` (axial): anterior at the top,
the subject's left on the left, as for the embedded data set.

Requires ``nibabel`` (``pip install kspace-attacks[nifti]``).

Example::

    >>> import numpy as np, nibabel as nib, tempfile, os
    >>> from kspace_attacks.data.nifti import load_nifti_slices
    >>> vol = np.zeros((20, 20, 6), np.float32); vol[5:15, 5:15] = 1.0
    >>> path = os.path.join(tempfile.mkdtemp(), "v.nii.gz")
    >>> nib.save(nib.Nifti1Image(vol, np.eye(4)), path)
    >>> load_nifti_slices(path, size=16).shape
    torch.Size([6, 1, 16, 16])
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from .._checks import check_choice, check_nonneg_float, check_positive_int
from .presets import Preset, get_preset
from .selection import SliceSpec, evenly_spaced, select_slices

__all__ = ["NiftiSlices", "SHIPPED_VOLUMES", "load_nifti_slices", "resample_plane", "shipped_volume",
           "volume_slices"]


def _load_volume(path: str | Path, canonical: bool, volume: int) -> tuple[np.ndarray, tuple]:
    try:
        import nibabel as nib
        from nibabel.filebasedimages import ImageFileError
    except ImportError as e:  # pragma: no cover - optional dependency
        raise ImportError("load_nifti_slices needs nibabel: pip install nibabel") from e
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"path: expected an existing NIfTI file, got {str(path)!r}")
    try:
        img = nib.load(str(p))
        if canonical:
            img = nib.as_closest_canonical(img)
        data = np.asarray(img.dataobj, dtype=np.float32)
    except (OSError, EOFError, ValueError, ImageFileError) as e:
        raise ValueError(
            f"path: expected a readable NIfTI file, got {str(p)!r}, which cannot be read "
            f"(truncated or not NIfTI): {e}"
        ) from e
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    if data.ndim == 4:
        if not 0 <= volume < data.shape[3]:
            raise ValueError(f"volume: expected an index in [0, {data.shape[3]}), got {volume}")
        data = data[..., volume]
    if data.ndim != 3:
        raise ValueError(f"path: expected a 3D (or 4D) NIfTI volume, got shape {data.shape} in {str(p)!r}")
    if np.iscomplexobj(data):  # pragma: no cover
        data = np.abs(data)
    return np.nan_to_num(data), zooms


def resample_plane(planes: Tensor, spacing: tuple[float, float], size: int) -> Tensor:
    """(N, h, w) planes with pixel spacing (dh, dw) -> (N, size, size), square FOV, zero padded."""
    _, h, w = planes.shape
    fov = max(h * spacing[0], w * spacing[1])
    nh = max(1, min(size, round(h * spacing[0] / fov * size)))
    nw = max(1, min(size, round(w * spacing[1] / fov * size)))
    t = F.interpolate(
        planes[:, None], size=(nh, nw), mode="bilinear", antialias=True, align_corners=False
    )[:, 0]
    ph, pw = size - nh, size - nw
    return F.pad(t, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))


def load_nifti_slices(
    path: str | Path,
    axis: int = 2,
    size: int = 64,
    slices: SliceSpec | None = None,
    *,
    n_slices: int | None = None,
    normalize: str = "slice",
    min_content: float = 0.05,
    canonical: bool = True,
    volume: int = 0,
    preset: str | Preset | None = None,
    generator: torch.Generator | None = None,
    return_indices: bool = False,
):
    """Read a NIfTI file and return normalized slices ``(B, 1, size, size)`` in [0, 1].

    :param path: ``.nii`` / ``.nii.gz`` file.
    :param int axis: slicing axis of the (canonical RAS) volume; 2 = axial.
    :param int size: output size S.
    :param slices: indices along ``axis`` (negative ones count from the end), or a range
        ``"start:stop[:step]"`` (``"10:40:5"``, Python slicing rules) or ``range``/``slice``.
        Default: every slice whose fraction of pixels above 10 % of the volume maximum is at
        least ``min_content`` (the *content* slices).
    :param int n_slices: instead of ``slices``: ``n_slices`` evenly spaced content slices
        (first and last included; all of them if there are fewer).
    :param str normalize: ``"slice"`` (min-max per slice) or ``"volume"`` (min-max over the volume).
    :param float min_content: see ``slices``; not used when ``slices`` is given.
    :param bool canonical: reorient to RAS first (so ``axis`` means the same for every file).
    :param int volume: index along the 4th dimension of 4D files.
    :param preset: if given (name or :class:`Preset` whose ``img_size`` must equal ``size``),
        also simulate k-space and return ``(x, y)`` with ``y = preset.simulate(x)``.
    :param torch.Generator generator: noise generator for the simulation.
    :param bool return_indices: also return the slice indices used (a list of ints, last).
    :return: ``x`` (B, 1, S, S), or ``(x, y)`` when ``preset`` is given, with the indices
        appended when ``return_indices``.
    """
    check_positive_int("axis", axis, minimum=0)
    if axis > 2:
        raise ValueError(f"axis: expected 0, 1 or 2, got {axis}")
    check_positive_int("size", size, minimum=4)
    check_choice("normalize", normalize, ("slice", "volume"))
    check_nonneg_float("min_content", min_content)
    check_positive_int("volume", volume, minimum=0)
    if n_slices is not None:
        check_positive_int("n_slices", n_slices)
        if slices is not None:
            raise ValueError(
                f"n_slices: expected None when slices is given (choose one), got n_slices={n_slices} "
                f"and slices={slices!r}"
            )
    p = None
    if preset is not None:
        p = get_preset(preset)
        if p.img_size != size:
            raise ValueError(
                f"preset: expected img_size == size == {size}, got preset {p.name!r} with "
                f"img_size {p.img_size}; pass size={p.img_size}"
            )
    data, zooms = _load_volume(path, canonical, volume)
    idx = np.asarray(_pick_slices(data, axis, slices, n_slices, min_content, path), dtype=int)
    if normalize == "volume":
        lo, hi = float(data.min()), float(data.max())
        data = (data - lo) / (hi - lo) if hi > lo else np.zeros_like(data)
    planes = np.moveaxis(data, axis, 0)[idx]  # (B, a, b), remaining axes in order
    spacing = tuple(z for i, z in enumerate(zooms) if i != axis)
    # display: rows = second remaining axis reversed (anterior/superior up), cols = first
    planes = np.ascontiguousarray(planes.transpose(0, 2, 1)[:, ::-1, :])
    x = resample_plane(torch.from_numpy(planes), (spacing[1], spacing[0]), size)
    if normalize == "slice":
        lo = x.flatten(1).min(1).values.view(-1, 1, 1)
        hi = x.flatten(1).max(1).values.view(-1, 1, 1)
        x = torch.where(hi > lo, (x - lo) / (hi - lo).clamp_min(1e-12), torch.zeros_like(x))
    x = x.clamp(0, 1)[:, None].float()
    out = (x,) if p is None else (x, p.simulate(x, generator=generator))
    if return_indices:
        out += (idx.tolist(),)
    return out[0] if len(out) == 1 else out


def _pick_slices(
    data: np.ndarray, axis: int, slices: SliceSpec | None, n_slices: int | None,
    min_content: float, path: str | Path,
) -> list[int]:
    """Indices along ``axis``: the given selection, else the content slices (all, or
    ``n_slices`` evenly spaced)."""
    n = data.shape[axis]
    if slices is not None:
        return select_slices(slices, n, "slices", f"{str(path)!r} along axis {axis}")
    thr = 0.1 * float(data.max()) if data.max() > 0 else np.inf
    frac = (np.moveaxis(data, axis, 0) > thr).reshape(n, -1).mean(1)
    idx = np.nonzero(frac >= min_content)[0].tolist()
    if not idx:
        raise ValueError(
            f"min_content: expected at least one slice of {str(path)!r} along axis {axis} with "
            f"content >= {min_content}, got none (largest content {float(frac.max()):.3g})"
        )
    return idx if n_slices is None else evenly_spaced(idx, n_slices)


class NiftiSlices(Dataset):
    """Slices of one NIfTI file as a Dataset of ``(x, y)``: x (2, S, S), y from ``preset``.

    All slices are loaded and simulated once (noise seeded by ``seed``).

    :param path: NIfTI file.
    :param preset: acquisition preset (its ``img_size`` sets S).
    :param kwargs: passed to :func:`load_nifti_slices` (``axis``, ``slices``, ``normalize``...).
    """

    def __init__(
        self, path: str | Path, preset: str | Preset = "embedded", seed: int = 0, **kwargs
    ):
        self.preset = get_preset(preset)
        check_positive_int("seed", seed, minimum=0)
        g = torch.Generator().manual_seed(seed)
        x, y = load_nifti_slices(
            path, size=self.preset.img_size, preset=self.preset, generator=g, **kwargs
        )
        self.x = torch.cat([x, torch.zeros_like(x)], dim=1)
        self.y = y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.x[index], self.y[index]


#: A real brain none of the shipped models saw in training (dipy's b0 volume; see
#: ``NOTICE-DIPY-S0.txt``): 10 axial slices, T2-weighted, 128 x 128 at 2 mm.
UNSEEN_BRAIN = "unseen_brain_dipy_S0.nii.gz"

#: Real brain volumes shipped in the package, by name (each its own subject; notices beside them):
#: ``dipy_s0`` (:data:`UNSEEN_BRAIN`) and ``dipy_aniso`` (a whole brain, 58 x 58 x 24 voxels of
#: 4 x 4 x 5 mm; ``NOTICE-DIPY-ANISO.txt``).
SHIPPED_VOLUMES = {"dipy_s0": UNSEEN_BRAIN, "dipy_aniso": "unseen_brain_dipy_aniso.nii.gz"}


def shipped_volume(name: str) -> Path:
    """The path of a shipped NIfTI volume (:data:`SHIPPED_VOLUMES`).

    >>> shipped_volume("dipy_aniso").name
    'unseen_brain_dipy_aniso.nii.gz'
    """
    from importlib import resources

    check_choice("name", name, tuple(SHIPPED_VOLUMES))
    return Path(str(resources.files("kspace_attacks.data") / SHIPPED_VOLUMES[name]))


def volume_slices(path: str | Path, axis: int = 2) -> int:
    """Number of slices of a NIfTI volume along ``axis`` (of the RAS-reoriented volume), read
    from its header only.

    >>> volume_slices(shipped_volume("dipy_s0"))
    10
    """
    try:
        import nibabel as nib
    except ImportError as e:  # pragma: no cover - optional dependency
        raise ImportError("volume_slices needs nibabel: pip install nibabel") from e
    img = nib.as_closest_canonical(nib.load(str(path)))
    return int(img.shape[axis])


def unseen_brain(preset: str | Preset = "embedded", seed: int = 0) -> NiftiSlices:
    """The shipped brain the models never saw, as ``(x, y)`` pairs of ``preset``.

    The shipped models were trained on the MNI ICBM152 template; this is a different person's
    scan and contrast (a diffusion b0 volume), resampled to the preset's size.

    >>> from kspace_attacks.data import unseen_brain
    >>> data = unseen_brain()
    >>> len(data), tuple(data[0][0].shape)
    (10, (2, 64, 64))
    """
    return NiftiSlices(shipped_volume("dipy_s0"), preset=preset, seed=seed, slices=range(10))
