"""Transfer evaluation: craft worst-case perturbations on surrogates, evaluate them on targets.

For each batch of data and each surrogate, one batched attack crafts perturbations for the
whole eps grid at once (per-sample budgets); every target then reconstructs the same perturbed
k-space (white-box when target and surrogate coincide, black-box transfer otherwise), next to
the equal-norm random baseline. The outcome is a flat list of per-sample records
(:class:`~kspace_attacks.study.report.TransferReport`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from .._checks import check_image, check_kspace, describe
from .._runtime import runtime_provenance
from ..attacks import Attack, default_attack
from ..attacks.base import Reconstructor
from ..measurement import Grid, attack_grid, control_grid, row_metrics
from . import records as R
from .artifacts import artifact_stats, residual
from .null import Null, fit_null, spectrum_distance, structure_fraction, value_distance
from .progress import Progress, as_progress
from .reconstruct import reconstruct_all, reconstruct_one as _reconstruct, trajectory_groups
from .report import TransferReport

__all__ = ["transfer", "iter_batches", "trajectory_groups", "reconstruct_all", "Grid", "target_null", "TransferPlan", "Shared",
           "batch_shared", "craft_surrogate", "noise_baseline", "reconstruct_crafted", "crafted_records",
           "keep_perturbations"]

BASELINE = R.BASELINE_SURROGATE

Batch = tuple[Tensor | None, Tensor, Any]


def iter_batches(data: Any) -> Iterator[Batch]:
    """Yield ``(x, y, physics)`` batches from one batch or an iterable of batches."""
    if _is_batch(data):
        yield data
        return
    if not isinstance(data, Iterable):
        raise TypeError(
            f"data: expected an (x, y, physics) batch or an iterable of them, got {describe(data)}"
        )
    for i, batch in enumerate(data):
        if not (isinstance(batch, (tuple, list)) and len(batch) == 3):
            raise TypeError(f"data[{i}]: expected an (x, y, physics) tuple, got {describe(batch)}")
        yield tuple(batch)  # type: ignore[misc]


def _check_models(name: str, models: Any) -> dict[str, Reconstructor]:
    if not isinstance(models, Mapping) or not models:
        raise TypeError(f"{name}: expected a non-empty dict name -> model(y, physics), got {describe(models)}")
    for key, m in models.items():
        if not callable(m):
            raise TypeError(f"{name}[{key!r}]: expected a callable model(y, physics), got {describe(m)}")
    return dict(models)


def _check_attacks(attack: Any) -> dict[str, Attack]:
    if attack is None:
        atk = default_attack()
        return {atk.name: atk}
    if isinstance(attack, Attack):
        return {attack.name or type(attack).__name__.lower(): attack}
    if isinstance(attack, Mapping) and attack and all(isinstance(a, Attack) for a in attack.values()):
        return dict(attack)
    raise TypeError(f"attack: expected an Attack or a dict name -> Attack, got {describe(attack)}")


def _check_eps_grid(eps: Any) -> list[float]:
    if isinstance(eps, Tensor):
        eps = eps.detach().reshape(-1).tolist()
    values = [eps] if isinstance(eps, (int, float)) else list(eps)
    if not values:
        raise ValueError("eps: expected at least one budget, got an empty list")
    try:
        floats = [float(v) for v in values if not isinstance(v, bool)]
    except (TypeError, ValueError):
        floats = []
    if len(floats) != len(values) or not all(math.isfinite(v) and v >= 0 for v in floats):
        raise ValueError(f"eps: expected finite numbers >= 0, got {values}")
    return floats


def transfer(
    surrogates: Mapping[str, Reconstructor],
    targets: Mapping[str, Reconstructor],
    data: Batch | Iterable[Batch],
    eps: Sequence[float] = R.STUDY_EPS,
    attack: Attack | Mapping[str, Attack] | None = None,
    baseline: bool = True,
    normalization: str = "reference",
    target_batch_size: int | None = None,
    sample_ids: Sequence[Any] | None = None,
    keep_perturbations: bool = True,
    progress: bool = True,
    on_records: Callable[[list[dict]], None] | None = None,
    null_draws: int = 8,
    attack_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> TransferReport:
    """Craft perturbations on each surrogate and evaluate them on every target.

    :param dict surrogates: name -> differentiable reconstructor to attack (white-box).
    :param dict targets: name -> reconstructor evaluated on the perturbed k-space; targets need
        not be differentiable (e.g. a no-grad diffusion sampler).
    :param data: an ``(x, y, physics)`` batch or an iterable of batches; ``x`` (ground truth)
        may be ``None``, then metrics against the ground truth are left out.
    :param eps: budget grid (relative to ||y|| for a relative threat model); the default is
        the study's 0, 0.01, ..., 0.08.
    :param attack: attack template(s), an :class:`~kspace_attacks.Attack` or a dict name ->
        attack; their threat model's ``eps`` is replaced by the grid. Default: :func:`~kspace_attacks.attacks.default_attack` (``WorstCase``, budget 100).
    :param bool baseline: also evaluate equal-norm random perturbations (surrogate ``"random"``,
        attack ``"noise"``).
    :param str normalization: metric normalisation (see :mod:`kspace_attacks.metrics`; the
        min-max numbers are recorded as ``*_minmax`` columns either way).
    :param int|None target_batch_size: reconstruct at most this many samples at once.
    :param sample_ids: ids of the samples in data order (default 0, 1, ...).
    :param bool keep_perturbations: keep clean/perturbed k-space for saving as fastMRI files.
    :param bool progress: show progress: nested tqdm bars (batches, each surrogate's attacks in
        gradient evaluations, the targets in reconstructions) on a terminal, one log line per
        finished piece of work otherwise (:mod:`kspace_attacks.study.progress`).
    :param on_records: called with each finished batch of records (e.g. to write them durably).
    :param int null_draws: equal-norm noise draws per target, slice and eps that calibrate the
        artifact statistics (``structure_fraction``, ``spectrum_distance``, ``value_distance``:
        :mod:`kspace_attacks.study.null`); each costs one reconstruction per target and row;
        0 leaves these columns out.
    :param dict attack_options: surrogate name -> attack arguments changed for that surrogate
        only, e.g. ``{"diffusion": {"eot": 4}}`` to average a stochastic sampler's gradient.
    :return: a :class:`~kspace_attacks.study.report.TransferReport`.

    |sep|

    :Examples:

        >>> import torch, deepinv as dinv
        >>> import kspace_attacks as ka
        >>> mask = torch.zeros(16, 16); mask[:, ::2] = 1
        >>> physics = dinv.physics.MRI(mask=mask, img_size=(16, 16))
        >>> x = torch.rand(2, 2, 16, 16, generator=torch.Generator().manual_seed(0))
        >>> zf = lambda y, p: p.A_adjoint(y)
        >>> report = ka.transfer({"zf": zf}, {"zf": zf}, (x, physics(x), physics),
        ...                      eps=[0.0, 0.05], attack=ka.PGD(ka.KSpaceL2(), steps=3),
        ...                      progress=False)
        >>> len(report.records)  # 2 samples x 2 eps x (attack + noise baseline) x 1 target
        8
    """
    plan = TransferPlan.of(surrogates, targets, attack, baseline, normalization, target_batch_size,
                           keep_perturbations, null_draws, attack_options)
    return _run_batches(plan, _check_eps_grid(eps), data, sample_ids, on_records, as_progress(progress, "transfer"))


def _run_batches(plan: TransferPlan, grid: list[float], data: Any, sample_ids: Sequence[Any] | None,
                 on_records: Callable[[list[dict]], None] | None, shown: Progress) -> TransferReport:
    """:func:`transfer`'s loop over batches."""
    report = TransferReport(normalization=plan.normalization)
    first_id, device = 0, "cpu"
    total = len(data) if isinstance(data, Sequence) and not _is_batch(data) else (1 if _is_batch(data) else None)
    with shown.task("transfer", total=total, unit="batches") as bar:
        for b, (x, y, physics) in enumerate(iter_batches(data)):
            y = check_kspace(f"data[{b}].y", y)
            if x is not None:
                x = check_image(f"data[{b}].x", x)
            n = y.shape[0]
            ids = _ids(sample_ids, first_id, n)
            first_id += n
            stacked, device = Grid.of(x, y, physics, grid, ids), str(y.device)
            batch_records = _transfer_batch(report, plan, stacked, shown)
            report.extend(batch_records)
            if on_records is not None:
                on_records(batch_records)
            bar.advance(1, f"batch {b}: {n} slice(s) x {len(grid)} eps, {len(batch_records)} records")
    report.provenance = runtime_provenance(device=device)
    return report


