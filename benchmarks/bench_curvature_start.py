"""Does the curvature start help the SSIM objective? The default search with and without it.

    OMP_NUM_THREADS=1 python benchmarks/bench_curvature_start.py --models resunetpp irim

For each model, one batch holds ``--slices`` embedded test slices at eps 0.02, 0.05, 0.08
(relative l2, measured k-space). The SSIM objective (``1 - SSIM(|f(y+delta)|, |f(y)|)``) is
maximised by ``WorstCase(budget=100)`` with ``curvature=False`` (the Jacobian start and random
starts only) and ``curvature=True`` (the Hessian's top eigenvector joins them, the default for
SSIM), each with ``--seeds`` seeds, and by a reference: the ``strong`` preset at
``--ref-budget`` evaluations with the curvature start. Best-known per row = max over every run;
the table gives per eps the worst slice and the mean of reached / best-known, and the spread of
the seeds (max / min - 1, worst slice). Writes ``benchmarks/results/curvature_start.{csv,md}``.
"""

from __future__ import annotations

import argparse
import csv
import platform
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import kspace_attacks as ka  # noqa: E402
from kspace_attacks.adapters import load_reconstructor  # noqa: E402
from kspace_attacks.data import demo_batch  # noqa: E402
from kspace_attacks.io import atomic_write_text  # noqa: E402

EPS = (0.02, 0.05, 0.08)
OUT = ROOT / "benchmarks" / "results"


def run(model_name: str, slices: int, seeds: int, ref_budget: int) -> list[dict]:
    torch.set_flush_denormal(True)
    x, y, physics = demo_batch(slices)
    n = y.shape[0]
    y_all = y.repeat(len(EPS), 1, 1, 1)
    physics_all = type(physics)(mask=physics.mask.repeat(len(EPS), 1, 1, 1), img_size=tuple(y.shape[-2:]))
    eps = torch.tensor(EPS, dtype=torch.float64).repeat_interleave(n)
    groups = [j for _ in EPS for j in range(n)]
    model = load_reconstructor(model_name)
    threat = ka.KSpaceL2(eps=eps)
    losses: dict[tuple, torch.Tensor] = {}
    for curvature in (False, True):
        for seed in range(seeds):
            atk = ka.WorstCase(threat, budget=100, loss="ssim", seed=seed, curvature=curvature)
            losses[("curvature" if curvature else "jacobian", seed)] = atk(model, y_all, physics_all, groups=groups).loss
            print(model_name, curvature, seed, flush=True)
    ref = ka.WorstCase(threat, budget=ref_budget, preset="strong", loss="ssim", curvature=True)
    losses[("reference", 0)] = ref(model, y_all, physics_all, groups=groups).loss
    best = torch.stack(list(losses.values())).amax(0)
    rows = []
    for start in ("jacobian", "curvature"):
        per_seed = torch.stack([losses[(start, s)] / best for s in range(seeds)])  # (seeds, rows)
        for k, e in enumerate(EPS):
            r = per_seed[:, k * n:(k + 1) * n]
            raw = torch.stack([losses[(start, s)][k * n:(k + 1) * n] for s in range(seeds)])
            rows.append({"model": model_name, "objective": "ssim", "eps": e, "start": start, "seeds": seeds,
                         "ratio_worst_seed0": round(float(r[0].min()), 4), "ratio_mean_seed0": round(float(r[0].mean()), 4),
                         "ratio_worst_all_seeds": round(float(r.min()), 4),
                         "seed_spread": round(float((raw.amax(0) / raw.amin(0).clamp_min(1e-12) - 1).max()), 4),
                         "reference_budget": ref_budget, "slices": n})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resunetpp", "irim"])
    parser.add_argument("--slices", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--ref-budget", type=int, default=1000)
    args = parser.parse_args()
    rows = [r for m in args.models for r in run(m, args.slices, args.seeds, args.ref_budget)]
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "curvature_start.csv.tmp", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (OUT / "curvature_start.csv.tmp").replace(OUT / "curvature_start.csv")
    lines = ["# The curvature start on the SSIM objective", "",
             f"Written by `benchmarks/bench_curvature_start.py` ({platform.processor() or platform.machine()}; "
             f"{args.slices} embedded test slices; `WorstCase(budget=100, loss='ssim')` with and without the "
             f"curvature start, {args.seeds} seeds; best-known = max over every run incl. the strong preset at "
             f"{args.ref_budget} evaluations). Ratios in 1 - SSIM.", "",
             "| model | eps | start | worst slice (seed 0) | mean (seed 0) | worst over seeds | seed spread |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['eps']:g} | {r['start']} | {r['ratio_worst_seed0']:.3f} | "
                     f"{r['ratio_mean_seed0']:.3f} | {r['ratio_worst_all_seeds']:.3f} | {r['seed_spread']:.3f} |")
    atomic_write_text(OUT / "curvature_start.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
