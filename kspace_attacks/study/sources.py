"""The data of a sweep: the ``data`` table of a configuration, checked and built into batches.

Three sources, each giving batches ``(x, y, physics)`` and one sample id per slice that names
where the slice came from::

    data = "embedded"                        # the shipped brain slices, simulated with the preset
    data = {nifti = "brain.nii.gz"}          # a NIfTI volume, simulated with the preset
    data = {fastmri = "dir_or_file.h5"}      # fastMRI raw k-space (a file or a folder of *.h5)

NIfTI keys: ``slices`` (a list of indices ``[10, 20]`` or a range ``"10:40:5"``), or
``n_slices`` (that many evenly spaced slices among those whose fraction of pixels above 10 % of
the volume maximum is at least ``min_content``, default 0.05). Ids: ``<file stem>-<slice>``.

fastMRI keys (files in name order, slices in order):

- ``mask``: ``"preset"`` (default): centre-crop fully sampled k-space to the preset's size and
  undersample it with the preset's mask; ``"file"``: keep the file's size and its own ``mask``
  dataset (``(W,)`` columns or ``(H, W)``), for undersampled (test/challenge) files;
- ``coil_maps`` (multi-coil): ``"auto"`` (default: the file's ``coil_maps`` dataset if present,
  else estimated from the fully sampled centre), ``"file"`` or ``"estimate"``;
- ``normalize``: ``"percentile"`` (default: divide by the 99th percentile of the slice's
  magnitude / coil-RSS image), ``"max"`` (the file's ``attrs['max']``), ``"none"`` or a number;
- ``target`` (the ground truth): ``"complex"`` (default: the coil-combined image of the full
  k-space), ``"magnitude"``, or ``"file"`` (the stored ``reconstruction_esc`` / ``_rss``);
  with ``mask = "file"`` and files that are undersampled, only ``"file"`` gives a ground
  truth: otherwise there is none, and the metrics against it are left out (the clean
  reconstruction is the reference);
- ``slices``: indices or a range taken in every file (default: all).

Ids: ``<file stem>-<slice>``. When the data table has ``slices`` (or, for NIfTI, ``n_slices``)
it decides which slices are used; otherwise the top-level ``n_slices`` does (embedded and NIfTI:
that many evenly spaced slices; fastMRI: the first ones in file and slice order). Unreadable or
inconsistent files fail before the sweep starts, with the file and the problem in the message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from .._checks import describe
from ..data.selection import evenly_spaced, select_slices
from .errors import ConfigError

__all__ = ["DATA_HELP", "DATA_KEYS", "check_data", "build_data", "item_coordinates", "with_coordinates"]

DATA_HELP = "'embedded', {fastmri = 'dir'} or {nifti = 'file'}"
#: Keys of each data table besides the source key itself, with their defaults.
DATA_KEYS: dict[str, dict[str, Any]] = {
    "nifti": {"slices": None, "n_slices": None, "min_content": 0.05},
    "fastmri": {"mask": "preset", "coil_maps": "auto", "normalize": "percentile",
                "target": "complex", "slices": None},
}
_CHOICES = {"mask": ("preset", "file"), "coil_maps": ("auto", "file", "estimate"),
            "target": ("complex", "magnitude", "file")}

Batches = list[tuple[torch.Tensor, torch.Tensor, Any]]


# ---------------------------------------------------------------------------------- checks
def _source(data: Any) -> str:
    """``"embedded"``, ``"nifti"`` or ``"fastmri"``; raises for anything else."""
    if data == "embedded":
        return "embedded"
    kinds = [k for k in DATA_KEYS if isinstance(data, Mapping) and k in data]
    if len(kinds) != 1:
        raise ConfigError(f"config: data must be {DATA_HELP}, got {data!r}")
    return kinds[0]


def check_data(data: Any) -> None:
    """Check a configuration's ``data`` value (paths are checked when the data are built)."""
    kind = _source(data)
    if kind == "embedded":
        return
    if not isinstance(data[kind], str) or not data[kind]:
        raise ConfigError(f"config: data.{kind} must be a path (a non-empty string), got {describe(data[kind])}")
    unknown = sorted(set(data) - {kind, *DATA_KEYS[kind]})
    if unknown:
        raise ConfigError(f"config: data: unknown key {unknown[0]!r} for {kind} data; known keys: "
                          f"{sorted([kind, *DATA_KEYS[kind]])}")
    opts = {**DATA_KEYS[kind], **data}
    if opts["slices"] is not None:
        if not isinstance(opts["slices"], (str, list)):
            raise ConfigError(f"config: data.slices must be a list of slice indices or a range "
                              f"'start:stop[:step]', got {describe(opts['slices'])}")
        try:
            select_slices(opts["slices"], 2**31 - 1, "data.slices")
        except (TypeError, ValueError) as e:
            raise ConfigError(f"config: {e}") from None
    if kind == "nifti":
        _check_nifti(opts)
    else:
        _check_fastmri(opts)


