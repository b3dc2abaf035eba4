"""Sharding a sweep over torchrun ranks: one process vs 2 ranks, same records.

    python benchmarks/bench_sharding.py [--repeats 3] [--config demo|reduced] [--threads 1] [--out benchmarks/results]
    python benchmarks/bench_sharding.py --plan study     # the study's dry-run plan, 1 vs 2 ranks

Runs ``kspace-attacks sweep`` on the same configuration as one process
(``python -m kspace_attacks sweep``) and as ``torchrun --nproc_per_node 2``, alternately,
``--repeats`` times each (wall time includes process start-up), checks that the two give
identical records (timing columns aside), and writes ``sharding_<config>.csv`` with min and
median times and their ratio.

Both launches run every unit at the same ``--threads`` (default 1; the thread rule of
:func:`~kspace_attacks.study.sweep.rank_threads`: a launch may not change the count, so 2 ranks
at 2 threads on 2 cores are refused unless ``oversubscribe``). ``demo`` is
the demo's printed configuration (``kspace-attacks demo --print-config``: 4 slices in one batch,
9 budgets, both surrogates, both attacks, four targets, 4 null draws); ``reduced`` is its
structure with a fifth of its iterative work (attack budgets, diffusion sampler steps 50 ->
10). ``--plan study`` writes the study's ``--dry-run`` plan (per-unit and per-rank estimates,
timed here at 2 and at 1 thread) to ``sharding_study_plan.txt``; nothing is run.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import torch

from kspace_attacks.study.config import DEMO_OVERRIDES, STUDY_CONFIG
from kspace_attacks.study.sweep import DEMO_CONFIG, dump_toml, validate_config

PRINTED_DEMO = {**DEMO_CONFIG, **DEMO_OVERRIDES}  # what `kspace-attacks demo --print-config` prints
# the demo's iterative work / 5: attack budgets and diffusion sampler steps (50 -> 10)
REDUCED = dict(PRINTED_DEMO, attacks={"worst_case": {"type": "worst_case", "budget": 20},
                                      "adam": {"type": "adam", "lr": 0.1, "max_steps": 20, "max_rescales": 20}},
               models={"diffusion": {"steps": 10}})
CONFIGS = {"demo": PRINTED_DEMO, "reduced": REDUCED}


def _records(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if "seconds" not in k} for r in csv.DictReader(f)]


def _timed(cmd: list[str], env: dict) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per setting (>= 1; quote >= 3)")
    parser.add_argument("--config", choices=sorted(CONFIGS), default="reduced")
    parser.add_argument("--plan", choices=["study"], default=None,
                        help="write the study's dry-run plan for 1 and 2 ranks instead of running")
    parser.add_argument("--threads", type=int, default=1, help="threads of every unit, in both launches")
    parser.add_argument("--out", default="benchmarks/results", help="folder of sharding_<config>.csv")
    args = parser.parse_args(argv)
    if args.plan:
        from kspace_attacks.study.plan import plan_sweep

        text = plan_sweep(validate_config(STUDY_CONFIG)).text()
        note = (f"# the study's dry-run plan on {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                f"torch {torch.__version__}; load average {os.getloadavg()[0]:.2f}\n")
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "sharding_study_plan.txt").write_text(note + text + "\n")
        print(note + text)
        return 0
    if args.repeats < 1:
        parser.error(f"--repeats: expected >= 1, got {args.repeats}")
    torchrun = Path(sysconfig.get_path("scripts")) / "torchrun"
    if not torchrun.exists():
        parser.error(f"torchrun not found at {torchrun}")
    env = dict(os.environ)
    times: dict[int, list[float]] = {1: [], 2: []}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as d:
        cfg = Path(d) / "cfg.toml"
        cfg.write_text(dump_toml(validate_config(dict(CONFIGS[args.config], threads=args.threads))))
        for i in range(args.repeats):
            one = [sys.executable, "-m", "kspace_attacks", "sweep", "--config", str(cfg), "--out", f"{d}/one{i}", "--quiet"]
            two = [str(torchrun), "--nproc_per_node", "2", "--master_port", str(29650 + i), "-m", "kspace_attacks",
                   "sweep", "--config", str(cfg), "--out", f"{d}/two{i}", "--quiet"]
            times[1].append(_timed(one, env))
            times[2].append(_timed(two, env))
            print(f"run {i + 1}/{args.repeats}: 1 process {times[1][-1]:.1f} s, 2 ranks {times[2][-1]:.1f} s",
                  flush=True)
        identical = all(_records(Path(d) / f"two{i}" / "records.csv") == _records(Path(d) / "one0" / "records.csv")
                        and _records(Path(d) / f"one{i}" / "records.csv") == _records(Path(d) / "one0" / "records.csv")
                        for i in range(args.repeats))
    load_after = os.getloadavg()[0]
    med = {k: statistics.median(v) for k, v in times.items()}
    row = {"config": args.config, "threads": args.threads, "runs": args.repeats, "one_process_min_s": min(times[1]),
           "one_process_median_s": med[1], "two_ranks_min_s": min(times[2]), "two_ranks_median_s": med[2],
           "ratio_median": med[2] / med[1], "ratio_min": min(times[2]) / min(times[1]),
           "records_identical": identical,
           "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
           "load_avg_1min_before_after": f"{load_before:.2f} / {load_after:.2f}",
           "all_one_process_s": " ".join(f"{t:.1f}" for t in times[1]),
           "all_two_ranks_s": " ".join(f"{t:.1f}" for t in times[2])}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"sharding_{args.config}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        w.writeheader()
        w.writerow(row)
    print(f"{args.config}: 1 process min {row['one_process_min_s']:.1f} s / median {med[1]:.1f} s; "
          f"2 ranks min {row['two_ranks_min_s']:.1f} s / median {med[2]:.1f} s; ratio (median) "
          f"{row['ratio_median']:.2f}, (min) {row['ratio_min']:.2f}; records identical: {identical}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
