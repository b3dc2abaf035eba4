"""The study on the embedded default: sweep, figures, targeted insertion and verdicts.

``kspace-attacks demo`` runs :func:`run_demo`: the sweep of :data:`~kspace_attacks.study.config.DEMO_CONFIG`
(i-RIM white-box, ResUnet++ as second surrogate, transfer to the diffusion model, equal-norm
random baseline, eps 0..0.08), the Delta SSIM / Delta PSNR vs eps figures, an image panel of
clean vs perturbed reconstructions, a targeted false-structure test, and a verdict per claim
with the numbers behind it (``verdict.md``).
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from ..data import read_perturbed_kspace
from ..io import atomic_write_json, atomic_write_text, read_json
from .plots import plot_panel
from .report import perturbation_filename, records_to_csv
from .config import DEMO_CONFIG, DEMO_OVERRIDES, SweepConfig, build_models, validate_config
from .steps import best_effort
from .sweep import SweepRun, run_sweep
from .targeted import targeted_transfer, targeted_verdicts
from .verdicts import mean as _mean, write_verdicts

__all__ = ["run_demo", "finish_run", "run_targeted", "timed"]


def run_demo(out: str | os.PathLike = "kspace-attacks-demo", config: SweepConfig | Mapping[str, Any] | None = None,
             progress: bool = True, title: str | None = None,
             models: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the demo (or the study: ``config`` =
    :data:`~kspace_attacks.study.config.STUDY_CONFIG`, or any sweep configuration) and write
    everything to ``out``; returns paths and verdicts. Resumable: run it again with the same
    ``out`` after an interruption. The result's ``"run"`` is the :class:`~.sweep.SweepRun`
    (configuration, records, data, models) for a caller that goes on with it.
    ``title`` titles the verdicts (default: the configuration's ``report.title``, else
    "Verdicts of the demo (small sample: 4 slices)").

    Everything the run does is in its configuration (``demo --print-config`` shows it): the
    sweep, then (:func:`finish_run`) the targeted test on ``targeted.slices`` slices of the
    first batch, the verdicts, and ``report.html`` with the panels of ``report.panel_slices``
    slices; the demo adds ``panel.png``. ``provenance.json`` gets ``wall_seconds``: the whole
    run's wall time in this process (a resumed run: the last part's), and ``phase_seconds``: the
    same split by phase (models, sweep, panel, targeted, verdicts, report), so a slower run shows
    at a glance which phase grew.
    """
    start = time.perf_counter()
    phases: dict[str, float] = {}
    cfg = validate_config(config if config is not None else {**DEMO_CONFIG, **DEMO_OVERRIDES})
    out = Path(out)
    with timed(phases, "models"):
        models = build_models(cfg) if models is None else models
    with timed(phases, "sweep"):
        run = run_sweep(cfg, out, progress=progress, models=models)
    result = {"out": str(out), "records": len(run.report.records), "run": run}
    if int(os.environ.get("RANK", "0")) != 0:  # rank 0 writes what follows the sweep
        return result
    with timed(phases, "panel"):
        panel = best_effort(out, "image panel (panel.png)", _image_panel, run)
    if panel is not None:
        result["panel"] = str(panel)
    title = title if title is not None else cfg.report.title or "Verdicts of the demo (small sample: 4 slices)"
    result.update(finish_run(run, title, phases))
    provenance = read_json(out / "provenance.json") if (out / "provenance.json").is_file() else {}
    atomic_write_json(out / "provenance.json", dict(provenance, wall_seconds=time.perf_counter() - start,
                                                    phase_seconds={k: round(v, 2) for k, v in phases.items()}),
                      indent=1, default=str)
    return result


@contextmanager
def timed(phases: dict[str, float], name: str) -> Iterator[None]:
    """Add the wall time of the ``with`` block to ``phases[name]`` (even if it raises).

        >>> phases = {}
        >>> with timed(phases, "nothing"):
        ...     pass
        >>> list(phases), phases["nothing"] >= 0
        (['nothing'], True)
    """
    start = time.perf_counter()
    try:
        yield
    finally:
        phases[name] = phases.get(name, 0.0) + time.perf_counter() - start


