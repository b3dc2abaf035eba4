"""How close the worst-case search gets to the best-known worst case, per budget, slice and seed.

    OMP_NUM_THREADS=1 python benchmarks/bench_strength.py --models resunetpp --objectives deviation
    python benchmarks/bench_strength.py --report            # merge every part into the tables
    python benchmarks/bench_strength.py --quick             # a smoke run (~7 min on 1 thread)

For each model and objective (``deviation`` = ``||f(y+delta) - f(y)||^2``, ``ssim`` =
``1 - SSIM(|f(y+delta)|, |f(y)|)``) one batch holds every test slice at every budget (rows =
eps x slices, ``demo_batch(--slices)``, relative l2 per sample on the measured k-space). On it:

* ``apgd`` 20 and 100 steps (the v1 protocol's search: one uniform random start);
* ``worst_case`` (:class:`kspace_attacks.WorstCase`, preset ``default``) at budgets 20, 100
  and 500 gradient evaluations per row, and at its default budget (100) with 5 seeds;
* ``adaptive``: ``WorstCase(budget=100, max_budget=400)``, with the rows it flags ``unreliable``
  and the rows it misses (below 0.90 of the best-known) without flagging them;
* ``strong``: the ``strong`` preset at its default budget (500);
* the reference: the ``strong`` preset at ``--ref-budget`` (5,000) evaluations per row (spectral,
  sphere, warm and cross-objective starts) and APGD 100 x 5 uniform random restarts.

Best-known per row = max over every run. ``ratio = reached / best-known`` in the objective's own
scale (the deviation norm ``||f(y+delta) - f(y)||`` for ``deviation``, ``1 - SSIM`` for
``ssim``), then per eps the worst slice and the mean. ``seed_spread`` = per slice
``max / min - 1`` of the default's value over the 5 seeds, worst slice. ``restart_spread`` =
mean over rows of ``(best - median) / best`` over the search's starts. Every attack uses the
monotone envelope (a budget also takes the smaller budget's perturbation of the same slice).

Models: ``irim`` and ``resunetpp`` (shipped weights), their adversarially fine-tuned versions
``irim_adv`` and ``resunetpp_adv`` (shipped robust weights), ``dinv_unet`` =
``deepinv.models.ArtifactRemoval(deepinv.models.UNet(in_channels=2, out_channels=2, scales=2))``
at ``torch.manual_seed(0)`` (untrained), and ``diffusion`` (shipped weights) attacked white-box
through its differentiable sampler with ``--sampler-steps`` reverse steps and ``n_samples =
--diffusion-eot`` fixed-seed draws averaged in every call; it is expensive, so it gets
``--diffusion-slices`` slices, budgets 20 and 100, one seed and a reference of
``--diffusion-ref-budget`` evaluations (stated in the tables).

Each (model, objective) writes ``strength/<model>_<objective>.csv`` under ``--out`` when done
(parts already written are skipped unless ``--force``; within a part every finished run is kept
under ``strength/.runs/<model>_<objective>_<setup>/``, so a killed part resumes at its next run);
``--report`` merges them into
``strength_optimality.csv``, ``.md`` and ``.png``.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

import kspace_attacks as ka
from kspace_attacks.adapters import load_reconstructor
from kspace_attacks.data import demo_batch, get_preset

FIELDS = ["model", "objective", "eps", "run", "budget", "seed", "grad_evals", "ratio_worst", "ratio_mean",
          "seed_spread", "restart_spread", "flagged", "missed", "missed_unflagged", "seconds", "n_slices", "setup"]
#: the adaptive search measured beside the fixed default: budget 100, cap 400 (``max_budget``)
ADAPTIVE_CAP = 400
MODEL_NOTES = {
    "irim": "i-RIM, shipped weights",
    "resunetpp": "ResUnet++, shipped weights",
    "dinv_unet": "deepinv ArtifactRemoval(UNet(2, 2, scales=2)), torch.manual_seed(0), untrained",
    "diffusion": "score-based diffusion, shipped weights, differentiable sampler",
    "irim_adv": "i-RIM adversarially fine-tuned (shipped robust weights)",
    "resunetpp_adv": "ResUnet++ adversarially fine-tuned (shipped robust weights)",
}
GOALS = {"default_worst": 0.90, "default_mean": 0.95, "strong_worst": 0.97, "seed_spread": 0.05}


def load_model(name: str, args: argparse.Namespace):
    """The reconstructor ``name`` and a one-line description of its setup."""
    if name == "dinv_unet":
        import deepinv as dinv

        torch.manual_seed(0)
        net = dinv.models.UNet(in_channels=2, out_channels=2, scales=2)
        return dinv.models.ArtifactRemoval(net).eval(), MODEL_NOTES[name]
    if name == "diffusion":
        model = load_reconstructor("diffusion", steps=args.sampler_steps, seed=0,
                                   n_samples=args.diffusion_eot, differentiable=True)
        return model, (f"{MODEL_NOTES[name]}: {args.sampler_steps} sampler steps (default 100), "
                       f"n_samples={args.diffusion_eot} fixed-seed draws averaged per call")
    return load_reconstructor(name), MODEL_NOTES[name]


def make_batch(n_slices: int, eps: list[float]):
    """``y`` with rows eps-major (all slices at eps[0], then eps[1], ...), per-row eps, physics."""
    _, y, _ = demo_batch(n=n_slices, preset="embedded")
    physics = get_preset("embedded").physics()  # one mask for any batch size
    eps_rows = torch.tensor(eps, dtype=torch.float64).repeat_interleave(n_slices)
    return y.repeat(len(eps), *([1] * (y.dim() - 1))), eps_rows, physics


def scale(objective: str, loss: torch.Tensor) -> torch.Tensor:
    """The objective in its reported scale: the deviation norm, or 1 - SSIM as it is."""
    return loss.clamp_min(0).sqrt() if objective == "deviation" else loss


def plan_runs(diffusion: bool, ref_budget: int) -> list[tuple[str, int, int, object]]:
    """``(run, budget, seed, factory(threat, loss))`` of one (model, objective)."""
    runs = []
    apgd_steps = (20,) if diffusion else (20, 100)
    for n in apgd_steps:
        runs.append(("apgd", n, 0, lambda t, l, n=n: ka.APGD(t, steps=n, loss=l)))
    budgets = (20, 100) if diffusion else (20, 100, 500)
    for b in budgets:
        runs.append(("worst_case", b, 0, lambda t, l, b=b: ka.WorstCase(t, budget=b, loss=l)))
    for s in range(1, 1 if diffusion else 5):  # diffusion: seed 0 only (cost)
        runs.append(("worst_case", 100, s, lambda t, l, s=s: ka.WorstCase(t, budget=100, loss=l, seed=s)))
    if not diffusion:
        runs.append(("adaptive", ADAPTIVE_CAP, 0,
                     lambda t, l: ka.WorstCase(t, budget=100, max_budget=ADAPTIVE_CAP, loss=l)))
        runs.append(("strong", 500, 0, lambda t, l: ka.WorstCase(t, preset="strong", loss=l)))
    runs.append(("reference", ref_budget, 1000,
                 lambda t, l: ka.WorstCase(t, budget=ref_budget, preset="strong", loss=l, seed=1000)))
    if not diffusion:
        runs.append(("reference_apgd", 500, 1001,
                     lambda t, l: ka.APGD(t, steps=100, restarts=5, loss=l, seed=1001)))
    return runs


def run_part(name: str, objective: str, args: argparse.Namespace, log) -> list[dict]:
    """Every run for one (model, objective); rows of the CSV."""
    diffusion = name == "diffusion"
    n_slices = args.diffusion_slices if diffusion else args.slices
    ref_budget = args.diffusion_ref_budget if diffusion else args.ref_budget
    model, setup = load_model(name, args)
    y, eps_rows, physics = make_batch(n_slices, args.eps)
    threat = ka.KSpaceL2(eps=eps_rows)
    results = {}
    # each finished run is kept under a key naming the whole setup, so a killed part resumes where it
    # stopped (an i-RIM part at a 2,000-evaluation reference outlasts one sitting)
    store = args.out / "strength" / ".runs" / (f"{name}_{objective}_s{n_slices}_ref{ref_budget}_eps"
                                               + "-".join(f"{e:g}" for e in args.eps))
    for run, budget, seed, factory in plan_runs(diffusion, ref_budget):
        done = store / f"{run}_{budget}_{seed}.pt"
        if done.exists() and not args.quick:
            saved = torch.load(done, weights_only=False)
            results[(run, budget, seed)] = SimpleNamespace(**saved["result"]), saved["seconds"]
            log(f"{name} {objective} {run} budget {budget} seed {seed}: resumed from {done}")
            continue
        start = time.perf_counter()
        res = factory(threat, objective)(model, y, physics)
        seconds = time.perf_counter() - start
        if res.grad_evals > budget:
            raise AssertionError(f"{run} {budget}: used {res.grad_evals} gradient evaluations")
        kept = {"loss": res.loss.detach().cpu(), "grad_evals": res.grad_evals,
                "restart_spread": None if res.restart_spread is None else res.restart_spread.detach().cpu(),
                "unreliable": None if res.unreliable is None else res.unreliable.detach().cpu()}
        save_atomic({"result": kept, "seconds": seconds}, done)
        results[(run, budget, seed)] = SimpleNamespace(**kept), seconds
        log(f"{name} {objective} {run} budget {budget} seed {seed}: {res.grad_evals} evals, {seconds:.1f} s, "
            f"mean loss {float(res.loss.mean()):.4g}")
    best = torch.stack([r.loss for r, _ in results.values()]).amax(dim=0)
    best_scaled = scale(objective, best)
    n_eps = len(args.eps)
    rows = []
    setup_line = (f"{setup}; {n_slices} slices; reference: strong preset {ref_budget} evals/row"
                  + ("" if diffusion else " + APGD 100 x 5 uniform restarts"))
    seeds = [r for (run, b, _), (r, _) in results.items() if run == "worst_case" and b == 100]
    seed_vals = scale(objective, torch.stack([r.loss for r in seeds])).reshape(len(seeds), n_eps, n_slices)
    seed_spread = (seed_vals.amax(0) / seed_vals.amin(0).clamp_min(1e-30) - 1).amax(dim=1)  # (n_eps,)
    for (run, budget, seed), (res, seconds) in results.items():
        ratio = (scale(objective, res.loss) / best_scaled.clamp_min(1e-30)).reshape(n_eps, n_slices)
        spread = res.restart_spread
        flags = (torch.zeros(len(ratio.flatten()), dtype=torch.bool) if res.unreliable is None
                 else res.unreliable.cpu()).reshape(n_eps, n_slices)
        missed = ratio.cpu() < GOALS["default_worst"]
        for k, eps in enumerate(args.eps):
            rows.append({
                "model": name, "objective": objective, "eps": eps, "run": run, "budget": budget, "seed": seed,
                "grad_evals": res.grad_evals, "ratio_worst": round(float(ratio[k].min()), 4),
                "ratio_mean": round(float(ratio[k].mean()), 4),
                "seed_spread": round(float(seed_spread[k]), 4) if run == "worst_case" and budget == 100 else "",
                "restart_spread": "" if spread is None else
                round(float(spread.reshape(n_eps, n_slices)[k].mean()), 4),
                "flagged": int(flags[k].sum()) if res.unreliable is not None else "",
                "missed": int(missed[k].sum()), "missed_unflagged": int((missed[k] & ~flags[k]).sum()),
                "seconds": round(seconds, 2), "n_slices": n_slices, "setup": setup_line,
            })
    return rows


def save_atomic(obj: dict, path: Path) -> None:
    """``torch.save`` through a temporary file, so a killed run never leaves half a checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_csv(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)  # atomic: a killed run never leaves half a part


