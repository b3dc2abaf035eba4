"""Figures: metric change vs budget (the study's Fig. 3 / S1) and image panels (Fig. 1 / 4)."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .losses import magnitude

if TYPE_CHECKING:
    from .report import TransferReport

__all__ = ["plot_report", "plot_metric_vs_eps", "plot_panel"]

_LABELS = {
    "delta_ssim": "Delta SSIM (perturbed - clean, vs ground truth)",
    "delta_psnr": "Delta PSNR [dB] (perturbed - clean, vs ground truth)",
    "ssim_vs_clean": "SSIM of perturbed vs clean reconstruction",
    "psnr_vs_clean": "PSNR [dB] of perturbed vs clean reconstruction",
    "hallucination_fraction": "hallucination area fraction",
    "spectral_flatness": "spectral flatness of the residual",
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def plot_metric_vs_eps(report: "TransferReport", metric: str, path: str | os.PathLike) -> Path:
    """One panel per target; a line with 95 % CI error bars per (surrogate, attack)."""
    if not report.records:
        raise ValueError("report: no records to plot (did every batch fail? see failed.csv)")
    plt = _pyplot()
    rows = report.summary(keys=("surrogate", "target", "attack", "eps"), metrics=(metric,))
    rows = [r for r in rows if f"{metric}_mean" in r]
    targets = sorted({r["target"] for r in rows})
    if not targets:
        raise ValueError(f"metric: no records carry {metric!r}; available: {sorted(report.records[0])}")
    fig, axes = plt.subplots(1, len(targets), figsize=(4.2 * len(targets), 3.6), sharey=True, squeeze=False)
    for ax, target in zip(axes[0], targets, strict=True):
        lines: dict[tuple, list] = defaultdict(list)
        for r in rows:
            if r["target"] == target:
                lines[(r["surrogate"], r["attack"])].append(r)
        for (s, a), pts in sorted(lines.items()):
            pts.sort(key=lambda r: r["eps"])
            style = "--" if s == "random" else "-"
            label = "random (equal norm)" if s == "random" else f"{s} / {a}" + (" (white-box)" if s == target else "")
            ax.errorbar([p["eps"] for p in pts], [p[f"{metric}_mean"] for p in pts],
                        yerr=[p.get(f"{metric}_ci95", 0.0) if p.get(f"{metric}_ci95") == p.get(f"{metric}_ci95") else 0.0 for p in pts],
                        fmt=style, marker="o", ms=3, capsize=2, label=label)
        ax.set_title(f"target: {target}")
        ax.set_xlabel("eps (||delta|| / ||y||)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(_LABELS.get(metric, metric))
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_report(report: "TransferReport", directory: str | os.PathLike) -> list[Path]:
    """The study's figures from a report: Delta SSIM and Delta PSNR vs eps (against the ground
    truth when the records have it, else against the clean reconstruction), and the
    hallucination fraction vs eps."""
    d = Path(directory)
    has_gt = bool(report.records) and "delta_ssim" in report.records[0]
    metrics = ["delta_ssim", "delta_psnr"] if has_gt else ["ssim_vs_clean", "psnr_vs_clean"]
    metrics.append("hallucination_fraction")
    return [plot_metric_vs_eps(report, m, d / f"{m}_vs_eps.png") for m in metrics]


def plot_panel(
    x_true: Tensor | None,
    clean: Mapping[str, Tensor],
    perturbed: Mapping[str, Tensor],
    path: str | os.PathLike,
    title: str = "",
    zoom: Sequence[int] | None = None,
) -> Path:
    """Image panel: per model, the clean and perturbed reconstruction (with a zoomed inset) and
    their difference map; the ground truth first if given.

    :param x_true: ``(1, C, H, W)`` ground truth or ``None``.
    :param clean: model name -> ``(1, C, H, W)`` clean reconstruction.
    :param perturbed: model name -> ``(1, C, H, W)`` reconstruction of the perturbed k-space.
    :param zoom: ``(row0, row1, col0, col1)`` of the inset; default: where the change is largest.
    """
    plt = _pyplot()
    names = list(clean)
    cols = len(names) + (x_true is not None)
    fig, axes = plt.subplots(3, cols, figsize=(2.6 * cols, 7.8), squeeze=False)

    def show(ax, img, t, cmap="gray", vmin=0, vmax=1, box=None):
        img = img.detach().cpu().numpy()
        ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax)
        ax.set_title(t, fontsize=8)
        ax.axis("off")
        if box is not None:
            r0, r1, c0, c1 = box
            ax.add_patch(plt.Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0, r1 - r0, fill=False, ec="yellow", lw=0.8))
            inset = ax.inset_axes([0.6, 0.6, 0.4, 0.4])
            inset.imshow(img[r0:r1, c0:c1], cmap=cmap, vmin=vmin, vmax=vmax)
            inset.set_xticks([])
            inset.set_yticks([])
            for spine in inset.spines.values():
                spine.set_edgecolor("yellow")

    mags = {n: (magnitude(clean[n])[0, 0].cpu(), magnitude(perturbed[n])[0, 0].cpu()) for n in names}
    if zoom is None:
        diff = sum((a - b).abs() for a, b in mags.values())
        h, w = diff.shape
        s = max(8, h // 4)
        pooled = torch.nn.functional.avg_pool2d(diff[None, None], s, stride=max(1, s // 2))[0, 0]
        i, j = divmod(int(pooled.argmax()), pooled.shape[1])
        r0, c0 = min(i * max(1, s // 2), h - s), min(j * max(1, s // 2), w - s)
        zoom = (r0, r0 + s, c0, c0 + s)
    col = 0
    if x_true is not None:
        gt = magnitude(x_true)[0, 0].cpu()
        show(axes[0][0], gt, "ground truth", box=zoom)
        axes[1][0].axis("off")
        axes[2][0].axis("off")
        col = 1
    vmax_diff = max(float((a - b).abs().max()) for a, b in mags.values()) or 1.0
    for n in names:
        a, b = mags[n]
        show(axes[0][col], a, f"{n}: clean", box=zoom)
        show(axes[1][col], b, f"{n}: perturbed", box=zoom)
        show(axes[2][col], (b - a), f"{n}: perturbed - clean", cmap="seismic", vmin=-vmax_diff, vmax=vmax_diff)
        col += 1
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path
