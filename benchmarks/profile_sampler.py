"""Where the diffusion sampler spends its time, and which changes make it faster here.

Profiles the shipped diffusion target (100-step sampler, no grad) and the study's
differentiable surrogate (10 steps, 2 samples, forward + backward) with ``torch.profiler`` on
a batch of stacked rows, prints the top operators, then times candidate changes in the same
run (interleaved, min / median of ``--repeats``) and compares their outputs with the baseline:

- ``inference_mode``: ``torch.inference_mode`` instead of ``torch.no_grad``;
- ``channels_last``: the score network's weights and inputs in NHWC memory layout (oneDNN),
  the adapter's default now, against the default layout, for the target and the surrogate;
- ``compile``: ``torch.compile`` of the score network (``--compile``; slow to warm up);
- ``both_outputs``: the target with and without final data consistency from one trajectory
  (:meth:`~kspace_attacks.adapters.diffusion.DiffusionReconstructor.sample_variants`) against
  two sampler runs: what the study's ``diffusion`` / ``diffusion_nodc`` pair costs;
- ``threads``: 2 threads against 1.

Writes ``benchmarks/results/sampler_profile.md`` (top operators and ratios) and a CSV::

    python benchmarks/profile_sampler.py --rows 16 --repeats 3

Run it on an otherwise idle machine; ratios are measured within one run.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from kspace_attacks.adapters.diffusion import load
from kspace_attacks.data import EmbeddedBrain, get_preset

RESULTS = Path(__file__).parent / "results"


def _rows(n: int) -> tuple[torch.Tensor, object]:
    physics = get_preset("embedded").physics()
    ds = EmbeddedBrain("test")
    y = torch.stack([ds[i % len(ds)][1] for i in range(n)])
    return y, physics


def _timed(fn: Callable[[], object], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _top_ops(fn: Callable[[], object], k: int = 8) -> list[tuple[str, float, float]]:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return [(e.key, e.self_cpu_time_total / 1e6, e.self_cpu_time_total / total) for e in events[:k]]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=16, help="stacked rows per call (slices x eps)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--compile", action="store_true", help="also time torch.compile of the score network")
    p.add_argument("--out", type=Path, default=RESULTS / "sampler_profile.md")
    a = p.parse_args(argv)
    torch.set_flush_denormal(True)
    torch.set_num_threads(2)
    load_before = f"{os.getloadavg()[0]:.2f}"
    y, physics = _rows(a.rows)
    target = load("embedded")  # the defaults (channels_last)
    nodc = load("embedded", final_dc=False)
    surrogate = load("embedded", differentiable=True, steps=10, n_samples=2)
    plain_target = load("embedded", channels_last=False)  # the default memory layout
    plain_surrogate = load("embedded", differentiable=True, steps=10, n_samples=2, channels_last=False)

    def recon(model=target, mode=torch.no_grad):
        with mode():
            return model(y, physics)

    def grad(model=surrogate):
        y_ = y.clone().requires_grad_(True)
        model(y_, physics).pow(2).sum().backward()
        return y_.grad

    lines = [f"# Diffusion sampler profile ({a.rows} stacked rows, {platform.machine()}, "
             f"{os.cpu_count()} cores, torch {torch.__version__})", ""]
    for name, fn in (("target, 100 steps, no grad", recon), ("surrogate, 10 steps x 2 samples, fwd + bwd", grad)):
        fn()  # warm-up
        lines += [f"## Top operators: {name} (self CPU time)", "", "| operator | s | share |", "|---|---|---|"]
        lines += [f"| `{op}` | {s:.2f} | {share:.0%} |" for op, s, share in _top_ops(fn)]
        lines.append("")

    candidates: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {}
    candidates["channels_last"] = (lambda: recon(plain_target), recon)
    candidates["channels_last (surrogate gradient)"] = (lambda: grad(plain_surrogate), grad)
    candidates["inference_mode"] = (recon, lambda: recon(mode=torch.inference_mode))

    def two_runs():
        return recon(), recon(nodc)

    def one_trajectory():
        with torch.no_grad():
            both = target.sample_variants(y, physics)
        return both[True], both[False]
    candidates["both_outputs"] = (two_runs, one_trajectory)

    def one_thread():
        torch.set_num_threads(1)
        try:
            return recon()
        finally:
            torch.set_num_threads(2)
    candidates["threads"] = (one_thread, recon)
    if a.compile:  # against the default layout: compile picks its own
        compiled = torch.compile(plain_target.net)
        plain = plain_target.net

        def with_compile():
            plain_target.net = compiled
            try:
                return recon(plain_target)
            finally:
                plain_target.net = plain
        with_compile()  # compilation
        candidates["compile"] = (lambda: recon(plain_target), with_compile)

    rows = []
    lines += ["## Candidate changes (same run, interleaved; ratio = after / before of the median)", "",
              "| change | before s (min / median) | after s (min / median) | ratio | max abs output difference |",
              "|---|---|---|---|---|"]
    for name, (before, after) in candidates.items():
        tb, ta = [], []
        for _ in range(a.repeats):  # interleaved, so slow drift of the machine hits both alike
            tb += _timed(before, 1)
            ta += _timed(after, 1)
        out, ref = after(), before()
        if name == "both_outputs":
            diff = max((o - r).abs().max().item() for o, r in zip(out, ref))
        else:
            diff = (out - ref).abs().max().item()
        ratio = statistics.median(ta) / statistics.median(tb)
        rows.append({"change": name, "rows": a.rows, "before_min_s": min(tb), "before_median_s": statistics.median(tb),
                     "after_min_s": min(ta), "after_median_s": statistics.median(ta), "ratio": ratio,
                     "max_abs_diff": diff})
        lines.append(f"| {name} | {min(tb):.2f} / {statistics.median(tb):.2f} | {min(ta):.2f} / "
                     f"{statistics.median(ta):.2f} | {ratio:.2f} | {diff:.1e} |")
        print(lines[-1], flush=True)
    lines += ["", f"{a.repeats} repeats each; load average before / after: {load_before} / "
                  f"{os.getloadavg()[0]:.2f}. The gradient row compares input gradients."]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("\n".join(lines) + "\n")
    with open(a.out.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
