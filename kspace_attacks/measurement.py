"""One measurement for every caller: a batch on an eps grid, the equal-norm noise control, and the
per-row metrics with one sign convention.

The study's records (:mod:`kspace_attacks.study`), the robustness cards and the test helpers
(:mod:`kspace_attacks.testing`: ``measure_robustness``, ``assert_robust``, the pytest plugin)
all measure the same way through this module:

- :class:`Grid`: ``n`` samples stacked once per budget, so that one batched attack searches the
  whole grid (row ``i * n + j`` is sample ``j`` at ``grid[i]``);
- :func:`noise_control`: equal-norm Gaussian noise that delivers the attack's energy to the
  entries the model sees (with ``support="full"`` it is drawn on the measured entries, see
  :meth:`~kspace_attacks.GaussianNoise.draw_threat`), from the generators the caller passes;
- :func:`row_generators`: one generator per row, a function of (seed, sample id, eps, draw)
  only, so a row's noise does not depend on the batch it is in;
- :func:`row_metrics`: every per-row number, named as the records' columns
  (:mod:`kspace_attacks.study.records`), with ``delta_<metric> = <metric>(adv) - <metric>(clean)``
  (a degradation is a negative Delta SSIM / PSNR), on the reference's scale by default (the
  min-max numbers of the original study alongside, as ``*_minmax``), the foreground SSIM
  (``*_ssim_fg``) and, given the physics, the measured / null-space split of the change
  (:mod:`kspace_attacks.hallucination`);
- :func:`against_reference`: the same numbers against the reference a caller has: the ground
  truth, or, without one, the clean reconstruction (then SSIM(clean) = 1 and PSNR(clean) is
  undefined: NaN, not a made-up number);
- :func:`attack_grid` and :func:`control_grid`: the perturbed inputs of a grid, from one
  batched attack (the rows' sample ids as its ``groups``) or from the control (seeded per row);
- :func:`measure`: all of it for one model: the clean reconstruction, each attack and the
  control reconstructed and scored, as a :class:`Measurement` (one row per condition x grid
  row). Cards and the test helpers are views of it; the study crafts once per surrogate with
  :func:`attack_grid` / :func:`control_grid` and scores every target with :func:`row_metrics`.

Harm has one sign everywhere: ``delta_<metric> = <metric>(perturbed) - <metric>(clean)``, so a
degradation is a negative Delta SSIM / PSNR, and "the worst" row is the one with the smallest.

Example:

    >>> import torch, deepinv as dinv
    >>> from kspace_attacks import KSpaceL2
    >>> from kspace_attacks.measurement import Grid, noise_control, row_generators, row_metrics
    >>> mask = torch.zeros(16, 16); mask[:, ::2] = 1
    >>> physics = dinv.physics.MRI(mask=mask, img_size=(16, 16))
    >>> x = torch.rand(2, 2, 16, 16, generator=torch.Generator().manual_seed(0))
    >>> g = Grid.of(x, physics(x), physics, [0.01, 0.05])
    >>> g.rows, g.eps.tolist()
    (4, [0.01, 0.01, 0.05, 0.05])
    >>> y_noise, ratio = noise_control(KSpaceL2().with_eps(g.eps), g.y, g.physics,
    ...                                row_generators(0, g, draw=0))
    >>> [round(r, 6) for r in ratio.tolist()]
    [0.01, 0.01, 0.05, 0.05]
    >>> zf = physics.A_adjoint
    >>> m = row_metrics(zf(y_noise), zf(g.y), g.x, physics=g.physics)
    >>> bool((m["relative_deviation"] > 0).all()), [k for k in m if k.startswith("delta_ssim")]
    (True, ['delta_ssim', 'delta_ssim_minmax', 'delta_ssim_fg'])
    >>> bool(m["delta_null_fraction"].abs().max() < 1e-6)  # zero-filled: all of the change is data
    True

    One model measured on the grid: an attack and the equal-norm control, row by row:

    >>> from kspace_attacks import APGD
    >>> from kspace_attacks.measurement import measure
    >>> zero_filled = lambda y, physics: physics.A_adjoint(y)
    >>> run = measure(zero_filled, g, {"apgd": APGD(KSpaceL2().with_eps(g.eps), steps=3)})
    >>> list(run.values), len(run.rows())
    (['apgd', 'noise'], 8)
    >>> [round(v, 4) for v in run.values["apgd"]["relative_deviation"].tolist()]  # zero-filling is an isometry
    [0.01, 0.01, 0.05, 0.05]
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from . import metrics as _metrics
from ._stack import repeat_physics, repeat_rows
from ._checks import check_image, describe
from .attacks.base import Attack, frozen_eval
from .attacks.gaussian_noise import GaussianNoise
from .hallucination import split_columns, splits
from .result import AttackResult
from .threat import ThreatModel

__all__ = ["Grid", "row_generators", "noise_control", "noise_inputs", "row_metrics", "against_reference",
           "CONTROL", "Perturbed", "attack_grid", "control_grid", "reconstruct", "Measurement", "measure"]

#: the label of the equal-norm noise control in a :class:`Measurement`
CONTROL = "noise"


@dataclass
class Grid:
    """A batch stacked once per budget: row ``i * n + j`` is sample ``j`` at ``grid[i]``.

    :param x: ground truth of the stacked rows, or ``None``.
    :param y: stacked k-space, ``(len(grid) * n, ...)``.
    :param physics: the physics of the stacked rows (per-sample masks / coil maps repeated).
    :param eps: budget of each row, ``(rows,)`` float64.
    :param grid: the budgets.
    :param ids: the ``n`` samples' ids.
    :param n: samples per budget.
    """

    x: Tensor | None
    y: Tensor
    physics: Any
    eps: Tensor
    grid: list[float]
    ids: list
    n: int

    @classmethod
    def of(cls, x: Tensor | None, y: Tensor, physics: Any, grid: Sequence[float],
           ids: Sequence[Any] | None = None) -> "Grid":
        """Stack ``(x, y, physics)`` of ``n`` samples once per budget of ``grid``."""
        n, k = y.shape[0], len(grid)
        ids = list(range(n)) if ids is None else list(ids)
        if len(ids) != n:
            raise ValueError(f"ids: expected one id per sample ({n}), got {len(ids)}")
        if k == 0:
            raise ValueError("grid: expected at least one budget, got an empty grid")
        eps = torch.tensor([float(e) for e in grid], dtype=torch.float64).repeat_interleave(n)
        x_rep = None if x is None else repeat_rows(x, k)
        return cls(x_rep, repeat_rows(y, k), repeat_physics(physics, k, n), eps, [float(e) for e in grid], ids, n)

    @property
    def rows(self) -> int:
        """Stacked rows: budgets x samples."""
        return int(self.y.shape[0])

    @property
    def groups(self) -> list:
        """The sample id of every row (what attacks take as ``groups=``)."""
        return [self.row_id(i) for i in range(self.rows)]

    def row_id(self, i: int) -> Any:
        """The sample id of row ``i``."""
        return self.ids[i % self.n]

    def row_eps(self, i: int) -> float:
        """The budget of row ``i``."""
        return self.grid[i // self.n]

    def per_eps(self, t: Tensor) -> Tensor:
        """A per-row ``(rows,)`` tensor as ``(len(grid), n)``: budgets x samples."""
        return t.reshape(len(self.grid), self.n)


def row_generators(seed: int, grid: Grid, draw: int) -> list[torch.Generator]:
    """One generator per row of ``grid``, seeded by (seed, sample id, eps, draw): a row's noise
    does not depend on the batch it is in (batch size, eps grid, rank layout)."""
    gens = []
    for i in range(grid.rows):
        key = f"{seed}|{grid.row_id(i)!r}|{grid.row_eps(i)!r}|{draw}".encode()
        gens.append(torch.Generator().manual_seed(zlib.crc32(key)))
    return gens


def noise_control(threat: ThreatModel, y: Tensor, physics: Any,
                  generator: torch.Generator | Sequence[torch.Generator]) -> tuple[Tensor, Tensor]:
    """Equal-norm noise in ``threat``: the noisy k-space and ``||delta|| / ||y||`` per row.

    Drawn on the sphere of the budget on the entries the model sees
    (:meth:`~kspace_attacks.GaussianNoise.draw_threat`), so noise and attack deliver the same
    ``||M delta||`` under every support and per-coil setting. ``generator``: one for the batch,
    or one per row (:func:`row_generators`).
    """
    y_noise, _, ratio = noise_inputs(threat, y, physics, generator)
    return y_noise, ratio


def noise_inputs(threat: ThreatModel, y: Tensor, physics: Any,
                 generator: torch.Generator | Sequence[torch.Generator]) -> tuple[Tensor, Any, Tensor]:
    """:func:`noise_control` with the physics the model is handed: ``(y_noise, physics_noise,
    ratio)``; the physics differs only for threats that change it (coil-map mismatch)."""
    t = GaussianNoise(threat).draw_threat
    delta = t.sphere(y, physics, generator)
    y_noise, physics_noise = t.corrupt(y, delta, physics)
    return y_noise, physics_noise, t.ratio(delta, y)


def row_metrics(x_adv: Tensor, x_clean: Tensor, x_true: Tensor | None = None,
                normalization: str = "reference", physics: Any = None) -> dict[str, Tensor]:
    """Every per-row number of a perturbed reconstruction, ``(B,)`` tensors named as the
    records' columns (:mod:`kspace_attacks.study.records`).

    Always: ``ssim_vs_clean``, ``psnr_vs_clean``, ``nmse_vs_clean`` (perturbed vs clean
    reconstruction), ``relative_deviation`` = ``||x_adv - x_clean|| / ||x_clean||`` and
    ``squared_deviation`` = ``||x_adv - x_clean||^2``. With ``x_true``: ``delta_<m>``,
    ``clean_<m>`` and ``adv_<m>`` for SSIM, PSNR and NMSE. Without it these are absent.

    ``normalization`` (default ``"reference"``: the reference's scale, the ground truth's or,
    vs clean, the clean reconstruction's) scores those; the same numbers with per-image min-max
    normalisation (the original study's, which an attack can game) follow as ``<column>_minmax``.
    The SSIM over the reference's foreground (:func:`~kspace_attacks.metrics.foreground_mask`):
    ``ssim_vs_clean_fg``, and with ``x_true`` ``clean_ssim_fg``, ``adv_ssim_fg``,
    ``delta_ssim_fg``. With ``physics`` (deepinv ``MRI`` or ``MultiCoilMRI``; other physics are
    skipped), the measured / null-space split of the change (and of the error with ``x_true``):
    :func:`~kspace_attacks.hallucination.split_columns`.
    """
    norm = _metrics.canonical_normalization(normalization)
    vs, vs_mm = _tables(x_adv, x_clean, norm)
    vals = {f"{k}_vs_clean": v for k, v in vs.items()}
    if x_true is not None:
        adv, adv_mm = _tables(x_adv, x_true, norm)
        clean, clean_mm = _tables(x_clean, x_true, norm)
        vals.update({f"delta_{k}": adv[k] - clean[k] for k in adv})
        vals.update({f"clean_{k}": v for k, v in clean.items()})
        vals.update({f"adv_{k}": v for k, v in adv.items()})
    vals["squared_deviation"] = _metrics.squared_deviation(x_adv, x_clean)
    vals["relative_deviation"] = _metrics.relative_deviation(x_adv, x_clean)
    vals.update({f"{k}_vs_clean_minmax": v for k, v in vs_mm.items()})
    vals["ssim_vs_clean_fg"] = _metrics.ssim(x_adv, x_clean, norm, mask=_metrics.foreground_mask(x_clean))
    if x_true is not None:
        vals.update({f"delta_{k}_minmax": adv_mm[k] - clean_mm[k] for k in adv_mm})
        vals.update({f"clean_{k}_minmax": v for k, v in clean_mm.items()})
        vals.update({f"adv_{k}_minmax": v for k, v in adv_mm.items()})
        fg = _metrics.foreground_mask(x_true)
        vals["clean_ssim_fg"] = _metrics.ssim(x_clean, x_true, norm, mask=fg)
        vals["adv_ssim_fg"] = _metrics.ssim(x_adv, x_true, norm, mask=fg)
        vals["delta_ssim_fg"] = vals["adv_ssim_fg"] - vals["clean_ssim_fg"]
    if physics is not None and splits(physics):
        vals.update(split_columns(x_adv, x_clean, physics, x_true))
    return vals


def _tables(x_hat: Tensor, x_ref: Tensor, normalization: str) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """The metric table in ``normalization`` and in min-max (one computation when they agree)."""
    main = _metrics.metric_table(x_hat, x_ref, normalization)
    return main, main if normalization == "minmax" else _metrics.metric_table(x_hat, x_ref, "minmax")


def against_reference(values: dict[str, Tensor]) -> dict[str, Tensor]:
    """SSIM and PSNR of the clean and perturbed reconstructions against the reference, and
    their change (``delta_ssim``, ``delta_psnr``: adv - clean).

    The reference is the ground truth when :func:`row_metrics` had one; otherwise the clean
    reconstruction, against which the clean SSIM is 1 and the clean PSNR is undefined (NaN,
    so ``delta_psnr`` is NaN too).
    """
    if "clean_ssim" in values:
        out = {f"{m}_{w}": values[f"{w}_{m}"] for m in ("ssim", "psnr") for w in ("clean", "adv")}
    else:
        s = values["ssim_vs_clean"]
        out = {"ssim_clean": torch.ones_like(s), "ssim_adv": s,
               "psnr_clean": torch.full_like(s, float("nan")), "psnr_adv": values["psnr_vs_clean"]}
    out["delta_ssim"] = out["ssim_adv"] - out["ssim_clean"]
    out["delta_psnr"] = out["psnr_adv"] - out["psnr_clean"]
    return out


# ------------------------------------------------------------------------------ the measurement
@dataclass
class Perturbed:
    """The perturbed inputs of every row of a grid, from one attack or from the control.

    :param label: the condition's name (an attack's, or :data:`CONTROL`).
    :param y: perturbed k-space, ``(rows, ...)``.
    :param physics: the physics the model is handed (differs from the grid's only for threats
        that change it, such as a coil-map mismatch).
    :param ratio: ``||delta|| / ||y||`` (or a physical threat's size) per row.
    :param description: ``repr`` of the attack or of the noise.
    :param seconds: wall time of the crafting.
    :param result: the attack's :class:`~kspace_attacks.AttackResult` (``None`` for the control).
    """

    label: str
    y: Tensor
    physics: Any
    ratio: Tensor
    description: str
    seconds: float
    result: AttackResult | None = None


def attack_grid(attack: Attack, model: Any, grid: Grid, label: str | None = None,
                x_clean: Tensor | None = None) -> Perturbed:
    """One batched ``attack`` on ``model`` over every row of ``grid``, the rows' sample ids as its
    ``groups`` (so two rows are one sample only when their ids are equal). ``attack`` carries
    the budgets (one per row, or one for all); ``x_clean``: ``model``'s clean reconstruction of
    ``grid.y`` if already computed."""
    if not isinstance(attack, Attack):
        raise TypeError(f"attack: expected a kspace_attacks.Attack, got {describe(attack)}")
    _check_target(model, grid)
    start = time.perf_counter()
    res = attack(model, grid.y, grid.physics, x_clean=x_clean, groups=grid.groups)
    y, physics = res.model_inputs(grid.physics)
    return Perturbed(label or attack.name or type(attack).__name__.lower(), y, physics, res.ratio, res.attack,
                     time.perf_counter() - start, res)


def control_grid(threat: ThreatModel, grid: Grid, seed: int = 0, draw: int = 0,
                 label: str = CONTROL) -> Perturbed:
    """Equal-norm noise in ``threat`` at the grid's budgets (:func:`noise_inputs`), each row
    seeded by (``seed``, sample id, eps, ``draw``) (:func:`row_generators`)."""
    if not isinstance(threat, ThreatModel):
        raise TypeError(f"threat: expected a kspace_attacks.ThreatModel, got {describe(threat)}")
    _check_target(None, grid)
    start = time.perf_counter()
    threat = threat.with_eps(grid.eps)
    y, physics, ratio = noise_inputs(threat, grid.y, grid.physics, row_generators(seed, grid, draw))
    return Perturbed(label, y, physics, ratio, repr(GaussianNoise(threat, seed=seed, monotone=False)),
                     time.perf_counter() - start)


def _check_target(model: Any, grid: Any) -> None:
    if model is not None and not callable(model):
        raise TypeError(f"model: expected a callable model(y, physics), got {describe(model)}")
    if not isinstance(grid, Grid):
        raise TypeError(f"grid: expected a kspace_attacks.measurement.Grid (Grid.of(x, y, physics, eps_grid)), "
                        f"got {describe(grid)}")


def reconstruct(model: Any, y: Tensor, physics: Any, what: str) -> Tensor:
    """``model(y, physics)`` without gradients, in eval mode; its shape and finiteness are checked
    (``what`` names the input in the error)."""
    with torch.no_grad(), frozen_eval(model):
        return check_image(f"model(y, physics) on {what}", model(y, physics))


@dataclass
class Measurement:
    """What :func:`measure` found: per condition (each attack, then the control) the perturbed
    inputs, the model's reconstructions and the per-row numbers of :func:`row_metrics`, plus
    ``ratio``, ``restart_spread`` and ``unreliable`` where the attack reports them."""

    grid: Grid
    x_clean: Tensor
    perturbed: dict[str, Perturbed] = field(default_factory=dict)
    x_adv: dict[str, Tensor] = field(default_factory=dict)
    values: dict[str, dict[str, Tensor]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # crafting + reconstruction + scoring

    @property
    def reference(self) -> str:
        """What the deltas are measured against."""
        return "ground truth" if self.grid.x is not None else "clean reconstruction"

    def rows(self) -> list[dict[str, Any]]:
        """The row table: one dict per (condition, grid row), condition-major."""
        out = []
        for label, vals in self.values.items():
            for i in range(self.grid.rows):
                row = {"condition": label, "sample_id": self.grid.row_id(i), "eps": self.grid.row_eps(i)}
                row.update({k: float(v[i]) for k, v in vals.items()})
                out.append(row)
        return out


def measure(model: Any, grid: Grid, attacks: Mapping[str, Attack], control: ThreatModel | None = None,
            seed: int = 0, surrogate: Any = None, normalization: str = "reference",
            with_control: bool = True) -> Measurement:
    """Measure ``model`` on every row of ``grid``: each attack, then equal-norm noise.

    :param model: the reconstructor ``model(y, physics)`` measured.
    :param grid: the stacked rows (:class:`Grid`).
    :param attacks: label -> attack, each sized for the grid (per-row budgets ``grid.eps``).
    :param control: the threat model of the noise control (default: the first attack's).
    :param int seed: the control's seed (per row: :func:`control_grid`).
    :param surrogate: craft the attacks on this model instead (transfer); ``None``: white-box.
    :param str normalization: the metrics' scale (:func:`row_metrics`).
    :param bool with_control: measure the control too.
    """
    _check_target(model, grid)
    if not isinstance(attacks, Mapping) or not all(isinstance(a, Attack) for a in attacks.values()):
        raise TypeError(f"attacks: expected a dict label -> kspace_attacks.Attack, got {describe(attacks)}")
    if not attacks and (not with_control or control is None):
        raise ValueError("attacks: expected at least one attack, or a control threat model, got neither")
    if with_control and CONTROL in attacks:
        raise ValueError(f"attacks: the label {CONTROL!r} is the noise control's; name the attack otherwise")
    x_clean = reconstruct(model, grid.y, grid.physics, "the clean k-space")
    run = Measurement(grid, x_clean)
    crafter = model if surrogate is None else surrogate
    for label, attack in attacks.items():
        _score(run, model, attack_grid(attack, crafter, grid, label, x_clean if surrogate is None else None),
               normalization)
    if with_control:
        threat = control if control is not None else next(iter(attacks.values())).threat
        _score(run, model, control_grid(threat, grid, seed), normalization)
    return run


def _score(run: Measurement, model: Any, p: Perturbed, normalization: str) -> None:
    """Reconstruct ``p`` with ``model`` and add its per-row numbers to ``run``."""
    start = time.perf_counter()
    x_adv = reconstruct(model, p.y, p.physics, f"the {p.label} perturbations")
    vals = row_metrics(x_adv, run.x_clean, run.grid.x, normalization)
    vals["ratio"] = p.ratio.detach()
    res = p.result
    if res is not None and res.restart_spread is not None:
        vals["restart_spread"] = res.restart_spread.detach()
    if res is not None and res.unreliable is not None:
        vals["unreliable"] = res.unreliable.detach().to(torch.float64)
    run.perturbed[p.label], run.x_adv[p.label] = p, x_adv
    run.values[p.label] = vals
    run.seconds[p.label] = p.seconds + time.perf_counter() - start
