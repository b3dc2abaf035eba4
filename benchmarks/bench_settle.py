"""Does the adaptive search's "two runs agree" mean converged? ResUnet++, deviation, eps 0.08.

    OMP_NUM_THREADS=1 python benchmarks/bench_settle.py   # ~3 min on one thread

On the 8 strength-benchmark slices at eps 0.08 alone (``bench_strength.make_batch(8, [0.08])``),
the deviation norm ``||f(y+delta) - f(y)||`` per slice reached by the default search at budgets
100 / 200 / 300 / 500 (seed 0) and by the adaptive search of cards (``max_budget=400``), with the
rows it flags ``unreliable``. Writes ``benchmarks/results/settle_convergence.md``.
"""

from __future__ import annotations

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


def main() -> int:
    load = os.getloadavg()[0]  # seconds are a measurement only on idle cores
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
