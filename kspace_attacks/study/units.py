"""The units a sweep's work is split into, how ranks share them, and how their records merge.

The configuration fixes the batches (``batch_size`` slices each; batch composition changes
float results, so it never depends on the number of ranks). Each batch ``b`` makes
``1 + len(surrogates) x len(attacks)`` units:

- ``(b, "random")``: every target's clean reconstruction of the stacked batch (a row per slice
  and budget), its noise null (``null_draws`` equal-norm draws per row) and the equal-norm noise
  baseline's records. The clean reconstructions and nulls are saved to ``shared/batch<b>.pt``
  for the batch's other units, so they are computed exactly once;
- ``(b, s, a)`` for each surrogate ``s`` and attack ``a``: the attack crafted on ``s`` over the
  eps grid (one batched call, seeded: independent of the other units), and its records on every
  target (measured against the batch's shared file).

Units are claimed by whichever rank is free (an exclusive file in ``claims/``; a single process
claims nothing): per batch, its ``random`` unit first, then the attack units, those with the
most gradient evaluations first, so two ranks share even a one-batch sweep evenly. A surrogate unit
whose batch's shared file is not there yet keeps its reconstructions in memory and is finished
as soon as the file appears, while its rank goes on with the next unit. A unit computes the
same tensors on any rank, and :func:`merge_records` puts the records in a single process's
order, so records are identical for any number of ranks.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .._checks import check_image, check_kspace
from ..io import atomic_torch_save, atomic_write_text
from . import records as R
from ..measurement import Grid
from .journal import Journal, Key, batch_of
from .null import Null
from .progress import Progress, Task
from .report import TransferReport
from .transfer import (
    Shared,
    TransferPlan,
    batch_shared,
    craft_surrogate,
    crafted_records,
    keep_perturbations,
    noise_baseline,
    reconstruct_crafted,
)

__all__ = ["Unit", "RANDOM", "SweepWork", "units_of", "done_units", "Claims", "run_units", "merge_records",
           "shared_path", "save_shared", "load_shared", "clear_scratch", "is_failure", "forget_failures"]

#: the name of a batch's clean-reconstruction, noise-null and noise-baseline unit (the records'
#: surrogate name of the noise baseline)
RANDOM = R.BASELINE_SURROGATE


@dataclass(frozen=True)
class Unit:
    """One unit of a sweep: batch ``batch`` and either ``surrogate = RANDOM`` (its clean
    reconstructions, nulls and noise baseline) or a surrogate and one of the attacks."""

    batch: int
    surrogate: str
    attack: str | None = None

    @property
    def key(self) -> tuple:
        """The unit's journal key: ``(batch, "random")`` or ``(batch, surrogate, attack)``."""
        return (self.batch, self.surrogate) if self.attack is None else (self.batch, self.surrogate, self.attack)

    @classmethod
    def of_key(cls, key: tuple) -> "Unit":
        """The unit of a journal key."""
        return cls(*key)

    def __str__(self) -> str:
        what = "clean + null + noise" if self.attack is None else f"{self.surrogate} / {self.attack}"
        return f"batch {self.batch}, {what}"


def units_of(n_batches: int, crafts: Sequence[tuple[str, str]],
             cost: Mapping[tuple[str, str], float] | None = None,
             batches: Mapping[str, int] | None = None) -> list[Unit]:
    """Every unit of a sweep in claiming order: per batch, its ``random`` unit (the others need
    its shared file), then one per ``(surrogate, attack)`` of ``crafts``, the largest ``cost``
    (e.g. gradient evaluations) first, ties in the order given. ``batches[surrogate]`` limits a
    surrogate's attacks to the first batches (an expensive white-box surrogate on fewer slices)."""
    order = sorted(crafts, key=lambda c: -(cost or {}).get(c, 0))
    return [u for b in range(n_batches)
            for u in (Unit(b, RANDOM), *(Unit(b, s, a) for s, a in _crafts_of(b, order, batches)))]


def _crafts_of(b: int, crafts: Sequence[tuple[str, str]], batches: Mapping[str, int] | None) -> list[tuple[str, str]]:
    """The crafts that run on batch ``b``."""
    return [(s, a) for s, a in crafts if b < (batches or {}).get(s, b + 1)]


