"""The study's claims decided on a sweep's records, per metric, with paired confidence intervals.

Every claim compares two conditions on the same slices and is decided separately in each metric
(:mod:`kspace_attacks.study.statistics`): the mean paired difference with its 95 % bootstrap CI,
resampled by subject (or by (subject, block), or by slice for records without subject ids:
each row's ``unit``), against a practical floor: ``max(floors[metric], floor_fraction *
|mean_b|)`` (:data:`FLOORS`; by default 10 % of what the comparison condition does). A cell
"holds" above the floor, "does not hold" below minus the floor, is "negligible" within it,
"inconclusive" otherwise, or "no difference" when the CI lies within the metric's float
resolution (:data:`RESOLUTIONS`). Outcomes are decided by bootstrap p-values adjusted within
each claim (Holm by default, Benjamini-Hochberg as an option): ``outcome`` is the corrected
decision, ``outcome_uncorrected`` the cell's alone; the CI shown is the cell's own. Metrics,
each signed so that larger = more harm:

- ``deviation``: the attack objective, ``||f(y+delta) - f(y)|| / ||f(y)||``;
- ``ssim``: minus Delta SSIM against the ground truth (``1 - SSIM(x_adv, x_clean)`` without it);
- ``psnr``: minus Delta PSNR in dB (``-PSNR(x_adv, x_clean)`` without a ground truth);
- ``structure``: the null-calibrated structure area (:mod:`kspace_attacks.study.null`).

Claims, for whatever models a sweep ran (no model is special):

- ``beats_noise``: the worst case crafted on S with attack A degrades target T more than
  equal-norm noise (white-box when S = T, transfer otherwise);
- ``grows_with_eps``: it degrades T more at the largest eps than at the smallest eps > 0;
- ``structured``: its change on T has more structure than noise's (calibrated statistic);
- ``noise_like``: its change on a transfer target T is closer to T's own noise response than
  S's white-box change is to S's (spectrum and value-distribution distances), per attack;
- ``ablation_worse``: on the same perturbations, a target that is an ablation of another (the
  diffusion sampler without its final data consistency) is degraded more than the original.

A verdict row holds the claim (``claim_id``, ``claim``, ``metric``, ``eps``, ``surrogate``,
``attack``, ``target``, ``setting``), the numbers (``n`` slices, ``n_clusters``,
``n_subjects``, ``unit``, ``mean_a``, ``mean_b``, ``mean_diff``, ``ci_low``, ``ci_high``,
``ratio``, ``effect`` = ``mean_diff / |mean_b|``, ``floor``, ``tolerance``) and the decision
(``p_holds``, ``p_does_not_hold``, ``p_negligible``, ``p_uncorrected``, ``p_adjusted``,
``family_size``, ``correction``, ``outcome_uncorrected``, ``outcome``, ``small_sample``).

Example:

    >>> from kspace_attacks.study.verdicts import decide
    >>> decide([])
    []
"""

from __future__ import annotations

import math
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..io import atomic_write_json, atomic_write_text
from ..schema import Table, setting
from . import records as R
from .statistics import (ALPHA, CORRECTIONS, DOES_NOT_HOLD, FLOOR_FRACTION, FLOORS, HOLDS, INCONCLUSIVE,
                         MIN_SUBJECTS, NEGLIGIBLE, NO_DIFFERENCE, RESAMPLES, clusters_of, correct, family_of, family_resamples,
                         paired_outcome, support)

__all__ = ["decide", "ablations_of", "verdict_settings", "VerdictSpec", "write_verdicts", "render_markdown",
           "summary_lines", "METRICS", "CLAIMS", "RESOLUTIONS", "FLOORS", "mean"]


