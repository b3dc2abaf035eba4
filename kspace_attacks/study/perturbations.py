"""The perturbed k-space a transfer sweep kept: in memory, in fastMRI files, and back.

A :class:`PerturbationStore` answers "the perturbed k-space of sample ``sample_id`` crafted on
``surrogate`` by ``attack`` at budget ``eps``", whether the k-space is still in memory (added by
the sweep with :meth:`PerturbationStore.add`) or in the files of a saved report
(:meth:`PerturbationStore.load`). The files are the ones reports have always written: one
fastMRI file per (surrogate, attack, eps), named by :func:`perturbation_filename`, written by
:func:`~kspace_attacks.data.write_perturbed_kspace` with the sample ids in the attr
``attack_settings["sample_ids"]``. A sweep writes one folder of them per batch
(``batch0000/...``); :meth:`PerturbationStore.load` finds those too.

Loading is lazy: nothing is read until a perturbation is asked for; then each file's attrs are
read once and each query reads one slice. Saving copies loaded files byte for byte (their
provenance is the run's that computed them) and writes the in-memory batches.
"""

from __future__ import annotations

import numbers
import os
import shutil
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .._checks import check_tensor, describe
from ..io import atomic_path

__all__ = ["PerturbationStore", "MissingPerturbationError", "perturbation_filename"]

_EPS_TOL = 1e-12  # budgets closer than this are the same budget (as they always were)


class MissingPerturbationError(KeyError):
    """No kept perturbation for the (surrogate, attack, eps, sample_id) asked for (a ``KeyError``).

    :Examples:

        >>> str(MissingPerturbationError("no kept perturbation for sample_id=3"))
        'no kept perturbation for sample_id=3'
    """

    def __str__(self) -> str:  # KeyError would print the message's repr, quotes escaped
        return str(self.args[0]) if self.args else ""


def _check_str(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected a str, got {describe(value)}")
    return value


def _check_eps(name: str, value: Any) -> float:
    """A budget: a real number (Python, numpy or a one-element tensor), not a bool."""
    if isinstance(value, Tensor) and value.numel() == 1 and not value.is_complex():
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {describe(value)}")
    return float(value)


def _check_folder(name: str, value: Any) -> Path:
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name}: expected a str or os.PathLike folder, got {describe(value)}")
    return Path(value)


def perturbation_filename(surrogate: str, attack: str, eps: float) -> str:
    """File name of saved perturbations: ``<surrogate>-<attack>-eps<e>.h5`` (``e`` with up to 10
    significant digits, so distinct budgets never share a file).

    :Examples:

        >>> perturbation_filename("zf", "pgd", 0.04), perturbation_filename("zf", "pgd", 1)
        ('zf-pgd-eps0.04.h5', 'zf-pgd-eps1.h5')
    """
    _check_str("surrogate", surrogate)
    _check_str("attack", attack)
    return f"{surrogate}-{attack}-eps{_check_eps('eps', eps):.10g}.h5"


@dataclass
class _Batch:
    """k-space added by :meth:`PerturbationStore.add`: row ``i * len(ids) + j`` is sample
    ``ids[j]`` at ``grid[i]``."""

    surrogate: str
    attack: str
    ids: list
    grid: list[float]
    y_clean: Tensor
    y_adv: Tensor
    mask: Tensor | None
    coil_maps: Tensor | None
    attack_repr: str

    def row(self, surrogate: str, attack: str, eps: float, sample_id: Any) -> int | None:
        """The row of ``sample_id`` at ``eps``, or ``None``."""
        if self.surrogate != surrogate or self.attack != attack or sample_id not in self.ids:
            return None
        for i, e in enumerate(self.grid):
            if abs(e - eps) < _EPS_TOL:
                return i * len(self.ids) + self.ids.index(sample_id)
        return None


@dataclass(frozen=True)
class _Index:
    """What a saved file holds (its attrs): one budget, the sample id of every row."""

    surrogate: str
    attack: str
    eps: float
    ids: list
    attack_repr: str


