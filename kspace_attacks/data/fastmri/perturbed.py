"""Files of attacked k-space: writing, reading back, and the provenance recorded with them.

A perturbed file is a standard fastMRI file whose ``kspace`` is the *adversarial* k-space (so
every fastMRI / deepinv reader sees the attacked data), plus ``kspace_clean``, optional
``coil_maps`` / ``x_clean`` datasets and attrs describing the attack (format
``kspace-attacks/perturbed-kspace/1``).
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import deepinv
import numpy as np
import torch
from deepinv.physics import MRI, MultiCoilMRI
from torch import Tensor

from kspace_attacks._checks import check_kspace, check_nonneg_float, check_tensor, describe
from kspace_attacks._runtime import runtime_provenance
from kspace_attacks.data.fastmri.attrs import _encode_attrs, _json, _read_attrs
from kspace_attacks.data.fastmri.errors import FastMRIFileError
from kspace_attacks.data.fastmri.files import (
    RECON_KEYS,
    _as_path,
    _kspace_dataset,
    _open_h5,
    _read_file_mask,
)
from kspace_attacks.data.fastmri.layout import (
    _magnitude_volume,
    deepinv_to_fastmri,
    fastmri_to_deepinv,
)
from kspace_attacks.data.fastmri.read import _build_physics
from kspace_attacks.data.fastmri.write import _fastmri_payload, _write_h5

__all__ = [
    "PerturbedKSpace",
    "default_provenance",
    "read_perturbed_kspace",
    "write_perturbed_kspace",
]

PERTURBED_FORMAT = "kspace-attacks/perturbed-kspace/1"


# --------------------------------------------------------------------------- provenance


def _package_version() -> str:
    from kspace_attacks import __version__  # the imported package's (metadata can be stale)

    return __version__


def default_provenance(seed: int | None = None) -> dict[str, Any]:
    """Package/library versions, UTC time and seed recorded with every perturbed file.

    Also what decides floating-point results besides the inputs (see
    :func:`kspace_attacks._runtime.runtime_provenance`): numpy version, platform, processor,
    torch's current thread count and deterministic mode. A sweep passes its own ``provenance``
    (the configured threads, device, world size) on top of these.
    """
    runtime = runtime_provenance()
    for key in ("device", "world_size"):  # known to the caller only (a sweep passes them)
        runtime.pop(key)
    return runtime | {
        "package": "kspace-attacks",
        "version": _package_version(),
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "deepinv": deepinv.__version__,
        "python": platform.python_version(),
        "seed": seed,
    }


# --------------------------------------------------------------------------- writing


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


def _check_perturbed_inputs(
    y_clean: Any, y_adv: Any, physics_or_mask: Any, attack_settings: Any, provenance: Any
) -> tuple[Tensor, Tensor]:
    """Validate the arguments of :func:`write_perturbed_kspace`; return both k-spaces."""
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
    return y_clean, y_adv


def _perturbed_datasets(
    y_clean: Tensor,
    y_adv: Tensor,
    physics_or_mask: Any,
    x_clean: Tensor | None,
    recon: np.ndarray | None,
) -> dict[str, Any]:
    """The datasets a perturbed file adds to the standard fastMRI ones."""
    datasets: dict[str, Any] = {"kspace_clean": deepinv_to_fastmri(y_clean)}
    if isinstance(physics_or_mask, MultiCoilMRI):  # so the exact physics can be rebuilt
        datasets["coil_maps"] = _coil_maps_volume(physics_or_mask, y_adv)
    if recon is not None:
        datasets[RECON_KEYS[1] if y_adv.dim() == 5 else RECON_KEYS[0]] = recon
        datasets["x_clean"] = x_clean.detach().cpu().float().numpy()
    return datasets


def _per_slice_l2(v: Tensor) -> list[float]:
    """l2 norm of each slice (over everything but dim 0), in float64."""
    return v.detach().double().flatten(1).norm(dim=1).cpu().tolist()


def _perturbation_attrs(
    y_clean: Tensor,
    y_adv: Tensor,
    eps: float | list[float],
    attack_settings: Mapping[str, Any],
    provenance: Mapping[str, Any] | None,
    seed: int | None,
) -> dict[str, Any]:
    """The attrs describing the attack; JSON round trip so they read back exactly as stored."""
    return {
        "kspace_attacks_format": PERTURBED_FORMAT,
        "eps": eps,
        "attack_settings": json.loads(_json("attack_settings", dict(attack_settings))),
        "provenance": json.loads(
            _json("provenance", default_provenance(seed) | dict(provenance or {}))
        ),
        "perturbation_l2": _per_slice_l2(y_adv - y_clean),
        "clean_l2": _per_slice_l2(y_clean),
    }


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
    y_clean, y_adv = _check_perturbed_inputs(
        y_clean, y_adv, physics_or_mask, attack_settings, provenance
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
    datasets |= _perturbed_datasets(y_clean, y_adv, physics_or_mask, x_clean, recon)
    if recon is not None:
        meta["max"], meta["norm"] = float(recon.max()), float(np.linalg.norm(recon))
    meta |= _perturbation_attrs(y_clean, y_adv, eps_val, attack_settings, provenance, seed)
    meta |= dict(attrs or {})
    return _write_h5(p, datasets, _encode_attrs(meta), overwrite)


# --------------------------------------------------------------------------- reading


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
