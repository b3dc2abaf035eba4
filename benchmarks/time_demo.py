"""Wall time of ``kspace-attacks demo``, repeated on an otherwise idle machine.

    python benchmarks/time_demo.py [--repeats 3] [--out benchmarks/results/demo_time.csv] [--keep docs/demo]

Runs the demo command ``--repeats`` times (each into a fresh folder, so nothing is resumed:
temporary ones, except that ``--keep DIR``, which must not exist or be empty, receives the
first run's results), records the load average before and after each run, and writes the min and median
wall times (process start-up included) with the machine and torch version. The README quotes
these numbers; time nothing else while it runs.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3, help="timed runs (>= 1; quote >= 3)")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "demo_time.csv")
    p.add_argument("--keep", type=Path, default=None, help="folder for the first run's results (new or empty)")
    a = p.parse_args(argv)
    if a.repeats < 1:
        p.error(f"--repeats: expected >= 1, got {a.repeats}")
    if a.keep is not None and a.keep.exists() and any(a.keep.iterdir()):
        p.error(f"--keep: expected a new or empty folder, got {a.keep}, which holds files")
    times, loads = [], []
    for i in range(a.repeats):
        with tempfile.TemporaryDirectory() as d:
            if i == 0 and a.keep is not None:
                d = str(a.keep)
            before = os.getloadavg()[0]
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "kspace_attacks", "demo", "--out", d, "--quiet"], check=True,
                           capture_output=True)
            times.append(time.perf_counter() - start)
            loads.append(f"{before:.2f}/{os.getloadavg()[0]:.2f}")
        print(f"run {i + 1}/{a.repeats}: {times[-1]:.1f} s (load average before/after {loads[-1]})", flush=True)
    row = {"runs": a.repeats, "min_s": min(times), "median_s": statistics.median(times),
           "all_s": " ".join(f"{t:.1f}" for t in times), "load_avg_1min_before_after": " ".join(loads),
           "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    with open(a.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        w.writeheader()
        w.writerow(row)
    print(f"demo: min {row['min_s']:.1f} s, median {row['median_s']:.1f} s over {a.repeats} runs -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
