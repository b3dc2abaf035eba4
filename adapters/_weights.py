"""Shared weight-file plumbing for the adapters: find, save and load safetensors files.

Weights are stored as safetensors (no code runs at load time). The architecture config is
stored twice: in the file's safetensors metadata (so a bare ``.safetensors`` file is
self-describing) and in the JSON next to it (for humans, together with training facts).
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from kspace_attacks._checks import describe
from kspace_attacks.io import atomic_path

#: Values accepted by ``load(weights=...)`` besides a path.
EMBEDDED = "embedded"


def embedded_path(name: str) -> Path:
    """Path of the shipped weight file ``adapters/weights/<name>.safetensors``.

    Raises ``FileNotFoundError`` naming the file if it is not shipped.
    """
    path = Path(str(resources.files("kspace_attacks.adapters") / "weights" / f"{name}.safetensors"))
    if not path.is_file():
        raise FileNotFoundError(
            f"weights: no embedded weights for {name!r} (expected {path}); train them with "
            f"`kspace-attacks train {name}` or pass weights=None for a random init"
        )
    return path


def weights_path(name: str, weights: Any) -> Path | None:
    """Turn a ``weights`` argument (``"embedded"``, a path or ``None``) into a file path."""
    if weights is None:
        return None
    if isinstance(weights, str) and weights == EMBEDDED:
        return embedded_path(name)
    if isinstance(weights, (str, os.PathLike)):
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"weights: expected an existing safetensors file, got {path}")
        return path
    raise TypeError(
        f"weights: expected 'embedded', a path to a .safetensors file or None, got "
        f"{describe(weights)}"
    )


def read_config(path: Path) -> dict:
    """Architecture config stored in the metadata of a safetensors file (``{}`` if none)."""
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return json.loads(meta.get("config", "{}"))


def merge_config(defaults: dict, stored: dict, overrides: dict) -> dict:
    """Architecture config: defaults < config stored with the weights < explicit kwargs.

    An explicit kwarg that contradicts the stored config is an error, since the state dict
    would not fit the model.
    """
    unknown = set(overrides) - set(defaults)
    if unknown:
        raise TypeError(
            f"kwargs: unknown architecture options {sorted(unknown)}; expected a subset of "
            f"{sorted(defaults)}"
        )
    for key, value in overrides.items():
        if key in stored and _norm(stored[key]) != _norm(value):
            raise ValueError(
                f"{key}: the weights were trained with {key}={stored[key]!r}, got {value!r}"
            )
    return {**defaults, **stored, **overrides}


def _norm(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def load_state(model: torch.nn.Module, path: Path) -> None:
    """Load a safetensors state dict into ``model`` (strict)."""
    state = load_file(str(path), device="cpu")
    model.load_state_dict(state, strict=True)


def save_state(model: torch.nn.Module, path: str | os.PathLike, config: dict) -> None:
    """Write ``model``'s state dict to ``path`` atomically, with ``config`` as metadata."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    # atomic_path creates missing folders and gives the file 0o666 & ~umask (safetensors
    # itself creates 0600 files; shipped weights must be readable)
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"config": json.dumps(config)})


def finish(model: torch.nn.Module, device: str | torch.device) -> torch.nn.Module:
    """Move to ``device``, switch to eval mode and return the model."""
    return model.to(device).eval()


def load_model(cls: type, name: str, defaults: dict, weights: Any, device: str | torch.device,
               overrides: dict) -> torch.nn.Module:
    """Build ``cls`` from ``defaults`` < the weights' stored config < ``overrides`` and load the
    weights (``"embedded"``, a safetensors path, or ``None`` for random initialisation)."""
    path = weights_path(name, weights)
    stored = read_config(path) if path is not None else {}
    model = cls(**merge_config(defaults, stored, overrides))
    if path is not None:
        load_state(model, path)
    return finish(model, device)
