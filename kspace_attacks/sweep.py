"""Sweeps from a configuration: data, models, attacks and budgets described in TOML or YAML.

This is the application layer behind ``kspace-attacks sweep`` and ``kspace-attacks demo``:
it resolves model names through :mod:`kspace_attacks.adapters` (imported on use), builds the
data and attacks, runs :func:`kspace_attacks.transfer` and saves the report. The library core
(threat models, attacks, metrics, transfer) does not depend on it.

A configuration (every key optional; defaults are the demo's)::

    preset = "embedded"              # acquisition preset of the simulated data
    data = "embedded"                # "embedded", or {fastmri = "dir"} / {nifti = "file.nii.gz"}
    split = "test"
    n_slices = 4
    batch_size = 4
    seed = 0
    device = "cpu"
    eps = [0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08]
    surrogates = ["irim", "resunetpp"]
    targets = ["irim", "resunetpp", "diffusion", "zero_filled"]
    baseline = true
    normalization = "minmax"
    fail_fast = false                # true: stop at the first failing batch

    [threat]                         # KSpaceL2 or KSpaceLinf
    type = "KSpaceL2"
    per = "sample"
    support = "measured"

    [attacks.pgd]                    # one table per attack: type + its arguments
    type = "PGD"
    steps = 20

    [models.diffusion]               # keyword arguments for load_reconstructor
    steps = 50
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from . import attacks as _attacks
from ._checks import describe
from ._runtime import flush_denormals
from .report import TransferReport, atomic_write_text
from .threat import KSpaceL2, KSpaceLinf
from .evaluation import DEFAULT_EPS, transfer

__all__ = ["DEMO_CONFIG", "load_config", "dump_toml", "validate_config", "run_sweep", "ConfigError"]


class ConfigError(ValueError):
    """A configuration value is missing, unknown or of the wrong type."""


DEMO_CONFIG: dict[str, Any] = {
    "preset": "embedded",
    "data": "embedded",
    "split": "test",
    "n_slices": 4,
    "batch_size": 4,
    "seed": 0,
    "device": "cpu",
    "eps": list(DEFAULT_EPS),
    "surrogates": ["irim", "resunetpp"],
    "targets": ["irim", "resunetpp", "diffusion", "zero_filled"],
    "baseline": True,
    "normalization": "minmax",
    "threat": {"type": "KSpaceL2", "relative": True, "per": "sample", "support": "measured"},
    "attacks": {
        "pgd": {"type": "PGD", "steps": 20, "restarts": 1},
        "adam": {"type": "ProjectedAdam", "lr": 0.1, "max_steps": 100, "max_rescales": 100},
    },
    "models": {},
    "fail_fast": False,
}

_THREATS = {"KSpaceL2": KSpaceL2, "KSpaceLinf": KSpaceLinf}
_ATTACKS = {"PGD": _attacks.PGD, "ProjectedAdam": _attacks.ProjectedAdam, "FGM": _attacks.FGM,
            "GaussianNoise": _attacks.GaussianNoise}
_TYPES = {"preset": str, "split": str, "n_slices": int, "batch_size": int, "seed": int, "device": str,
          "eps": list, "surrogates": list, "targets": list, "baseline": bool, "normalization": str,
          "threat": dict, "attacks": dict, "models": dict, "fail_fast": bool}


# ---------------------------------------------------------------------------------- files
def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``) sweep configuration, merged over
    :data:`DEMO_CONFIG` and validated."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config: file {p} does not exist")
    text = p.read_text(encoding="utf-8")
    if p.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ConfigError(f"config: {p} is YAML but PyYAML is not installed; pip install pyyaml, or use TOML") from e
        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config: {p} is not valid YAML: {e}") from e
    elif p.suffix.lower() == ".toml":
        try:
            import tomllib
        except ImportError:  # Python 3.10
            import tomli as tomllib  # type: ignore[no-redef]
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config: {p} is not valid TOML: {e}") from e
    else:
        raise ConfigError(f"config: expected a .toml, .yaml or .yml file, got {p.name}")
    if not isinstance(raw, dict):
        raise ConfigError(f"config: expected a table of settings in {p}, got {describe(raw)}")
    return validate_config(raw)


def _toml_string(v: str) -> str:
    # TOML basic strings: escape backslash, quote and control characters; keep the rest as is
    # (json.dumps would write non-BMP characters as surrogate pairs, which TOML rejects).
    out = []
    for ch in v:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_key(k: str) -> str:
    return k if k and all(c.isascii() and (c.isalnum() or c in "-_") for c in k) else _toml_string(k)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return repr(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return "nan" if v != v else ("inf" if v > 0 else "-inf")
        return repr(v)
    if isinstance(v, str):
        return _toml_string(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise ConfigError(f"config: cannot write {describe(v)} as TOML")


def dump_toml(config: Mapping[str, Any]) -> str:
    """Write a configuration as TOML (scalars and lists first, then tables)."""
    lines = ["# kspace-attacks sweep configuration", ""]
    tables = {}
    for k, v in config.items():
        if isinstance(v, Mapping) and k in ("threat", "attacks", "models"):
            tables[k] = v
        else:
            lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
    for k, v in tables.items():
        nested = {n: t for n, t in v.items() if isinstance(t, Mapping)}
        flat = {n: t for n, t in v.items() if not isinstance(t, Mapping)}
        if flat or not nested:
            lines += ["", f"[{k}]"] + [f"{_toml_key(n)} = {_toml_value(t)}" for n, t in flat.items()]
        for n, t in nested.items():
            lines += ["", f"[{k}.{_toml_key(n)}]"] + [f"{_toml_key(a)} = {_toml_value(b)}" for a, b in t.items()]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------- checks
def validate_config(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``raw`` over the demo defaults and check every value; raises :class:`ConfigError`."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config: expected a table of settings, got {describe(raw)}")
    cfg = copy.deepcopy(DEMO_CONFIG)
    for key, value in raw.items():
        if key not in _TYPES and key != "data":
            raise ConfigError(f"config: unknown key {key!r}; known keys: {sorted([*_TYPES, 'data'])}")
        cfg[key] = value
    if "attacks" in raw:  # a given attack table replaces the default attacks entirely
        cfg["attacks"] = dict(raw["attacks"])
    for key, typ in _TYPES.items():
        v = cfg[key]
        ok = isinstance(v, typ) and not (typ is int and isinstance(v, bool))
        if not ok:
            raise ConfigError(f"config: {key} must be a {typ.__name__}, got {describe(v)}")
    for key in ("n_slices", "batch_size"):
        if cfg[key] < 1:
            raise ConfigError(f"config: {key} must be >= 1, got {cfg[key]}")
    for e in cfg["eps"]:
        if isinstance(e, bool) or not isinstance(e, (int, float)) or not math.isfinite(e) or e < 0:
            raise ConfigError(f"config: eps must be a list of numbers >= 0, got {cfg['eps']}")
    if not cfg["eps"]:
        raise ConfigError("config: eps must hold at least one budget, got []")
    for key in ("surrogates", "targets"):
        if not cfg[key] or not all(isinstance(n, str) for n in cfg[key]):
            raise ConfigError(f"config: {key} must be a non-empty list of model names, got {cfg[key]}")
    if cfg["normalization"] not in ("minmax", "fastmri"):
        raise ConfigError(f"config: normalization must be 'minmax' or 'fastmri', got {cfg['normalization']!r}")
    threat_type = cfg["threat"].get("type", "KSpaceL2")
    if threat_type not in _THREATS:
        raise ConfigError(f"config: threat.type must be one of {sorted(_THREATS)}, got {threat_type!r}")
    if not cfg["attacks"]:
        raise ConfigError("config: attacks must hold at least one attack table")
    for name, spec in cfg["attacks"].items():
        if not isinstance(spec, Mapping) or spec.get("type") not in _ATTACKS:
            raise ConfigError(
                f"config: attacks.{name}.type must be one of {sorted(_ATTACKS)}, got "
                f"{spec.get('type') if isinstance(spec, Mapping) else describe(spec)!r}"
            )
    for name, spec in cfg["models"].items():
        if not isinstance(spec, Mapping):
            raise ConfigError(f"config: models.{name} must be a table of load_reconstructor arguments, got {describe(spec)}")
    # Build the threat model and attacks now, so a bad value fails before models and data load.
    build_attacks(cfg)
    data = cfg["data"]
    if not (data == "embedded" or (isinstance(data, Mapping) and len(data) == 1 and next(iter(data)) in ("fastmri", "nifti"))):
        raise ConfigError(f"config: data must be 'embedded', {{fastmri = 'dir'}} or {{nifti = 'file'}}, got {data!r}")
    if cfg["device"] != "cpu" and cfg["device"].startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"config: device {cfg['device']!r} requested but CUDA is not available; use device = \"cpu\"")
    return cfg


# ---------------------------------------------------------------------------------- building
def build_threat(cfg: Mapping[str, Any]):
    spec = dict(cfg["threat"])
    cls = _THREATS[spec.pop("type", "KSpaceL2")]
    if "eps" in spec:
        raise ConfigError("config: threat.eps is set by the top-level eps grid; remove it from [threat]")
    try:
        return cls(**spec)
    except (TypeError, ValueError) as e:
        key = str(e).split(":")[0]
        where = f"threat.{key}" if key in spec else "threat"
        raise ConfigError(f"config: {where}: {e}") from e


def build_attacks(cfg: Mapping[str, Any]) -> dict[str, _attacks.Attack]:
    threat = build_threat(cfg)
    out = {}
    for name, spec in cfg["attacks"].items():
        spec = dict(spec)
        cls = _ATTACKS[spec.pop("type")]
        try:
            out[name] = cls(threat, seed=cfg["seed"], **spec)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"config: attacks.{name}: {e}") from e
    return out


def build_models(cfg: Mapping[str, Any]) -> dict[str, Any]:
    from .adapters import load_reconstructor  # the application layer resolves model names

    models = {}
    for name in dict.fromkeys([*cfg["surrogates"], *cfg["targets"]]):
        kwargs = dict(cfg["models"].get(name, {}))
        weights = kwargs.pop("weights", "embedded")
        weights = None if weights in ("none", "random") else weights  # TOML has no null
        models[name] = load_reconstructor(name, weights=weights, device=cfg["device"], **kwargs)
    return models


def build_data(cfg: Mapping[str, Any]) -> tuple[list[tuple], list[str]]:
    """Batches ``(x, y, physics)`` and sample ids for the configured data."""
    from . import data as _data

    device = cfg["device"]
    n, bs = cfg["n_slices"], cfg["batch_size"]
    source = cfg["data"]
    if source == "embedded":
        ds = _data.EmbeddedBrain(split=cfg["split"], preset=cfg["preset"], seed=cfg["seed"])
        # Evenly spaced slices over the split: different anatomy, deterministic.
        idx = [round(i * (len(ds) - 1) / max(1, n - 1)) for i in range(min(n, len(ds)))]
        preset = _data.get_preset(cfg["preset"])
        x = torch.stack([ds[i][0] for i in idx]).to(device)
        ids = [f"{cfg['split']}-{i}" for i in idx]
        physics = preset.physics(device=device)
        g = torch.Generator().manual_seed(cfg["seed"])
        y = preset.simulate(x, physics=physics, generator=g)
    elif "nifti" in source:
        preset = _data.get_preset(cfg["preset"])
        x = _data.load_nifti_slices(source["nifti"], size=preset.img_size)[:n]
        x = torch.cat([x, torch.zeros_like(x)], dim=1).to(device)
        ids = [f"nifti-{i}" for i in range(x.shape[0])]
        physics = preset.physics(device=device)
        y = preset.simulate(x, physics=physics, generator=torch.Generator().manual_seed(cfg["seed"]))
    else:
        from .data.fastmri_io import read_fastmri_slice

        folder = Path(source["fastmri"])
        files = sorted(folder.glob("*.h5")) if folder.is_dir() else [folder]
        if not files:
            raise ConfigError(f"config: data.fastmri: no .h5 files in {folder}")
        preset = _data.get_preset(cfg["preset"])
        batches, ids = [], []
        for f in files:
            for s in range(_n_slices(f)):
                if len(ids) >= n:
                    break
                x, y, physics = read_fastmri_slice(f, s, crop=preset.img_size, mask=preset.mask(), device=device)
                batches.append((x, y, physics))
                ids.append(f"{f.stem}-{s}")
        return batches, ids
    batches = [(x[i : i + bs], y[i : i + bs], physics) for i in range(0, x.shape[0], bs)]
    return batches, ids


def _n_slices(path: Path) -> int:
    from .data.fastmri_io import inspect_fastmri_file

    return inspect_fastmri_file(path).n_slices


# ---------------------------------------------------------------------------------- running
def _distributed(cfg: Mapping[str, Any]) -> tuple[int, int]:
    """``(rank, world_size)``; joins the torchrun process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            backend = "nccl" if str(cfg["device"]).startswith("cuda") else "gloo"
            dist.init_process_group(backend)
    return rank, world


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def _check_out(out: Path, cfg: Mapping[str, Any]) -> None:
    """Refuse to resume into a folder that holds results of a different configuration."""
    previous = out / "config.toml"
    if previous.is_file() and any(out.glob("records.rank*.jsonl")):
        try:
            import tomllib
        except ImportError:  # Python 3.10
            import tomli as tomllib  # type: ignore[no-redef]
        old = validate_config(tomllib.loads(previous.read_text()))
        keep = ("device",)  # the same work may resume on another device
        if {k: v for k, v in old.items() if k not in keep} != {k: v for k, v in cfg.items() if k not in keep}:
            raise ConfigError(
                f"out: {out} holds results of a different configuration ({previous}); "
                f"use a new --out folder or the same configuration to resume"
            )


