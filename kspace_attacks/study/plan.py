"""What a sweep will compute, and roughly how long it will take here (``sweep --dry-run``).

:func:`plan_sweep` counts, from a configuration, the batches and rows (a row is one slice at
one budget; a batch of ``n`` slices makes ``n x len(eps)`` rows), the units ranks share
(:mod:`kspace_attacks.study.units`), the gradient evaluations of every surrogate x attack
(rows x the attack's ``max_grad_evals``) and the reconstructions of every target (rows x
(clean + crafted + noise baseline + null draws)). With ``timing``, it times one gradient
evaluation of each surrogate and one reconstruction of each target on one slice and on the
first batch's slices, at the configuration's thread count, fits a cost per call plus a cost per
row, and multiplies by the counts: an *estimate* (the sweep's calls hold more rows than were
timed; attacks that stop early cost less than their budget; other load on the machine counts).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .._runtime import flush_denormals, reproducible_numerics
from ..attacks.base import frozen_eval
from .config import (SweepConfig, build_attacks, build_data, build_models, build_surrogates, surrogate_batches,
                     surrogate_options, validate_config)
from .transfer import trajectory_groups
from .units import units_of

__all__ = ["SweepPlan", "plan_sweep"]


@dataclass
class SweepPlan:
    """Counts of a sweep's work, and (when timed) per-row costs measured on this machine.

    ``grad_evals[(surrogate, attack)]`` and ``reconstructions[target]`` count rows (a batched
    call on ``r`` rows counts ``r``); ``grad_cost`` / ``recon_cost`` hold, per model, the
    measured ``(seconds per call, seconds per row)``.
    """

    n_slices: int
    batch_rows: list[int]
    n_eps: int
    threads: int
    surrogates: list[str]
    attacks: dict[str, dict[str, int]]  # surrogate -> attack -> max_grad_evals
    targets: list[str]
    per_row_recons: dict[str, int]  # "clean", "baseline", "null draws" -> count per row
    surrogate_batches: dict[str, int] = field(default_factory=dict)  # surrogate -> leading batches attacked
    shared_runs: dict[str, str] = field(default_factory=dict)  # target -> the target whose sampler run it shares
    grad_cost: dict[str, tuple[float, float]] = field(default_factory=dict)
    recon_cost: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(self.batch_rows)

    def surrogate_rows(self, surrogate: str) -> int:
        """Rows a surrogate's attacks run on (all, or its leading batches)."""
        return sum(self.batch_rows[: self.surrogate_batches.get(surrogate, len(self.batch_rows))])

    @property
    def grad_evals(self) -> dict[tuple[str, str], int]:
        return {(s, a): self.surrogate_rows(s) * n for s, atk in self.attacks.items() for a, n in atk.items()}

    @property
    def crafted_rows(self) -> int:
        """Rows of crafted k-space every target reconstructs (each surrogate x attack)."""
        return sum(self.surrogate_rows(s) * len(atk) for s, atk in self.attacks.items())

    @property
    def reconstructions(self) -> dict[str, int]:
        per_row = sum(self.per_row_recons.values())
        return {t: self.rows * per_row + self.crafted_rows for t in self.targets}

    def unit_seconds(self) -> list[tuple[str, float]]:
        """Estimated seconds of every unit, in claiming order (needs timings), at the
        configuration's threads (every rank runs those)."""
        grad_cost, recon_cost = self.grad_cost, self.recon_cost

        def call(cost: tuple[float, float], rows: int) -> float:
            return cost[0] + cost[1] * rows

        out = []
        for u in units_of(len(self.batch_rows), list(self.grad_evals), self.grad_evals, self.surrogate_batches):
            r = self.batch_rows[u.batch]
            if u.attack is None:
                k = sum(self.per_row_recons.values())
                sec = sum(k * call(recon_cost[t], r) for t in self.targets)
            else:
                sec = self.attacks[u.surrogate][u.attack] * call(grad_cost[u.surrogate], r)
                sec += sum(call(recon_cost[t], r) for t in self.targets)
            out.append((str(u), sec))
        return out

    def rank_threads(self, ranks: int) -> int:
        """Each rank's threads: the configuration's, however many ranks (the thread count is part
        of the numbers' identity, :func:`~kspace_attacks.study.sweep.rank_threads`)."""
        return self.threads

    def rank_plan(self, ranks: int = 1) -> list[tuple[list[str], float]]:
        """Which units each of ``ranks`` ranks runs and its estimated seconds: ranks claim units in
        order as they become free, each at the configuration's threads."""
        plan: list[tuple[list[str], float]] = [([], 0.0) for _ in range(ranks)]
        for name, sec in self.unit_seconds():
            i = min(range(ranks), key=lambda k: plan[k][1])
            plan[i] = (plan[i][0] + [name], plan[i][1] + sec)
        return plan

    def seconds(self, ranks: int = 1) -> float:
        """Estimated wall time with ``ranks`` processes claiming units in order (start-up aside)."""
        return max(sec for _, sec in self.rank_plan(ranks))

    def text(self) -> str:
        """The plan as ``kspace-attacks sweep --dry-run`` prints it."""
        k = self.n_eps
        n_units = len(units_of(len(self.batch_rows), list(self.grad_evals), None, self.surrogate_batches))
        lines = [f"data: {self.n_slices} slice(s) in {len(self.batch_rows)} batch(es); {k} eps -> rows per batch "
                 f"(slices x eps): {', '.join(map(str, self.batch_rows))}",
                 f"units: {n_units} (per batch: clean + null + noise, and one per surrogate x attack"
                 f"{' it attacks' if self.surrogate_batches else ''}); torchrun ranks share them",
                 "gradient evaluations per surrogate x attack (rows x max_grad_evals):"]
        for (s, a), n in self.grad_evals.items():
            only = f" (first {self.surrogate_batches[s]} batch(es))" if s in self.surrogate_batches else ""
            lines.append(f"  {s} / {a}: {self.surrogate_rows(s)} x {self.attacks[s][a]} = {n}{only}")
        per_row = " + ".join(f"{n} {name}" for name, n in self.per_row_recons.items())
        lines.append(f"reconstructions per target (rows x ({per_row}) + {self.crafted_rows} crafted rows):")
        for t, n in self.reconstructions.items():
            shares = f" (one sampler run with {self.shared_runs[t]})" if t in self.shared_runs else ""
            lines.append(f"  {t}: {self.rows} x {sum(self.per_row_recons.values())} + {self.crafted_rows} = {n}{shares}")
        if self.recon_cost:
            costs = [(f"{s} gradient", c) for s, c in self.grad_cost.items()]
            costs += [(f"{t} reconstruction", c) for t, c in self.recon_cost.items()]
            lines.append(f"timed on this machine (threads = {self.threads}; seconds per call + per row):")
            lines += [f"  {name}: {c[0]:.3g} + {c[1]:.3g} x rows" for name, c in costs]
            lines += [f"  {name}: about {_duration(sec)}" for name, sec in self.unit_seconds()]
            lines.append(f"with 2 ranks ({self.threads} thread(s) each: {2 * self.threads} cores, or the launch is "
                         f"refused unless oversubscribe = true):")
            for k, (names, sec) in enumerate(self.rank_plan(2)):
                lines.append(f"  rank {k}: {len(names)} unit(s), about {_duration(sec)}")
            lines.append(f"estimated wall time: {_duration(self.seconds())} in one process, about "
                         f"{_duration(self.seconds(2))} with 2 ranks (start-up aside). An estimate: the timings "
                         f"above x the counts; attacks that stop early use fewer gradient evaluations, and "
                         f"other load on the machine slows the run.")
        return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _one_slice(physics: Any, n: int) -> Any:
    """The physics of the first of ``n`` slices (per-slice masks and coil maps cut to it)."""
    updates = {}
    for name, min_dim in (("mask", 3), ("coil_maps", 4)):
        t = getattr(physics, name, None)
        if isinstance(t, Tensor) and t.dim() >= min_dim and t.shape[0] == n > 1:
            updates[name] = t[:1]
    if not updates:
        return physics
    one = copy.deepcopy(physics)
    one.update_parameters(**updates)
    return one


