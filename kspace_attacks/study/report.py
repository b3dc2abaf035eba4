"""Results of transfer sweeps: per-sample records, summaries, durable saving and loading."""

from __future__ import annotations

import csv
import io
import math
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..io import atomic_write_json, atomic_write_text, read_json
from ..stats import bootstrap_ci
from .records import GROUP_KEYS, SUMMARY_METRICS, upgrade

__all__ = ["TransferReport", "atomic_write_text", "summarize", "GROUP_KEYS", "records_to_csv",
           "records_from_csv", "perturbation_filename"]

# Two-sided 97.5 % Student-t quantiles for small samples (df = n - 1); 1.96 beyond.
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
         9: 2.262, 10: 2.228, 15: 2.131, 20: 2.086, 30: 2.042, 60: 2.000}


def _t975(df: int) -> float:
    if df <= 0:
        return float("nan")
    keys = sorted(k for k in _T975 if k <= df)
    return _T975[keys[-1]] if df <= 60 else 1.96


def perturbation_filename(surrogate: str, attack: str, eps: float) -> str:
    """File name of saved perturbations: ``<surrogate>-<attack>-eps<e>.h5`` (``e`` with up to 10
    significant digits, so distinct budgets never share a file)."""
    return f"{surrogate}-{attack}-eps{float(eps):.10g}.h5"


def summarize(
    records: Iterable[dict], keys: Sequence[str] = GROUP_KEYS, metrics: Sequence[str] = SUMMARY_METRICS
) -> list[dict]:
    """Mean, standard deviation and 95 % confidence intervals per group.

    :returns: one dict per group with the group keys, ``n`` and for every metric
        ``<metric>_mean``, ``<metric>_std``, ``<metric>_ci95`` (Student t half-width) and
        ``<metric>_ci_low`` / ``<metric>_ci_high`` (percentile bootstrap of the mean, seed 0: the
        interval the verdicts use, and the figures' error bars).
    """
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        groups[tuple(r.get(k) for k in keys)].append(r)
    rows = []
    for key, items in sorted(groups.items(), key=lambda kv: tuple(str(v) for v in kv[0])):
        row: dict[str, Any] = dict(zip(keys, key, strict=True))
        row["n"] = len(items)
        for m in metrics:
            vals = [float(r[m]) for r in items if m in r and r[m] is not None and not math.isnan(float(r[m]))]
            if not vals:
                continue
            mean = sum(vals) / len(vals)
            std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
            row[f"{m}_mean"] = mean
            row[f"{m}_std"] = std
            row[f"{m}_ci95"] = _t975(len(vals) - 1) * std / math.sqrt(len(vals)) if len(vals) > 1 else float("nan")
            # the verdicts' interval: percentile bootstrap of the mean, seed 0 (figures use it)
            row[f"{m}_ci_low"], row[f"{m}_ci_high"] = bootstrap_ci(vals, seed=0) if len(vals) > 1 \
                else (float("nan"), float("nan"))
        rows.append(row)
    return rows


def _parse(value: str) -> Any:
    if value == "":
        return None
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def records_to_csv(records: Sequence[dict]) -> str:
    """CSV text with the union of the records' keys as columns (first-seen order)."""
    columns: list[str] = []
    for r in records:
        columns.extend(k for k in r if k not in columns)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return buf.getvalue()


def records_from_csv(path: str | os.PathLike) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return upgrade({k: _parse(v) for k, v in row.items()} for row in csv.DictReader(f))


