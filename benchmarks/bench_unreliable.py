"""Does the adaptive search's ``unreliable`` flag point at the rows whose worst case is missed?

    OMP_NUM_THREADS=1 python benchmarks/bench_unreliable.py --model resunetpp

One batch holds ``--slices`` embedded test slices at eps 0.02, 0.05, 0.08 (relative l2,
measured k-space, deviation objective). Runs: the default ``WorstCase(budget=100)``; the adaptive
``WorstCase(budget=100, max_budget=--cap)`` (restarts until two runs agree within 5 %); and a
reference, the ``strong`` preset at ``--ref-budget`` evaluations. Best-known per row = max over
the three; ratio = reached / best-known in the deviation norm. Per eps: worst slice and mean of
both searches, the rows the adaptive search flagged, and how the flag lines up with the rows it
misses (ratio < 0.95). Writes ``benchmarks/results/unreliable_<model>.{csv,md}``.
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
MISSED = 0.95


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resunetpp")
    parser.add_argument("--slices", type=int, default=8)
    parser.add_argument("--cap", type=int, default=400)
    parser.add_argument("--ref-budget", type=int, default=1000)
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    x, y, physics = demo_batch(args.slices)
    n = y.shape[0]
    y_all = y.repeat(len(EPS), 1, 1, 1)
    physics_all = type(physics)(mask=physics.mask.repeat(len(EPS), 1, 1, 1), img_size=tuple(y.shape[-2:]))
    threat = ka.KSpaceL2(eps=torch.tensor(EPS, dtype=torch.float64).repeat_interleave(n))
    groups = [j for _ in EPS for j in range(n)]
    model = load_reconstructor(args.model)
    default = ka.WorstCase(threat, budget=100)(model, y_all, physics_all, groups=groups)
    adaptive = ka.WorstCase(threat, budget=100, max_budget=args.cap)(model, y_all, physics_all, groups=groups)
    reference = ka.WorstCase(threat, budget=args.ref_budget, preset="strong")(model, y_all, physics_all, groups=groups)
    # the deviation norm: sqrt of the squared objective
    best = torch.stack([default.loss, adaptive.loss, reference.loss]).amax(0).sqrt()
    r_default, r_adaptive = default.loss.sqrt() / best, adaptive.loss.sqrt() / best
    flags = adaptive.unreliable
    rows = []
    for k, e in enumerate(EPS):
        sl = slice(k * n, (k + 1) * n)
        missed = r_adaptive[sl] < MISSED
        f = flags[sl]
        rows.append({"model": args.model, "eps": e, "default_worst": round(float(r_default[sl].min()), 4),
                     "default_mean": round(float(r_default[sl].mean()), 4),
                     "adaptive_worst": round(float(r_adaptive[sl].min()), 4),
                     "adaptive_mean": round(float(r_adaptive[sl].mean()), 4),
                     "flagged": int(f.sum()), "missed": int(missed.sum()),
                     "missed_and_flagged": int((missed & f).sum()), "slices": n})
    out = ROOT / "benchmarks" / "results"
    with open(out / f"unreliable_{args.model}.csv.tmp", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (out / f"unreliable_{args.model}.csv.tmp").replace(out / f"unreliable_{args.model}.csv")
    lines = [f"# The unreliable flag on {args.model} (deviation objective)", "",
             f"Written by `benchmarks/bench_unreliable.py --model {args.model}` ({platform.machine()}; {n} embedded "
             f"test slices; default `WorstCase(budget=100)`, adaptive `WorstCase(budget=100, max_budget={args.cap})`, "
             f"reference `strong` at {args.ref_budget}; ratio = reached / best-known of the three in the deviation "
             f"norm; missed = ratio < {MISSED}). Evaluations used by the adaptive search: {adaptive.grad_evals} per row "
             f"(at most {args.cap}).", "",
             "| eps | default worst / mean | adaptive worst / mean | flagged | missed | missed and flagged |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['eps']:g} | {r['default_worst']:.3f} / {r['default_mean']:.3f} | "
                     f"{r['adaptive_worst']:.3f} / {r['adaptive_mean']:.3f} | {r['flagged']} of {n} | "
                     f"{r['missed']} | {r['missed_and_flagged']} |")
    atomic_write_text(out / f"unreliable_{args.model}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