def finish_run(run: SweepRun, title: str, phases: dict[str, float] | None = None) -> dict[str, Any]:
    """What follows every sweep (demo, study, ``sweep``), from the :class:`~.sweep.SweepRun` it
    returned (its data, models and records: nothing is rebuilt or read back): the targeted test
    when ``targeted.slices > 0``, ``verdict.json`` / ``verdict.md`` and ``report.html`` (with
    the image panels stored for ``report``). The targeted test and the panels are presentation:
    if one fails, the page says so (:mod:`.steps`) and the run still ends with its verdicts.
    ``phases`` (if given) gets each step's wall time (:func:`timed`)."""
    from .html import write_html_report

    phases = {} if phases is None else phases
    cfg, out = run.config, run.out
    result: dict[str, Any] = {}
    if cfg.targeted.slices:
        with timed(phases, "targeted"):
            result.update(best_effort(out, "targeted insertion test", run_targeted, run) or {})
    with timed(phases, "verdicts"):
        result["verdicts"] = write_verdicts(run.report, out, title=title, extra_rows=result.get("targeted_rows", ()),
                                            settings=cfg.verdicts.as_dict())
    with timed(phases, "report"), torch.no_grad():
        result["report"] = str(write_html_report(out, run.models, max_slices=cfg.report.panel_slices,
                                                 report=run.report))
    return result


def run_targeted(run: SweepRun) -> dict[str, Any]:
    """The targeted test of the configuration's ``targeted`` on the run's first batch:
    ``targeted.csv``, ``targeted_panel.png``, the mean ROI contrast per target and the verdict rows."""
    cfg, out, models, ids = run.config, run.out, run.models, run.ids
    x, y, physics = run.batches[0]
    n, eps = cfg.targeted.slices, cfg.targeted.eps
    surrogate, targets = cfg.surrogates[0], cfg.targets
    recs, imgs = targeted_transfer(models[surrogate], {t: models[t] for t in targets}, y[:n], physics, eps=eps,
                                    ids=ids[:n])
    where = run.coordinates  # each slice's subject and block: the verdicts' units
    recs = [dict(r, sample_id=ids[r["sample"]], **{k: where.get(ids[r["sample"]], {}).get(k)
                                                   for k in ("subject", "block")}) for r in recs]
    atomic_write_text(out / "targeted.csv", records_to_csv(recs))
    plot_panel(imgs["target_image"][:1], {t: imgs[f"{t}_clean"][:1] for t in targets},
               {t: imgs[f"{t}_adv"][:1] for t in targets}, out / "targeted_panel.png",
               title=f"targeted blob insertion crafted on {surrogate}, eps={eps:.2f} (first column: target)")
    by_target: dict[str, list] = defaultdict(list)
    for r in recs:
        if r["condition"] == "targeted":
            by_target[r["target"]].append(r["roi_contrast"])
    return {"targeted_roi_contrast": {t: _mean(v) for t, v in by_target.items()},
            "targeted_rows": targeted_verdicts(recs)}


def _image_panel(run: SweepRun) -> Path | None:
    """Fig. 1/4 of the study: the first slice, first surrogate and attack, largest eps, on every
    target (``panel.png``); ``None`` when that perturbation was not made (its unit failed)."""
    cfg, out, models = run.config, run.out, run.models
    eps = max(cfg.eps)
    surrogate, attack = cfg.surrogates[0], next(iter(cfg.attacks))
    path = out / "perturbations" / "batch0000" / perturbation_filename(surrogate, attack, eps)
    if not path.is_file():
        return None
    (x, y, physics), ids = run.batches[0], run.ids
    y_adv = read_perturbed_kspace(path).y_adv[:1].to(y.device)  # the first slice of the first batch
    with torch.no_grad():
        clean = {t: models[t](y[:1], physics) for t in cfg.targets}
        adv = {t: models[t](y_adv, physics) for t in cfg.targets}
    reference = x[:1] if x is not None else clean[cfg.targets[0]]
    return plot_panel(reference, clean, adv, out / "panel.png",
                      title=f"{surrogate} / {attack} perturbation, eps={eps:.2f}, slice {ids[0]}")