def mean(values: Iterable[float | None]) -> float:
    """Mean of the finite values (NaN if none)."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return sum(vals) / len(vals) if vals else float("nan")


def _harm_ssim(r: dict) -> float | None:
    if r.get(R.DELTA_SSIM) is not None:
        return -float(r[R.DELTA_SSIM])
    return None if r.get(R.SSIM_VS_CLEAN) is None else 1 - float(r[R.SSIM_VS_CLEAN])


def _harm_psnr(r: dict) -> float | None:
    if r.get(R.DELTA_PSNR) is not None:
        return -float(r[R.DELTA_PSNR])
    return None if r.get(R.PSNR_VS_CLEAN) is None else -float(r[R.PSNR_VS_CLEAN])


def _column(name: str) -> Callable[[dict], float | None]:
    return lambda r: None if r.get(name) is None else float(r[name])


#: metric name -> per-record harm (larger = worse).
METRICS: dict[str, Callable[[dict], float | None]] = {
    "deviation": _column(R.RELATIVE_DEVIATION),
    "ssim": _harm_ssim,
    "psnr": _harm_psnr,
}
STRUCTURE = {"structure": _column(R.STRUCTURE_FRACTION)}
DISTANCES = {"spectrum": _column(R.SPECTRUM_DISTANCE), "values": _column(R.VALUE_DISTANCE)}
#: Resolution of each metric, relative to the compared values' size: paired differences within
#: it are ties ("no difference"), never effects. Every metric is computed in float32 (about 7
#: significant digits), so 1e-6 of the values is rounding; e.g. on the zero-filled model, where
#: attack and equal-norm noise move the output exactly alike, deviations differ by ~1e-8.
RESOLUTIONS = {"deviation": 1e-6, "ssim": 1e-6, "psnr": 1e-6, "structure": 1e-6, "spectrum": 1e-6,
               "values": 1e-6}

CLAIMS = {
    "beats_noise": "the worst case crafted on {surrogate} ({attack}) degrades {target} more than "
                   "equal-norm noise",
    "grows_with_eps": "the worst case crafted on {surrogate} ({attack}) degrades {target} more at "
                      "eps {eps} than at the smallest eps",
    "structured": "the worst case crafted on {surrogate} ({attack}) changes {target} with more "
                  "structure than equal-norm noise",
    "noise_like": "the change of {target} under the worst case crafted on {surrogate} ({attack}) "
                  "is more noise-like than {surrogate}'s own white-box change",
    "ablation_worse": "the worst case crafted on {surrogate} ({attack}) degrades {target} (an ablation "
                      "of {base}) more than {base}",
}


class _Index:
    """Records by (surrogate, attack, target, eps) -> {sample_id: record}."""

    def __init__(self, records: Sequence[dict]) -> None:
        self.cells: dict[tuple, dict[Any, dict]] = defaultdict(dict)
        for r in records:
            if r.get("status") == "failed":
                continue
            key = (r[R.SURROGATE], r[R.ATTACK], r[R.TARGET], float(r[R.EPS]))
            self.cells[key][r[R.SAMPLE_ID]] = r

    def pairs(self, a: tuple, b: tuple) -> tuple[list[dict], list[dict]]:
        ca, cb = self.cells.get(a, {}), self.cells.get(b, {})
        common = [s for s in ca if s in cb]
        return [ca[s] for s in common], [cb[s] for s in common]


@dataclass(frozen=True)
class _Cell:
    """One comparison to decide: the paired harms of both conditions and the slices' records."""

    claim: str
    metric: str
    key: tuple
    eps: float
    a: list[float]
    b: list[float]
    records: list[dict]
    fields: dict


def _cell(claim: str, metric: str, key: tuple, eps: float, ra: list[dict], rb: list[dict],
          harm: Callable[[dict], float | None], **fields: str) -> _Cell | None:
    a = [harm(r) for r in ra]
    b = [harm(r) for r in rb]
    if any(v is None for v in a + b) or not a:
        return None
    return _Cell(claim, metric, key, eps, a, b, ra, fields)  # type: ignore[arg-type]


def _row(cell: _Cell, seed: int, s: Mapping[str, Any], resamples: int) -> dict:
    clustering = clusters_of(cell.records, s["min_subjects"])
    out = paired_outcome(cell.a, cell.b, threshold=0.0, level=1 - s["alpha"], seed=seed,
                         resolution=RESOLUTIONS.get(cell.metric, 1e-6), floor=s["floors"].get(cell.metric, 0.0),
                         floor_fraction=s["floor_fraction"], clusters=clustering.labels,
                         subjects=clustering.subjects, unit=clustering.unit, resamples=resamples)
    surrogate, attack, target = cell.key
    text = CLAIMS[cell.claim].format(surrogate=surrogate, attack=attack, target=target, eps=cell.eps, **cell.fields)
    setting = R.WHITE_BOX if surrogate == target else R.TRANSFER
    flags = [r.get(R.UNRELIABLE) for r in cell.records]
    unreliable = sum(1 for f in flags if f == f and f)  # NaN (not assessed) and 0 do not count
    return {"claim_id": cell.claim, "claim": text, "metric": cell.metric, "eps": cell.eps, "surrogate": surrogate,
            "attack": attack, "target": target, "setting": setting, **out.as_dict(), "unreliable_rows": unreliable}


