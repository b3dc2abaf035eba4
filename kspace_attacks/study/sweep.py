"""Running a configured sweep: durable per-unit journals, resume after a kill, torchrun ranks.

The execution half of ``kspace-attacks sweep`` and ``kspace-attacks demo``; configurations are
:mod:`kspace_attacks.study.config` (re-exported here).
"""

from __future__ import annotations

import datetime
import os
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .._runtime import flush_denormals, reproducible_numerics, runtime_provenance
from ..io import atomic_write_json, atomic_write_text, read_json
from .config import (
    DEMO_CONFIG,
    ConfigError,
    SweepConfig,
    build_attacks,
    build_data,
    build_inputs,
    build_models,
    build_threat,
    canonical,
    dump_toml,
    load_config,
    validate_config,
)
from .journal import Journal, read_journal, read_markers
from .progress import Progress
from .report import TransferReport, records_to_csv
from .records import with_coordinates
from .transfer import TransferPlan
from .steps import best_effort, clear_notes
from .units import (Claims, SweepWork, clear_scratch, done_units, forget_failures, merge_records, run_units,
                    units_of)

__all__ = ["run_sweep", "SweepRun", "rank_threads", "DEMO_CONFIG", "ConfigError", "load_config", "dump_toml", "validate_config",
           "build_threat", "build_attacks", "build_models", "build_data"]


# ---------------------------------------------------------------------------------- running
@dataclass
class SweepRun:
    """What one sweep made and used, for the steps after it (:func:`~.demo.finish_run`), so that
    nothing is built twice or read back from disk within one run.

    :param config: the validated configuration the sweep ran.
    :param out: its folder.
    :param report: the merged records (:class:`~kspace_attacks.study.report.TransferReport`).
    :param batches: the ``(x, y, physics)`` batches it measured.
    :param ids: the sample id of every slice, in batch order.
    :param models: name -> reconstructor, as built (or given) for it.
    :param coordinates: per id, its slice, contrast, subject and block (the verdicts' units).
    """

    config: SweepConfig
    out: Path
    report: TransferReport
    batches: list
    ids: list
    models: dict[str, Any]
    coordinates: dict[str, dict[str, Any]] = field(default_factory=dict)


