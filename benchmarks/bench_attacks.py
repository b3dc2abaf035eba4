"""Speed and strength of the attacks, measured side by side in one run.

    python benchmarks/bench_attacks.py [--out benchmarks/results] [--quick]

Prints a table and writes ``attack_benchmarks.csv`` plus ``strength_curves.csv`` (deviation
vs gradient evaluations) and ``strength_curves.png``:

1. eps-grid batching: one PGD call holding the 9 budgets of the study's grid (per-sample eps)
   vs 9 separate calls, equal steps -> time ratio (target <= 0.5);
2. attack-loop overhead: PGD vs a bare loop of the same number of forward+backward passes of
   the model w.r.t. its input -> time ratio (target <= 1.05);
3. strength per gradient evaluation: PGD with restarts (2 x 50 = 100 evaluations) vs the
   study's projected-Adam runner (up to 2000 steps; it stops after 100 rescalings onto the
   ball), on the embedded i-RIM and ResUnet++ at eps 0.02 and 0.08, 2 test slices ->
   deviation ratio (target >= 1);
4. sharding: the same sweep with torchrun on 2 ranks (one thread each) vs 1 rank -> speed-up
   (target >= 1.7 on 2 cores).
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import subprocess
import sys
import statistics
import sysconfig
import tempfile
import time
from pathlib import Path

import torch

import kspace_attacks as ka
from kspace_attacks.adapters import load_reconstructor
from kspace_attacks.data import demo_batch, get_preset


def _machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"


def _timed(fn, repeats: int = 5) -> tuple[float, float]:
    """(min, median) wall time of ``repeats`` >= 5 calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(max(5, repeats)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def bench_batching(model, y, physics, steps: int) -> dict:
    grid = list(ka.STUDY_EPS)
    n = y.shape[0]
    eps = torch.tensor(grid, dtype=torch.float64).repeat_interleave(n)
    y_rep = y.repeat(len(grid), 1, 1, 1)
    batched, batched_med = _timed(lambda: ka.PGD(ka.KSpaceL2(eps=eps), steps=steps)(model, y_rep, physics))
    separate, separate_med = _timed(lambda: [ka.PGD(ka.KSpaceL2(eps=e), steps=steps)(model, y, physics)
                                             for e in grid])
    return {"benchmark": "eps grid batched vs separate (9 budgets)", "value": batched / separate,
            "target": "<= 0.5", "detail": f"batched min {batched:.2f}s / median {batched_med:.2f}s, separate "
                                          f"min {separate:.2f}s / median {separate_med:.2f}s, steps {steps}, 5 runs"}


def bench_overhead(model, y, physics, steps: int) -> dict:
    threat = ka.KSpaceL2(eps=0.05)

    mask = physics.mask.to(y.dtype)
    budget = 0.05 * y.flatten(1).norm(dim=1).view(-1, 1, 1, 1)

    def raw():
        # The same passes as PGD on a perturbation that moves as PGD's does: a random start,
        # normalised gradient steps of 0.25 budgets, rescaled into the ball (no bookkeeping).
        g0 = torch.randn(y.shape, generator=torch.Generator().manual_seed(0)) * mask
        d = g0 / g0.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * budget * 0.5
        with torch.no_grad():
            x0 = model(y, physics)
        for p in model.parameters():
            p.requires_grad_(False)
        for _ in range(steps):
            d = d.detach().requires_grad_(True)
            loss = (model(y + mask * d, physics) - x0).pow(2).sum()
            (g,) = torch.autograd.grad(loss, d)
            g = g * mask
            d = d + 0.25 * budget * g / g.flatten(1).norm(dim=1).clamp_min(1e-30).view(-1, 1, 1, 1)
            d = d * (budget / d.flatten(1).norm(dim=1).view(-1, 1, 1, 1)).clamp(max=1.0)
        for p in model.parameters():
            p.requires_grad_(True)

    model.eval()
    t_raw, raw_med = _timed(raw)
    t_pgd, pgd_med = _timed(lambda: ka.PGD(threat, steps=steps)(model, y, physics))
    return {"benchmark": "PGD loop overhead vs bare loop of the same moving steps", "value": t_pgd / t_raw,
            "target": "<= 1.05", "detail": f"PGD min {t_pgd:.3f}s / median {pgd_med:.3f}s, bare min {t_raw:.3f}s "
                                          f"/ median {raw_med:.3f}s, {steps} evaluations, 5 runs"}


def bench_strength(name, model, y, physics, eps: float, adam_steps: int, pgd_steps: int, restarts: int,
                   curves: list) -> dict:
    threat = ka.KSpaceL2(eps=eps)
    adam = ka.ProjectedAdam(threat, max_steps=adam_steps)(model, y, physics)
    pgd = ka.PGD(threat, steps=pgd_steps, restarts=restarts)(model, y, physics)
    for label, res in (("adam", adam), ("pgd", pgd)):
        for i, row in enumerate(res.history.mean(dim=1).tolist()):
            curves.append({"model": name, "eps": eps, "attack": label, "grad_evals": i + 1, "deviation": row})
    ratio = (pgd.loss / adam.loss).mean().item()
    return {"benchmark": f"PGD ({pgd.grad_evals} evals) / Adam ({adam.grad_evals} evals) deviation, {name}, eps {eps}",
            "value": ratio, "target": ">= 1",
            "detail": f"PGD {pgd.loss.mean():.4g} in {pgd.seconds:.1f}s, Adam {adam.loss.mean():.4g} in {adam.seconds:.1f}s"}


def bench_sharding(n_slices: int, steps: int) -> dict:
    cfg = (f'n_slices = {n_slices}\nbatch_size = 1\neps = [0.0, 0.04, 0.08]\nsurrogates = ["resunetpp"]\n'
           f'targets = ["resunetpp", "zero_filled"]\n[attacks.pgd]\ntype = "PGD"\nsteps = {steps}\n')
    torchrun = Path(sysconfig.get_path("scripts")) / "torchrun"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "cfg.toml"
        path.write_text(cfg)
        times = {}
        for ranks in (1, 2):
            cmd = [str(torchrun), "--nproc_per_node", str(ranks), "--master_port", str(29600 + ranks), "-m",
                   "kspace_attacks", "sweep", "--config", str(path), "--out", f"{d}/out{ranks}", "--quiet"]
            start = time.perf_counter()
            subprocess.run(cmd, check=True, env=env, capture_output=True)
            times[ranks] = time.perf_counter() - start
    return {"benchmark": "torchrun 2 ranks vs 1 (speed-up, 1 thread per rank)", "value": times[1] / times[2],
            "target": ">= 1.7", "detail": f"1 rank {times[1]:.1f}s, 2 ranks {times[2]:.1f}s, {n_slices} slices, "
                                          "including process start-up"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--quick", action="store_true", help="fewer steps (a smoke run, numbers not quotable)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["overhead", "batching", "strength", "sharding"],
                        help="benchmarks to leave out")
    args = parser.parse_args(argv)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    quick = args.quick
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    x, y, physics = demo_batch(n=4, preset="embedded")
    physics1 = get_preset("embedded").physics()  # one mask for any batch size
    models = {n: load_reconstructor(n) for n in ("irim", "resunetpp")}
    rows, curves = [], []
    threads = torch.get_num_threads()
    if "overhead" not in args.skip:
        rows.append(bench_overhead(models["resunetpp"], y, physics1, steps=10 if quick else 30))
    if "batching" not in args.skip:
        rows.append(bench_batching(models["resunetpp"], y[:1], physics1, steps=5 if quick else 20))
    if "strength" not in args.skip:
        for name, model in models.items():
            for eps in (0.02, 0.08):
                rows.append(bench_strength(name, model, y[:2], physics1, eps, adam_steps=50 if quick else 2000,
                                           pgd_steps=20 if quick else 50, restarts=2, curves=curves))
    if "sharding" not in args.skip:
        rows.append(bench_sharding(n_slices=4 if quick else 16, steps=10 if quick else 40))
    machine = _machine() + f", {threads} threads"
    name = "attack_benchmarks" + ("_quick" if quick else "") + ("".join(f"_no-{k}" for k in args.skip))
    with open(out / f"{name}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["benchmark", "value", "target", "detail"])
        w.writeheader()
        w.writerows(rows)
    if curves:
        with open(out / "strength_curves.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["model", "eps", "attack", "grad_evals", "deviation"])
            w.writeheader()
            w.writerows(curves)
        _plot_curves(curves, out / "strength_curves.png")
    print(f"machine: {machine}")
    print(f"| {'benchmark':<78} | {'value':>7} | {'target':>7} | detail")
    for r in rows:
        print(f"| {r['benchmark']:<78} | {r['value']:>7.3f} | {r['target']:>7} | {r['detail']}")
    return 0


def _plot_curves(curves: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({(c["model"], c["eps"]) for c in curves})
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.2), squeeze=False)
    for ax, (m, e) in zip(axes[0], keys, strict=True):
        for attack in ("pgd", "adam"):
            pts = [c for c in curves if c["model"] == m and c["eps"] == e and c["attack"] == attack]
            ax.plot([p["grad_evals"] for p in pts], [p["deviation"] for p in pts], label=attack)
        ax.set_xscale("log")
        ax.set_title(f"{m}, eps {e}")
        ax.set_xlabel("gradient evaluations")
    axes[0][0].set_ylabel("best deviation ||f(y+d) - f(y)||^2")
    axes[0][-1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