def _is_batch(data: Any) -> bool:
    return isinstance(data, tuple) and len(data) == 3 and isinstance(data[1], Tensor)


def _ids(sample_ids: Sequence[Any] | None, first: int, n: int) -> list:
    ids = list(range(first, first + n)) if sample_ids is None else list(sample_ids[first : first + n])
    if len(ids) != n:
        raise ValueError(f"sample_ids: expected one id per sample ({first + n} so far), got {len(sample_ids)}")
    return ids


#: the study's name of a batch stacked on the eps grid (:class:`kspace_attacks.measurement.Grid`)
Stacked = Grid


@dataclass
class TransferPlan:
    """What one transfer evaluates: models, attacks and options (shared by every batch).

    A sweep builds one with :meth:`of` and runs its units from the same pieces as
    :func:`transfer` (:mod:`kspace_attacks.study.units`)."""

    surrogates: Mapping[str, Reconstructor]
    targets: Mapping[str, Reconstructor]
    attacks: Mapping[str, Attack]
    baseline: bool
    normalization: str
    chunk: int | None
    keep_perturbations: bool
    null_draws: int
    attack_options: Mapping[str, Mapping[str, Any]]
    groups: list[list[str]] = field(default_factory=list)  # targets sharing a sampler run

    def __post_init__(self) -> None:
        self.groups = self.groups or trajectory_groups(self.targets)

    def reconstruct(self, y: Tensor, physics: Any) -> dict[str, tuple[Tensor, float]]:
        """Every target's reconstruction of ``y`` (:func:`reconstruct_all`)."""
        return reconstruct_all(self.targets, y, physics, self.chunk, self.groups)

    @classmethod
    def of(cls, surrogates: Any, targets: Any, attack: Any, baseline: bool, normalization: str,
           chunk: int | None, keep_perturbations: bool, null_draws: Any, attack_options: Any) -> "TransferPlan":
        """Validate :func:`transfer`'s arguments into a plan."""
        surrogates = _check_models("surrogates", surrogates)
        if BASELINE in surrogates:
            raise ValueError(f"surrogates: the name {BASELINE!r} is reserved for the random baseline; rename it")
        if isinstance(null_draws, bool) or not isinstance(null_draws, int) or null_draws == 1 or null_draws < 0:
            raise ValueError(f"null_draws: expected 0 or an integer >= 2, got {null_draws!r}")
        options = dict(attack_options or {})
        unknown = sorted(set(options) - set(surrogates))
        if unknown:
            raise ValueError(f"attack_options: names {unknown} are not surrogates; expected some of "
                             f"{sorted(surrogates)}")
        return cls(surrogates, _check_models("targets", targets), _check_attacks(attack), baseline,
                   normalization, chunk, keep_perturbations, null_draws, options)


