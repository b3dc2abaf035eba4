"""Transfer evaluation: craft worst-case perturbations on surrogates, evaluate them on targets.

For each batch of data and each surrogate, one batched attack crafts perturbations for the
whole eps grid at once (per-sample budgets); every target then reconstructs the same perturbed
k-space (white-box when target and surrogate coincide, black-box transfer otherwise), next to
the equal-norm random baseline. The outcome is a flat list of per-sample records
(:class:`~kspace_attacks.report.TransferReport`).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from . import metrics as _metrics
from ._checks import check_image, check_kspace, describe
from .analysis import artifact_stats
from .attacks import PGD, Attack, GaussianNoise
from .attacks.base import frozen_eval
from .report import TransferReport
from .threat import KSpaceL2, _check_eps

__all__ = ["transfer", "DEFAULT_EPS", "default_attack", "iter_batches"]

#: Surrogate name of the equal-norm random baseline in the records.
BASELINE = "random"

#: The study's budget grid, eps = 0, 0.01, ..., 0.08 (relative to ||y||).
DEFAULT_EPS: tuple[float, ...] = tuple(round(0.01 * i, 2) for i in range(9))

Batch = tuple[Tensor | None, Tensor, Any]
Model = Callable[[Tensor, Any], Tensor]


def default_attack() -> Attack:
    """PGD, 20 normalised steps, l2 ball relative to ||y|| per sample on measured k-space."""
    return PGD(KSpaceL2(), steps=20)


def with_eps(attack: Attack, eps: Tensor) -> Attack:
    """A copy of ``attack`` whose threat model has the per-sample budgets ``eps``."""
    new = copy.copy(attack)
    new.threat = copy.copy(attack.threat)
    new.threat.eps = _check_eps(eps)
    return new


def iter_batches(data: Any) -> Iterator[Batch]:
    """Yield ``(x, y, physics)`` batches from one batch or an iterable of batches."""
    if isinstance(data, tuple) and len(data) == 3 and isinstance(data[1], Tensor):
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


def _repeat(t: Tensor, k: int) -> Tensor:
    """Stack ``k`` copies of the batch: index ``i * B + j`` is copy ``i`` of sample ``j``."""
    return t.repeat(k, *([1] * (t.dim() - 1)))


def _check_models(name: str, models: Any) -> dict[str, Model]:
    if not isinstance(models, Mapping) or not models:
        raise TypeError(f"{name}: expected a non-empty dict name -> model(y, physics), got {describe(models)}")
    for key, m in models.items():
        if not callable(m):
            raise TypeError(f"{name}[{key!r}]: expected a callable model(y, physics), got {describe(m)}")
    return dict(models)


def _check_attacks(attack: Any) -> dict[str, Attack]:
    if attack is None:
        return {"pgd": default_attack()}
    if isinstance(attack, Attack):
        return {type(attack).__name__.lower(): attack}
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


def _repeat_physics(physics: Any, k: int, n: int) -> Any:
    """The physics for ``k`` stacked copies of a batch of ``n``: per-sample masks are repeated."""
    mask = getattr(physics, "mask", None)
    if k == 1 or not isinstance(mask, Tensor) or mask.dim() < 3 or mask.shape[0] in (1, n * k):
        return physics
    if mask.shape[0] != n:
        raise ValueError(f"physics.mask: expected batch size 1 or {n} (the data's), got {mask.shape[0]}")
    stacked = copy.deepcopy(physics)
    stacked.update_parameters(mask=mask.repeat(k, *([1] * (mask.dim() - 1))))
    return stacked


@torch.no_grad()
def _reconstruct(model: Model, y: Tensor, physics: Any, chunk: int | None) -> Tensor:
    with frozen_eval(model):  # eval mode for the call; the caller's mode is restored
        if chunk is None or y.shape[0] <= chunk:
            return check_image("model(y, physics)", model(y, physics))
        return torch.cat([model(y[i : i + chunk], physics) for i in range(0, y.shape[0], chunk)])


def _scalar_metrics(prefix: str, table: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {f"{prefix}{k}": v for k, v in table.items()}


def transfer(
    surrogates: Mapping[str, Model],
    targets: Mapping[str, Model],
    data: Batch | Iterable[Batch],
    eps: Sequence[float] = DEFAULT_EPS,
    attack: Attack | Mapping[str, Attack] | None = None,
    baseline: bool = True,
    normalization: str = "minmax",
    target_batch_size: int | None = None,
    sample_ids: Sequence[Any] | None = None,
    keep_perturbations: bool = True,
    progress: bool = True,
    on_records: Callable[[list[dict]], None] | None = None,
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
        attack; their threat model's ``eps`` is replaced by the grid. Default: 20-step PGD.
    :param bool baseline: also evaluate equal-norm random perturbations (surrogate ``"random"``,
        attack ``"noise"``).
    :param str normalization: metric normalisation (see :mod:`kspace_attacks.metrics`).
    :param int | None target_batch_size: reconstruct at most this many samples at once.
    :param sample_ids: ids of the samples in data order (default 0, 1, ...).
    :param bool keep_perturbations: keep clean/perturbed k-space for saving as fastMRI files.
    :param bool progress: show a tqdm progress bar.
    :param on_records: called with each finished batch of records (e.g. to write them durably).
    :return: a :class:`~kspace_attacks.report.TransferReport`.

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
    surrogates = _check_models("surrogates", surrogates)
    if BASELINE in surrogates:
        raise ValueError(f"surrogates: the name {BASELINE!r} is reserved for the random baseline; rename it")
    targets = _check_models("targets", targets)
    attacks = _check_attacks(attack)
    grid = _check_eps_grid(eps)
    k = len(grid)
    report = TransferReport(normalization=normalization)
    first_id = 0
    bar = tqdm(desc="transfer", unit="batch", disable=not progress)
    for b, (x, y, physics) in enumerate(iter_batches(data)):
        y = check_kspace(f"data[{b}].y", y)
        if x is not None:
            x = check_image(f"data[{b}].x", x)
        n = y.shape[0]
        ids = list(range(first_id, first_id + n)) if sample_ids is None else list(sample_ids[first_id : first_id + n])
        if len(ids) != n:
            raise ValueError(
                f"sample_ids: expected one id per sample ({first_id + n} so far), got {len(sample_ids)}"
            )
        first_id += n
        eps_t = torch.tensor(grid, dtype=torch.float64).repeat_interleave(n)
        y_rep = _repeat(y, k)
        physics_rep = _repeat_physics(physics, k, n)
        # Each target's clean reconstruction of the stacked batch: a stochastic target (a diffusion
        # sampler) then draws the same noise for row i of the clean and of every perturbed batch
        # (common random numbers), so differences measure the perturbation, not sampler noise.
        clean = {t: _reconstruct(m, y_rep, physics_rep, target_batch_size) for t, m in targets.items()}
        crafted: list[tuple[str, str, Tensor, Tensor, Tensor, float, int, str]] = []
        for s_name, s_model in surrogates.items():
            for a_name, template in attacks.items():
                res = with_eps(template, eps_t)(s_model, y_rep, physics_rep)
                crafted.append((s_name, a_name, res.y_adv, res.ratio, res.loss, res.seconds, res.grad_evals, res.attack))
        if baseline:
            # Equal-norm noise in the first attack's threat model (same norm, support, budget).
            template = next(iter(attacks.values()))
            threat = with_eps(GaussianNoise(template.threat, seed=template.seed), eps_t).threat
            start = time.perf_counter()
            delta = threat.sphere(y_rep, physics_rep, torch.Generator().manual_seed(template.seed + b))
            y_noise = threat.apply(y_rep, delta, physics_rep)
            ratio = threat.ratio(delta, y_rep)  # like attacks: the norm of delta itself
            crafted.append((BASELINE, "noise", y_noise, ratio, torch.full_like(ratio, float("nan")),
                            time.perf_counter() - start, 0, f"GaussianNoise({threat!r})"))
        batch_records: list[dict] = []
        for s_name, a_name, y_adv, ratio, loss, seconds, grad_evals, attack_repr in crafted:
            if keep_perturbations:
                report.add_perturbation(s_name, a_name, ids, grid, y_rep, y_adv, physics_rep, attack_repr)
            for t_name, t_model in targets.items():
                start = time.perf_counter()
                x_adv = _reconstruct(t_model, y_adv, physics_rep, target_batch_size)
                t_seconds = time.perf_counter() - start
                x_clean = clean[t_name]
                vals: dict[str, Tensor] = {}
                vals.update(_scalar_metrics("", {k2: v for k2, v in _metrics.deltas(x_clean, x_adv, None if x is None else _repeat(x, k), normalization).items()}))
                if x is not None:
                    x_true = _repeat(x, k)
                    vals.update(_scalar_metrics("clean_", _metrics.metric_table(x_clean, x_true, normalization)))
                    vals.update(_scalar_metrics("adv_", _metrics.metric_table(x_adv, x_true, normalization)))
                vals.update(artifact_stats(x_adv, x_clean))
                vals["deviation"] = (x_adv - x_clean).pow(2).flatten(1).sum(1)
                is_baseline = a_name == "noise" and s_name == BASELINE
                setting = "baseline" if is_baseline else ("white-box" if s_name == t_name else "transfer")
                for i in range(n * k):
                    rec = {
                        "sample_id": ids[i % n],
                        "surrogate": s_name,
                        "target": t_name,
                        "attack": a_name,
                        "setting": setting,
                        "eps": grid[i // n],
                        "ratio": float(ratio[i]),
                        "attack_loss": float(loss[i]),
                        "grad_evals": grad_evals,
                        "attack_seconds": seconds / (n * k),
                        "target_seconds": t_seconds / (n * k),
                    }
                    rec.update({key: float(v[i]) for key, v in vals.items()})
                    batch_records.append(rec)
        report.extend(batch_records)
        if on_records is not None:
            on_records(batch_records)
        bar.update(1)
    bar.close()
    return report