@dataclass
class SweepWork:
    """What the units of one sweep share: folder, plan, data, budgets and settings."""

    out: Path
    plan: TransferPlan
    batches: Sequence[tuple[Tensor | None, Tensor, Any]]
    ids: Sequence[list]
    grid: list[float]
    provenance: dict
    progress: Progress
    fail_fast: bool = False
    marker: dict = field(default_factory=dict)

    def stacked(self, b: int) -> Grid:
        """Batch ``b`` stacked once per budget (as :func:`~kspace_attacks.study.transfer.transfer` does)."""
        x, y, physics = self.batches[b]
        y = check_kspace(f"data[{b}].y", y)
        x = None if x is None else check_image(f"data[{b}].x", x)
        return Grid.of(x, y, physics, self.grid, list(self.ids[b]))


# ------------------------------------------------------------------------------- shared files
def shared_path(out: Path, b: int) -> Path:
    """Where batch ``b``'s clean reconstructions and noise nulls are kept until the sweep ends."""
    return out / "shared" / f"batch{b:04d}.pt"


def _failed_path(out: Path, b: int) -> Path:
    return out / "shared" / f"batch{b:04d}.failed"


def save_shared(path: Path, shared: Shared) -> None:
    """Save ``shared`` atomically (tensors and numbers only: loads with ``weights_only``)."""
    nulls = {t: None if n is None else {k: getattr(n, k) for k in Null.__dataclass_fields__}
             for t, n in shared.nulls.items()}
    atomic_torch_save({"clean": shared.clean, "nulls": nulls}, path)


def load_shared(path: Path, device: str | torch.device = "cpu") -> Shared:
    """Load what :func:`save_shared` wrote (onto ``device``)."""
    data = torch.load(path, map_location=device, weights_only=True)
    nulls = {t: None if n is None else Null(**n) for t, n in data["nulls"].items()}
    return Shared(dict(data["clean"]), nulls)


def clear_scratch(out: Path) -> None:
    """Remove the shared files and claims of a finished sweep."""
    for name in ("shared", "claims"):
        shutil.rmtree(out / name, ignore_errors=True)