def _cost(fn: Callable[[Tensor, Any], Any], y: Tensor, physics: Any) -> tuple[float, float]:
    """``(seconds per call, seconds per row)`` of ``fn(y, physics)``, from one call on the first
    slice and one on all of ``y``'s slices, each after a warm-up call of the same shape (the
    first call of a new shape sets up kernels: timed, it made the estimate several times too
    slow)."""
    one = _one_slice(physics, y.shape[0])

    def timed(*args: Any) -> float:
        start = time.perf_counter()
        fn(*args)
        return time.perf_counter() - start

    fn(y[:1], one)
    t1 = timed(y[:1], one)
    if y.shape[0] == 1:
        return 0.0, t1
    fn(y, physics)
    per_row = max(timed(y, physics) - t1, 0.0) / (y.shape[0] - 1)
    return max(t1 - per_row, 0.0), per_row


def _time_models(plan: SweepPlan, surrogates: Mapping[str, Any], targets: Mapping[str, Any],
                 y: Tensor, physics: Any) -> None:
    def grad(model: Any) -> Callable[[Tensor, Any], None]:
        def step(y_: Tensor, physics_: Any) -> None:
            y_ = y_.detach().clone().requires_grad_(True)
            with frozen_eval(model):
                model(y_, physics_).pow(2).sum().backward()
        return step

    def recon(model: Any) -> Callable[[Tensor, Any], None]:
        @torch.no_grad()
        def step(y_: Tensor, physics_: Any) -> None:
            with frozen_eval(model):
                model(y_, physics_)
        return step

    plan.grad_cost = {s: _cost(grad(m), y, physics) for s, m in surrogates.items()}
    # a target sharing another's sampler run costs nothing more (the run's cost is the first's)
    plan.recon_cost = {t: (0.0, 0.0) if t in plan.shared_runs else _cost(recon(m), y, physics)
                       for t, m in targets.items()}