def _index_of(path: Path) -> _Index | None:
    """The index of a perturbation file, or ``None`` (with a warning) for any other ``.h5``."""
    from ..data.fastmri import inspect_fastmri_file  # h5py: imported on demand

    attrs = inspect_fastmri_file(path).attrs
    settings, eps = attrs.get("attack_settings"), attrs.get("eps")
    if not (isinstance(settings, dict) and isinstance(settings.get("surrogate"), str)
            and isinstance(settings.get("name"), str) and isinstance(settings.get("sample_ids"), list)
            and isinstance(eps, (int, float)) and not isinstance(eps, bool)):
        warnings.warn(f"{path}: not a perturbation file written by save_perturbations (attrs eps and "
                      f"attack_settings surrogate / name / sample_ids expected); ignored", stacklevel=4)
        return None
    # JSON turned tuple ids into lists: back to tuples, so they compare equal to the records' ids
    ids = [tuple(i) if isinstance(i, list) else i for i in settings["sample_ids"]]
    return _Index(settings["surrogate"], settings["name"], float(eps), ids, str(settings.get("attack", "")))


@dataclass
class _SavedFile:
    """A perturbation file of a loaded folder: ``root / rel``, indexed on first use."""

    root: Path
    rel: Path
    _index: _Index | None = field(default=None, repr=False)
    _indexed: bool = field(default=False, repr=False)

    @property
    def path(self) -> Path:
        return self.root / self.rel

    def index(self) -> _Index | None:
        if not self._indexed:
            self._index, self._indexed = _index_of(self.path), True
        return self._index

    def row(self, surrogate: str, attack: str, eps: float, sample_id: Any) -> int | None:
        ix = self.index()
        if ix is None or ix.surrogate != surrogate or ix.attack != attack or abs(ix.eps - eps) >= _EPS_TOL:
            return None
        return ix.ids.index(sample_id) if sample_id in ix.ids else None

    def read_row(self, j: int) -> Tensor:
        """Row ``j`` of the perturbed k-space ``(1, 2, [N,] H, W)``: only that slice is read."""
        import h5py

        from ..data.fastmri import fastmri_to_deepinv

        with h5py.File(self.path, "r") as hf:
            return fastmri_to_deepinv(hf["kspace"][j : j + 1])

    def as_batch(self) -> _Batch:
        """The whole file as an in-memory batch (to merge rows added to the same file)."""
        from ..data.fastmri import read_perturbed_kspace

        ix, f = self.index(), read_perturbed_kspace(self.path)
        assert ix is not None  # only indexed files are merged
        return _Batch(ix.surrogate, ix.attack, list(ix.ids), [ix.eps], f.y_clean, f.y_adv, f.mask,
                      f.coil_maps, ix.attack_repr)

    def copy_to(self, dst: Path) -> Path:
        """Copy the file byte for byte (atomically); nothing to do onto itself."""
        if dst.exists() and os.path.samefile(self.path, dst):
            return dst
        with atomic_path(dst) as tmp:
            shutil.copyfile(self.path, tmp)
        return dst


def _detached(t: Any) -> Tensor | None:
    return t.detach().cpu() if isinstance(t, Tensor) else None


def _as_list(name: str, value: Any, what: str) -> list:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"{name}: expected a non-empty list of {what}, got {describe(value)}")
    out = list(value)
    if not out:
        raise ValueError(f"{name}: expected a non-empty list of {what}, got an empty one")
    return out


def _check_batch(ids: Any, grid: Any, y_clean: Any, y_adv: Any) -> tuple[list, list[float]]:
    """Validate :meth:`PerturbationStore.add`'s rows; returns ``ids`` and ``grid`` as lists."""
    ids, grid = _as_list("ids", ids, "sample ids"), _as_list("grid", grid, "budgets")
    grid = [_check_eps(f"grid[{i}]", e) for i, e in enumerate(grid)]
    for name, y in (("y_clean", y_clean), ("y_adv", y_adv)):
        # layout only: finiteness is checked when the files are written
        if check_tensor(name, y).dim() not in (4, 5) or y.shape[1] != 2:
            raise ValueError(f"{name}: expected k-space (rows, 2, [N,] H, W) in deepinv layout, "
                             f"got shape {tuple(y.shape)}")
    rows = len(ids) * len(grid)
    if y_clean.shape != y_adv.shape or y_adv.shape[0] != rows:
        raise ValueError(f"y_adv: expected the shape of y_clean {tuple(y_clean.shape)} with "
                         f"len(grid) * len(ids) = {rows} rows, got {tuple(y_adv.shape)}")
    return ids, grid