class TransferReport:
    """Per-sample records of a transfer sweep with summaries, saving, loading and plots.

    Each record is a flat dict: ``sample_id``, ``surrogate``, ``target``, ``attack``,
    ``setting`` (``white-box`` / ``transfer`` / ``baseline``), ``eps``, ``ratio``
    (``||delta|| / ||y||``), ``attack_loss``, ``grad_evals``, timing, the perturbed
    reconstruction compared with the clean one (``ssim_vs_clean``, ``psnr_vs_clean``,
    ``nmse_vs_clean``), with ground truth ``clean_*``, ``adv_*`` and ``delta_*`` (adv minus
    clean), and artifact statistics (see :mod:`kspace_attacks.study.artifacts`).
    """

    def __init__(self, records: Iterable[dict] | None = None, normalization: str = "minmax",
                 config: dict | None = None, provenance: dict | None = None) -> None:
        self.records: list[dict] = list(records or [])
        self.normalization = normalization
        self.config = dict(config or {})
        #: versions, platform, threads, deterministic mode, device and world size of the run
        #: that computed the records (:func:`kspace_attacks._runtime.runtime_provenance`)
        self.provenance: dict | None = dict(provenance) if provenance is not None else None
        self._perturbations: list[dict] = []

    # ------------------------------------------------------------------ building
    def extend(self, records: Iterable[dict]) -> None:
        self.records.extend(records)

    def add_perturbation(self, surrogate: str, attack: str, ids: list, grid: list[float],
                         y_clean: Tensor, y_adv: Tensor, physics: Any, attack_repr: str) -> None:
        """Keep a batch of clean/perturbed k-space (``len(grid)`` copies of ``ids``) for saving."""
        self._perturbations.append(dict(surrogate=surrogate, attack=attack, ids=list(ids), grid=list(grid),
                                        y_clean=y_clean.detach().cpu(), y_adv=y_adv.detach().cpu(),
                                        mask=getattr(physics, "mask", None), attack_repr=attack_repr,
                                        coil_maps=_detached(getattr(physics, "coil_maps", None))))

    def perturbed_kspace(self, surrogate: str, attack: str, eps: float, sample_id: Any) -> Tensor:
        """The kept perturbed k-space ``(1, ...)`` of one sample (needs ``keep_perturbations``)."""
        for p in self._perturbations:
            if p["surrogate"] == surrogate and p["attack"] == attack and sample_id in p["ids"]:
                for i, e in enumerate(p["grid"]):
                    if abs(e - eps) < 1e-12:
                        j = i * len(p["ids"]) + p["ids"].index(sample_id)
                        return p["y_adv"][j : j + 1]
        raise KeyError(f"no kept perturbation for surrogate={surrogate!r}, attack={attack!r}, eps={eps}, "
                       f"sample_id={sample_id!r}")

    # ------------------------------------------------------------------ queries
    def filter(self, **conditions: Any) -> list[dict]:
        """Records whose fields equal the given values, e.g. ``filter(target="diffusion")``."""
        return [r for r in self.records if all(r.get(k) == v for k, v in conditions.items())]

    def summary(self, keys: Sequence[str] = GROUP_KEYS, metrics: Sequence[str] = SUMMARY_METRICS) -> list[dict]:
        """See :func:`summarize`."""
        return summarize(self.records, keys, metrics)

    def table(self, metric: str = "ssim_vs_clean", attack: str | None = None) -> str:
        """Text table: one row per (surrogate -> target, attack), one column per eps (means)."""
        rows = self.summary(keys=("surrogate", "target", "attack", "eps"), metrics=(metric,))
        if attack is not None:
            rows = [r for r in rows if r["attack"] == attack]
        grid = sorted({r["eps"] for r in rows})
        lines: dict[tuple, dict] = defaultdict(dict)
        for r in rows:
            lines[(r["surrogate"], r["target"], r["attack"])][r["eps"]] = r.get(f"{metric}_mean")
        w1 = max([28, *(len(f"{s} -> {t}") + 2 for s, t, _ in lines)])
        w2 = max([10, *(len(a) + 2 for _, _, a in lines)])
        head = f"{'surrogate -> target':<{w1}}{'attack':<{w2}}" + "".join(f"{e:>8.2f}" for e in grid)
        out = [f"{metric} (mean per eps)", head, "-" * len(head)]
        for (s, t, a), vals in sorted(lines.items()):
            cells = "".join(f"{vals[e]:>8.4f}" if vals.get(e) is not None else f"{'':>8}" for e in grid)
            out.append(f"{s + ' -> ' + t:<{w1}}{a:<{w2}}" + cells)
        return "\n".join(out)

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | os.PathLike, perturbations: bool = True) -> Path:
        """Write ``records.csv``, ``summary.json`` (and ``summary.csv``), ``provenance.json``
        (when :attr:`provenance` is known; also in ``summary.json``) and, if kept, the perturbed
        k-space as fastMRI-format files ``perturbations/<surrogate>-<attack>-eps<e>.h5``.

        Every file is written atomically.
        """
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        atomic_write_text(d / "records.csv", records_to_csv(self.records))
        summary = self.summary()
        atomic_write_text(d / "summary.csv", records_to_csv(summary))
        meta = {"normalization": self.normalization, "config": self.config, "n_records": len(self.records),
                "summary": summary}
        if self.provenance is not None:
            meta["provenance"] = self.provenance
            atomic_write_json(d / "provenance.json", self.provenance, indent=1, default=str)
        atomic_write_json(d / "summary.json", meta, indent=1, default=str)
        if perturbations and self._perturbations:
            self.save_perturbations(d / "perturbations", provenance=self.provenance)
        return d

    def save_perturbations(self, folder: str | os.PathLike,
                           provenance: dict | None = None) -> list[Path]:
        """Write the kept perturbations as fastMRI files ``<surrogate>-<attack>-eps<e>.h5``;
        ``provenance`` goes into each file's provenance attrs, over
        :func:`~kspace_attacks.data.default_provenance`."""
        if provenance is not None and not isinstance(provenance, dict):
            raise TypeError(f"provenance: expected a dict or None, got {type(provenance).__name__}")
        from ..data.fastmri import write_perturbed_kspace  # h5 writer; imported on demand

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        merged: dict[tuple, dict] = {}
        for p in self._perturbations:
            n = len(p["ids"])
            for i, e in enumerate(p["grid"]):
                sl = slice(i * n, (i + 1) * n)
                entry = merged.setdefault((p["surrogate"], p["attack"], e),
                                          dict(ids=[], y_clean=[], y_adv=[], maps=[], p=p))
                entry["ids"] += p["ids"]
                entry["y_clean"].append(p["y_clean"][sl])
                entry["y_adv"].append(p["y_adv"][sl])
                maps = p.get("coil_maps")
                if maps is not None:  # per-row maps, or one set shared by every row
                    entry["maps"].append(maps[sl] if maps.shape[0] > 1 else maps.expand(n, *maps.shape[1:]))
        paths = []
        for (s, a, e), entry in merged.items():
            p = entry["p"]
            y_clean, y_adv = torch.cat(entry["y_clean"]), torch.cat(entry["y_adv"])
            mask = p["mask"] if p["mask"] is not None else torch.ones(y_clean.shape[-2:])
            mask = mask.detach().cpu()
            if mask.dim() == 4:
                mask = mask[0, 0]
            # multi-coil: the coil maps the sweep attacked with (estimated when the data had none)
            # go into the file, so that reading it back rebuilds the same physics
            physics_or_mask = _multicoil_physics(mask, torch.cat(entry["maps"])) if entry["maps"] else mask
            paths.append(write_perturbed_kspace(
                folder / perturbation_filename(s, a, e), y_clean, y_adv, physics_or_mask, eps=e,
                attack_settings={"attack": p["attack_repr"], "surrogate": s, "name": a, "sample_ids": entry["ids"]},
                provenance=provenance,
            ))
        return paths

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "TransferReport":
        """Load records (and settings) written by :meth:`save`."""
        d = Path(directory)
        if not (d / "records.csv").is_file():
            raise FileNotFoundError(f"directory: expected {d / 'records.csv'} written by TransferReport.save, not found")
        meta = {}
        if (d / "summary.json").is_file():
            meta = read_json(d / "summary.json")
        provenance = read_json(d / "provenance.json") if (d / "provenance.json").is_file() else None
        return cls(records_from_csv(d / "records.csv"), normalization=meta.get("normalization", "minmax"),
                   config=meta.get("config"), provenance=provenance)

    def plot(self, directory: str | os.PathLike) -> list[Path]:
        """Delta SSIM / PSNR vs eps figures (see :mod:`kspace_attacks.study.plots`)."""
        from .plots import plot_report

        return plot_report(self, directory)

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        kinds = sorted({(r["surrogate"], r["target"]) for r in self.records})
        return f"TransferReport({len(self.records)} records, pairs={kinds})"



def _detached(t: Any) -> Tensor | None:
    return t.detach().cpu() if isinstance(t, Tensor) else None


def _multicoil_physics(mask: Tensor, coil_maps: Tensor) -> Any:
    """A ``MultiCoilMRI`` with the given mask ``(H, W)`` and per-slice maps ``(S, N, H, W)``."""
    from deepinv.physics import MultiCoilMRI

    return MultiCoilMRI(mask=mask, coil_maps=coil_maps, img_size=tuple(coil_maps.shape[-2:]))