def _transfer_batch(report: TransferReport, plan: TransferPlan, stacked: Grid, progress: Progress) -> list[dict]:
    """Craft on every surrogate, evaluate on every target: the records of one batch."""
    shared = batch_shared(plan, stacked, progress)
    crafted = [c for s_name in plan.surrogates for c in craft_surrogate(plan, stacked, s_name, progress)]
    if plan.baseline:
        crafted.append(noise_baseline(plan, stacked))
    if plan.keep_perturbations:
        keep_perturbations(report, stacked, crafted)
    return crafted_records(plan, stacked, crafted, shared, progress)


@dataclass
class Shared:
    """What every record of a batch is measured against: each target's clean reconstruction of
    the stacked batch and its noise null (``None`` without null draws)."""

    clean: dict[str, Tensor]
    nulls: dict[str, Null | None]


def batch_shared(plan: TransferPlan, st: Grid, progress: Progress) -> Shared:
    """Each target's clean reconstruction and noise null (``plan.null_draws`` draws per row)."""
    # Each target's clean reconstruction of the stacked batch: a stochastic target (a diffusion
    # sampler) then draws the same noise for row i of the clean and of every perturbed batch
    # (common random numbers), so differences measure the perturbation, not sampler noise.
    template = next(iter(plan.attacks.values()))
    per_target = 1 + plan.null_draws
    with progress.task("clean + null", total=per_target * len(plan.targets), unit="reconstructions",
                       level=1) as bar:
        clean = {t: x for t, (x, _) in plan.reconstruct(st.y, st.physics).items()}
        bar.advance(len(plan.targets), log=False)
        residuals: dict[str, list[Tensor]] = {t: [] for t in plan.targets}
        for y_k in _null_inputs(template, st, plan.null_draws):
            for t, (x, _) in plan.reconstruct(y_k, st.physics).items():
                residuals[t].append(residual(x, clean[t]))
            bar.advance(len(plan.targets), log=False)
        nulls: dict[str, Null | None] = {t: fit_null(torch.stack(residuals[t])) if plan.null_draws else None
                                         for t in plan.targets}
        bar.advance(0, f"{', '.join(plan.targets)}: {per_target} reconstruction(s) of {st.y.shape[0]} rows each")
    return Shared(clean, nulls)


