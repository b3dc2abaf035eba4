"""Image panels of the HTML report, rebuilt from a result folder's saved perturbations.

For one (surrogate, attack), a few budgets and the first slices, every target given as a model
reconstructs the clean and the perturbed k-space read back from ``perturbations/batchNNNN/``.
A panel per (eps, slice) shows, one row per target: the clean reconstruction, the perturbed
one, their difference, and the *structure map*: where the smoothed difference exceeds the
target's own response to equal-norm noise (:func:`kspace_attacks.study.null.structure_map`).

The noise null is fitted exactly as the sweep fitted it (:func:`~.transfer.target_null`: the
same threat model, seed and per-row draws), so for a deterministic target the map's area is
the record's ``structure_fraction``; each panel row states both. Costs, per target:
``2 + null_draws`` reconstructions of (budgets x slices) rows.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..attacks.base import frozen_eval
from ..figures import pyplot
from ..io import atomic_path, atomic_write_json, read_json
from ..losses import magnitude
from . import records as R
from .artifacts import residual
from .null import structure_map
from .report import perturbation_filename
from ..measurement import Grid
from .transfer import target_null

__all__ = ["Panel", "PanelSet", "build_panels", "default_panel_eps", "figure_png", "save_panels",
           "load_panels", "PANELS_DIR"]

#: Sub-folder of a result folder where the panels are stored when the run has its models, so
#: that ``kspace-attacks report`` shows them without building or running any model.
PANELS_DIR = "panels"


@dataclass
class Panel:
    """One (eps, slice) image: PNG bytes, a title and per target the numbers of its record."""

    eps: float
    slice_id: str
    png: bytes
    caption: str
    details: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class PanelSet:
    """Panels of one (surrogate, attack) over budgets and slices, plus what was left out."""

    surrogate: str
    attack: str
    eps: list[float]
    slice_ids: list[str]
    targets: list[str]
    panels: list[Panel] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def figure_png(fig: Any, dpi: int = 90) -> bytes:
    """A matplotlib figure as PNG bytes (the figure is closed)."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi)
    finally:
        pyplot().close(fig)
    return buf.getvalue()


