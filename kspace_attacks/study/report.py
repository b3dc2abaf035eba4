"""Results of transfer sweeps: per-sample records and the queries on them.

:class:`TransferReport` holds a sweep's records (one flat dict per sample, surrogate, attack,
budget and target) and answers queries on them (:meth:`~TransferReport.filter`,
:meth:`~TransferReport.summary`, :meth:`~TransferReport.table`). It delegates the rest, one job
per module:

* :mod:`.report_io`: the record files (``records.csv``, ``summary.csv``, ``summary.json``,
  ``provenance.json``), written and read back;
* :mod:`.perturbations`: the kept perturbed k-space (:class:`PerturbationStore`), in memory
  and as fastMRI files under ``perturbations/``, read back lazily;
* :mod:`.plots`: the figures.

:func:`records_to_csv`, :func:`records_from_csv` and :func:`perturbation_filename` are
re-exported here, where other modules have always imported them.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from .._checks import describe
from ..io import atomic_write_text
from ..stats import bootstrap_ci
from .perturbations import MissingPerturbationError, PerturbationStore, perturbation_filename
from .records import GROUP_KEYS, SUMMARY_METRICS
from .report_io import PERTURBATIONS_DIR, read_records, records_from_csv, records_to_csv, write_records

__all__ = ["TransferReport", "atomic_write_text", "summarize", "GROUP_KEYS", "records_to_csv",
           "records_from_csv", "perturbation_filename", "PerturbationStore", "MissingPerturbationError"]

# Two-sided 97.5 % Student-t quantiles for small samples (df = n - 1); 1.96 beyond.
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
         9: 2.262, 10: 2.228, 15: 2.131, 20: 2.086, 30: 2.042, 60: 2.000}


def _t975(df: int) -> float:
    if df <= 0:
        return float("nan")
    keys = sorted(k for k in _T975 if k <= df)
    return _T975[keys[-1]] if df <= 60 else 1.96


def _names(name: str, value: Any) -> tuple[str, ...]:
    """``value`` as a tuple of column names (a generator is read once, here)."""
    names = tuple(value) if isinstance(value, Iterable) and not isinstance(value, str) else None
    if names is None or not all(isinstance(v, str) for v in names):
        raise TypeError(f"{name}: expected a sequence of column names (str), got {describe(value)}")
    return names


def summarize(
    records: Iterable[dict], keys: Sequence[str] = GROUP_KEYS, metrics: Sequence[str] = SUMMARY_METRICS
) -> list[dict]:
    """Mean, standard deviation and 95 % confidence intervals per group.

    :returns: one dict per group with the group keys, ``n`` and for every metric
        ``<metric>_mean``, ``<metric>_std``, ``<metric>_ci95`` (Student t half-width) and
        ``<metric>_ci_low`` / ``<metric>_ci_high`` (percentile bootstrap of the mean, seed 0: the
        interval the verdicts use, and the figures' error bars).

    :Examples:

        >>> rows = summarize([{"eps": 0.01, "ssim": 0.5}, {"eps": 0.01, "ssim": 1.0}, {"eps": 0.02, "ssim": 0.25}],
        ...                  keys=("eps",), metrics=("ssim",))
        >>> [(r["eps"], r["n"], r["ssim_mean"], r["ssim_std"]) for r in rows]
        [(0.01, 2, 0.75, 0.3535533905932738), (0.02, 1, 0.25, 0.0)]
    """
    if isinstance(records, (str, bytes, Mapping)) or not isinstance(records, Iterable):
        raise TypeError(f"records: expected an iterable of dicts, got {describe(records)}")
    keys, metrics = _names("keys", keys), _names("metrics", metrics)
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


class TransferReport:
    """Per-sample records of a transfer sweep with summaries, saving, loading and plots.

    Each record is a flat dict: ``sample_id``, ``surrogate``, ``target``, ``attack``,
    ``setting`` (``white-box`` / ``transfer`` / ``baseline``), ``eps``, ``ratio``
    (``||delta|| / ||y||``), ``attack_loss``, ``grad_evals``, timing, the perturbed
    reconstruction compared with the clean one (``ssim_vs_clean``, ``psnr_vs_clean``,
    ``nmse_vs_clean``), with ground truth ``clean_*``, ``adv_*`` and ``delta_*`` (adv minus
    clean), and artifact statistics (see :mod:`kspace_attacks.study.artifacts`).

    The kept perturbed k-space is in :attr:`perturbations` (a :class:`PerturbationStore`);
    :meth:`save` then :meth:`load` gives back the records, the settings and the perturbations.

    :Examples:

        >>> import tempfile, torch
        >>> rec = dict(sample_id=0, surrogate="zf", target="zf", attack="fgm", setting="white-box")
        >>> report = TransferReport([dict(rec, eps=0.0, ssim_vs_clean=1.0), dict(rec, eps=0.1, ssim_vs_clean=0.8)])
        >>> y = torch.randn(2, 2, 8, 8, generator=torch.Generator().manual_seed(0))
        >>> report.add_perturbation("zf", "fgm", [0], [0.0, 0.1], y, y * 1.1, None, "FGM()")
        >>> loaded = TransferReport.load(report.save(tempfile.mkdtemp()))
        >>> loaded
        TransferReport(2 records, pairs=[('zf', 'zf')])
        >>> key = ("zf", "fgm", 0.1, 0)  # surrogate, attack, eps, sample id
        >>> bool(torch.equal(loaded.perturbed_kspace(*key), report.perturbed_kspace(*key)))
        True
    """

    def __init__(self, records: Iterable[dict] | None = None, normalization: str = "minmax",
                 config: dict | None = None, provenance: dict | None = None) -> None:
        self.records: list[dict] = list(records or [])
        self.normalization = normalization
        self.config = dict(config or {})
        #: versions, platform, threads, deterministic mode, device and world size of the run
        #: that computed the records (:func:`kspace_attacks._runtime.runtime_provenance`)
        self.provenance: dict | None = dict(provenance) if provenance is not None else None
        #: the kept perturbed k-space (:meth:`add_perturbation`, or the files :meth:`load` found)
        self.perturbations = PerturbationStore()

    # ------------------------------------------------------------------ building
    def extend(self, records: Iterable[dict]) -> None:
        """Append ``records``.

        :Examples:

            >>> report = TransferReport()
            >>> report.extend([{"eps": 0.0}, {"eps": 0.1}])
            >>> len(report)
            2
        """
        if isinstance(records, (str, bytes, Mapping)) or not isinstance(records, Iterable):
            raise TypeError(f"records: expected an iterable of dicts, got {describe(records)}")
        self.records.extend(records)

    def add_perturbation(self, surrogate: str, attack: str, ids: list, grid: list[float],
                         y_clean: Tensor, y_adv: Tensor, physics: Any, attack_repr: str) -> None:
        """Keep a batch of clean/perturbed k-space (``len(grid)`` copies of ``ids``) for saving:
        see :meth:`PerturbationStore.add`.

        :Examples:

            >>> import torch
            >>> report = TransferReport()
            >>> report.add_perturbation("zf", "fgm", [0, 1], [0.1], torch.zeros(2, 2, 4, 4),
            ...                         torch.ones(2, 2, 4, 4), None, "FGM()")
            >>> report.perturbed_kspace("zf", "fgm", 0.1, 1).shape
            torch.Size([1, 2, 4, 4])
        """
        self.perturbations.add(surrogate, attack, ids, grid, y_clean, y_adv, physics, attack_repr)

    def perturbed_kspace(self, surrogate: str, attack: str, eps: float, sample_id: Any) -> Tensor:
        """The kept perturbed k-space ``(1, ...)`` of one sample (needs ``keep_perturbations``, or
        a report loaded from a folder saved with its perturbations); raises a ``KeyError``
        (:class:`MissingPerturbationError`) naming what was asked for and what is kept.

        :Examples:

            >>> try:
            ...     TransferReport().perturbed_kspace("zf", "pgd", 0.05, 3)
            ... except KeyError as err:
            ...     print(str(err).split(";")[0])
            no kept perturbation for surrogate='zf', attack='pgd', eps=0.05, sample_id=3
        """
        return self.perturbations.get(surrogate, attack, eps, sample_id)

    # ------------------------------------------------------------------ queries
    def filter(self, **conditions: Any) -> list[dict]:
        """Records whose fields equal the given values, e.g. ``filter(target="diffusion")``.

        :Examples:

            >>> TransferReport([{"target": "a", "eps": 0.0}, {"target": "b", "eps": 0.0}]).filter(target="b")
            [{'target': 'b', 'eps': 0.0}]
        """
        return [r for r in self.records if all(r.get(k) == v for k, v in conditions.items())]

    def summary(self, keys: Sequence[str] = GROUP_KEYS, metrics: Sequence[str] = SUMMARY_METRICS) -> list[dict]:
        """See :func:`summarize`.

        :Examples:

            >>> report = TransferReport([{"eps": 0.0, "ssim_vs_clean": 1.0}, {"eps": 0.0, "ssim_vs_clean": 0.5}])
            >>> report.summary(keys=("eps",))[0]["ssim_vs_clean_mean"]
            0.75
        """
        return summarize(self.records, keys, metrics)

    def table(self, metric: str = "ssim_vs_clean", attack: str | None = None) -> str:
        """Text table: one row per (surrogate -> target, attack), one column per eps (means).

        :Examples:

            >>> rec = dict(surrogate="zf", target="zf", attack="fgm")
            >>> report = TransferReport([dict(rec, eps=e, ssim_vs_clean=1.0 - 2 * e) for e in (0.0, 0.1)])
            >>> print(report.table())
            ssim_vs_clean (mean per eps)
            surrogate -> target         attack        0.00    0.10
            ------------------------------------------------------
            zf -> zf                    fgm         1.0000  0.8000
        """
        if not isinstance(metric, str):
            raise TypeError(f"metric: expected a column name (str), got {describe(metric)}")
        if attack is not None and not isinstance(attack, str):
            raise TypeError(f"attack: expected an attack name (str) or None, got {describe(attack)}")
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
        k-space as fastMRI-format files ``perturbations/<surrogate>-<attack>-eps<e>.h5`` (files
        of a loaded report are copied unchanged; see :meth:`PerturbationStore.save`).

        Every file is written atomically (formats: :mod:`kspace_attacks.study.report_io`).

        :Examples:

            >>> import tempfile
            >>> d = TransferReport([{"eps": 0.0}], config={"seed": 3}).save(tempfile.mkdtemp())
            >>> sorted(p.name for p in d.iterdir())
            ['records.csv', 'summary.csv', 'summary.json']
        """
        if not isinstance(perturbations, bool):
            raise TypeError(f"perturbations: expected a bool, got {describe(perturbations)}")
        d = write_records(directory, self.records, self.summary(), normalization=self.normalization,
                          config=self.config, provenance=self.provenance)
        if perturbations and self.perturbations:
            self.save_perturbations(d / PERTURBATIONS_DIR, provenance=self.provenance)
        return d

    def save_perturbations(self, folder: str | os.PathLike,
                           provenance: dict | None = None) -> list[Path]:
        """Write the kept perturbations as fastMRI files ``<surrogate>-<attack>-eps<e>.h5``;
        ``provenance`` goes into each file's provenance attrs, over
        :func:`~kspace_attacks.data.default_provenance` (see :meth:`PerturbationStore.save`).

        :Examples:

            >>> import tempfile, torch
            >>> report = TransferReport()
            >>> report.add_perturbation("zf", "fgm", [0], [0.1], torch.zeros(1, 2, 4, 4),
            ...                         torch.ones(1, 2, 4, 4), None, "FGM()")
            >>> [p.name for p in report.save_perturbations(tempfile.mkdtemp())]
            ['zf-fgm-eps0.1.h5']
        """
        return self.perturbations.save(folder, provenance=provenance)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "TransferReport":
        """Load records, settings and the perturbations (read lazily) written by :meth:`save`.

        :Examples:

            >>> import tempfile
            >>> d = TransferReport([{"sample_id": "a", "eps": 0.01, "n": 2}], normalization="reference").save(
            ...     tempfile.mkdtemp())
            >>> loaded = TransferReport.load(d)
            >>> loaded.records, loaded.normalization
            ([{'sample_id': 'a', 'eps': 0.01, 'n': 2}], 'reference')
        """
        saved = read_records(directory)
        report = cls(saved.records, normalization=saved.normalization, config=saved.config,
                     provenance=saved.provenance)
        folder = Path(directory) / PERTURBATIONS_DIR
        if folder.is_dir():
            report.perturbations = PerturbationStore.load(folder)
        return report

    def plot(self, directory: str | os.PathLike) -> list[Path]:
        """Delta SSIM / PSNR vs eps figures (see :mod:`kspace_attacks.study.plots`).

        :Examples:

            >>> import tempfile
            >>> rec = dict(surrogate="zf", target="zf", attack="fgm", setting="white-box")
            >>> report = TransferReport([dict(rec, eps=e, delta_ssim=-e, delta_psnr=-e, structure_fraction=e)
            ...                          for e in (0.0, 0.1)])
            >>> sorted(p.name for p in report.plot(tempfile.mkdtemp()))
            ['delta_psnr_vs_eps.png', 'delta_ssim_vs_eps.png', 'structure_fraction_vs_eps.png']
        """
        from .plots import plot_report

        return plot_report(self, directory)

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        kinds = sorted({(r["surrogate"], r["target"]) for r in self.records})
        return f"TransferReport({len(self.records)} records, pairs={kinds})"