def target_null(model: Reconstructor, x_clean: Tensor, template: Attack, st: Grid, draws: int = 8,
                chunk: int | None = None) -> Null:
    """Fit ``model``'s noise null on a stacked batch as :func:`transfer` does: ``draws``
    equal-norm noise draws per row in ``template``'s threat model
    (:func:`~kspace_attacks.measurement.control_grid`).

    A row's draws depend on (``template.seed``, sample id, eps, draw) only, so for a
    deterministic model the null of a row equals the one the sweep fitted for it, whatever
    else the batch holds (the HTML report's structure maps rely on this).
    """
    residuals = [residual(_reconstruct(model, y_k, st.physics, chunk), x_clean)
                 for y_k in _null_inputs(template, st, draws)]
    return fit_null(torch.stack(residuals))


def _null_inputs(template: Attack, st: Grid, draws: int) -> Iterator[Tensor]:
    """The null's ``draws`` noisy k-spaces of a stacked batch, one at a time."""
    for k in range(draws):
        # Draw k of a row depends on (seed, sample, eps, k) only: batching never changes it, and
        # draws 1..K are apart from the baseline row's own draw (k = 0).
        yield control_grid(template.threat, st, template.seed, draw=k + 1).y


@dataclass
class _Crafted:
    """Perturbed k-space of one (surrogate, attack) for a stacked batch."""

    surrogate: str
    attack: str
    y_adv: Tensor
    ratio: Tensor
    loss: Tensor
    seconds: float
    grad_evals: int
    attack_repr: str
    spread: tuple[Tensor, Tensor, Tensor] | None = None  # (starts, best, median) per row
    unreliable: Tensor | None = None  # (B,) bool from an adaptive search, else not assessed


def craft_surrogate(plan: TransferPlan, st: Grid, s_name: str, progress: Progress,
                    attacks: Sequence[str] | None = None) -> list[_Crafted]:
    """One batched attack per attack (all, or those named in ``attacks``) on surrogate
    ``s_name``, over the whole eps grid; each is seeded, so independent of the others."""
    out = []
    s_model = plan.surrogates[s_name]
    options = plan.attack_options.get(s_name, {})
    names = list(plan.attacks) if attacks is None else list(attacks)
    chosen = {a: plan.attacks[a].replace(eps=st.eps, **options) for a in names}
    rows = st.y.shape[0]
    with progress.task(f"craft on {s_name}", total=sum(a.max_grad_evals for a in chosen.values()),
                       unit="grad evals", level=1) as bar:
        for a_name, atk in chosen.items():
            res = attack_grid(atk, s_model, st, a_name).result
            spread = None if res.start_losses is None else (
                torch.full_like(res.ratio, res.n_starts), res.start_best, res.start_median)
            out.append(_Crafted(s_name, a_name, res.y_adv, res.ratio, res.loss, res.seconds,
                                res.grad_evals, res.attack, spread, res.unreliable))
            bar.advance(atk.max_grad_evals, f"{a_name}: {res.grad_evals} gradient evaluation(s) of "
                                            f"{rows} rows in {res.seconds:.1f} s")
    return out


def noise_baseline(plan: TransferPlan, st: Grid) -> _Crafted:
    """Equal-norm noise in the first attack's threat model (same norm and budget, delivered on
    the measured entries: :func:`~kspace_attacks.measurement.control_grid`)."""
    template = next(iter(plan.attacks.values()))
    noise = control_grid(template.threat, st, template.seed)
    return _Crafted(BASELINE, R.BASELINE_ATTACK, noise.y, noise.ratio, torch.full_like(noise.ratio, float("nan")),
                    noise.seconds, 0, noise.description)


def reconstruct_crafted(plan: TransferPlan, st: Grid, crafted: Sequence[_Crafted], progress: Progress,
                        ) -> dict[tuple[int, str], tuple[Tensor, float]]:
    """Every target's reconstruction of every crafted k-space: ``(index, target) -> (x, seconds)``."""
    out = {}
    with progress.task("targets", total=len(crafted) * len(plan.targets), unit="reconstructions",
                       level=1) as bar:
        for i, c in enumerate(crafted):
            out.update({(i, t): r for t, r in plan.reconstruct(c.y_adv, st.physics).items()})
            bar.advance(len(plan.targets), f"{c.surrogate} / {c.attack}: {len(plan.targets)} target(s) x "
                                           f"{st.y.shape[0]} rows")
    return out


