"""Certified brackets by center smoothing on the shipped models: attack lower bound <= certified radius.

For ``zero_filled``, ``irim`` and ``resunetpp`` on the 8 embedded demo slices, at eps 0.01 /
0.02 / 0.05 and two noise levels, :func:`kspace_attacks.certify.certify` gives per slice

- ``radius_rel``: with probability >= 1 - alpha, no perturbation ``||delta|| <= eps ||y||`` on the
  measured entries moves the SMOOTHED reconstruction by more than this (relative to its norm);
- ``lower_rel``: how far the WorstCase search (10 gradient evaluations on a surrogate smoothed
  model of 8 draws per call) actually moved it, evaluated on the certified smoothed model;
- ``width = radius_rel / lower_rel`` (1 would be a closed bracket) and the abstention rate.

The diffusion model is not run: its cost is written on paper (reconstructions per slice x the
measured seconds of one sampler run). Writes ``benchmarks/results/certify.{csv,md}`` (one row
per model, sigma and eps) and ``certify_slices.csv`` (one row per slice).

    nohup python benchmarks/bench_certify.py > bench_certify.log 2>&1 &
"""

from __future__ import annotations

import csv
import io
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kspace_attacks.adapters import load_reconstructor  # noqa: E402
from kspace_attacks.certify import certify  # noqa: E402
from kspace_attacks.certify.bound import certified_quantile, max_eps_over_sigma  # noqa: E402
from kspace_attacks.certify.smoothing import row_physics  # noqa: E402
from kspace_attacks.data import demo_batch  # noqa: E402
from kspace_attacks.io import atomic_write_text  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
MODELS = ("zero_filled", "irim", "resunetpp")
EPS = (0.01, 0.02, 0.05)
# sigma 0.01: the smallest noise that certifies the smallest budget (eps/sigma = 1; noise norm
# 0.45 ||y|| on these 2048 measured real entries). sigma 0.04: the smallest round noise that
# certifies every budget with these n (eps/sigma <= 1.25 < max 1.29; noise norm 1.8 ||y||).
SIGMAS = (0.01, 0.04)
# Sized for <= 20 min on one thread: delta 0.15 (paper 0.05) lets n_pred = 500 pass the check
# (its margin 0.077 leaves ~2 standard deviations of slack), n_cert = 1200 (paper 10^6).
SETTINGS = dict(n_pred=500, n_cert=1200, alpha=0.01, delta=0.15, beta=2.0, batch_size=32, seed=0,
                attack_budget=10, attack_n=8, eot=1)
PAPER = dict(n_pred=10**4, n_cert=10**6, delta=0.05, alpha=0.01)


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: {:.2f}, {:.2f}, {:.2f}".format(*os.getloadavg())


def seconds_per_run(model, y, physics, batch: int = 1, repeats: int = 3) -> float:
    """Min over ``repeats`` of the wall time of one call on ``batch`` copies of slice 0, per image."""
    p = row_physics(physics, 0, batch, y.shape[0])
    x = y[:1].repeat(batch, *([1] * (y.dim() - 1)))
    best = math.inf
    with torch.no_grad():
        for _ in range(repeats):
            t = time.perf_counter()
            model(x, p)
            best = min(best, time.perf_counter() - t)
    return best / batch


def paper_radius_estimate(cert, i: int, eps: float) -> float:
    """The radius (relative) the paper's n and delta would give on the same distance distribution:
    the empirical quantile of our n_cert distances at the paper's level (an estimate, not a
    certificate: n_cert draws cannot certify a level that close to our own)."""
    q = certified_quantile(eps / cert.sigma, PAPER["delta"], PAPER["alpha"] / 2, PAPER["n_cert"])
    d = cert.distances[i]
    if q > 1 or torch.isnan(d).any():
        return math.nan
    r = (1 + cert.beta) * float(torch.quantile(d, q))
    return r / float(cert.reconstruction[i].double().norm())