# ------------------------------------------------------------------------------- claims
class Claims:
    """Which rank runs which unit: the first to create ``claims/unit<i>`` exclusively.

    :param folder: the claims folder (on the file system every rank sees).
    :param world: the number of ranks; with one, every unit is this process's.
    """

    def __init__(self, folder: Path, world: int) -> None:
        self.folder, self.world = Path(folder), world

    def reset(self) -> None:
        """Forget the claims of an earlier, interrupted run (rank 0, before any rank claims)."""
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True, exist_ok=True)

    def take(self, index: int) -> bool:
        """Claim unit ``index``; ``False`` if another rank has."""
        if self.world == 1:
            return True
        try:
            fd = os.open(self.folder / f"unit{index:05d}", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        os.close(fd)
        return True


def done_units(done: Mapping[Key, list], out: Path, crafts: Sequence[tuple[str, str]],
               batches: Mapping[str, int] | None = None) -> set[Unit]:
    """The units a journal already holds, failed ones excepted (a resume retries them). A whole
    batch of an earlier version's journal holds all of its units. A ``random`` unit counts while its shared file (or its failure note) is
    there, or once every other unit of its batch is done; otherwise it runs again."""
    units = set()
    for key, records in done.items():
        if is_failure(records):
            continue  # a failed unit (or batch) runs again: its cause may have been transient
        if isinstance(key, int):
            units |= {Unit(key, RANDOM), *(Unit(key, s, a) for s, a in _crafts_of(key, crafts, batches))}
        else:
            units.add(Unit.of_key(key))
    for u in list(units):
        others = {Unit(u.batch, s, a) for s, a in _crafts_of(u.batch, crafts, batches)}
        if u.attack is None and _state(out, u.batch) is None and not others <= units:
            units.discard(u)
    return units


# ------------------------------------------------------------------------------- running
@dataclass
class _Pending:
    """A surrogate unit waiting for its batch's shared file, with everything it computed."""

    unit: Unit
    stacked: Grid
    crafted: list
    recons: dict
    start: float


def is_failure(records: Sequence[Mapping[str, Any]]) -> bool:
    """Whether a journal entry records a failure rather than results."""
    return any(r.get("status") == "failed" for r in records)


def forget_failures(out: Path, done: set[Unit], n_batches: int) -> None:
    """Remove the failure notes of batches whose ``random`` unit is about to run again, so that
    their other units wait for the retry instead of failing on the old note."""
    for b in range(n_batches):
        if Unit(b, RANDOM) not in done:
            _failed_path(out, b).unlink(missing_ok=True)


def _failed(unit: Unit, work: SweepWork, error: BaseException | str) -> list[dict]:
    """The journal entry of a failed unit."""
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return [{"batch": unit.batch, "unit": "/".join(unit.key[1:]), "status": "failed",
             "sample_ids": " ".join(map(str, work.ids[unit.batch])), "error": text}]


def _records_of(work: SweepWork, unit: Unit, st: Grid, crafted: list, shared: Shared,
                recons: dict | None) -> list[dict]:
    """Records of crafted k-space on every target; saves the unit's perturbation files."""
    report = TransferReport(normalization=work.plan.normalization)
    keep_perturbations(report, st, crafted)
    records = crafted_records(work.plan, st, crafted, shared, work.progress, recons)
    report.save_perturbations(work.out / "perturbations" / f"batch{unit.batch:04d}", provenance=work.provenance)
    return [dict(r, batch=unit.batch) for r in records]


def _run_random(work: SweepWork, unit: Unit) -> list[dict]:
    """The batch's clean reconstructions and nulls (saved for its other units), and the noise
    baseline's records."""
    st = work.stacked(unit.batch)
    try:
        shared = batch_shared(work.plan, st, work.progress)
    except Exception as e:  # the batch's other units must learn that it failed (not if interrupted)
        atomic_write_text(_failed_path(work.out, unit.batch), f"{type(e).__name__}: {e}")
        raise
    save_shared(shared_path(work.out, unit.batch), shared)
    _failed_path(work.out, unit.batch).unlink(missing_ok=True)
    crafted = [noise_baseline(work.plan, st)] if work.plan.baseline else []
    return _records_of(work, unit, st, crafted, shared, None)


def _start_surrogate(work: SweepWork, unit: Unit, start: float) -> _Pending:
    """Craft on the unit's surrogate; reconstruct on every target now if the shared file is
    not there yet (so the records can be finished whenever it appears)."""
    _raise_if_failed(work.out, unit.batch)  # no attack on a batch whose references failed
    st = work.stacked(unit.batch)
    crafted = craft_surrogate(work.plan, st, unit.surrogate, work.progress, attacks=[unit.attack])
    recons = {} if _state(work.out, unit.batch) else reconstruct_crafted(work.plan, st, crafted, work.progress)
    return _Pending(unit, st, crafted, recons, start)


def _state(out: Path, b: int) -> str | None:
    """``"ready"`` (batch ``b``'s shared file is there), ``"failed"`` or ``None`` (not yet)."""
    if shared_path(out, b).is_file():
        return "ready"
    return "failed" if _failed_path(out, b).is_file() else None


def _raise_if_failed(out: Path, b: int) -> None:
    if _state(out, b) == "failed":
        error = _failed_path(out, b).read_text()
        raise RuntimeError(f"the clean reconstructions / noise null of batch {b} failed: {error}")


def _finish(work: SweepWork, p: _Pending) -> list[dict]:
    """The records of a crafted unit, measured against its batch's shared file."""
    _raise_if_failed(work.out, p.unit.batch)
    shared = load_shared(shared_path(work.out, p.unit.batch), p.stacked.y.device)
    return _records_of(work, p.unit, p.stacked, p.crafted, shared, p.recons or None)


def _complete(work: SweepWork, journal: Journal, unit: Unit, start: float, bar: Task,
              step: Callable[[], Any]) -> Any:
    """Run ``step``; journal the unit when it returns records, or as failed when it raises."""
    try:
        result = step()
    except Exception as e:  # noqa: BLE001 - a failing unit must not stop the sweep
        if _interrupted(e):  # e.g. Ctrl-C inside a hook that the autograd engine re-raised
            raise KeyboardInterrupt from e
        if work.fail_fast:
            raise
        result = _failed(unit, work, e)
    if isinstance(result, list):
        journal.append(unit.key, result, work.marker)
        status = "failed" if result and result[0].get("status") == "failed" else f"{len(result)} records"
        bar.advance(1, f"{unit}: {status} in {time.perf_counter() - start:.1f} s")
    return result


def _interrupted(error: BaseException | None) -> bool:
    """Whether a KeyboardInterrupt lies anywhere in the chain of ``error``."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def run_units(work: SweepWork, todo: Sequence[tuple[int, Unit]], claims: Claims, journal: Journal,
              bar: Task) -> None:
    """Claim and run the units ``todo`` (``(index, unit)`` in claiming order) until none is left."""
    pending: list[_Pending] = []
    for index, unit in todo:
        if not claims.take(index):
            bar.advance(1, log=False)  # another rank runs it
            continue
        start = time.perf_counter()
        if unit.attack is None:
            _complete(work, journal, unit, start, bar, lambda: _run_random(work, unit))
        else:
            started = _complete(work, journal, unit, start, bar, lambda: _start_surrogate(work, unit, start))
            if isinstance(started, _Pending):
                pending.append(started)
        pending = _finish_ready(work, journal, pending, bar)
    waiting = False
    while pending:
        if not waiting:
            work.progress.line(f"waiting for the clean reconstructions / noise null of batch(es) "
                               f"{sorted({p.unit.batch for p in pending})} (another rank computes them)")
            waiting = True
        time.sleep(0.2)
        pending = _finish_ready(work, journal, pending, bar)


def _finish_ready(work: SweepWork, journal: Journal, pending: list[_Pending], bar: Task) -> list[_Pending]:
    """Finish the pending units whose batch's shared file is there (or failed); the rest wait."""
    left = []
    for p in pending:
        if _state(work.out, p.unit.batch) is None:
            left.append(p)
        else:
            _complete(work, journal, p.unit, p.start, bar, lambda p=p: _finish(work, p))
    return left


# ------------------------------------------------------------------------------- merging
def merge_records(journals: Sequence[Mapping[Key, list[dict]]], crafts: Sequence[tuple[str, str]],
                  ) -> tuple[list[dict], list[dict]]:
    """Records of every journal in a single process's order, and one failure row per failed batch.

    Order: batch, then the units' records as :func:`~kspace_attacks.study.transfer.transfer`
    lists them (``crafts``: each surrogate's attacks, then the noise baseline). A batch with a failed unit
    counts as failed as a whole: its records are left out, and its row in ``failed.csv`` names
    the failed units and the first error (the ``random`` unit's, whose failure fails the others).
    """
    parts = [*(tuple(c) for c in crafts), (RANDOM,)]
    entries: dict[Key, list[dict]] = {}
    for journal in journals:
        for key, recs in journal.items():
            # a unit run twice (its shared file was gone, or a retry after a failure) counts
            # once: its results when any run has them
            if key not in entries or (is_failure(entries[key]) and not is_failure(recs)):
                entries[key] = recs

    def order(key: Key) -> tuple[int, int]:
        if isinstance(key, int):  # a whole batch of an earlier version: already in order
            return (key, -1)
        return (key[0], parts.index(key[1:]) if key[1:] in parts else len(parts))

    ok, failed_by_batch = [], {}
    for key in sorted(entries, key=order):
        recs = entries[key]
        bad = [r for r in recs if r.get("status") == "failed"]
        if bad:
            failed_by_batch.setdefault(batch_of(key), []).extend(bad)
        ok.extend(recs)
    ok = [r for r in ok if r.get("batch") not in failed_by_batch]
    for rows in failed_by_batch.values():  # the references' failure is the cause of the others'
        rows.sort(key=lambda r: r.get("unit") != RANDOM)  # stable: then in record order
    failed = [{"batch": b, "status": "failed", "units": " ".join(str(r.get("unit", "all")) for r in rows),
               "sample_ids": rows[0].get("sample_ids", ""), "error": rows[0].get("error", "")}
              for b, rows in sorted(failed_by_batch.items())]
    return ok, failed
