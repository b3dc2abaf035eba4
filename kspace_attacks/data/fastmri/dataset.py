"""A lazy torch ``Dataset`` over the slices of one fastMRI file or a folder of them."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from deepinv.physics import MRI, MultiCoilMRI
from torch import Tensor
from torch.utils.data import Dataset

from kspace_attacks._checks import check_choice, check_positive_int, describe
from kspace_attacks.data.fastmri.errors import FastMRIFileError
from kspace_attacks.data.fastmri.files import _as_path, inspect_fastmri_file
from kspace_attacks.data.fastmri.read import _build_physics, _load_slice, _read_options, _Slice
from kspace_attacks.data.selection import SliceSpec, select_slices

__all__ = ["FastMRISlices"]


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
    :param slices: taken in every volume: ``"all"``, ``"middle"``, an int index, a list of
        indices or a range ``"start:stop[:step]"`` (see
        :func:`~kspace_attacks.data.selection.select_slices`).
    :param on_error: ``"raise"`` or ``"skip"`` (warn and skip) unreadable/invalid files.

    >>> import tempfile
    >>> from kspace_attacks.data.fastmri import write_fastmri_file
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
        slices: str | int | SliceSpec = "all",
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
        _check_slices(slices)
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
    def _pick(slices: str | int | SliceSpec, n: int, f: Path) -> list[int]:
        if isinstance(slices, str) and slices in ("all", "middle"):
            return list(range(n)) if slices == "all" else [n // 2]
        if isinstance(slices, int) and not isinstance(slices, bool):
            if not -n <= slices < n:
                raise IndexError(f"{f}: slices={slices} out of range, the file has {n} slices")
            return [slices % n]
        return select_slices(slices, n, "slices", str(f))

    def sample_ids(self) -> list[str]:
        """``"<file stem>-<slice>"`` for every item, in order."""
        return [f"{path.stem}-{i}" for path, i in self.samples]

    def batches(
        self, batch_size: int = 1, device: torch.device | str = "cpu"
    ) -> list[tuple[Tensor, Tensor, MRI | MultiCoilMRI]]:
        """All items as batched ``(x, y, physics)`` triples of up to ``batch_size`` slices.

        Consecutive slices with the same shapes share a batch: the physics carries one mask
        (or one per slice when they differ) and per-slice coil maps ``(B, N, H, W)``.
        """
        check_positive_int("batch_size", batch_size)
        groups: list[list[_Slice]] = []
        for i in range(len(self)):
            s = self._load(i)
            last = groups[-1][-1] if groups else None
            if (last is None or len(groups[-1]) >= batch_size or last.x.shape != s.x.shape
                    or last.y.shape != s.y.shape):
                groups.append([s])
            else:
                groups[-1].append(s)
        return [_stack(g, device) for g in groups]

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


def _check_slices(slices: object) -> None:
    """Validate a ``slices`` option once, before any file is read."""
    if isinstance(slices, str) and slices in ("all", "middle"):
        return
    if isinstance(slices, int) and not isinstance(slices, bool):
        return
    if isinstance(slices, str):  # a range "start:stop[:step]": parse it now
        select_slices(slices, 2**31 - 1, "slices")
        return
    if isinstance(slices, (list, tuple, range, slice)):  # checked against each file's count
        return
    raise TypeError(
        f"slices: expected 'all', 'middle', an int, a list of indices or a range "
        f"'start:stop[:step]', got {describe(slices)}"
    )


def _stack(group: list[_Slice], device: torch.device | str) -> tuple[Tensor, Tensor, MRI | MultiCoilMRI]:
    """Slices of equal shapes -> one batched ``(x, y, physics)``."""
    masks = torch.stack([s.mask for s in group])  # (B, H, W)
    if all(torch.equal(m, masks[0]) for m in masks[1:]):
        masks = masks[:1]
    maps = None if group[0].coil_maps is None else torch.cat([s.coil_maps for s in group])
    x = torch.cat([s.x for s in group]).to(device)
    y = torch.cat([s.y for s in group]).to(device)
    return x, y, _build_physics(masks[:, None], maps, device)