def run_sweep(cfg: Mapping[str, Any], out: str | os.PathLike, progress: bool = True,
              models: Mapping[str, Any] | None = None) -> TransferReport:
    """Run the configured sweep and save its report (records, summary, perturbations, plots).

    Work is split into batches of slices. Each finished batch is appended durably to
    ``records.rank<r>.jsonl`` (with its perturbations under ``perturbations/batch<b>/``), so a
    run killed at any point resumes where it stopped when started again with the same ``out``.
    Under ``torchrun`` each rank takes every ``world_size``-th batch and rank 0 merges the
    journals; the merged records equal a single-process run's (timing columns aside). A batch
    that raises is recorded in ``failed.csv`` and the sweep goes on, unless ``fail_fast``.
    """
    cfg = validate_config(cfg)
    with flush_denormals():  # denormals make CPU attack loops many times slower
        return _run_sweep(cfg, Path(out), progress, models)


def _run_sweep(cfg: dict[str, Any], out: Path, progress: bool, models: Mapping[str, Any] | None) -> TransferReport:
    from .journal import Journal, read_journal

    rank, world = _distributed(cfg)
    if world > 1:
        torch.set_num_threads(1)  # one thread per rank: ranks share the machine's cores
        if str(cfg["device"]).startswith("cuda"):
            cfg = dict(cfg, device=f"cuda:{int(os.environ.get('LOCAL_RANK', rank))}")
    out.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        _check_out(out, cfg)
        atomic_write_text(out / "config.toml", dump_toml(cfg))
    _barrier(world)
    start = time.perf_counter()
    models = dict(models) if models is not None else build_models(cfg)
    batches, ids = build_data(cfg)
    attacks = build_attacks(cfg)
    journal = Journal(out / f"records.rank{rank}.jsonl")
    done = set()
    for path in out.glob("records.rank*.jsonl"):
        done |= set(read_journal(path))
    todo = [b for b in range(len(batches)) if b % world == rank and b not in done]
    first = [0]
    for x_, _, _ in batches:
        first.append(first[-1] + (x_.shape[0] if x_ is not None else 1))
    for b in tqdm(todo, desc=f"sweep (rank {rank}/{world})" if world > 1 else "sweep", unit="batch",
                  disable=not progress):
        x, y, physics = batches[b]
        batch_ids = ids[first[b] : first[b + 1]]
        try:
            rep = transfer({n: models[n] for n in cfg["surrogates"]}, {n: models[n] for n in cfg["targets"]},
                           (x, y, physics), eps=cfg["eps"], attack=attacks, baseline=cfg["baseline"],
                           normalization=cfg["normalization"], sample_ids=batch_ids, progress=False)
            rep.save_perturbations(out / "perturbations" / f"batch{b:04d}")
            records = [dict(r, batch=b) for r in rep.records]
        except Exception as e:  # noqa: BLE001 - a failing slice must not stop the sweep
            if cfg["fail_fast"]:
                raise
            records = [{"batch": b, "status": "failed", "sample_ids": " ".join(map(str, batch_ids)),
                        "error": f"{type(e).__name__}: {e}"}]
        journal.append(b, records)
    _barrier(world)
    merged: list[dict] = []
    for path in sorted(out.glob("records.rank*.jsonl")):
        for b, recs in read_journal(path).items():
            merged.extend(dict(r, _key=(b, i)) for i, r in enumerate(recs))
    merged.sort(key=lambda r: r.pop("_key"))
    ok = [r for r in merged if r.get("status") != "failed"]
    failed = [r for r in merged if r.get("status") == "failed"]
    report = TransferReport(ok, normalization=cfg["normalization"],
                            config=dict(cfg, seconds=time.perf_counter() - start, world_size=world))
    if rank == 0:
        report.save(out, perturbations=False)
        if failed:
            from .report import records_to_csv

            atomic_write_text(out / "failed.csv", records_to_csv(failed))
        if ok:
            report.plot(out)
    _barrier(world)
    return report