class PerturbationStore:
    """Clean and perturbed k-space by (surrogate, attack, eps, sample id), in memory or in files.

    :meth:`add` keeps a batch in memory, :meth:`get` returns one sample's perturbed k-space,
    :meth:`save` writes fastMRI files (:func:`perturbation_filename`) and :meth:`load` reads a
    folder of them lazily. k-space is stored as complex64 (the fastMRI format): float32
    k-space, the sweeps', reads back exactly.

    :Examples:

        >>> import tempfile, torch
        >>> y = torch.randn(2, 2, 8, 8, generator=torch.Generator().manual_seed(0))
        >>> store = PerturbationStore()
        >>> store.add("zf", "pgd", ids=[7, 8], grid=[0.05], y_clean=y, y_adv=y + 0.1,
        ...           physics=None, attack_repr="PGD(steps=2)")
        >>> folder = Path(tempfile.mkdtemp())
        >>> [p.name for p in store.save(folder)]
        ['zf-pgd-eps0.05.h5']
        >>> loaded = PerturbationStore.load(folder)
        >>> bool(torch.equal(loaded.get("zf", "pgd", 0.05, 8), store.get("zf", "pgd", 0.05, 8)))
        True
        >>> loaded.keys()
        [('zf', 'pgd', 0.05, 7), ('zf', 'pgd', 0.05, 8)]
    """

    def __init__(self) -> None:
        self._batches: list[_Batch] = []  # added in memory, in order
        self._files: list[_SavedFile] = []  # of a loaded folder, sorted by path

    # ------------------------------------------------------------------ building
    def add(self, surrogate: str, attack: str, ids: Sequence[Any], grid: Sequence[float],
            y_clean: Tensor, y_adv: Tensor, physics: Any, attack_repr: str) -> None:
        """Keep a batch of clean / perturbed k-space: ``len(grid)`` copies of ``ids``, row
        ``i * len(ids) + j`` being sample ``ids[j]`` at ``grid[i]`` (a stacked
        :class:`~kspace_attacks.measurement.Grid`). ``physics``' ``mask`` and, multi-coil, its
        ``coil_maps`` are kept for the files (``None``: fully sampled single-coil).

        :Examples:

            >>> store = PerturbationStore()
            >>> y = torch.zeros(3, 2, 4, 4)
            >>> store.add("zf", "fgm", [0, 1, 2], [0.0], y, y, None, "FGM()")
            >>> len(store)
            3
        """
        _check_str("surrogate", surrogate)
        _check_str("attack", attack)
        _check_str("attack_repr", attack_repr)
        ids, grid = _check_batch(ids, grid, y_clean, y_adv)
        self._batches.append(_Batch(surrogate, attack, ids, grid, y_clean.detach().cpu(), y_adv.detach().cpu(),
                                    getattr(physics, "mask", None), _detached(getattr(physics, "coil_maps", None)),
                                    attack_repr))

    # ------------------------------------------------------------------ queries
    def get(self, surrogate: str, attack: str, eps: float, sample_id: Any) -> Tensor:
        """The perturbed k-space ``(1, 2, [N,] H, W)`` of one sample; raises
        :class:`MissingPerturbationError` (a ``KeyError``) naming what was asked for and what
        is kept.

        :Examples:

            >>> store = PerturbationStore()
            >>> store.add("zf", "fgm", ["a"], [0.1], torch.zeros(1, 2, 4, 4), torch.ones(1, 2, 4, 4),
            ...           None, "FGM()")
            >>> store.get("zf", "fgm", 0.1, "a").shape
            torch.Size([1, 2, 4, 4])
            >>> store.get("zf", "fgm", 0.2, "a")
            Traceback (most recent call last):
            ...
            kspace_attacks.study.perturbations.MissingPerturbationError: no kept perturbation for ...
        """
        _check_str("surrogate", surrogate)
        _check_str("attack", attack)
        eps = _check_eps("eps", eps)
        for b in self._batches:
            j = b.row(surrogate, attack, eps, sample_id)
            if j is not None:
                return b.y_adv[j : j + 1]
        for f in self._files:
            j = f.row(surrogate, attack, eps, sample_id)
            if j is not None:
                return f.read_row(j)
        raise MissingPerturbationError(f"no kept perturbation for surrogate={surrogate!r}, attack={attack!r}, "
                                       f"eps={eps}, sample_id={sample_id!r}; {self._kept()}")

    def keys(self) -> list[tuple[str, str, float, Any]]:
        """Every kept ``(surrogate, attack, eps, sample_id)``, in memory first, in stored order.

        :Examples:

            >>> store = PerturbationStore()
            >>> store.add("zf", "fgm", [0, 1], [0.0, 0.1], torch.zeros(4, 2, 4, 4), torch.zeros(4, 2, 4, 4),
            ...           None, "FGM()")
            >>> store.keys()
            [('zf', 'fgm', 0.0, 0), ('zf', 'fgm', 0.0, 1), ('zf', 'fgm', 0.1, 0), ('zf', 'fgm', 0.1, 1)]
        """
        out = [(b.surrogate, b.attack, e, i) for b in self._batches for e in b.grid for i in b.ids]
        for f in self._files:
            ix = f.index()
            if ix is not None:
                out += [(ix.surrogate, ix.attack, ix.eps, i) for i in ix.ids]
        return out

    def _kept(self) -> str:
        """What is kept, for error messages: budgets and sample ids per (surrogate, attack)."""
        if not self:
            return ("none is kept (transfer(..., keep_perturbations=True) keeps them; "
                    "TransferReport.load reads them from <folder>/perturbations)")
        eps: dict[tuple[str, str], set] = {}
        ids: dict[tuple[str, str], list] = {}
        for s, a, e, i in self.keys():
            eps.setdefault((s, a), set()).add(e)
            if i not in ids.setdefault((s, a), []):
                ids[(s, a)].append(i)
        parts = []
        for key in sorted(eps):
            shown = ", ".join(repr(i) for i in ids[key][:5]) + (", ..." if len(ids[key]) > 5 else "")
            parts.append(f"{key[0]!r}/{key[1]!r} at eps {sorted(eps[key])} for {len(ids[key])} "
                         f"sample_id(s) [{shown}]")
        return "kept: " + "; ".join(parts)

    def __bool__(self) -> bool:  # without reading any file (len would index them)
        return bool(self._batches or self._files)

    def __len__(self) -> int:
        return len(self.keys())

    def __repr__(self) -> str:
        return f"PerturbationStore({len(self._batches)} batch(es) in memory, {len(self._files)} file(s))"

    # ------------------------------------------------------------------ files
    def save(self, folder: str | os.PathLike, provenance: dict | None = None) -> list[Path]:
        """Write the kept perturbations to ``folder``; returns the paths written.

        In-memory batches become one fastMRI file per (surrogate, attack, eps),
        ``<surrogate>-<attack>-eps<e>.h5``, rows in the order added, ``provenance`` in each
        file's provenance attrs over :func:`~kspace_attacks.data.default_provenance`. Loaded
        files are copied unchanged to the same relative path (a file that in-memory rows also
        go to is rewritten with its rows first).

        :Examples:

            >>> import tempfile
            >>> store = PerturbationStore()
            >>> store.add("zf", "fgm", [0], [0.1, 0.2], torch.zeros(2, 2, 4, 4), torch.ones(2, 2, 4, 4),
            ...           None, "FGM()")
            >>> sorted(p.name for p in store.save(tempfile.mkdtemp(), provenance={"seed": 0}))
            ['zf-fgm-eps0.1.h5', 'zf-fgm-eps0.2.h5']
        """
        if provenance is not None and not isinstance(provenance, dict):
            raise TypeError(f"provenance: expected a dict or None, got {type(provenance).__name__}")
        folder = _check_folder("folder", folder)
        folder.mkdir(parents=True, exist_ok=True)
        names = {perturbation_filename(b.surrogate, b.attack, e) for b in self._batches for e in b.grid}
        merged = [f for f in self._files if f.rel.as_posix() in names and f.index() is not None]
        groups = _groups([f.as_batch() for f in merged] + self._batches)
        paths = [_write_group(folder, key, entry, provenance) for key, entry in groups.items()]
        return paths + [f.copy_to(folder / f.rel) for f in self._files if all(f is not m for m in merged)]

    @classmethod
    def load(cls, folder: str | os.PathLike) -> PerturbationStore:
        """The perturbation files under ``folder`` (sub-folders included, e.g. a sweep's
        ``batch0000``), read lazily: see :meth:`save` for an example.

        :Examples:

            >>> import tempfile
            >>> PerturbationStore.load(tempfile.mkdtemp())
            PerturbationStore(0 batch(es) in memory, 0 file(s))
        """
        root = _check_folder("folder", folder)
        if not root.is_dir():
            raise FileNotFoundError(f"folder: expected a folder of perturbation files, {root} is not one")
        store = cls()
        # hidden temporaries of interrupted writes end in .tmp, never .h5
        store._files = [_SavedFile(root, p.relative_to(root)) for p in sorted(root.rglob("*.h5"))]
        return store