def median(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else math.nan


def aggregate(name: str, sigma: float, rows: list[dict], sec_per_img: float) -> list[dict]:
    out = []
    for eps in EPS:
        r = [row for row in rows if row["eps"] == eps]
        ok = [row for row in r if not row["abstained"]]
        out.append({
            "model": name, "sigma": sigma, "eps": eps, "eps_over_sigma": round(eps / sigma, 3),
            "slices": len(r), "abstention_rate": round(1 - len(ok) / len(r), 3),
            "lower_rel": median([row["lower_rel"] for row in r]),
            "radius_rel": median([row["radius_rel"] for row in ok]),
            "width": median([row["width"] for row in ok]),
            "max_lower_over_radius": max((row["lower"] / row["radius"] for row in ok), default=math.nan),
            # over every slice whose center passed: the paper's n may certify where ours abstain
            "radius_rel_paper_n_estimate": median([row["radius_rel_paper_n"] for row in r if row["center_ok"]]),
            "smoothing_error_rel": median([row["smoothing_error_rel"] for row in r]),
            "noise_rel": median([row["noise_rel"] for row in r]),
            "forward_passes_per_slice": statistics.mean(row["forward_evals"] for row in r),
            "seconds_per_slice": statistics.mean(row["seconds"] for row in r),
            "seconds_per_reconstruction": sec_per_img,
        })
    return out


def fmt(v, digits: int = 3) -> str:
    if isinstance(v, float):
        return "—" if math.isnan(v) else f"{v:.{digits}g}"
    return str(v)


def write(aggs: list[dict], slices: list[dict], notes: dict) -> None:
    for path, rows in ((RESULTS / "certify.csv", aggs), (RESULTS / "certify_slices.csv", slices)):
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(path, buf.getvalue())
    cols = ["model", "sigma", "eps", "eps_over_sigma", "abstention_rate", "lower_rel", "radius_rel",
            "width", "radius_rel_paper_n_estimate", "smoothing_error_rel", "noise_rel",
            "forward_passes_per_slice", "seconds_per_slice"]
    table = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    table += ["| " + " | ".join(fmt(a[c]) for c in cols) + " |" for a in aggs]
    md = [
        "# Certified brackets by center smoothing (Kumar & Goldstein, NeurIPS 2021)",
        "",
        f"Machine: {notes['machine']}; one process, one torch thread, denormals flushed. `uptime` "
        f"before: `{notes['load_before']}`, after: `{notes['load_after']}` (a load near 1 is this "
        f"benchmark alone). One run, not repeated: the seconds are indicative, the forward passes "
        f"exact. Total {notes['total_seconds']:.0f} s.",
        "",
        f"Settings: {SETTINGS}; 8 embedded demo slices (64 x 64, 2048 measured real entries). The "
        f"largest certifiable eps/sigma with these n is {notes['max_ratio']:.3f} (paper's n and delta: "
        f"{notes['max_ratio_paper']:.3f}).",
        "",
        "`lower_rel` / `radius_rel`: medians over slices of ||smoothed(y + delta) - smoothed(y)|| over "
        "||smoothed(y)|| (attack) and of the certified bound (certified slices only); `width` the median "
        "per-slice ratio; `radius_rel_paper_n_estimate`: the same distance distribution read at the "
        "quantile the paper's n_cert = 10^6 and delta = 0.05 would use, over slices whose center passed "
        "(an estimate, not a certificate); `smoothing_error_rel`: ||smoothed(y) - f(y)|| / ||smoothed(y)||; `noise_rel`: "
        "the noise's norm over ||y||. Forward passes and seconds are per slice for all three eps "
        "together (one set of draws serves every eps; the attack is per eps and skipped where every "
        "slice abstains).",
        "",
        *table,
        "",
        "## Diffusion (not run: cost on paper)",
        "",
        f"One sampler run of `load_reconstructor(\"diffusion\")` on one slice: {notes['diffusion_s']:.2f} s "
        f"(min of 3, one thread, same load). Certifying one slice with the settings above takes "
        f"2 n_pred + n_cert + 1 = {notes['diffusion_runs']} sampler runs = "
        f"{notes['diffusion_hours']:.1f} h per slice and sigma (the attack's runs come on top); with "
        f"the paper's n (2 x 10^4 + 10^6 + 1 runs) {notes['diffusion_paper_days']:.0f} days per slice.",
        "",
    ]
    atomic_write_text(RESULTS / "certify.md", "\n".join(md))


def main() -> None:
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    start = time.perf_counter()
    notes = {"load_before": uptime(), "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
             f"torch {torch.__version__}"}
    print(f"bench_certify: {notes['load_before']}", flush=True)
    _, y, physics = demo_batch(8)
    aggs, slices = [], []
    for name in MODELS:
        model = load_reconstructor(name)
        sec = seconds_per_run(model, y, physics, batch=SETTINGS["batch_size"])
        for sigma in SIGMAS:
            cert = certify(model, y, physics, eps=list(EPS), sigma=sigma, **SETTINGS)
            rows = []
            for r in cert.to_records():
                r = {"model": name, **r, "radius_rel_paper_n": paper_radius_estimate(cert, r["sample"], r["eps"])}
                rows.append(r)
            slices += rows
            aggs += aggregate(name, sigma, rows, sec)
            print(f"{name} sigma {sigma}: {cert.seconds:.0f} s; " + "; ".join(
                f"eps {a['eps']}: lower {fmt(a['lower_rel'])} radius {fmt(a['radius_rel'])} "
                f"abstain {a['abstention_rate']}" for a in aggs[-len(EPS):]), flush=True)
            write(aggs, slices, {**notes, "load_after": uptime(), "total_seconds": time.perf_counter() - start,
                                 **_ratios(), **_diffusion(None)})
    diffusion = load_reconstructor("diffusion")
    notes.update(_diffusion(seconds_per_run(diffusion, y, physics, batch=1)))
    print(f"diffusion: {notes['diffusion_s']:.2f} s per sampler run", flush=True)
    notes.update(load_after=uptime(), total_seconds=time.perf_counter() - start, **_ratios())
    write(aggs, slices, notes)
    print(f"bench_certify: done in {notes['total_seconds']:.0f} s; {notes['load_after']}", flush=True)


def _ratios() -> dict:
    alpha2 = SETTINGS["alpha"] / 2
    return {"max_ratio": max_eps_over_sigma(SETTINGS["delta"], alpha2, SETTINGS["n_cert"]),
            "max_ratio_paper": max_eps_over_sigma(PAPER["delta"], PAPER["alpha"] / 2, PAPER["n_cert"])}


def _diffusion(seconds: float | None) -> dict:
    s = math.nan if seconds is None else seconds
    runs = 2 * SETTINGS["n_pred"] + SETTINGS["n_cert"] + 1
    paper = 2 * PAPER["n_pred"] + PAPER["n_cert"] + 1
    return {"diffusion_s": s, "diffusion_runs": runs, "diffusion_hours": runs * s / 3600,
            "diffusion_paper_days": paper * s / 86400}


if __name__ == "__main__":
    main()
