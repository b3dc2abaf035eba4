"""Seconds per slice of ``ka.certify`` on the shipped models, repeated: min / median of 3 runs.

The same settings as ``bench_certify.py`` (sigma 0.04, eps 0.01 / 0.02 / 0.05, n_pred 500,
n_cert 1200, attack budget 10), on 2 demo slices (``demo_batch(2)``), one thread; each run starts from
the loaded model, so the numbers are the certificate's own cost. Writes
``benchmarks/results/certify_timing.csv`` and prints ``uptime`` before and after (run it on idle
cores: the README quotes these numbers).

    python benchmarks/time_certify.py
"""

from __future__ import annotations

import csv
import io
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_certify import EPS, MODELS, RESULTS, SETTINGS, uptime  # noqa: E402

from kspace_attacks.adapters import load_reconstructor  # noqa: E402
from kspace_attacks.certify import certify  # noqa: E402
from kspace_attacks.data import demo_batch  # noqa: E402
from kspace_attacks.io import atomic_write_text  # noqa: E402

SIGMA, SLICES, REPEATS = 0.04, 2, 3


def main() -> None:
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    before = uptime()
    print(f"time_certify: {before}", flush=True)
    _, y, physics = demo_batch(SLICES)
    rows = []
    for name in MODELS:
        model = load_reconstructor(name)
        runs = []
        for _ in range(REPEATS):
            start = time.perf_counter()
            cert = certify(model, y, physics, eps=list(EPS), sigma=SIGMA, **SETTINGS)
            runs.append((time.perf_counter() - start) / SLICES)
        rows.append({"model": name, "sigma": SIGMA, "slices": SLICES, "repeats": REPEATS,
                     "forward_evals_per_slice": int(cert.forward_evals.float().mean()),
                     "seconds_per_slice_min": round(min(runs), 3),
                     "seconds_per_slice_median": round(statistics.median(runs), 3)})
        print(rows[-1], flush=True)
    after = uptime()
    print(f"time_certify: {after}", flush=True)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=[*rows[0], "uptime_before", "uptime_after"], lineterminator="\n")
    w.writeheader()
    w.writerows({**r, "uptime_before": before, "uptime_after": after} for r in rows)
    atomic_write_text(RESULTS / "certify_timing.csv", buf.getvalue())


if __name__ == "__main__":
    main()