def _groups(batches: list[_Batch]) -> dict[tuple, dict]:
    """Rows of ``batches`` per (surrogate, attack, eps): one file each, rows in batch order."""
    merged: dict[tuple, dict] = {}
    for b in batches:
        n = len(b.ids)
        for i, e in enumerate(b.grid):
            sl = slice(i * n, (i + 1) * n)
            entry = merged.setdefault((b.surrogate, b.attack, e), dict(ids=[], y_clean=[], y_adv=[], maps=[], first=b))
            entry["ids"] += b.ids
            entry["y_clean"].append(b.y_clean[sl])
            entry["y_adv"].append(b.y_adv[sl])
            maps = b.coil_maps
            if maps is not None:  # per-row maps, or one set shared by every row
                entry["maps"].append(maps[sl] if maps.shape[0] > 1 else maps.expand(n, *maps.shape[1:]))
    return merged


def _write_group(folder: Path, key: tuple, entry: dict, provenance: dict | None) -> Path:
    """One fastMRI file of merged rows (mask and attack of the group's first batch)."""
    from ..data.fastmri import write_perturbed_kspace  # h5 writer; imported on demand

    s, a, e = key
    first: _Batch = entry["first"]
    y_clean, y_adv = torch.cat(entry["y_clean"]), torch.cat(entry["y_adv"])
    mask = first.mask if first.mask is not None else torch.ones(y_clean.shape[-2:])
    mask = mask.detach().cpu()
    if mask.dim() == 4:
        mask = mask[0, 0]
    # multi-coil: the coil maps the sweep attacked with (estimated when the data had none) go
    # into the file, so that reading it back rebuilds the same physics
    physics_or_mask = _multicoil_physics(mask, torch.cat(entry["maps"])) if entry["maps"] else mask
    return write_perturbed_kspace(
        folder / perturbation_filename(s, a, e), y_clean, y_adv, physics_or_mask, eps=e,
        attack_settings={"attack": first.attack_repr, "surrogate": s, "name": a, "sample_ids": entry["ids"]},
        provenance=provenance,
    )


def _multicoil_physics(mask: Tensor, coil_maps: Tensor) -> Any:
    """A ``MultiCoilMRI`` with the given mask ``(H, W)`` and per-slice maps ``(S, N, H, W)``."""
    from deepinv.physics import MultiCoilMRI

    return MultiCoilMRI(mask=mask, coil_maps=coil_maps, img_size=tuple(coil_maps.shape[-2:]))