def _open_unit(value: float) -> str | None:
    return None if 0 < value < 1 else "a number in (0, 1)"


def _floors(value: dict) -> str | None:
    ok = all(k in FLOORS and v >= 0 for k, v in value.items())
    return None if ok else f"metrics among {sorted(FLOORS)} with absolute floors >= 0"


@dataclass(frozen=True)
class VerdictSpec(Table):
    """``[verdicts]``: how the claims are decided (:mod:`kspace_attacks.study.verdicts`); read by
    the verdicts after every sweep and by ``kspace-attacks report``, not part of the records."""

    TABLE: ClassVar[str] = "config.verdicts"

    floor_fraction: float = setting(FLOOR_FRACTION, "practical floor: this fraction of the comparison condition's "
                                    "mean harm |mean_b|, at least the metric's absolute floor", minimum=0.0)
    floors: dict[str, float] = setting(doc="absolute floors per metric replacing the defaults, e.g. {ssim = 0.01} "
                                           "(kspace_attacks.study.statistics.FLOORS)", check=_floors, factory=dict)
    alpha: float = setting(ALPHA, "level of every decision after the correction (CIs: 1 - alpha)", check=_open_unit)
    correction: str = setting("holm", "multiplicity correction within each question (a claim about one target in one metric): holm (family-wise error) or "
                                      "bh (false discovery rate)", choices=("holm", "bh"))
    min_subjects: int = setting(MIN_SUBJECTS, "distinct subjects a cell needs to be resampled by subject (fewer: "
                                              "by subject and anatomical block)", minimum=1)


def ablations_of(config: Mapping[str, Any] | None) -> dict[str, str]:
    """Targets that are variants of another target (``models.<name>.model = "<target>"``, e.g.
    ``diffusion_nodc`` of ``diffusion``): ``{variant: base}``."""
    cfg = config or {}
    targets = list(cfg.get("targets", []))
    models = cfg.get("models", {}) or {}
    return {t: spec["model"] for t, spec in models.items()
            if t in targets and isinstance(spec, Mapping) and spec.get("model") in targets and spec["model"] != t}