def default_panel_eps(grid: Sequence[float]) -> list[float]:
    """The budgets shown by default: every eps > 0 if at most three, else the smallest, the
    middle and the largest."""
    pos = sorted({float(e) for e in grid if float(e) > 0})
    return pos if len(pos) <= 3 else [pos[0], pos[len(pos) // 2], pos[-1]]


@torch.no_grad()
def _recon(model: Any, y: Tensor, physics: Any) -> Tensor:
    with frozen_eval(model):
        return model(y, physics)


def _read_batches(directory: Path, surrogate: str, attack: str, eps: list[float],
                  max_slices: int) -> list[dict[str, Any]]:
    """Per saved batch: clean and perturbed k-space (eps-major), physics and slice ids."""
    from ..data import read_perturbed_kspace

    out, taken = [], 0
    for folder in sorted(p for p in (directory / "perturbations").glob("batch*") if p.is_dir()):
        files = [folder / perturbation_filename(surrogate, attack, e) for e in eps]
        if taken >= max_slices or not all(f.is_file() for f in files):
            continue
        saved = [read_perturbed_kspace(f) for f in files]
        n = min(saved[0].y_clean.shape[0], max_slices - taken)
        ids = [str(i) for i in saved[0].attack_settings.get("sample_ids", range(n))][:n]
        out.append({"y": saved[0].y_clean[:n], "y_adv": torch.cat([s.y_adv[:n] for s in saved]),
                    "physics": _first_rows(saved[0].physics(), n), "ids": ids})
        taken += n
    return out


def _first_rows(physics: Any, n: int) -> Any:
    """The physics of the first ``n`` slices (per-slice masks / coil maps cut to ``n``)."""
    updates = {}
    for name in ("mask", "coil_maps"):
        t = getattr(physics, name, None)
        if isinstance(t, Tensor) and t.dim() >= 3 and t.shape[0] > n:
            updates[name] = t[:n]
    if updates:
        physics.update_parameters(**updates)
    return physics


def _maps(model: Any, batch: Mapping[str, Any], eps: list[float], template: Any, draws: int,
          device: str) -> dict[str, Tensor]:
    """Magnitudes of clean / perturbed reconstructions and the structure map, eps-major rows."""
    st = Grid.of(None, batch["y"].to(device), batch["physics"].to(device), eps, batch["ids"])
    x_clean = _recon(model, st.y, st.physics)
    x_adv = _recon(model, batch["y_adv"].to(device), st.physics)
    r = residual(x_adv, x_clean)
    out = {"clean": magnitude(x_clean)[:, 0].cpu(), "adv": magnitude(x_adv)[:, 0].cpu()}
    if draws >= 2:
        null = target_null(model, x_clean, template, st, draws)
        out["structure"] = structure_map(r, null)[:, 0].cpu()
    return out


def _record_text(rec: Mapping[str, Any] | None, area: float | None) -> str:
    if rec is None:
        return "no record"
    parts = []
    for key, label, fmt in ((R.DELTA_SSIM, "ΔSSIM", "{:+.3f}"), (R.DELTA_PSNR, "ΔPSNR", "{:+.2f} dB"),
                            (R.RELATIVE_DEVIATION, "dev", "{:.3f}")):
        if rec.get(key) is not None:
            parts.append(f"{label} {fmt.format(float(rec[key]))}")
    if area is not None:
        stored = rec.get(R.STRUCTURE_FRACTION)
        parts.append(f"structure {area:.1%}" + (f" (record {float(stored):.1%})" if stored is not None else ""))
    return ", ".join(parts)


def _figure(rows: list[tuple[str, dict[str, Tensor], int, str]], title: str) -> bytes:
    plt = pyplot()
    ncols = 4 if all("structure" in m for _, m, _, _ in rows) else 3
    fig, axes = plt.subplots(len(rows), ncols, figsize=(2.3 * ncols, 2.4 * len(rows) + 0.3), squeeze=False)
    for ax_row, (target, maps, i, _) in zip(axes, rows, strict=True):
        clean, adv = maps["clean"][i], maps["adv"][i]
        vmax = float(clean.max()) or 1.0
        diff = adv - clean
        dmax = float(diff.abs().max()) or 1.0
        images = [(clean, "gray", 0, vmax, f"{target}: clean"), (adv, "gray", 0, vmax, "perturbed"),
                  (diff, "seismic", -dmax, dmax, f"difference (±{dmax:.3g})")]
        for ax, (img, cmap, lo, hi, label) in zip(ax_row, images, strict=False):
            ax.imshow(img.numpy(), cmap=cmap, vmin=lo, vmax=hi)
            ax.set_title(label, fontsize=8)
        if ncols == 4:
            ax_row[3].imshow(clean.numpy(), cmap="gray", vmin=0, vmax=vmax)
            overlay = torch.zeros(*clean.shape, 4)
            overlay[..., 0], overlay[..., 3] = 1.0, maps["structure"][i].float() * 0.8
            ax_row[3].imshow(overlay.numpy())
            ax_row[3].set_title("structure beyond noise", fontsize=8)
        for ax in ax_row:
            ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return figure_png(fig)


def build_panels(directory: str | Path, config: Mapping[str, Any], records: Sequence[Mapping[str, Any]],
                 models: Mapping[str, Any], *, surrogate: str | None = None, attack: str | None = None,
                 eps: Sequence[float] | None = None, null_draws: int = 8,
                 max_slices: int = 8) -> PanelSet | None:
    """Panels of ``surrogate``'s ``attack`` perturbations (default: the configuration's first
    of each) at budgets ``eps`` (default: :func:`default_panel_eps`) for the first
    ``max_slices`` slices, on every configured target found in ``models``. ``None`` when no
    target model or no saved perturbation is available."""
    from ..threat_spec import ThreatSpec
    from .specs import AttackSpec

    if not all(config.get(k) for k in ("surrogates", "targets", "attacks", "eps")):
        return None  # no configuration saved with the results (summary.json)
    directory = Path(directory)
    surrogate = surrogate or config["surrogates"][0]
    attack = attack or next(iter(config["attacks"]))
    grid = default_panel_eps(config["eps"]) if eps is None else [float(e) for e in eps]
    targets = [t for t in config["targets"] if t in models]
    batches = _read_batches(directory, surrogate, attack, grid, max_slices)
    if not targets or not grid or not batches:
        return None
    # the sweep's noise / null template (configurations of old runs may lack seed or threat)
    first = next(iter(config["attacks"]))
    threat = ThreatSpec.from_mapping(config.get("threat") or {}, "config.threat").build()
    template = AttackSpec.from_mapping(config["attacks"][first], f"config.attacks.{first}").build(
        threat, int(config.get("seed", 0)))
    out = PanelSet(surrogate, attack, grid, [i for b in batches for i in b["ids"]], targets)
    missing = sorted(set(config["targets"]) - set(models))
    if missing:
        out.notes.append(f"targets without a model (no panel rows): {', '.join(missing)}")
    index = {(str(r.get(R.SAMPLE_ID)), r.get(R.SURROGATE), r.get(R.ATTACK), r.get(R.TARGET),
              float(r.get(R.EPS, -1))): r for r in records}
    device = str(config.get("device", "cpu"))
    for batch in batches:
        maps = {t: _maps(models[t], batch, grid, template, null_draws, device) for t in targets}
        n = len(batch["ids"])
        for i, e in enumerate(grid):
            for j, sid in enumerate(batch["ids"]):
                row = i * n + j
                rows = []
                for t in targets:
                    area = float(maps[t]["structure"][row].float().mean()) if "structure" in maps[t] else None
                    rows.append((t, maps[t], row, _record_text(index.get((sid, surrogate, attack, t, e)), area)))
                title = f"{surrogate} / {attack} perturbation, eps = {e:g}, slice {sid}"
                out.panels.append(Panel(e, sid, _figure(rows, title), title, [(r[0], r[3]) for r in rows]))
    return out


def save_panels(panels: PanelSet, directory: str | Path) -> Path:
    """Store ``panels`` under ``directory/panels/`` (one PNG per panel and ``index.json``),
    each file written atomically; returns the index path."""
    folder = Path(directory) / PANELS_DIR
    entries = []
    for k, p in enumerate(panels.panels):
        name = f"panel_{k:03d}.png"
        with atomic_path(folder / name) as tmp:
            tmp.write_bytes(p.png)
        entries.append({"eps": p.eps, "slice_id": p.slice_id, "file": name, "caption": p.caption,
                        "details": [list(d) for d in p.details]})
    index = {"surrogate": panels.surrogate, "attack": panels.attack, "eps": panels.eps,
             "slice_ids": panels.slice_ids, "targets": panels.targets, "notes": panels.notes,
             "panels": entries}
    return atomic_write_json(folder / "index.json", index)


def load_panels(directory: str | Path) -> PanelSet | None:
    """The panels :func:`save_panels` stored in ``directory`` (``None`` if there are none)."""
    folder = Path(directory) / PANELS_DIR
    if not (folder / "index.json").is_file():
        return None
    index = read_json(folder / "index.json")
    out = PanelSet(index["surrogate"], index["attack"], [float(e) for e in index["eps"]],
                   list(index["slice_ids"]), list(index["targets"]), notes=list(index["notes"]))
    for e in index["panels"]:
        png = (folder / e["file"]).read_bytes()
        out.panels.append(Panel(float(e["eps"]), e["slice_id"], png, e["caption"],
                                [tuple(d) for d in e["details"]]))
    return out
