"""Does the adaptive search's "two runs agree" mean converged? ResUnet++, deviation, eps 0.08.

    OMP_NUM_THREADS=1 python benchmarks/bench_settle.py   # ~3 min on one thread

On the 8 strength-benchmark slices at eps 0.08 alone (``bench_strength.make_batch(8, [0.08])``),
the deviation norm ``||f(y+delta) - f(y)||`` per slice reached by the default search at budgets
100 / 200 / 300 / 500 (seed 0) and by the adaptive search of cards (``max_budget=400``), with the
rows it flags ``unreliable``. Writes ``benchmarks/results/settle_convergence.md``.

    OMP_NUM_THREADS=1 python benchmarks/bench_settle.py --part alone   # ~1 min on one thread

Slice 6 alone (the row the adaptive search settles below the best-known): the default search at
budgets 100 .. 400 with its first round's best per start (which basin the halving keeps), five
seeds at budget 300, and the adaptive search. Writes ``benchmarks/results/settle_one_slice.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

import kspace_attacks as ka
from kspace_attacks.adapters import load_reconstructor

sys.path.insert(0, str(Path(__file__).parent))
from bench_strength import make_batch  # noqa: E402


def one_slice(index: int = 6) -> list[str]:
    """Where one slice's search ends and which first-round start it continued."""
    model = load_reconstructor("resunetpp")
    y, eps_rows, physics = make_batch(8, [0.08])
    y, threat = y[index : index + 1], ka.KSpaceL2(eps=eps_rows[index : index + 1])
    lines = ["| search | deviation norm | first round, best per start (+v, -v, random, random) | evaluations |",
             "|---|---|---|---|"]
    runs = [(f"default, budget {b}, seed 0", dict(budget=b)) for b in (100, 150, 200, 250, 300, 400)]
    runs += [(f"default, budget 300, seed {s}", dict(budget=300, seed=s)) for s in (1, 2, 3, 4)]
    runs += [("adaptive, max_budget 400, seed 0", dict(budget=100, max_budget=400))]
    for label, kwargs in runs:
        res = ka.WorstCase(threat, **kwargs)(model, y, physics)
        starts = ", ".join(f"{v:.1f}" for v in res.start_losses.sqrt().flatten().tolist())
        flag = " (unreliable)" if res.unreliable is not None and bool(res.unreliable.any()) else ""
        lines.append(f"| {label} | {float(res.loss.sqrt()):.2f}{flag} | {starts} | {res.grad_evals} |")
        print(lines[-1], flush=True)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=["batch", "alone"], default="batch")
    part = parser.parse_args(argv).part
    load = os.getloadavg()[0]  # seconds are a measurement only on idle cores
    if part == "alone":
        torch.set_flush_denormal(True)
        torch.set_num_threads(1)
        head = ["# One slice alone: which basin the default search keeps (ResUnet++, deviation, eps 0.08, slice 6)", "",
                f"{platform.machine()}, torch {torch.__version__}, 1 thread; `benchmarks/bench_settle.py --part alone`; "
                "the slice's row of `bench_strength.make_batch(8, [0.08])` attacked on its own (its random starts "
                "differ from the 8-slice batch's). +v / -v: the two signs of the Jacobian's top singular vector.", ""]
        out = Path(__file__).parent / "results" / "settle_one_slice.md"
        out.write_text("\n".join(head + one_slice()) + "\n")
        print(f"-> {out}")
        return 0
    torch.set_flush_denormal(True)
    torch.set_num_threads(1)
    model = load_reconstructor("resunetpp")
    y, eps_rows, physics = make_batch(8, [0.08])
    threat = ka.KSpaceL2(eps=eps_rows)
    lines = ["| search | " + " | ".join(f"slice {i}" for i in range(8)) + " | flagged | seconds |",
             "|---|" + "---|" * 10]
    for budget in (100, 200, 300, 500):
        start = time.perf_counter()
        res = ka.WorstCase(threat, budget=budget, seed=0)(model, y, physics)
        cells = " | ".join(f"{v:.2f}" for v in res.loss.sqrt().tolist())
        lines.append(f"| default, budget {budget} | {cells} | - | {time.perf_counter() - start:.0f} |")
        print(lines[-1], flush=True)
    start = time.perf_counter()
    res = ka.WorstCase(threat, budget=100, max_budget=400, seed=0)(model, y, physics)
    cells = " | ".join(f"{v:.2f}" for v in res.loss.sqrt().tolist())
    flagged = ", ".join(str(i) for i, f in enumerate(res.unreliable.tolist()) if f)
    lines.append(f"| adaptive, max_budget 400 ({res.grad_evals} used) | {cells} | {flagged} | "
                 f"{time.perf_counter() - start:.0f} |")
    print(lines[-1], flush=True)
    head = ["# Adaptive agreement vs convergence (ResUnet++, deviation norm, eps 0.08)", "",
            f"{platform.machine()}, torch {torch.__version__}, 1 thread; `benchmarks/bench_settle.py`; "
            f"seconds: one run each, load average {load:.2f} at the start (values are deterministic).", ""]
    out = Path(__file__).parent / "results" / "settle_convergence.md"
    out.write_text("\n".join(head + lines) + "\n")
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