def verdict_settings(floor_fraction: float = FLOOR_FRACTION, floors: Mapping[str, float] | None = None,
                     alpha: float = ALPHA, correction: str = "holm", min_subjects: int = MIN_SUBJECTS,
                     resamples: int = RESAMPLES) -> dict[str, Any]:
    """The checked settings of :func:`decide` (``verdict.json`` stores them); ``floors`` given
    per metric replace the defaults of :data:`FLOORS`.

    >>> verdict_settings(floors={"ssim": 0.01})["floors"]["ssim"]
    0.01
    >>> verdict_settings(correction="bonferroni")
    Traceback (most recent call last):
    ...
    ValueError: correction: expected one of ['holm', 'bh'], got 'bonferroni'
    """
    if isinstance(floor_fraction, bool) or not isinstance(floor_fraction, (int, float)) \
            or not 0 <= floor_fraction < math.inf:
        raise ValueError(f"floor_fraction: expected a finite number >= 0, got {floor_fraction!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ValueError(f"alpha: expected a number in (0, 1), got {alpha!r}")
    if correction not in CORRECTIONS:
        raise ValueError(f"correction: expected one of {list(CORRECTIONS)}, got {correction!r}")
    for name, value, low in (("min_subjects", min_subjects, 1), ("resamples", resamples, 100)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
    if floors is not None and not isinstance(floors, Mapping):
        raise ValueError(f"floors: expected a mapping metric -> absolute floor, got {floors!r}")
    merged = dict(FLOORS)
    for metric, value in (floors or {}).items():
        if metric not in FLOORS:
            raise ValueError(f"floors: expected metrics among {sorted(FLOORS)}, got {metric!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
            raise ValueError(f"floors.{metric}: expected a finite number >= 0, got {value!r}")
        merged[metric] = float(value)
    return {"floor_fraction": float(floor_fraction), "floors": merged, "alpha": float(alpha),
            "correction": correction, "min_subjects": min_subjects, "resamples": resamples}


def _cells(records: Sequence[dict], ablations: Mapping[str, str] | None) -> list[_Cell]:
    """Every comparison of the claims, in claim x (surrogate, attack, target) x eps order."""
    index = _Index(records)
    noise = R.BASELINE_SURROGATE, R.BASELINE_ATTACK
    keys = sorted({k[:3] for k in index.cells if k[:2] != noise})
    grid = sorted({k[3] for k in index.cells if k[3] > 0})
    cells: list[_Cell | None] = []
    for s, a, t in keys:
        for e in grid:
            ra, rb = index.pairs((s, a, t, e), (*noise, t, e))
            cells += [_cell("beats_noise", m, (s, a, t), e, ra, rb, h) for m, h in METRICS.items()]
            cells += [_cell("structured", m, (s, a, t), e, ra, rb, h) for m, h in STRUCTURE.items()]
            if s != t and (s, a, s, e) in index.cells:
                own, other = index.pairs((s, a, s, e), (s, a, t, e))
                cells += [_cell("noise_like", m, (s, a, t), e, own, other, h) for m, h in DISTANCES.items()]
        if len(grid) > 1:
            hi, lo = index.pairs((s, a, t, grid[-1]), (s, a, t, grid[0]))
            cells += [_cell("grows_with_eps", m, (s, a, t), grid[-1], hi, lo, h) for m, h in METRICS.items()]
        base = (ablations or {}).get(t)
        if base is not None:
            for e in grid:
                rv, rb = index.pairs((s, a, t, e), (s, a, base, e))
                cells += [_cell("ablation_worse", m, (s, a, t), e, rv, rb, h, base=base) for m, h in METRICS.items()]
    return [c for c in cells if c is not None]


def decide(records: Sequence[dict], seed: int = 0, ablations: Mapping[str, str] | None = None, *,
           floor_fraction: float = FLOOR_FRACTION, floors: Mapping[str, float] | None = None,
           alpha: float = ALPHA, correction: str = "holm", min_subjects: int = MIN_SUBJECTS,
           resamples: int = RESAMPLES) -> list[dict]:
    """One verdict row per claim x metric x eps x (surrogate, attack, target).

    Each cell is a cluster-bootstrap comparison (:func:`~kspace_attacks.study.statistics.paired_outcome`)
    with the practical floor ``max(floors[metric], floor_fraction * |mean_b|)``; the cells of
    each question (a claim about one target in one metric,
    :func:`~kspace_attacks.study.statistics.family_of`)
    are one family, corrected together (:func:`~kspace_attacks.study.statistics.correct`).

    :param ablations: ``{variant: base}`` target pairs (:func:`ablations_of`): the claim
        ``ablation_worse`` compares, on the same perturbations, the variant's harm with the base's.
    :param float floor_fraction: the floor relative to the comparison condition's mean harm.
    :param floors: absolute floors per metric replacing :data:`FLOORS`' (e.g. ``{"ssim": 0.01}``).
    :param float alpha: level of every decision (after the correction); CIs are ``1 - alpha``.
    :param str correction: ``"holm"`` (family-wise error) or ``"bh"`` (false discovery rate).
    :param int min_subjects: subjects a cell needs to resample by subject, else by (subject, block).
    :param int resamples: bootstrap resamples per cell at least (:func:`family_resamples`).
    """
    s = verdict_settings(floor_fraction, floors, alpha, correction, min_subjects, resamples)
    cells = _cells(records, ablations)
    def family(c: _Cell) -> tuple:  # the cell's question: its claim about its target in its metric
        return family_of({"claim_id": c.claim, "metric": c.metric, "target": c.key[2]})

    sizes = Counter(family(c) for c in cells)
    rows = [_row(c, seed, s, family_resamples(sizes[family(c)], s["alpha"], s["resamples"]))
            for c in cells]
    return correct(rows, s["correction"], s["alpha"])


def _fmt(v: float | None, metric: str) -> str:
    if v is None or v != v:
        return "nan"
    return f"{v:+.2f}" if metric == "psnr" else f"{v:+.3f}"


#: outcome counts in reading order: decided first, then inconclusive, then ties
_ORDER = (HOLDS, DOES_NOT_HOLD, NEGLIGIBLE, INCONCLUSIVE, NO_DIFFERENCE)


def _counts(rows: Sequence[dict]) -> dict[str, int]:
    return {o: sum(r["outcome"] == o for r in rows) for o in _ORDER}


def _corrected(rows: Sequence[dict]) -> str:
    """How the rows were corrected: "after Holm correction within each question (a claim about one target in one metric)", or ""."""
    names = {"holm": "Holm", "bh": "Benjamini-Hochberg"}
    kinds = [names[c] for c in dict.fromkeys(r.get("correction") for r in rows) if c in names]
    return f"after {' / '.join(kinds)} correction within each question (a claim about one target in one metric)" if kinds else ""


def _sentence(claim_rows: list[dict]) -> str:
    """One plain sentence: in how many cells the claim holds, per metric (after the correction)."""
    parts = []
    for metric in dict.fromkeys(r["metric"] for r in claim_rows):
        rs = [r for r in claim_rows if r["metric"] == metric]
        c = _counts(rs)
        extra = "".join(f", {o} in {c[o]}" for o in (NEGLIGIBLE, NO_DIFFERENCE) if c[o])
        parts.append(f"in {metric} it holds in {c[HOLDS]} of {len(rs)} cells, does not hold in "
                     f"{c[DOES_NOT_HOLD]}, inconclusive in {c[INCONCLUSIVE]}{extra}")
    n = max(r["n"] for r in claim_rows)
    behind = support(claim_rows)
    small = " (small sample: fewer than 10 independent units per cell)" \
        if any(r["small_sample"] for r in claim_rows) else ""
    after = _corrected(claim_rows)
    return "; ".join(parts) + (f" ({after})" if after else "") + \
        f"; n = {n} paired slices{'; ' + behind if behind else ''}{small}."


def _cell_text(r: dict, m: str) -> str:
    text = f"{_fmt(r['mean_diff'], m)} [{_fmt(r['ci_low'], m)}, {_fmt(r['ci_high'], m)}] **{r['outcome']}**"
    if r.get("p_adjusted") is not None:
        text += f" (p {r['p_adjusted']:.2g}, floor {abs(r['floor']):.2g})"
    if r.get("unreliable_rows"):
        text += f" — rests on {r['unreliable_rows']} unreliable row(s)"
    return text


def _rules(settings: Mapping[str, Any] | None) -> str:
    s = dict(settings or {})
    alpha = float(s.get("alpha", ALPHA))
    return (f"Each cell: mean paired difference (a - b, positive = a is worse) [{100 * (1 - alpha):g} % cluster "
            "bootstrap CI], the outcome and, in brackets, the adjusted p-value and the practical floor. A claim "
            "holds when the difference is above the floor, does not hold when it is below minus the floor "
            "(b is clearly worse), is negligible when it lies within +-floor, and is inconclusive otherwise; "
            "no difference is a tie within float rounding. The floor is "
            f"{100 * float(s.get('floor_fraction', FLOOR_FRACTION)):g} % of what condition b does (|mean_b|), at "
            "least the metric's absolute floor; outcomes are decided by the p-value adjusted within each question (a claim about one target in one metric) "
            f"({s.get('correction', 'holm')}) at alpha {alpha:g}; slices are resampled by subject (with at least "
            f"{s.get('min_subjects', MIN_SUBJECTS)} subjects), else by (subject, block), else (no subject ids) "
            "by slice. Metrics: deviation = relative deviation (the attack objective), ssim / psnr = quality "
            "lost against the ground truth, structure = null-calibrated structure area, spectrum / values = "
            "distance from the target's noise response.")


def _physical_note(config: Mapping[str, Any] | None) -> list[str]:
    """For a physical threat: what "equal-norm noise" means in this file (its random control)."""
    from ..threat_spec import ThreatSpec

    spec = ThreatSpec.from_mapping((config or {}).get("threat", {}), "config.threat")
    if not spec.physical:
        return []
    threat = spec.build()
    return [f"Threat: **{spec.type}** (`{type(threat).__name__}`), eps in {threat.unit}. Throughout this "
            "file, \"equal-norm noise\" is the random imperfection of the same physical size: every "
            "parameter at its full budget with random signs (motion, phase) or positions (spikes, lost "
            "lines).", ""]


def _sanity_markdown(failures: Sequence[dict] | None) -> list[str]:
    """The search's sanity checks (:mod:`kspace_attacks.sanity`): warnings with their rows."""
    if failures is None:
        return []
    lines = ["## Sanity checks of the search", ""]
    if not failures:
        return lines + ["White-box >= transferred on every surrogate, row by row (relative deviation): passed.", ""]
    for f in failures:
        rows = ", ".join(f"(eps {e:g}, {sid})" for e, sid in f["rows"][:8]) + (" ..." if len(f["rows"]) > 8 else "")
        lines.append(f"- **WARNING {f['check']}** ({f['where']}): {f['detail']}; rows {rows}")
    return lines + [""]


def render_markdown(rows: Sequence[dict], title: str = "Verdicts", config: Mapping[str, Any] | None = None,
                    settings: Mapping[str, Any] | None = None, sanity: Sequence[dict] | None = None) -> str:
    """``verdict.md``: the study's questions answered (:mod:`~kspace_attacks.study.answers`), then
    per claim a plain sentence and a table of outcomes per metric.

    :param settings: the settings the rows were decided with (:func:`verdict_settings`), said
        in the text; default the defaults.
    :param sanity: failures of the search's sanity checks (:mod:`kspace_attacks.sanity`); a
        section lists them (``None``: no section).
    """
    from .answers import answer, render_answers_markdown

    lines = [f"# {title}", "", *_physical_note(config), render_answers_markdown(answer(rows, config)),
             *_sanity_markdown(sanity), "## Every claim", "", _rules(settings), ""]
    by_claim: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        by_claim[(r["claim_id"], r["surrogate"], r["attack"], r["target"], r["setting"], r["claim"])].append(r)
    for rs in by_claim.values():
        lines.append(f"## {rs[0]['claim']}")
        lines.append("")
        lines.append(f"{rs[0]['setting']}: {_sentence(rs)}")
        lines.append("")
        metrics = list(dict.fromkeys(r["metric"] for r in rs))
        lines.append("| eps | " + " | ".join(metrics) + " |")
        lines.append("|---|" + "---|" * len(metrics))
        for e in sorted({r["eps"] for r in rs}):
            cells = []
            for m in metrics:
                r = next((x for x in rs if x["eps"] == e and x["metric"] == m), None)
                cells.append("" if r is None else _cell_text(r, m))
            lines.append(f"| {e:g} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def summary_lines(rows: Sequence[dict]) -> list[str]:
    """One line per claim kind and metric: how many cells hold, do not hold, are negligible or
    inconclusive (after the correction), and what stands behind them."""
    out = []
    for claim, metric in dict.fromkeys((r["claim_id"], r["metric"]) for r in rows):
        rs = [r for r in rows if r["claim_id"] == claim and r["metric"] == metric]
        c = _counts(rs)
        extra = "".join(f"  {o} {c[o]:>3}" for o in (NEGLIGIBLE, NO_DIFFERENCE) if c[o])
        behind = support(rs)
        out.append(f"{claim:<15} {metric:<13} holds {c[HOLDS]:>3}  does not hold {c[DOES_NOT_HOLD]:>3}  "
                   f"inconclusive {c[INCONCLUSIVE]:>3}{extra}  (of {len(rs)}; n = {max(r['n'] for r in rs)} slices"
                   f"{'; ' + behind if behind else ''})")
    return out


def write_verdicts(report: Any, out: str | os.PathLike, title: str = "Verdicts",
                   extra_rows: Sequence[dict] = (), settings: Mapping[str, Any] | None = None) -> list[dict]:
    """Decide the claims on ``report.records`` (plus ``extra_rows``, e.g. the targeted test's,
    corrected within their own claims) and write ``verdict.json`` (``rows`` and the
    ``settings`` used) and ``verdict.md``.

    :param settings: keyword arguments of :func:`verdict_settings` (the ``[verdicts]`` table of
        a sweep's configuration); default ``report.config["verdicts"]``, else the defaults.
    """
    config = getattr(report, "config", None) or {}
    given = settings if settings is not None else config.get("verdicts") or {}
    known = ("floor_fraction", "floors", "alpha", "correction", "min_subjects", "resamples")
    if not isinstance(given, Mapping) or any(k not in known for k in given):
        raise ValueError(f"settings: expected a mapping with keys among {list(known)}, got {given!r}")
    s = verdict_settings(**given)
    rows = decide(report.records, ablations=ablations_of(config), floor_fraction=s["floor_fraction"],
                  floors=s["floors"], alpha=s["alpha"], correction=s["correction"],
                  min_subjects=s["min_subjects"], resamples=s["resamples"])
    rows += correct(extra_rows, s["correction"], s["alpha"])
    from ..sanity import check_whitebox_beats_transfer

    white_box = any(r.get("surrogate") == r.get("target") for r in report.records)
    sanity = check_whitebox_beats_transfer(report.records) if white_box else None
    out = Path(out)
    atomic_write_json(out / "verdict.json", {"rows": rows, "settings": s, "sanity": sanity}, indent=1)
    atomic_write_text(out / "verdict.md", render_markdown(rows, title, config, s, sanity))
    return rows