def _distributed(cfg: SweepConfig) -> tuple[int, int]:
    """``(rank, world_size)``; joins the torchrun process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            backend = "nccl" if str(cfg.device).startswith("cuda") else "gloo"
            # ranks wait at barriers for the slowest unit of the others: hours on a CPU
            dist.init_process_group(backend, timeout=datetime.timedelta(days=7))
    return rank, world


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def _check_out(out: Path, cfg: SweepConfig) -> None:
    """Refuse to resume into a folder that holds results of a different configuration."""
    previous = out / "config.toml"
    if previous.is_file() and any(out.glob("records.rank*.jsonl")):
        try:
            import tomllib
        except ImportError:  # Python 3.10
            import tomli as tomllib  # type: ignore[no-redef]
        old = validate_config(tomllib.loads(previous.read_text()))
        # the same work may resume on another device; the targeted test, the report's panels
        # and the verdicts' settings act after the sweep and do not change its records
        keep = ("device", "targeted", "report", "oversubscribe", "verdicts")
        old, new = canonical(old), canonical(cfg)
        if {k: v for k, v in old.items() if k not in keep} != {k: v for k, v in new.items() if k not in keep}:
            raise ConfigError(
                f"out: {out} holds results of a different configuration ({previous}); "
                f"use a new --out folder or the same configuration to resume"
            )


def run_sweep(cfg: SweepConfig | Mapping[str, Any], out: str | os.PathLike, progress: bool = True,
              models: Mapping[str, Any] | None = None) -> SweepRun:
    """Run the configured sweep and save its report (records, summary, perturbations, plots);
    returns the :class:`SweepRun` (its ``report``, and the data and models it used).

    Work is split into units: per batch of slices (fixed by the configuration), one unit with
    every target's clean reconstructions, noise null and equal-norm baseline, and one per
    surrogate and attack (:mod:`kspace_attacks.study.units`). Each finished unit is appended durably to
    ``records.rank<r>.jsonl`` (with its perturbations under ``perturbations/batch<b>/``), so a
    run killed at any point resumes where it stopped when started again with the same ``out``
    (journals of earlier versions, which hold whole batches, resume too). Under ``torchrun``
    the ranks claim units as they become free, and rank 0 merges the journals; the merged
    records equal a single-process run's (timing columns aside). A unit that raises is
    recorded (its batch in ``failed.csv``) and the sweep goes on, unless ``fail_fast``.

    ``cfg.threads`` (default 1) is the intra-op thread count of every unit, in a single
    process and in each torchrun rank alike (:func:`rank_threads`: it is part of the numbers'
    identity, so ``torchrun --nproc_per_node 2`` on 2 cores runs with the default as it is),
    with deterministic algorithms where torch has them; both are restored afterwards. ``provenance.json`` records the versions,
    platform, thread budget and threads per rank, device and world size.

    :param progress: nested bars on a terminal, one log line per finished piece of work when
        stderr is not a terminal, nothing when ``False``.
    """
    cfg = validate_config(cfg)
    # denormals make CPU attack loops many times slower; the thread count changes float sums
    with flush_denormals(), reproducible_numerics(rank_threads(cfg.threads, oversubscribe=cfg.oversubscribe)):
        return _run_sweep(cfg, Path(out), progress, models)


def rank_threads(threads: int, local_world: int | None = None, cores: int | None = None,
                 oversubscribe: bool = False) -> int:
    """The intra-op threads every unit of a sweep runs with: ``threads``, however it is launched.

    Float reductions split over another number of threads round differently, and attacks
    amplify the difference (a 2-thread and a 1-thread run of the demo differed in 1,374 of its
    values), so the count is part of a run's identity: a process alone and each of
    ``local_world`` torchrun ranks on a node (default ``LOCAL_WORLD_SIZE``, 1 without torchrun)
    run exactly ``threads``. A launch whose ranks would need more threads than the node's
    ``cores`` (default: this process's CPU affinity) stops before any work, naming the launch
    that keeps the numbers, unless ``oversubscribe`` (same numbers, ranks compete for cores:
    two ranks at 2 threads on 2 cores ran 4.7x slower than one process). A process alone with
    more threads than cores only warns.

        >>> rank_threads(2, local_world=1, cores=2), rank_threads(2, local_world=2, cores=4)
        (2, 2)
        >>> rank_threads(2, local_world=2, cores=2, oversubscribe=True)
        2
    """
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if local_world is None else local_world
    if isinstance(local, bool) or not isinstance(local, int) or local < 1:
        raise ValueError(f"local_world: expected an int >= 1, got {local!r}")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads: expected an int >= 1, got {threads!r}")
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    need = threads * local
    if need > cores and local > 1 and not oversubscribe:
        fit = cores // threads
        keep = (f"start at most {fit} rank(s) per node (torchrun --nproc_per_node {fit} ...)" if fit >= 1
                else "run it in one process (kspace-attacks sweep ...)")
        raise ConfigError(
            f"config: threads = {threads} per unit x {local} ranks needs {need} cores, this node gives "
            f"{cores}; nothing was run. Every record is computed at threads = {threads}, so fewer threads "
            f"per rank would change the numbers of every attacked row. To keep them: {keep}, or set "
            f"oversubscribe = true (same numbers, slower). Setting threads = {max(1, cores // local)} "
            f"gives another run, whose numbers differ from a {threads}-thread run's.")
    if need > cores:
        warnings.warn(f"threads = {threads} x {local} rank(s) exceeds the {cores} core(s) this process may use: "
                      f"compute threads will compete for cores", RuntimeWarning, stacklevel=2)
    return threads


def check_unit_threads(markers: Mapping[Any, Mapping[str, Any]], threads: int, where: str) -> None:
    """Refuse to resume or merge units computed at another thread count than ``threads``.

    :param markers: ``{unit key: marker}`` of the journals (:func:`~.journal.read_markers`).
    :param where: the folder, for the message.
    """
    other = sorted({int(m["threads"]) for m in markers.values() if "threads" in m} - {threads})
    if other:
        n = sum(1 for m in markers.values() if m.get("threads") in other)
        raise ConfigError(
            f"out: {where} holds {n} unit(s) computed at {', '.join(map(str, other))} thread(s) per unit, "
            f"this run computes at threads = {threads}; their numbers would not match. Resume with the "
            f"launch that made them, or use a new --out folder.")


def _start(cfg: SweepConfig, out: Path, rank: int, world: int) -> tuple[dict, Claims]:
    """Rank 0 checks the folder, writes the configuration and provenance, resets claims."""
    provenance = dict(runtime_provenance(threads=cfg.threads, device=cfg.device, world_size=world),
                      threads_per_rank=torch.get_num_threads(), seed=cfg.seed)
    claims = Claims(out / "claims", world)
    out.mkdir(parents=True, exist_ok=True)
    if rank == 0:  # the folder was checked (_check_out) before the models loaded
        atomic_write_text(out / "config.toml", dump_toml(cfg))
        provenance = _write_provenance(out, provenance)
        if world > 1:
            claims.reset()
    _barrier(world)
    if rank != 0:
        provenance = read_json(out / "provenance.json")
    return provenance, claims


def _run_sweep(cfg: SweepConfig, out: Path, progress: bool, models: Mapping[str, Any] | None) -> SweepRun:
    rank, world = _distributed(cfg)
    if world > 1 and str(cfg.device).startswith("cuda"):
        cfg = cfg.replace(device=f"cuda:{int(os.environ.get('LOCAL_RANK', rank))}")
    if rank == 0:
        _check_out(out, cfg)  # refuse a folder of another configuration before any work
    start = time.perf_counter()
    # Everything that can fail on the configuration (models, data, attacks) before anything is
    # written: a sweep that cannot start leaves --out as it found it.
    inputs = build_inputs(cfg, models)
    batches, ids, limits = inputs.batches, inputs.ids, inputs.limits
    plan = TransferPlan.of(inputs.surrogates, {n: inputs.models[n] for n in cfg.targets}, inputs.attacks,
                           cfg.baseline, cfg.normalization, None, True, cfg.null_draws, inputs.attack_options)
    provenance, claims = _start(cfg, out, rank, world)
    journal = Journal(out / f"records.rank{rank}.jsonl")
    crafts, cost = _crafts(plan)
    check_unit_threads(_all_markers(out), cfg.threads, str(out))  # before any work is added
    done = done_units(_all_journals(out), out, crafts, limits)
    if rank == 0:
        forget_failures(out, done, len(batches))
    _barrier(world)  # every rank knows what is done (and retries) before any rank adds to it
    units = units_of(len(batches), crafts, cost, limits)
    todo = [(i, u) for i, u in enumerate(units) if u not in done]
    shown = Progress(progress, label=f"sweep rank {rank}/{world}" if world > 1 else "sweep")
    work = SweepWork(out, plan, batches, _batch_ids(batches, ids), [float(e) for e in cfg.eps], provenance,
                     shown, cfg.fail_fast, marker={"rank": rank, "threads": torch.get_num_threads(),
                                                      "deterministic": torch.are_deterministic_algorithms_enabled()})
    with shown.task("sweep", total=len(todo), unit="units") as bar:
        run_units(work, todo, claims, journal, bar)
    _barrier(world)
    journals = _all_journals(out, merged=False)
    check_unit_threads(_all_markers(out), cfg.threads, str(out))  # every rank's units alike
    ok, failed = merge_records(journals, crafts)
    ok = with_coordinates(ok, inputs.coordinates)  # which slice and contrast each row is
    report = TransferReport(ok, normalization=cfg.normalization, provenance=provenance,
                            config={**cfg.as_dict(), "seconds": time.perf_counter() - start, "world_size": world})
    if rank == 0:
        _finish(out, report, failed)
        if len(done_units(_all_journals(out), out, crafts, limits)) == len(units):
            clear_scratch(out)  # every unit is journaled: shared files and claims are spent
    _barrier(world)
    return SweepRun(cfg, out, report, batches, ids, inputs.models, inputs.coordinates)


def _crafts(plan: TransferPlan) -> tuple[list[tuple[str, str]], dict[tuple[str, str], int]]:
    """Every (surrogate, attack) in record order, and its gradient evaluations (claim order)."""
    crafts = [(s, a) for s in plan.surrogates for a in plan.attacks]
    cost = {(s, a): plan.attacks[a].replace(**plan.attack_options.get(s, {})).max_grad_evals for s, a in crafts}
    return crafts, cost


def _batch_ids(batches: list, ids: list) -> list[list]:
    """The sample ids of each batch."""
    out, first = [], 0
    for _, y_, _ in batches:
        out.append(list(ids[first : first + y_.shape[0]]))
        first += y_.shape[0]
    return out


def _all_journals(out: Path, merged: bool = True) -> Any:
    """Every rank's journal: merged into one ``{key: records}``, or a list (sorted by file)."""
    journals = [read_journal(p) for p in sorted(out.glob("records.rank*.jsonl"))]
    if not merged:
        return journals
    return {k: v for j in journals for k, v in j.items()}


def _all_markers(out: Path) -> dict:
    """The markers of every rank's journaled units (rank, threads, deterministic mode)."""
    return {(p.name, k): m for p in sorted(out.glob("records.rank*.jsonl")) for k, m in read_markers(p).items()}


def _finish(out: Path, report: TransferReport, failed: list[dict]) -> None:
    """Rank 0: save the report, ``failed.csv`` (or remove a stale one) and the figures (a
    figure that cannot be drawn is noted, :mod:`.steps`, not raised)."""
    clear_notes(out)
    report.save(out, perturbations=False)
    if failed:
        atomic_write_text(out / "failed.csv", records_to_csv(failed))
    else:  # a failed.csv of an earlier run must not outlive its failures
        (out / "failed.csv").unlink(missing_ok=True)
    if report.records:
        best_effort(out, "figures of the change against eps", report.plot, out)


# what decides float results besides the configuration (world size and time do not)
#: compared only when an earlier provenance has them (keys added after the first releases)
_NUMERICS_ADDED = ("threads_per_rank",)
_NUMERICS = ("kspace_attacks", "torch", "deepinv", "numpy", "python", "platform", "processor", "threads",
             "deterministic", "device")


def _write_provenance(out: Path, provenance: dict) -> dict:
    """Write ``provenance.json``; when resuming a folder whose records were computed in another
    environment, warn and keep the earlier environments under ``"previous"``."""
    path = out / "provenance.json"
    if path.is_file() and any(out.glob("records.rank*.jsonl")):
        old = read_json(path)
        previous = list(old.pop("previous", []))
        changed = [k for k in _NUMERICS if old.get(k) != provenance.get(k)]
        changed += [k for k in _NUMERICS_ADDED if k in old and old[k] != provenance.get(k)]
        if changed or previous:
            provenance = dict(provenance, previous=[*previous, old] if changed else previous)
        if changed:
            warnings.warn(f"out: {out} holds records computed with different {', '.join(changed)} "
                          f"({', '.join(f'{k}={old.get(k)!r}' for k in changed)}); records resumed here may "
                          f"differ from a fresh run's (see provenance.json)", RuntimeWarning, stacklevel=4)
    atomic_write_json(path, provenance, indent=1, default=str)
    return provenance