def summary(rows: list[dict]) -> list[dict]:
    """Per (model, objective, eps): the default, strong and APGD-20 ratios against the goals."""
    out = []
    keys = sorted({(r["model"], r["objective"], r["eps"]) for r in rows})
    for model, objective, eps in keys:
        sub = [r for r in rows if (r["model"], r["objective"], r["eps"]) == (model, objective, eps)]

        def get(run, budget, seed="0"):
            hit = [r for r in sub if r["run"] == run and str(r["budget"]) == str(budget) and str(r["seed"]) == seed]
            return hit[0] if hit else None

        d, s, a = get("worst_case", 100), get("strong", 500), get("apgd", 20)
        ad = get("adaptive", ADAPTIVE_CAP)
        out.append({
            "model": model, "objective": objective, "eps": eps,
            "apgd20_worst": a["ratio_worst"] if a else "", "apgd20_mean": a["ratio_mean"] if a else "",
            "default_worst": d["ratio_worst"], "default_mean": d["ratio_mean"],
            "seed_spread": d["seed_spread"], "restart_spread": d["restart_spread"],
            "strong_worst": s["ratio_worst"] if s else "", "strong_mean": s["ratio_mean"] if s else "",
            "default_seconds": d["seconds"],
            "adaptive": (f"{ad['ratio_worst']} / {ad['ratio_mean']} ({ad['grad_evals']} evals; flagged "
                         f"{ad['flagged']}, missed {ad['missed']}, missed unflagged {ad['missed_unflagged']})"
                         if ad else ""),
        })
    return out


