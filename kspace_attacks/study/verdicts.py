"""The study's claims decided on a sweep's records, per metric, with paired confidence intervals.

Every claim compares two conditions on the same slices and is decided separately in each metric
(:mod:`kspace_attacks.study.statistics`: paired bootstrap 95 % CI of the mean difference;
"holds", "does not hold", "inconclusive" when the CI spans the threshold, or "no difference"
when it lies within the metric's resolution: :data:`RESOLUTIONS`). Metrics, each
signed so that larger = more harm:

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

Example:

    >>> from kspace_attacks.study.verdicts import decide
    >>> decide([])
    []
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..io import atomic_write_json, atomic_write_text
from . import records as R
from .statistics import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, NO_DIFFERENCE, paired_outcome

__all__ = ["decide", "ablations_of", "write_verdicts", "render_markdown", "summary_lines", "METRICS", "CLAIMS", "RESOLUTIONS", "mean"]


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


def _row(claim: str, metric: str, key: tuple, eps: float, ra: list[dict], rb: list[dict],
         harm: Callable[[dict], float | None], seed: int, **fields: str) -> dict | None:
    a = [harm(r) for r in ra]
    b = [harm(r) for r in rb]
    if any(v is None for v in a + b) or not a:
        return None
    out = paired_outcome(a, b, threshold=0.0, seed=seed, resolution=RESOLUTIONS.get(metric, 1e-6))
    surrogate, attack, target = key
    text = CLAIMS[claim].format(surrogate=surrogate, attack=attack, target=target, eps=eps, **fields)
    setting = R.WHITE_BOX if surrogate == target else R.TRANSFER
    return {"claim_id": claim, "claim": text, "metric": metric, "eps": eps, "surrogate": surrogate,
            "attack": attack, "target": target, "setting": setting, **out.as_dict()}


def ablations_of(config: Mapping[str, Any] | None) -> dict[str, str]:
    """Targets that are variants of another target (``models.<name>.model = "<target>"``, e.g.
    ``diffusion_nodc`` of ``diffusion``): ``{variant: base}``."""
    cfg = config or {}
    targets = list(cfg.get("targets", []))
    models = cfg.get("models", {}) or {}
    return {t: spec["model"] for t, spec in models.items()
            if t in targets and isinstance(spec, Mapping) and spec.get("model") in targets and spec["model"] != t}


def decide(records: Sequence[dict], seed: int = 0, ablations: Mapping[str, str] | None = None) -> list[dict]:
    """One verdict row per claim x metric x eps x (surrogate, attack, target).

    :param ablations: ``{variant: base}`` target pairs (:func:`ablations_of`): the claim
        ``ablation_worse`` compares, on the same perturbations, the variant's harm with the base's.
    """
    index = _Index(records)
    noise = R.BASELINE_SURROGATE, R.BASELINE_ATTACK
    keys = sorted({k[:3] for k in index.cells if k[:2] != noise})
    grid = sorted({k[3] for k in index.cells if k[3] > 0})
    rows: list[dict | None] = []
    for s, a, t in keys:
        for e in grid:
            ra, rb = index.pairs((s, a, t, e), (*noise, t, e))
            rows += [_row("beats_noise", m, (s, a, t), e, ra, rb, h, seed) for m, h in METRICS.items()]
            rows += [_row("structured", m, (s, a, t), e, ra, rb, h, seed) for m, h in STRUCTURE.items()]
            if s != t and (s, a, s, e) in index.cells:
                own, other = index.pairs((s, a, s, e), (s, a, t, e))
                rows += [_row("noise_like", m, (s, a, t), e, own, other, h, seed) for m, h in DISTANCES.items()]
        if len(grid) > 1:
            hi, lo = index.pairs((s, a, t, grid[-1]), (s, a, t, grid[0]))
            rows += [_row("grows_with_eps", m, (s, a, t), grid[-1], hi, lo, h, seed) for m, h in METRICS.items()]
        base = (ablations or {}).get(t)
        if base is not None:
            for e in grid:
                rv, rb = index.pairs((s, a, t, e), (s, a, base, e))
                rows += [_row("ablation_worse", m, (s, a, t), e, rv, rb, h, seed, base=base)
                         for m, h in METRICS.items()]
    return [r for r in rows if r is not None]


def _fmt(v: float, metric: str) -> str:
    if v != v:
        return "nan"
    return f"{v:+.2f}" if metric == "psnr" else f"{v:+.3f}"


def _sentence(claim_rows: list[dict]) -> str:
    """One plain sentence: in how many cells the claim holds, per metric."""
    parts = []
    for metric in dict.fromkeys(r["metric"] for r in claim_rows):
        rs = [r for r in claim_rows if r["metric"] == metric]
        counts = {o: sum(r["outcome"] == o for r in rs) for o in (HOLDS, DOES_NOT_HOLD, INCONCLUSIVE, NO_DIFFERENCE)}
        ties = f", no difference in {counts[NO_DIFFERENCE]}" if counts[NO_DIFFERENCE] else ""
        parts.append(f"in {metric} it holds in {counts[HOLDS]} of {len(rs)} cells, does not hold in "
                     f"{counts[DOES_NOT_HOLD]}, inconclusive in {counts[INCONCLUSIVE]}{ties}")
    n = max(r["n"] for r in claim_rows)
    small = " (small sample: fewer than 10 slices per cell)" if any(r["small_sample"] for r in claim_rows) else ""
    return "; ".join(parts) + f"; n = {n} paired slices{small}."


def render_markdown(rows: Sequence[dict], title: str = "Verdicts", config: Mapping[str, Any] | None = None) -> str:
    """``verdict.md``: the study's questions answered (:mod:`~kspace_attacks.study.answers`), then
    per claim a plain sentence and a table of outcomes per metric."""
    from .answers import answer, render_answers_markdown

    lines = [f"# {title}", "", render_answers_markdown(answer(rows, config)), "## Every claim", "",
             "Each cell: mean paired difference (a - b, positive = a is worse) [95 % bootstrap CI] "
             "and the outcome. Metrics: deviation = relative deviation (the attack objective), "
             "ssim / psnr = quality lost against the ground truth, structure = null-calibrated "
             "structure area, spectrum / values = distance from the target's noise response.", ""]
    by_claim: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        by_claim[(r["claim_id"], r["surrogate"], r["attack"], r["target"], r["setting"])].append(r)
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
                cells.append("" if r is None else f"{_fmt(r['mean_diff'], m)} [{_fmt(r['ci_low'], m)}, "
                             f"{_fmt(r['ci_high'], m)}] **{r['outcome']}**")
            lines.append(f"| {e:g} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def summary_lines(rows: Sequence[dict]) -> list[str]:
    """One line per claim kind and metric: how many cells hold, do not hold, are inconclusive."""
    out = []
    for claim, metric in dict.fromkeys((r["claim_id"], r["metric"]) for r in rows):
        rs = [r for r in rows if r["claim_id"] == claim and r["metric"] == metric]
        c = {o: sum(r["outcome"] == o for r in rs) for o in (HOLDS, DOES_NOT_HOLD, INCONCLUSIVE, NO_DIFFERENCE)}
        ties = f"  no difference {c[NO_DIFFERENCE]:>3}" if c[NO_DIFFERENCE] else ""
        out.append(f"{claim:<15} {metric:<13} holds {c[HOLDS]:>3}  does not hold {c[DOES_NOT_HOLD]:>3}  "
                   f"inconclusive {c[INCONCLUSIVE]:>3}{ties}  (of {len(rs)}; n = {max(r['n'] for r in rs)} slices)")
    return out


def write_verdicts(report: Any, out: str | os.PathLike, title: str = "Verdicts",
                   extra_rows: Sequence[dict] = ()) -> list[dict]:
    """Decide the claims on ``report.records`` (plus ``extra_rows``, e.g. the targeted test's)
    and write ``verdict.json`` and ``verdict.md``."""
    config = getattr(report, "config", None) or {}
    rows = decide(report.records, ablations=ablations_of(config)) + list(extra_rows)
    out = Path(out)
    atomic_write_json(out / "verdict.json", {"rows": rows}, indent=1)
    atomic_write_text(out / "verdict.md", render_markdown(rows, title, config))
    return rows