def keep_perturbations(report: TransferReport, st: Grid, crafted: Sequence[_Crafted]) -> None:
    """Add the perturbed k-space of ``crafted`` to ``report`` (saved as fastMRI files)."""
    for c in crafted:
        report.add_perturbation(c.surrogate, c.attack, st.ids, st.grid, st.y, c.y_adv, st.physics, c.attack_repr)


def crafted_records(plan: TransferPlan, st: Grid, crafted: Sequence[_Crafted], shared: Shared, progress: Progress,
                    recons: Mapping[tuple[int, str], tuple[Tensor, float]] | None = None) -> list[dict]:
    """The records of ``crafted`` on every target, in crafted-major, target-minor order.

    Reconstructs one crafted k-space at a time (so only one is held), unless ``recons`` (from
    :func:`reconstruct_crafted`) already holds them: the records are the same either way.
    """
    records: list[dict] = []
    total = 0 if recons is not None else len(crafted) * len(plan.targets)
    with progress.task("targets", total=total, unit="reconstructions", level=1) as bar:
        for i, c in enumerate(crafted):
            if recons is None:
                got = plan.reconstruct(c.y_adv, st.physics)
                bar.advance(len(plan.targets), f"{c.surrogate} / {c.attack}: {len(plan.targets)} target(s) x "
                                               f"{st.y.shape[0]} rows")
            else:
                got = {t: recons[(i, t)] for t in plan.targets}
            for t_name, (x_adv, seconds) in got.items():
                records += _target_records(c, t_name, x_adv, seconds, shared.clean[t_name],
                                           shared.nulls[t_name], st, plan.normalization)
    return records


def _target_records(c: _Crafted, t_name: str, x_adv: Tensor, t_seconds: float, x_clean: Tensor,
                    null: Null | None, st: Grid, normalization: str) -> list[dict]:
    """The records of ``c``'s perturbed k-space reconstructed by one target: one per stacked row."""
    vals = row_metrics(x_adv, x_clean, st.x, normalization, physics=st.physics)
    deviations = {k: vals.pop(k) for k in (R.SQUARED_DEVIATION, R.RELATIVE_DEVIATION)}
    vals.update(artifact_stats(x_adv, x_clean))
    vals.update(deviations)  # the columns' order of earlier versions
    if null is not None:
        vals.update(_calibrated(residual(x_adv, x_clean), null, st.eps))
    setting = R.setting_of(c.surrogate, c.attack, t_name)
    rows = st.y.shape[0]
    records = []
    for i in range(rows):
        rec = {
            R.SAMPLE_ID: st.ids[i % st.n],
            R.SURROGATE: c.surrogate,
            R.TARGET: t_name,
            R.ATTACK: c.attack,
            R.SETTING: setting,
            R.EPS: st.grid[i // st.n],
            R.RATIO: float(c.ratio[i]),
            R.ATTACK_LOSS: float(c.loss[i]),
            R.GRAD_EVALS: c.grad_evals,
            **_spread_columns(c, i),
            R.UNRELIABLE: float("nan") if c.unreliable is None else float(c.unreliable[i]),
            R.ATTACK_SECONDS: c.seconds / rows,
            R.TARGET_SECONDS: t_seconds / rows,
        }
        rec.update({key: float(v[i]) for key, v in vals.items()})
        records.append(rec)
    return records


def _spread_columns(c: _Crafted, i: int) -> dict[str, float]:
    """Row ``i``'s restart columns (NaN for attacks without starts, such as the noise baseline)."""
    return R.restart_columns(*(float(t[i]) for t in c.spread)) if c.spread else R.restart_columns()


def _calibrated(r: Tensor, null: Null, eps: Tensor) -> dict[str, Tensor]:
    """Null-calibrated artifact statistics; undefined (NaN) at eps = 0, where nothing changed."""
    undefined = torch.where(eps.to(r.device) > 0, 0.0, float("nan")).to(r.dtype)
    return {
        R.STRUCTURE_FRACTION: structure_fraction(r, null) + undefined,
        R.SPECTRUM_DISTANCE: spectrum_distance(r, null) + undefined,
        R.VALUE_DISTANCE: value_distance(r, null) + undefined,
    }

