"""The headline numbers of a study run, as docs/study/README.md and the README quote them.

    python benchmarks/study_headlines.py [DIR]   # default docs/study

From ``DIR/verdict.json`` and ``DIR/records.csv``:

1. per (surrogate, attack) -> target cell at the largest eps: the attack's and equal-norm
   noise's mean harm, the paired difference [95 % CI], the corrected outcome and the unit, in
   relative deviation, SSIM lost and PSNR lost (reference scale) and the structure area;
2. the min-max exploit in the study: PSNR lost over noise on the reference scale next to the
   same with per-image min-max normalisation (the original study's scoring), per attack;
3. what the models invent: the mean null-space fraction of the change
   (``delta_null_fraction``) per target and attack at the largest eps;
4. the counts of outcomes per question and metric (the answers) with the unit behind them;
5. the mean of each cell's records at the largest eps (relative deviation, Delta SSIM, Delta
   PSNR, structure area, null-space fraction, restart spread): the demo's table.
"""

from __future__ import annotations

import math
import sys
from collections import defaultdict
from pathlib import Path

from kspace_attacks.io import read_json
from kspace_attacks.study.answers import answer
from kspace_attacks.study.config import load_config
from kspace_attacks.study.report import records_from_csv

NOISE = ("random", "noise")


def _fmt(v: float, metric: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "nan"
    return f"{v:+.2f}" if metric == "psnr" else f"{v:+.3f}"


def headline_cells(rows: list[dict], eps: float) -> list[str]:
    cells = defaultdict(dict)
    for r in rows:
        if r["claim_id"] in ("beats_noise", "structured") and abs(float(r["eps"]) - eps) < 1e-9:
            cells[(r["surrogate"], r["attack"], r["target"])][r["metric"]] = r
    out = ["| surrogate (attack) -> target | rel. deviation | SSIM lost | PSNR lost (dB) | structure area |",
           "|---|---|---|---|---|"]
    for (s, a, t), by in sorted(cells.items()):
        parts = []
        for m in ("deviation", "ssim", "psnr", "structure"):
            r = by.get(m)
            if r is None:
                parts.append("-")
                continue
            pa = r.get("mean_a")
            pb = r.get("mean_b")
            parts.append(f"{pa:.3f} vs {pb:.3f}: {_fmt(r['mean_diff'], m)} [{_fmt(r['ci_low'], m)}, "
                         f"{_fmt(r['ci_high'], m)}] {r['outcome']}" if m != "psnr" else
                         f"{pa:.2f} vs {pb:.2f}: {_fmt(r['mean_diff'], m)} [{_fmt(r['ci_low'], m)}, "
                         f"{_fmt(r['ci_high'], m)}] {r['outcome']}")
        unit = next(iter(by.values()))
        out.append(f"| {s} ({a}) -> {t} ({unit.get('n')} items, {unit.get('n_clusters')} {unit.get('unit')}s) | "
                   + " | ".join(parts) + " |")
    return out


def _mean(values: list[float]) -> float:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return sum(vals) / len(vals) if vals else float("nan")


def minmax_exploit(records: list[dict], eps: float) -> list[str]:
    """PSNR lost over noise, reference scale vs min-max, per (surrogate, attack) -> target."""
    by = defaultdict(lambda: defaultdict(dict))
    for r in records:
        if abs(float(r["eps"]) - eps) > 1e-9 or r.get("delta_psnr") is None:
            continue
        by[r["target"]][(r["surrogate"], r["attack"])][r["sample_id"]] = r
    out = ["| surrogate (attack) -> target | PSNR lost over noise, reference scale | same, min-max (the paper's) |",
           "|---|---|---|"]
    for t, cells in sorted(by.items()):
        noise = cells.get(NOISE, {})
        for (s, a), recs in sorted(cells.items()):
            if (s, a) == NOISE:
                continue
            common = [i for i in recs if i in noise]
            ref = _mean([-(float(recs[i]["delta_psnr"]) - float(noise[i]["delta_psnr"])) for i in common])
            mm = _mean([-(float(recs[i]["delta_psnr_minmax"]) - float(noise[i]["delta_psnr_minmax"]))
                        for i in common if recs[i].get("delta_psnr_minmax") is not None])
            out.append(f"| {s} ({a}) -> {t} | {ref:+.2f} dB | {mm:+.2f} dB |")
    return out


def null_fractions(records: list[dict], eps: float) -> list[str]:
    by = defaultdict(list)
    for r in records:
        if abs(float(r["eps"]) - eps) < 1e-9 and r.get("delta_null_fraction") is not None:
            by[(r["target"], r["surrogate"], r["attack"])].append(float(r["delta_null_fraction"]))
    out = ["| target | surrogate (attack) | mean null-space fraction of the change |", "|---|---|---|"]
    for (t, s, a), v in sorted(by.items()):
        out.append(f"| {t} | {s} ({a}) | {_mean(v):.3f} |")
    return out


def cell_means(records: list[dict], eps: float) -> list[str]:
    by = defaultdict(list)
    for r in records:
        if abs(float(r["eps"]) - eps) < 1e-9:
            by[(r["surrogate"], r["target"], r["attack"])].append(r)
    cols = ("relative_deviation", "delta_ssim", "delta_psnr", "structure_fraction", "delta_null_fraction",
            "restart_spread")
    out = ["| surrogate -> target | attack | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for (s, t, a), rs in sorted(by.items()):
        vals = [_mean([float(r[c]) for r in rs if r.get(c) not in (None, "")]) for c in cols]
        out.append(f"| {s} -> {t} | {a} | " + " | ".join(f"{v:.3f}" for v in vals) + " |")
    return out


def answer_counts(rows: list[dict], config: dict) -> list[str]:
    out = []
    for a in answer(rows, config):
        out.append(f"- {a.question.key}:")
        out += [f"  - {line}" for line in a.lines]
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    d = Path(argv[0]) if argv else Path("docs/study")
    verdict = read_json(d / "verdict.json")
    rows = verdict["rows"] if isinstance(verdict, dict) else verdict
    records = records_from_csv(d / "records.csv")
    config = load_config(d / "config.toml").as_dict()
    eps = max(float(e) for e in config["eps"])
    for title, lines in (("headline cells", headline_cells(rows, eps)),
                         ("min-max exploit", minmax_exploit(records, eps)),
                         ("null-space fraction", null_fractions(records, eps)),
                         ("answers", answer_counts(rows, config)),
                         ("cell means", cell_means(records, eps))):
        print(f"## {title} (eps {eps:g})\n")
        print("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
