"""Why the worst case depended on luck: basins, starts and APGD's schedule on the shipped ResUnet++.

    python benchmarks/bench_starts.py [--out benchmarks/results]

On the 4 demo slices (``demo_batch(4)``) at eps 0.08 (relative l2, measured k-space), deviation
objective, it prints and writes ``starts_basins.md``:

1. one 20-step APGD run from uniform random starts, seeds 0, 1, 2 (the v1 search);
2. the spectral start: the top singular vector ``v`` of the Jacobian (10 power iterations) and
   20-step APGD runs from ``+v`` and from ``-v`` (the two signs land in different basins);
3. APGD from ``-v`` with 30, 100 and 300 steps, and the 300-step run's best after 30 and 100
   evaluations (the step halves first at 22 % of a run: a long run refines later, not better);
4. ``WorstCase`` (budget 100) with seeds 0-4.

Values are ``||f(y+delta) - f(y)||`` per slice. Deterministic (one thread, seeded).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import kspace_attacks as ka
from kspace_attacks.adapters import load_reconstructor
from kspace_attacks.attacks.base import Problem, frozen_eval
from kspace_attacks.attacks.starts import spectral_directions
from kspace_attacks.data import demo_batch
from kspace_attacks.losses import resolve_loss


def norms(loss: torch.Tensor) -> list[float]:
    return [round(float(v), 2) for v in loss.clamp_min(0).sqrt()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    p.add_argument("--eps", type=float, default=0.08)
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    model = load_reconstructor("resunetpp")
    _, y, physics = demo_batch(4)
    threat = ka.KSpaceL2(eps=args.eps)
    lines = [f"# Basins and starts: ResUnet++, eps {args.eps}, 4 demo slices, ||f(y+delta) - f(y)||", "",
             "Written by `benchmarks/bench_starts.py`.", "", "| search | slice 0 | slice 1 | slice 2 | slice 3 |",
             "|---|---|---|---|---|"]

    def row(label: str, values: list[float]) -> None:
        lines.append(f"| {label} | " + " | ".join(f"{v:.2f}" for v in values) + " |")
        print(label, values, flush=True)

    for seed in range(3):
        row(f"APGD 20, uniform start, seed {seed}", norms(ka.APGD(threat, steps=20, seed=seed)(model, y, physics).loss))
    with frozen_eval(model), torch.no_grad():
        x_clean = model(y, physics)
    problem = Problem(model, y, physics, threat, resolve_loss(None), x_clean, None, None)
    with frozen_eval(model):
        dirs, gains = spectral_directions(problem, 1, 10, torch.Generator().manual_seed(0))
    row("linearised deviation ||J b v|| of the top singular vector", [round(float(g), 2) for g in gains[0]])
    v = dirs[0] * threat.step_scale(y)
    for sign, label in ((1, "+v"), (-1, "-v")):
        row(f"APGD 20 from {label}", norms(ka.APGD(threat, steps=20, start=sign * v)(model, y, physics).loss))
    long_run = ka.APGD(threat, steps=300, start=-v)(model, y, physics)
    for n in (30, 100):
        row(f"APGD {n} from -v", norms(ka.APGD(threat, steps=n, start=-v)(model, y, physics).loss))
        row(f"APGD 300 from -v, best after {n} evaluations", norms(long_run.history[n - 1]))
    row("APGD 300 from -v", norms(long_run.loss))
    for seed in range(5):
        res = ka.WorstCase(threat, seed=seed)(model, y, physics)
        row(f"WorstCase 100, seed {seed} (restart spread {float(res.restart_spread.mean()):.2f})", norms(res.loss))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "starts_basins.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