def plan_sweep(cfg: SweepConfig | Mapping[str, Any], timing: bool = True, models: Mapping[str, Any] | None = None) -> SweepPlan:
    """Count a sweep's work and, with ``timing``, time its models here (writes nothing).

    :param cfg: a sweep configuration (validated here).
    :param bool timing: time one gradient evaluation per surrogate and one reconstruction per
        target on the first slice and on the first batch (loads the models; seconds, up to
        minutes for a diffusion model).
    :param models: models by name, as :func:`~kspace_attacks.study.sweep.run_sweep` takes them.
    """
    cfg = validate_config(cfg)
    with flush_denormals(), reproducible_numerics(cfg.threads):
        batches, _ = build_data(cfg)
        attacks = build_attacks(cfg)
        k = len(cfg.eps)
        options = surrogate_options(cfg)
        per_attack = {s: {a: atk.replace(**options.get(s, {})).max_grad_evals for a, atk in attacks.items()}
                      for s in cfg.surrogates}
        plan = SweepPlan(sum(y.shape[0] for _, y, _ in batches), [y.shape[0] * k for _, y, _ in batches], k,
                         cfg.threads, list(cfg.surrogates), per_attack, list(cfg.targets),
                         {"clean": 1, "baseline": int(cfg.baseline), "null draws": cfg.null_draws},
                         surrogate_batches(cfg))
        if timing:
            models = dict(models) if models is not None else build_models(cfg)
            groups = trajectory_groups({t: models[t] for t in cfg.targets})
            plan.shared_runs = {t: g[0] for g in groups for t in g[1:]}
            surrogates, _ = build_surrogates(cfg, models)
            _, y, physics = batches[0]
            targets = {t: models[t] for t in cfg.targets}
            _time_models(plan, surrogates, targets, y, physics)
    return plan