def _check_nifti(opts: Mapping[str, Any]) -> None:
    n = opts["n_slices"]
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ConfigError(f"config: data.n_slices must be an int >= 1, got {describe(n)}")
    if n is not None and opts["slices"] is not None:
        raise ConfigError(f"config: data.n_slices: expected either data.slices or data.n_slices, got both "
                          f"(slices = {opts['slices']!r}, n_slices = {n})")
    c = opts["min_content"]
    if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 <= c <= 1:
        raise ConfigError(f"config: data.min_content must be a number in [0, 1], got {describe(c)}")


def _check_fastmri(opts: Mapping[str, Any]) -> None:
    for key, choices in _CHOICES.items():
        if opts[key] not in choices:
            raise ConfigError(f"config: data.{key} must be one of {list(choices)}, got {opts[key]!r}")
    norm = opts["normalize"]
    ok_number = isinstance(norm, (int, float)) and not isinstance(norm, bool) and 0 < norm < float("inf")
    if not (ok_number or norm in ("percentile", "max", "none")):
        raise ConfigError(f"config: data.normalize must be 'percentile', 'max', 'none' or a number > 0, "
                          f"got {norm!r}")


# ---------------------------------------------------------------------------------- building
def build_data(cfg: Mapping[str, Any]) -> tuple[Batches, list[str]]:
    """Batches ``(x, y, physics)`` of at most ``batch_size`` slices and one id per slice."""
    from .. import data as _data

    kind = _source(cfg["data"])
    preset = _data.get_preset(cfg["preset"])
    if kind == "fastmri":
        return _fastmri(cfg, preset)
    if kind == "embedded":
        ds = _data.EmbeddedBrain(split=cfg["split"], preset=cfg["preset"], seed=cfg["seed"])
        if cfg["n_slices"] > len(ds):
            raise ConfigError(f"config: n_slices = {cfg['n_slices']}, but the embedded {cfg['split']!r} "
                              f"split has {len(ds)} items ({len(ds.slices)} slices x {len(ds.contrasts)} "
                              f"contrasts); expected n_slices <= {len(ds)}")
        # Evenly spaced slices over the split: different anatomy, deterministic.
        idx = evenly_spaced(range(len(ds)), cfg["n_slices"])
        x = torch.stack([ds[i][0] for i in idx])
        ids = [f"{cfg['split']}-{i}" for i in idx]  # (its slice and contrast: item_coordinates)
    else:
        x, ids = _nifti(cfg, preset.img_size)
    device, bs = cfg["device"], cfg["batch_size"]
    x = x.to(device)
    physics = preset.physics(device=device)
    y = preset.simulate(x, physics=physics, generator=torch.Generator().manual_seed(cfg["seed"]))
    batches = [(x[i : i + bs], y[i : i + bs], physics) for i in range(0, x.shape[0], bs)]
    return batches, ids


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".h5"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _nifti(cfg: Mapping[str, Any], size: int) -> tuple[torch.Tensor, list[str]]:
    """Complex images ``(B, 2, S, S)`` (zero imaginary part) and ids of the selected slices."""
    from ..data import load_nifti_slices

    src = {**DATA_KEYS["nifti"], **cfg["data"]}
    path = Path(src["nifti"])
    if src["slices"] is not None:
        pick = {"slices": src["slices"]}
    else:
        pick = {"n_slices": src["n_slices"] or cfg["n_slices"], "min_content": float(src["min_content"])}
    try:
        x, idx = load_nifti_slices(path, size=size, return_indices=True, **pick)
    except FileNotFoundError:
        raise FileNotFoundError(f"config: data.nifti: file {path} does not exist") from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config: data: {e}") from e
    return torch.cat([x, torch.zeros_like(x)], dim=1), [f"{_stem(path)}-{i}" for i in idx]


