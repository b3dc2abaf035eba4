"""Throughput cost of the fixed-thread default: the same small sweep with ``threads = 1`` and 2.

    python benchmarks/bench_threads.py [--repeats 5] [--out benchmarks/results]

A sweep fixes torch's intra-op threads to its ``threads`` key (default 1) so that records do
not depend on the machine's thread count. This measures what that costs: the same sweep (4
slices in one batch, 3 budgets, ResUnet++ attacked with 10-step PGD and evaluated with
ResUnet++ and zero-filled, 2 null draws) run in this process with ``threads = 1`` and ``= 2``,
alternately, after one warm-up run each; min and median wall time of ``--repeats`` (>= 5) runs.
Also reports how far the two thread counts' records are apart (the reason the count is part of
the configuration). Writes ``threads.csv``; the load average is recorded, since other work on
the machine inflates both.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from kspace_attacks.study.sweep import build_models, run_sweep, validate_config

CONFIG = {"n_slices": 4, "batch_size": 4, "eps": [0.0, 0.04, 0.08], "surrogates": ["resunetpp"],
          "targets": ["resunetpp", "zero_filled"], "attacks": {"pgd": {"type": "pgd", "steps": 10}},
          "null_draws": 2}


def _run(threads: int, models: dict) -> tuple[float, list[dict]]:
    with tempfile.TemporaryDirectory() as d:
        start = time.perf_counter()
        report = run_sweep(validate_config(dict(CONFIG, threads=threads)), d, progress=False, models=models).report
        return time.perf_counter() - start, report.records


def _max_rel_diff(a: list[dict], b: list[dict]) -> float:
    worst = 0.0
    for ra, rb in zip(a, b, strict=True):
        for k, va in ra.items():
            vb = rb[k]
            if "seconds" in k or not isinstance(va, float) or math.isnan(va) or math.isnan(vb):
                continue
            worst = max(worst, abs(va - vb) / max(abs(va), abs(vb), 1e-12))
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per thread count (>= 5)")
    parser.add_argument("--out", default="benchmarks/results", help="folder of threads.csv")
    args = parser.parse_args(argv)
    if args.repeats < 5:
        parser.error(f"--repeats: expected >= 5, got {args.repeats}")
    models = build_models(validate_config(CONFIG))
    load_before = os.getloadavg()[0]
    times: dict[int, list[float]] = {1: [], 2: []}
    records = {t: _run(t, models)[1] for t in (1, 2)}  # warm-up, and the records compared below
    for _ in range(args.repeats):
        for t in (1, 2):
            times[t].append(_run(t, models)[0])
    load_after = os.getloadavg()[0]
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
    rows = []
    for t in (1, 2):
        rows.append({"threads": t, "runs": args.repeats, "min_s": min(times[t]), "median_s": statistics.median(times[t]),
                     "slices_per_min_at_median": 60 * CONFIG["n_slices"] / statistics.median(times[t]),
                     "machine": machine, "load_avg_1min_before_after": f"{load_before:.2f} / {load_after:.2f}"})
    diff = _max_rel_diff(records[1], records[2])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "threads.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=[*rows[0], "max_rel_diff_records_1_vs_2"])
        w.writeheader()
        w.writerows(dict(r, max_rel_diff_records_1_vs_2=diff) for r in rows)
    print(f"machine: {machine}; load average {load_before:.2f} before, {load_after:.2f} after")
    for r in rows:
        print(f"threads = {r['threads']}: min {r['min_s']:.2f} s, median {r['median_s']:.2f} s "
              f"({args.repeats} runs)")
    print(f"threads 2 / 1 time (median): {rows[1]['median_s'] / rows[0]['median_s']:.2f}; "
          f"largest relative difference between their records: {diff:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
