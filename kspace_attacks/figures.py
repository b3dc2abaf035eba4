"""Figures shared by the study and the testing layer: an image panel of clean vs perturbed
reconstructions, and atomic PNG writes. matplotlib is imported on first use, headless."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .io import atomic_path
from .losses import magnitude

__all__ = ["pyplot", "save_figure", "plot_panel"]


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the file-only Agg backend (never needs a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 130) -> Path:
    """Save ``fig`` as PNG at ``path`` atomically and close it."""
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        pyplot().close(fig)
    return Path(path)


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
    plt = pyplot()
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
    return save_figure(fig, path, dpi=130)