def write_md(rows: list[dict], path: Path) -> None:
    summ = summary(rows)
    lines = ["# Worst-case search: reached / best-known", "",
             "Written by `benchmarks/bench_strength.py --report`. Ratios in the objective's scale "
             "(deviation norm; 1 - SSIM); best-known = max over every run of the part, incl. a reference "
             "portfolio (setup column of the CSV). Goals: default (100 evals/row) >= 0.90 worst slice and "
             ">= 0.95 mean; strong >= 0.97 worst slice; 5 seeds of the default within 5 % per slice. "
             f"Adaptive = `WorstCase(budget=100, max_budget={ADAPTIVE_CAP})`: its worst / mean, evaluations per "
             "row, rows it flags `unreliable`, rows below 0.90 of the best-known (missed) and missed rows "
             "it did not flag, out of the slices (parts measured before it existed leave it empty).", "",
             "| model | objective | eps | APGD 20 worst / mean | default worst / mean | seed spread | restart spread | strong worst / mean | goals | adaptive |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in summ:
        met = []
        met.append("ok" if float(r["default_worst"]) >= GOALS["default_worst"] else "worst<0.90")
        met.append("ok" if float(r["default_mean"]) >= GOALS["default_mean"] else "mean<0.95")
        if r["strong_worst"] != "":
            met.append("ok" if float(r["strong_worst"]) >= GOALS["strong_worst"] else "strong<0.97")
        if r["seed_spread"] != "":
            met.append("ok" if float(r["seed_spread"]) <= GOALS["seed_spread"] else "seeds>5%")
        goal = "met" if all(m == "ok" for m in met) else ", ".join(m for m in met if m != "ok")
        lines.append(f"| {r['model']} | {r['objective']} | {r['eps']} | {r['apgd20_worst']} / {r['apgd20_mean']} | "
                     f"{r['default_worst']} / {r['default_mean']} | {r['seed_spread']} | {r['restart_spread']} | "
                     f"{r['strong_worst']} / {r['strong_mean']} | {goal} | {r['adaptive']} |")
    lines += ["", "## Per budget (seed 0)", "", "| model | objective | eps | run | budget | evals | worst | mean | seconds |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if str(r["seed"]) in ("0", "1000", "1001"):
            lines.append(f"| {r['model']} | {r['objective']} | {r['eps']} | {r['run']} | {r['budget']} | "
                         f"{r['grad_evals']} | {r['ratio_worst']} | {r['ratio_mean']} | {r['seconds']} |")
    lines += ["", "## Setups", ""]
    for setup in sorted({(r["model"], r["setup"]) for r in rows}):
        lines.append(f"- {setup[0]}: {setup[1]}")
    path.write_text("\n".join(lines) + "\n")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = sorted({(r["model"], r["objective"]) for r in rows})
    fig, axes = plt.subplots(1, len(parts), figsize=(3.2 * len(parts), 3.0), squeeze=False)
    for ax, (model, objective) in zip(axes[0], parts, strict=True):
        for run, style in (("worst_case", "o-"), ("apgd", "s--")):
            for eps in sorted({r["eps"] for r in rows}):
                pts = sorted((int(r["budget"]), float(r["ratio_worst"])) for r in rows
                             if (r["model"], r["objective"], r["run"], r["eps"], str(r["seed"])) ==
                             (model, objective, run, eps, "0"))
                if pts:
                    ax.plot(*zip(*pts, strict=True), style, label=f"{run} eps {eps}", ms=3)
        ax.axhline(0.9, color="grey", lw=0.5)
        ax.set_xscale("log")
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{model} / {objective}", fontsize=8)
        ax.set_xlabel("gradient evaluations per row", fontsize=7)
    axes[0][0].set_ylabel("worst slice: reached / best-known", fontsize=7)
    axes[0][-1].legend(fontsize=5)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["irim", "resunetpp", "dinv_unet", "diffusion"],
                   choices=list(MODEL_NOTES))
    p.add_argument("--objectives", nargs="+", default=["deviation", "ssim"], choices=["deviation", "ssim"])
    p.add_argument("--slices", type=int, default=8)
    p.add_argument("--eps", type=float, nargs="+", default=[0.02, 0.05, 0.08])
    p.add_argument("--ref-budget", type=int, default=5000)
    p.add_argument("--sampler-steps", type=int, default=5)
    p.add_argument("--diffusion-eot", type=int, default=2)
    p.add_argument("--diffusion-slices", type=int, default=2)
    p.add_argument("--diffusion-ref-budget", type=int, default=200)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    p.add_argument("--report", action="store_true", help="only merge the parts into the tables")
    p.add_argument("--force", action="store_true",
                   help="re-measure parts that exist (the old CSV stays until the new one is written)")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 slices, tiny budgets, into a temp dir")
    a = p.parse_args(argv)
    if a.quick:
        import tempfile

        a.models, a.objectives, a.slices, a.ref_budget, a.eps = ["dinv_unet"], ["deviation"], 2, 120, [0.02, 0.08]
        a.out = Path(tempfile.mkdtemp(prefix="bench_strength_"))
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    parts_dir = args.out / "strength"
    log = lambda msg: print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)  # noqa: E731
    if not args.report:
        log(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{args.threads} thread(s)")
        for name in args.models:
            for objective in args.objectives:
                path = parts_dir / f"{name}_{objective}.csv"
                if path.exists() and not (args.quick or args.force):
                    log(f"{path} exists: skipped")
                    continue
                start = time.perf_counter()
                rows = run_part(name, objective, args, log)
                write_csv(rows, path)
                log(f"{name} {objective}: {time.perf_counter() - start:.0f} s -> {path}")
    rows = [r for f in sorted(parts_dir.glob("*.csv")) for r in read_csv(f)]
    if rows:
        write_csv(rows, args.out / "strength_optimality.csv")
        write_md(rows, args.out / "strength_optimality.md")
        plot(rows, args.out / "strength_optimality.png")
        log(f"tables in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
