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
  undefined: NaN, not a made-up number).

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
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from . import metrics as _metrics
from ._stack import repeat_physics, repeat_rows
from .attacks.gaussian_noise import GaussianNoise
from .hallucination import split_columns, splits
from .threat import ThreatModel

__all__ = ["Grid", "row_generators", "noise_control", "noise_inputs", "row_metrics", "against_reference"]


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
