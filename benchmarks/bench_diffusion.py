"""Speed of the diffusion reconstructor (shipped weights, default sampler) on CPU.

Reports the wall time of one clean 64x64 reconstruction, reconstructions per second for batch
sizes 1, 2, 4, 8 (no-grad mode), and the time of one forward + backward pass in differentiable
mode (what a white-box attack step costs). Prints a table and writes a CSV::

    python benchmarks/bench_diffusion.py --threads 2 --csv runs/bench_diffusion.csv

Timings depend on the machine and on other processes: run it on an otherwise idle CPU (with
more busy threads than cores, OpenMP spin-waiting can make torch 10-100x slower).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path

import torch

from kspace_attacks.adapters.diffusion import load
from kspace_attacks.data import EmbeddedBrain, get_preset


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=None, help="override the default step count")
    p.add_argument("--no-grad-only", action="store_true", help="skip the differentiable timing")
    p.add_argument("--csv", type=Path, default=Path("runs") / "bench_diffusion.csv")
    a = p.parse_args(argv)
    torch.set_flush_denormal(True)  # denormals made CPU steps 10-30x slower
    torch.set_num_threads(a.threads)
    kw = {} if a.steps is None else {"steps": a.steps}
    model = load("embedded", **kw)
    physics = get_preset("embedded").physics()
    ds = EmbeddedBrain("test")
    y_all = torch.stack([ds[i][1] for i in range(max(a.batch_sizes))])
    sk = model.sampler_kwargs
    print(
        f"diffusion sampler: steps={sk['steps']} eta={sk['eta']} lam={sk['lam']} "
        f"corrector_steps={sk['corrector_steps']} n_samples={sk['n_samples']}; "
        f"threads={a.threads}"
    )
    rows = []
    with torch.no_grad():
        for b in a.batch_sizes:
            t = _time(lambda b=b: model(y_all[:b], physics), a.repeats)
            rows.append(
                {
                    "mode": "no_grad",
                    "batch": b,
                    "s_per_batch": t,
                    "s_per_slice": t / b,
                    "recon_per_s": b / t,
                }
            )
    if not a.no_grad_only:
        y = y_all[:1].clone().requires_grad_(True)

        def fwd_bwd():
            out = model(y, physics, differentiable=True)
            torch.autograd.grad(out.pow(2).sum(), y)

        t = _time(fwd_bwd, max(1, a.repeats - 1))
        rows.append(
            {
                "mode": "differentiable fwd+bwd",
                "batch": 1,
                "s_per_batch": t,
                "s_per_slice": t,
                "recon_per_s": 1 / t,
            }
        )
    print(f"{'mode':<24}{'batch':>6}{'s/batch':>10}{'s/slice':>10}{'recon/s':>10}")
    for r in rows:
        print(
            f"{r['mode']:<24}{r['batch']:>6}{r['s_per_batch']:>10.3f}"
            f"{r['s_per_slice']:>10.3f}{r['recon_per_s']:>10.2f}"
        )
    a.csv.parent.mkdir(parents=True, exist_ok=True)
    with open(a.csv, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(
            f,
            fieldnames=[
                "mode",
                "batch",
                "threads",
                "steps",
                "s_per_batch",
                "s_per_slice",
                "recon_per_s",
            ],
        )
        w.writeheader()
        for r in rows:
            w.writerow({**r, "threads": a.threads, "steps": sk["steps"]})
    print(f"wrote {a.csv}")
    return rows


if __name__ == "__main__":
    main()
