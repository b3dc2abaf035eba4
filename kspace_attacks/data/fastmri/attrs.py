"""HDF5 attrs of fastMRI files: encoding Python values for h5py and decoding them back.

Scalars and strings are stored natively; dicts, lists, tuples and ``None`` become JSON text,
and the names of those attrs are listed in the attr ``kspace_attacks_json_attrs`` so readers
decode exactly those (a plain string attr that happens to look like JSON stays a string).
The JSON is written with ``allow_nan=True`` (``NaN`` in the text) as it always was, so a NaN
in, say, ``attack_settings`` round-trips; files written before this module existed still load.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch import Tensor

from kspace_attacks._checks import describe

__all__: list[str] = []

_JSON_ATTRS = "kspace_attacks_json_attrs"  # attr listing which attrs hold JSON text


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
    """JSON text of ``value`` for an attr; ``name`` is the argument named in errors."""
    try:
        # allow_nan=True, not kspace_attacks.io.dumps_strict: NaN must survive the round trip
        # (readers use json.loads, which accepts it), and the format predates that module.
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
