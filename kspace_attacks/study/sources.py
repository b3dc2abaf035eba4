"""The data of a sweep: the ``data`` table of a configuration, checked and built into batches.

Sources, each giving batches ``(x, y, physics)`` and one sample id per slice that names where
the slice came from::

    data = "embedded"                        # the shipped brain slices, simulated with the preset
    data = {embedded = "test", contrasts = ["t1"], n_slices = 14}   # a split, chosen contrasts
    data = {nifti = "brain.nii.gz"}          # a NIfTI volume, simulated with the preset
    data = {shipped = "dipy_aniso"}          # a real brain volume shipped in the package
    data = {fastmri = "dir_or_file.h5"}      # fastMRI raw k-space (a file or a folder of *.h5)
    data = [{embedded = "test"}, {shipped = "dipy_s0"}]   # several simulated sources, in order

Every item carries a ``subject`` (the volume it is a slice of: ``icbm152`` for the embedded
template, the file's stem for NIfTI and fastMRI files) and an anatomical ``block`` within it
(embedded: the template's block of neighbouring slices; files: the quarter of the volume the
slice lies in), the units the verdicts' cluster bootstrap resamples
(:func:`item_coordinates`). Simulated k-space (every source but fastMRI) gets the preset's noise
seeded per item (by the run's seed and the item's id), so an item's data do not depend on the
other items, the batch or the order.

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

Embedded tables: ``embedded`` names the split, ``contrasts`` (default all five) restricts the
synthesised contrasts, ``n_slices`` picks that many evenly spaced items; ids
``<split>-z<template z>-<contrast>``. ``shipped``: a name of
:data:`~kspace_attacks.data.SHIPPED_VOLUMES` with the NIfTI keys.

Ids: ``<file stem>-<slice>``. When the data table has ``slices`` (or, for NIfTI, ``n_slices``)
it decides which slices are used; otherwise the top-level ``n_slices`` does (embedded and NIfTI:
that many evenly spaced slices; fastMRI: the first ones in file and slice order). Unreadable or
inconsistent files fail before the sweep starts, with the file and the problem in the message.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data.selection import evenly_spaced
from .data_tables import DATA_HELP, DATA_KEYS, check_data, source_tables
from .errors import ConfigError
from .sweep_config import SweepConfig

__all__ = ["DATA_HELP", "DATA_KEYS", "check_data", "DataItems", "build_items", "build_data", "item_coordinates",
           "item_generator", "simulate_items"]

Batches = list[tuple[torch.Tensor, torch.Tensor, Any]]
Coordinates = dict[str, dict[str, Any]]


@dataclass
class DataItems:
    """The data of a configuration, built once (:func:`build_items`).

    :param batches: ``(x, y, physics)`` batches of at most ``batch_size`` slices.
    :param ids: the sample id of every slice, in batch order.
    :param coordinates: per id, its ``slice``, ``contrast``, ``subject`` and ``block``.
    """

    batches: Batches
    ids: list[str]
    coordinates: Coordinates


# ---------------------------------------------------------------------------------- building
def build_items(cfg: SweepConfig) -> DataItems:
    """The batches, ids and coordinates of ``cfg.data``, each source table read once.

    >>> from kspace_attacks.study.config import validate_config
    >>> items = build_items(validate_config({"n_slices": 2, "batch_size": 2}))
    >>> items.ids, items.coordinates[items.ids[0]]["subject"]
    (['test-0', 'test-69'], 'icbm152')
    """
    from .. import data as _data

    preset = _data.get_preset(cfg.preset)
    tables = source_tables(cfg.data)
    if tables[0][0] == "fastmri":
        return _fastmri(cfg, preset)
    images, ids, coordinates = [], [], {}
    for kind, table in tables:
        x_, ids_, where = _table_items(cfg, kind, table, preset.img_size)
        images.append(x_)
        ids += ids_
        coordinates.update(where)
    if len(set(ids)) != len(ids):
        twice = sorted({i for i in ids if ids.count(i) > 1})
        raise ConfigError(f"config: data: the same item is listed twice ({', '.join(twice[:3])}); "
                          f"expected each source once")
    device, bs = cfg.device, cfg.batch_size
    x = torch.cat(images).to(device)
    physics = preset.physics(device=device)
    y = simulate_items(preset, x, ids, cfg.seed, physics)
    batches = [(x[i : i + bs], y[i : i + bs], physics) for i in range(0, x.shape[0], bs)]
    return DataItems(batches, ids, _in_order(coordinates, ids))


def build_data(cfg: SweepConfig) -> tuple[Batches, list[str]]:
    """Batches ``(x, y, physics)`` of at most ``batch_size`` slices and one id per slice
    (:func:`build_items` without the coordinates)."""
    items = build_items(cfg)
    return items.batches, items.ids


def item_coordinates(cfg: SweepConfig, ids: Sequence[str]) -> Coordinates:
    """Where each item of :func:`build_data` comes from:
    ``{id: {"slice": ..., "contrast": ..., "subject": ..., "block": ...}}``.

    Embedded items: the template's z, the contrast, subject ``icbm152`` and the template block.
    File items (``<stem>-<slice>``): the slice, no contrast name (empty), the file's stem as
    subject and the quarter of the volume the slice lies in as block (0 = first slices). The ids
    themselves stay as they are: each row's noise is seeded by its id. This builds the data;
    :func:`build_items` gives the coordinates with the batches.
    """
    return _in_order(build_items(cfg).coordinates, ids)


def item_generator(seed: int, sample_id: str) -> torch.Generator:
    """The generator of one item's acquisition noise: a function of the run's seed and the id.

    >>> a = item_generator(0, "test-z42-t1").initial_seed(); a == item_generator(0, "test-z42-t1").initial_seed()
    True
    """
    digest = hashlib.sha256(f"{int(seed)}:{sample_id}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def simulate_items(preset: Any, x: torch.Tensor, ids: Sequence[str], seed: int, physics: Any) -> torch.Tensor:
    """``preset.simulate`` item by item, each with its own noise (:func:`item_generator`)."""
    if not preset.noisy:
        return preset.simulate(x, physics=physics)
    return torch.cat([preset.simulate(x[i : i + 1], physics=physics, generator=item_generator(seed, sid))
                      for i, sid in enumerate(ids)])


def _table_items(cfg: SweepConfig, kind: str, table: Any, size: int) -> tuple[torch.Tensor, list[str], Coordinates]:
    """Ground-truth images ``(B, 2, S, S)``, ids and coordinates of one simulated source table."""
    if kind == "embedded":
        return _embedded(cfg, table)
    return _nifti(cfg, table, size)


def _embedded(cfg: SweepConfig, table: Any) -> tuple[torch.Tensor, list[str], Coordinates]:
    """The chosen items of an embedded table (evenly spaced over its split)."""
    from ..data import EmbeddedBrain

    opts = {**DATA_KEYS["embedded"], "embedded": cfg.split, **(table if isinstance(table, Mapping) else {})}
    contrasts = tuple(opts["contrasts"]) if opts["contrasts"] else None
    ds = EmbeddedBrain(split=opts["embedded"], preset=cfg.preset, seed=cfg.seed, contrasts=contrasts)
    n = opts["n_slices"] or cfg.n_slices
    if n > len(ds):
        raise ConfigError(f"config: n_slices = {n}, but the embedded {opts['embedded']!r} split has {len(ds)} "
                          f"items ({len(ds.slices)} slices x {len(ds.contrasts)} contrasts); expected n_slices "
                          f"<= {len(ds)}")
    # Evenly spaced items over the split: different anatomy, deterministic.
    idx = evenly_spaced(range(len(ds)), n)
    ids = _embedded_ids(ds, idx, legacy=table == "embedded")
    coordinates = {}
    for i, sid in zip(idx, ids, strict=True):
        info = ds.info(i)
        coordinates[sid] = {"slice": info["z"], "contrast": info["contrast"], "subject": info["subject"],
                            "block": info["block"]}
    return torch.stack([ds.image(i) for i in idx]), ids, coordinates


def _embedded_ids(ds: Any, idx: Sequence[int], legacy: bool) -> list[str]:
    """``<split>-<index>`` for ``data = "embedded"`` (ids of earlier versions), else
    ``<split>-z<z>-<contrast>``, which name the item whatever the table's contrasts."""
    if legacy:
        return [f"{ds.split}-{i}" for i in idx]
    return [f"{ds.split}-z{ds.info(i)['z']}-{ds.info(i)['contrast']}" for i in idx]


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".h5"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _volume_path(table: Mapping[str, Any]) -> Path:
    if "shipped" in table:
        from ..data import shipped_volume

        return shipped_volume(table["shipped"])
    return Path(table["nifti"])


