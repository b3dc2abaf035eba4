"""Running a configured sweep: durable per-batch journals, resume after a kill, torchrun ranks.

The execution half of ``kspace-attacks sweep`` and ``kspace-attacks demo``; configurations are
:mod:`kspace_attacks.study.config` (re-exported here).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .._runtime import flush_denormals, reproducible_numerics
from ..io import atomic_write_text
from .config import (
    DEMO_CONFIG,
    ConfigError,
    build_attacks,
    build_data,
    build_models,
    build_surrogates,
    build_threat,
    canonical,
    dump_toml,
    load_config,
    validate_config,
)
from .report import TransferReport, records_to_csv
from .transfer import transfer

__all__ = ["run_sweep", "DEMO_CONFIG", "ConfigError", "load_config", "dump_toml", "validate_config",
           "build_threat", "build_attacks", "build_models", "build_data"]


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
        old, new = canonical(old), canonical(cfg)
        if {k: v for k, v in old.items() if k not in keep} != {k: v for k, v in new.items() if k not in keep}:
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

    For the duration of the sweep torch uses ``cfg["threads"]`` intra-op threads (in every
    rank) and deterministic algorithms where it has them; both are restored afterwards, so
    records depend on the configuration and the seed only.
    """
    cfg = validate_config(cfg)
    # denormals make CPU attack loops many times slower; the thread count changes float sums
    with flush_denormals(), reproducible_numerics(cfg["threads"]):
        return _run_sweep(cfg, Path(out), progress, models)


def _run_sweep(cfg: dict[str, Any], out: Path, progress: bool, models: Mapping[str, Any] | None) -> TransferReport:
    from .journal import Journal, read_journal

    rank, world = _distributed(cfg)
    if world > 1 and str(cfg["device"]).startswith("cuda"):
        cfg = dict(cfg, device=f"cuda:{int(os.environ.get('LOCAL_RANK', rank))}")
    out.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        _check_out(out, cfg)
        atomic_write_text(out / "config.toml", dump_toml(cfg))
    _barrier(world)
    start = time.perf_counter()
    models = dict(models) if models is not None else build_models(cfg)
    surrogates, attack_options = build_surrogates(cfg, models)
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
            rep = transfer(surrogates, {n: models[n] for n in cfg["targets"]},
                           (x, y, physics), eps=cfg["eps"], attack=attacks, baseline=cfg["baseline"],
                           normalization=cfg["normalization"], sample_ids=batch_ids, progress=False,
                           null_draws=cfg["null_draws"], attack_options=attack_options)
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
            atomic_write_text(out / "failed.csv", records_to_csv(failed))
        else:  # a failed.csv of an earlier run must not outlive its failures
            (out / "failed.csv").unlink(missing_ok=True)
        if ok:
            report.plot(out)
    _barrier(world)
    return report