def _fastmri(cfg: Mapping[str, Any], preset: Any) -> tuple[Batches, list[str]]:
    from ..data.fastmri import FastMRISlices, inspect_fastmri_file

    src = {**DATA_KEYS["fastmri"], **cfg["data"]}
    root = Path(src["fastmri"])
    if not root.exists():
        raise FileNotFoundError(f"config: data.fastmri: {root} does not exist")
    files = sorted(root.glob("*.h5")) if root.is_dir() else [root]
    if not files:
        raise ConfigError(f"config: data.fastmri: expected a .h5 file or a folder of them, got {root} "
                          f"with no .h5 files")
    size = preset.img_size
    for f in files:  # structure first: a bad file fails here, named, before any slice is read
        info = inspect_fastmri_file(f)
        if src["mask"] == "preset" and info.mask_shape is not None:
            raise ConfigError(f"config: data.mask: expected fully sampled files for mask = 'preset', got "
                              f"{f}, which is undersampled (it has a 'mask' dataset); use mask = 'file'")
        if src["mask"] == "preset" and min(info.img_size) < size:
            raise ConfigError(f"config: preset: expected k-space of at least {size}x{size} to crop to "
                              f"preset {preset.name!r}, got {f} with {info.img_size[0]}x{info.img_size[1]}; "
                              f"use a smaller preset or mask = 'file'")
    preset_mask = src["mask"] == "preset"
    ds = FastMRISlices(
        root, slices="all" if src["slices"] is None else src["slices"],
        crop=size if preset_mask else None, mask=preset.mask() if preset_mask else "file",
        normalize=float(src["normalize"]) if isinstance(src["normalize"], (int, float)) else src["normalize"],
        coil_maps=src["coil_maps"], target=src["target"],
    )
    if src["slices"] is None:
        ds.samples = ds.samples[: cfg["n_slices"]]
    batches = ds.batches(cfg["batch_size"], device=cfg["device"])
    if not preset_mask and src["target"] != "file":
        # An undersampled file holds no fully sampled k-space: the "image of the k-space" is the
        # zero-filled reconstruction, and metrics against it a made-up ground truth (80 dB for
        # the zero-filled model). Without a stored reconstruction there is no ground truth.
        batches = [(None if bool((physics.mask < 1).any()) else x, y, physics) for x, y, physics in batches]
    return batches, ds.sample_ids()


def item_coordinates(cfg: Mapping[str, Any], ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Where each item of :func:`build_data` comes from: ``{id: {"slice": ..., "contrast": ...}}``.

    Embedded ids (``test-79``) index the split's items, which run slice-major over the
    contrasts: the coordinates are the template's z and the contrast. File ids
    (``<stem>-<slice>``) carry their slice; files have no contrast name (empty). The ids
    themselves stay as they are: each row's noise is seeded by its id.
    """
    if _source(cfg["data"]) == "embedded":
        from ..data import EmbeddedBrain

        ds = EmbeddedBrain(split=cfg["split"], preset=cfg["preset"], seed=cfg["seed"])
        out = {}
        for sid in ids:
            info = ds.info(int(str(sid).rsplit("-", 1)[1]))
            out[str(sid)] = {"slice": info["z"], "contrast": info["contrast"]}
        return out
    return {str(sid): {"slice": int(str(sid).rsplit("-", 1)[1]), "contrast": ""} for sid in ids}


def with_coordinates(records: Sequence[dict], coordinates: Mapping[str, Mapping[str, Any]]) -> list[dict]:
    """``records`` with their item's ``slice`` and ``contrast`` right after ``sample_id``."""
    out = []
    for r in records:
        where = coordinates.get(str(r.get("sample_id")))
        if where is None or "sample_id" not in r:
            out.append(r)
            continue
        row = {}
        for k, v in r.items():
            row[k] = v
            if k == "sample_id":
                row.update(where)
        out.append(row)
    return out
