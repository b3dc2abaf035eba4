"""Figures: metric change vs budget (the study's Fig. 3 / S1) and image panels (Fig. 1 / 4)."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Protocol


from ..figures import plot_panel, pyplot as _pyplot, save_figure
from . import records as R


class _Report(Protocol):
    """What the figures need of a :class:`~kspace_attacks.study.report.TransferReport`."""

    records: list[dict]

    def summary(self, keys: Any = ..., metrics: Any = ...) -> list[dict]: ...

__all__ = ["plot_report", "plot_metric_vs_eps", "plot_panel"]



def _finite(v: float) -> float:
    return v if v == v and abs(v) != float("inf") else 0.0


def plot_metric_vs_eps(report: _Report, metric: str, path: str | os.PathLike) -> Path:
    """One panel per target; a line per (surrogate, attack) with error bars: the 95 % percentile
    bootstrap CI of the mean over slices (seed 0), the interval the verdicts use."""
    if not report.records:
        raise ValueError("report: no records to plot (did every batch fail? see failed.csv)")
    plt = _pyplot()
    rows = report.summary(keys=("surrogate", "target", "attack", "eps"), metrics=(metric,))
    rows = [r for r in rows if f"{metric}_mean" in r]
    targets = sorted({r["target"] for r in rows})
    if not targets:
        raise ValueError(f"metric: no records carry {metric!r}; available: {sorted(report.records[0])}")
    fig, axes = plt.subplots(1, len(targets), figsize=(4.2 * len(targets), 3.6), sharey=True, squeeze=False)
    xlabel, control = _eps_axis(getattr(report, "config", None) or {})
    for ax, target in zip(axes[0], targets, strict=True):
        lines: dict[tuple, list] = defaultdict(list)
        for r in rows:
            if r["target"] == target:
                lines[(r["surrogate"], r["attack"])].append(r)
        for (s, a), pts in sorted(lines.items()):
            pts.sort(key=lambda r: r["eps"])
            style = "--" if s == R.BASELINE_SURROGATE else "-"
            label = control if s == R.BASELINE_SURROGATE else f"{s} / {a}" + (" (white-box)" if s == target else "")
            means = [p[f"{metric}_mean"] for p in pts]
            # the verdicts' interval (bootstrap of the mean), asymmetric; none for a single slice
            lo = [_finite(m - p.get(f"{metric}_ci_low", m)) for m, p in zip(means, pts, strict=True)]
            hi = [_finite(p.get(f"{metric}_ci_high", m) - m) for m, p in zip(means, pts, strict=True)]
            ax.errorbar([p["eps"] for p in pts], means, yerr=[lo, hi],
                        fmt=style, marker="o", ms=3, capsize=2, label=label)
        ax.set_title(f"target: {target}")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(R.LABELS.get(metric, metric))
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)


def _eps_axis(config: Any) -> tuple[str, str]:
    """The eps axis label and the control's legend label for the run's threat model."""
    from ..threat_spec import ThreatSpec

    try:
        spec = ThreatSpec.from_mapping(config.get("threat", {}), "config.threat")
    except (ValueError, AttributeError):  # an older or partial config: the default threat
        return "eps (||delta|| / ||y||)", "random (equal norm)"
    if spec.physical:
        return f"eps ({spec.type}, {spec.build().unit})", "random (same size)"
    return "eps (||delta|| / ||y||)", "random (equal norm)"


def plot_report(report: _Report, directory: str | os.PathLike) -> list[Path]:
    """The study's figures from a report: Delta SSIM and Delta PSNR vs eps (against the ground
    truth when the records have it, else against the clean reconstruction), and the
    hallucination fraction vs eps."""
    d = Path(directory)
    has_gt = bool(report.records) and R.DELTA_SSIM in report.records[0]
    metrics = [R.DELTA_SSIM, R.DELTA_PSNR] if has_gt else [R.SSIM_VS_CLEAN, R.PSNR_VS_CLEAN]
    first = report.records[0] if report.records else {}
    if R.RELATIVE_DEVIATION in first:
        metrics.insert(0, R.RELATIVE_DEVIATION)  # the attack objective first
    # the null-calibrated structure area when the records have it (else the older statistic)
    metrics.append(R.STRUCTURE_FRACTION if R.STRUCTURE_FRACTION in first else R.HALLUCINATION_FRACTION)
    return [plot_metric_vs_eps(report, m, d / f"{m}_vs_eps.png") for m in metrics]
