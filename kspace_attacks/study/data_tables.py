"""The ``data`` value of a sweep configuration: which source tables exist, their keys and
defaults, and the checks a configuration's data pass before anything is loaded (paths are
checked when the data are built, :mod:`kspace_attacks.study.sources`).

Example:

    >>> from kspace_attacks.study.data_tables import check_data
    >>> check_data([{"embedded": "test", "n_slices": 2}, {"shipped": "dipy_s0", "slices": [3, 7]}])
    >>> check_data({"nifti": "brain.nii.gz", "slcies": [1]})
    Traceback (most recent call last):
    ...
    kspace_attacks.schema.ConfigError: config: data: unknown key 'slcies' for nifti data; known keys: ['min_content', 'n_slices', 'nifti', 'slices']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._checks import describe
from ..data.selection import select_slices
from .errors import ConfigError

__all__ = ["DATA_HELP", "DATA_KEYS", "check_data", "source_kind", "source_tables"]

DATA_HELP = ("'embedded', {embedded = 'test'}, {fastmri = 'dir'}, {nifti = 'file'}, {shipped = 'name'} "
             "or a list of these tables (fastmri alone)")
#: Keys of each data table besides the source key itself, with their defaults.
DATA_KEYS: dict[str, dict[str, Any]] = {
    "embedded": {"contrasts": None, "n_slices": None},
    "nifti": {"slices": None, "n_slices": None, "min_content": 0.05},
    "shipped": {"slices": None, "n_slices": None, "min_content": 0.05},
    "fastmri": {"mask": "preset", "coil_maps": "auto", "normalize": "percentile",
                "target": "complex", "slices": None},
}
_CHOICES = {"mask": ("preset", "file"), "coil_maps": ("auto", "file", "estimate"),
            "target": ("complex", "magnitude", "file")}

def source_kind(data: Any) -> str:
    """``"embedded"``, ``"nifti"``, ``"shipped"``, ``"fastmri"`` or ``"list"``; raises for
    anything else."""
    if data == "embedded":
        return "embedded"
    if isinstance(data, list):
        return "list"
    kinds = [k for k in DATA_KEYS if isinstance(data, Mapping) and k in data]
    if len(kinds) != 1:
        raise ConfigError(f"config: data must be {DATA_HELP}, got {data!r}")
    return kinds[0]


def source_tables(data: Any) -> list[tuple[str, Any]]:
    """The data as ``(kind, table)`` pairs, one per source table (one for a single source), each
    kind as :func:`source_kind` names it.

    >>> source_tables([{"embedded": "test"}, {"shipped": "dipy_s0"}])
    [('embedded', {'embedded': 'test'}), ('shipped', {'shipped': 'dipy_s0'})]
    """
    return [(source_kind(t), t) for t in (data if isinstance(data, list) else [data])]


def check_data(data: Any) -> None:
    """Check a configuration's ``data`` value (paths are checked when the data are built)."""
    if source_kind(data) == "list":
        if not data:
            raise ConfigError(f"config: data: expected a non-empty list of source tables, got {data!r}")
        for i, table in enumerate(data):
            kind = source_kind(table)
            if kind in ("list", "fastmri"):
                raise ConfigError(f"config: data[{i}]: a list holds simulated sources (embedded, nifti, "
                                  f"shipped), got {kind} {table!r}; a fastMRI folder is a source of its own")
            check_data(table)
        return
    kind = source_kind(data)
    if data == "embedded":
        return
    if not isinstance(data[kind], str) or not data[kind]:
        raise ConfigError(f"config: data.{kind} must be a path (a non-empty string), got {describe(data[kind])}")
    unknown = sorted(set(data) - {kind, *DATA_KEYS[kind]})
    if unknown:
        raise ConfigError(f"config: data: unknown key {unknown[0]!r} for {kind} data; known keys: "
                          f"{sorted([kind, *DATA_KEYS[kind]])}")
    opts = {**DATA_KEYS[kind], **data}
    if opts.get("slices") is not None:
        if not isinstance(opts["slices"], (str, list)):
            raise ConfigError(f"config: data.slices must be a list of slice indices or a range "
                              f"'start:stop[:step]', got {describe(opts['slices'])}")
        try:
            select_slices(opts["slices"], 2**31 - 1, "data.slices")
        except (TypeError, ValueError) as e:
            raise ConfigError(f"config: {e}") from None
    if kind in ("nifti", "shipped"):
        _check_nifti(opts)
    elif kind == "embedded":
        _check_embedded(opts)
    else:
        _check_fastmri(opts)
    if kind == "shipped":
        from ..data import SHIPPED_VOLUMES

        if data[kind] not in SHIPPED_VOLUMES:
            raise ConfigError(f"config: data.shipped must be one of {sorted(SHIPPED_VOLUMES)}, got {data[kind]!r}")


def _check_embedded(opts: Mapping[str, Any]) -> None:
    from ..data import CONTRASTS

    if opts["embedded"] not in ("train", "val", "test"):
        raise ConfigError(f"config: data.embedded must be a split ('train', 'val' or 'test'), got {opts['embedded']!r}")
    c = opts["contrasts"]
    if c is not None and (not isinstance(c, list) or not c or any(v not in CONTRASTS for v in c)):
        raise ConfigError(f"config: data.contrasts must be a non-empty list of {list(CONTRASTS)}, got {describe(c)}")
    n = opts["n_slices"]
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ConfigError(f"config: data.n_slices must be an int >= 1, got {describe(n)}")


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