def _nifti(cfg: SweepConfig, table: Mapping[str, Any], size: int) -> tuple[torch.Tensor, list[str], Coordinates]:
    """Complex images ``(B, 2, S, S)`` (zero imaginary part), ids and coordinates of the selected
    slices of a NIfTI table."""
    from ..data import load_nifti_slices
    from ..data.nifti import volume_slices

    src = {**DATA_KEYS["nifti"], **{k: v for k, v in table.items() if k != "shipped"}}
    path = _volume_path(table)
    if src["slices"] is not None:
        pick = {"slices": src["slices"]}
    else:
        pick = {"n_slices": src["n_slices"] or cfg.n_slices, "min_content": float(src["min_content"])}
    try:
        x, idx = load_nifti_slices(path, size=size, return_indices=True, **pick)
    except FileNotFoundError:
        raise FileNotFoundError(f"config: data.nifti: file {path} does not exist") from None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config: data: {e}") from e
    ids = [f"{_stem(path)}-{i}" for i in idx]
    return (torch.cat([x, torch.zeros_like(x)], dim=1), ids,
            _file_coordinates(_stem(path), volume_slices(path), set(ids)))


def _fastmri(cfg: SweepConfig, preset: Any) -> DataItems:
    from ..data.fastmri import FastMRISlices, inspect_fastmri_file

    src = {**DATA_KEYS["fastmri"], **cfg.data}
    root = Path(src["fastmri"])
    if not root.exists():
        raise FileNotFoundError(f"config: data.fastmri: {root} does not exist")
    files = sorted(root.glob("*.h5")) if root.is_dir() else [root]
    if not files:
        raise ConfigError(f"config: data.fastmri: expected a .h5 file or a folder of them, got {root} "
                          f"with no .h5 files")
    size = preset.img_size
    slices_per_file = {}
    for f in files:  # structure first: a bad file fails here, named, before any slice is read
        info = inspect_fastmri_file(f)
        slices_per_file[_stem(f)] = info.num_slices
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
        ds.samples = ds.samples[: cfg.n_slices]
    batches = ds.batches(cfg.batch_size, device=cfg.device)
    if not preset_mask and src["target"] != "file":
        # An undersampled file holds no fully sampled k-space: the "image of the k-space" is the
        # zero-filled reconstruction, and metrics against it a made-up ground truth (80 dB for
        # the zero-filled model). Without a stored reconstruction there is no ground truth.
        batches = [(None if bool((physics.mask < 1).any()) else x, y, physics) for x, y, physics in batches]
    ids = ds.sample_ids()
    coordinates: Coordinates = {}
    for stem, n_slices in slices_per_file.items():
        coordinates.update(_file_coordinates(stem, n_slices, set(ids)))
    return DataItems(batches, ids, _in_order(coordinates, ids))


def _in_order(coordinates: Coordinates, ids: Sequence[str]) -> Coordinates:
    """``coordinates`` of the ``ids`` that have them, in the ids' order."""
    return {sid: coordinates[sid] for sid in map(str, ids) if sid in coordinates}


def _file_coordinates(stem: str, n_slices: int, wanted: set[str]) -> Coordinates:
    """Coordinates of the ``wanted`` ids ``<stem>-<slice>`` of one file of ``n_slices`` slices:
    the file is the subject, the quarter of the volume the slice lies in its block."""
    out = {}
    for sid in wanted:
        head, _, tail = sid.rpartition("-")
        if head == stem and tail.isdigit():
            index = int(tail)
            out[sid] = {"slice": index, "contrast": "", "subject": stem,
                        "block": min(3, 4 * index // max(1, n_slices))}
    return out
