"""The study's claims decided on a sweep's records, per metric, with paired confidence intervals.

Every claim compares two conditions on the same slices and is decided separately in each metric
(:mod:`kspace_attacks.study.statistics`: paired bootstrap 95 % CI of the mean difference;
"holds", "does not hold" or "inconclusive" when the CI spans the threshold). Metrics, each
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
  S's white-box change is to S's (spectrum and value-distribution distances), per attack.

Example:

    >>> from kspace_attacks.study.verdicts import decide
    >>> decide([])
    []
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from ..io import atomic_write_json, atomic_write_text
from . import records as R
from .statistics import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, paired_outcome

__all__ = ["decide", "write_verdicts", "render_markdown", "summary_lines", "METRICS", "CLAIMS", "mean"]


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

CLAIMS = {
    "beats_noise": "the worst case crafted on {surrogate} ({attack}) degrades {target} more than "
                   "equal-norm noise",
    "grows_with_eps": "the worst case crafted on {surrogate} ({attack}) degrades {target} more at "
                      "eps {eps} than at the smallest eps",
    "structured": "the worst case crafted on {surrogate} ({attack}) changes {target} with more "
                  "structure than equal-norm noise",
    "noise_like": "the change of {target} under the worst case crafted on {surrogate} ({attack}) "
                  "is more noise-like than {surrogate}'s own white-box change",
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
         harm: Callable[[dict], float | None], seed: int) -> dict | None:
    a = [harm(r) for r in ra]
    b = [harm(r) for r in rb]
    if any(v is None for v in a + b) or not a:
        return None
    out = paired_outcome(a, b, threshold=0.0, seed=seed)
    surrogate, attack, target = key
    text = CLAIMS[claim].format(surrogate=surrogate, attack=attack, target=target, eps=eps)
    setting = R.WHITE_BOX if surrogate == target else R.TRANSFER
    return {"claim_id": claim, "claim": text, "metric": metric, "eps": eps, "surrogate": surrogate,
            "attack": attack, "target": target, "setting": setting, **out.as_dict()}


def decide(records: Sequence[dict], seed: int = 0) -> list[dict]:
    """One verdict row per claim x metric x eps x (surrogate, attack, target)."""
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
        counts = {o: sum(r["outcome"] == o for r in rs) for o in (HOLDS, DOES_NOT_HOLD, INCONCLUSIVE)}
        parts.append(f"in {metric} it holds in {counts[HOLDS]} of {len(rs)} cells, does not hold in "
                     f"{counts[DOES_NOT_HOLD]}, inconclusive in {counts[INCONCLUSIVE]}")
    n = max(r["n"] for r in claim_rows)
    small = " (small sample: fewer than 10 slices per cell)" if any(r["small_sample"] for r in claim_rows) else ""
    return "; ".join(parts) + f"; n = {n} paired slices{small}."


def render_markdown(rows: Sequence[dict], title: str = "Verdicts") -> str:
    """``verdict.md``: per claim, a plain sentence and a table of outcomes per metric."""
    lines = [f"# {title}", "",
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
        c = {o: sum(r["outcome"] == o for r in rs) for o in (HOLDS, DOES_NOT_HOLD, INCONCLUSIVE)}
        out.append(f"{claim:<15} {metric:<13} holds {c[HOLDS]:>3}  does not hold {c[DOES_NOT_HOLD]:>3}  "
                   f"inconclusive {c[INCONCLUSIVE]:>3}  (of {len(rs)}; n = {max(r['n'] for r in rs)} slices)")
    return out


def write_verdicts(report: Any, out: str | os.PathLike, title: str = "Verdicts",
                   extra_rows: Sequence[dict] = ()) -> list[dict]:
    """Decide the claims on ``report.records`` (plus ``extra_rows``, e.g. the targeted test's)
    and write ``verdict.json`` and ``verdict.md``."""
    rows = decide(report.records) + list(extra_rows)
    out = Path(out)
    atomic_write_json(out / "verdict.json", {"rows": rows}, indent=1)
    atomic_write_text(out / "verdict.md", render_markdown(rows, title))
    return rows
