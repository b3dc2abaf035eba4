"""Attack optimality: how close each attack gets to the best-known worst case, per gradient evaluation.

    OMP_NUM_THREADS=1 python benchmarks/bench_strength.py [--models irim resunetpp dinv_unet diffusion]
        [--slices 2] [--eps 0.02 0.08] [--out benchmarks/results] [--quick]

For each model and objective (``deviation`` = :class:`~kspace_attacks.losses.ReconDeviation`,
``ssim`` = :class:`~kspace_attacks.losses.SSIMDeviation`) one batch holds every test slice at
every budget (rows = eps x slices, relative l2 per sample on the measured k-space, per-sample
``KSpaceL2(eps=(B,))``). On it we run

* FGM (1 gradient evaluation);
* PGD (default step ``max(2.5 / N, 0.25)`` = 0.25 budgets for every N >= 10, so the step does
  not depend on N and one run of ``max(N)`` steps gives every N from its ``history``);
* ProjectedAdam (``max_steps = max(N)``; its schedule does not depend on N: read from ``history``);
* APGD, one separate run per N (its checkpoint schedule depends on N);
* a reference: APGD ``ref_steps`` x 2 restarts and PGD ``ref_steps`` steps of 0.1 budgets
  (attack seed 1, i.e. other random starts).

Best-known per row = max over every run made. ``ratio = reached / best-known`` per row, then mean
and min over the slices of one budget. Values read from a history are the best objective after N
gradient evaluations (a standalone N-step run would add one forward-only evaluation of its last
iterate). Every value gets the package's monotone envelope (``monotone=True``): when the rows of
a slice share their clean reconstruction, a budget also takes the smaller budget's perturbation
if it is worse for the model.

Models: ``irim`` and ``resunetpp`` (shipped weights), ``dinv_unet`` =
``deepinv.models.ArtifactRemoval(deepinv.models.UNet(in_channels=2, out_channels=2, scales=2))``
at ``torch.manual_seed(0)``, untrained, and ``diffusion`` (shipped weights) attacked white-box
through its differentiable sampler with ``--sampler-steps`` reverse steps (default 100 in the
weights) and EOT as ``n_samples = --diffusion-eot`` sampler runs averaged inside every call with
a fixed seed (a deterministic objective: the expectation over that many fixed noise draws; one
attack gradient evaluation = one batched call of the sampler over all draws). Diffusion is
expensive, so it gets its own slices and N grid (``--diffusion-slices``, ``--diffusion-ns``).

Writes ``strength_optimality.csv`` / ``.png`` / ``.md`` into ``--out``. ``--combine DIR ...``
merges the CSVs of runs made separately (e.g. two processes, one per core) into ``--out``.
Time here (2-core CPU shared with other jobs, one thread per process, nice 10): 23 min wall for the
committed results, run as separate processes (2-3 at a time) merged with ``--combine``: resunetpp
(2 slices, reference 100) 13 min, irim (2 slices, reference 50) 7 min, dinv_unet (1 slice,
reference 50) 5 min, diffusion (1 slice, 5 sampler steps, EOT 2, N up to 50, no reference) 15 min;
``--quick`` is a smoke run of a few seconds.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import time
from pathlib import Path

import torch

import kspace_attacks as ka
from kspace_attacks.adapters import load_reconstructor
from kspace_attacks.data import demo_batch, get_preset

FIELDS = ["model", "objective", "eps", "attack", "grad_evals", "ratio_mean", "ratio_min", "n_slices",
          "seconds", "s_per_eval_batch", "s_per_eval_sample", "rows", "setup"]
ATTACK_ORDER = ["fgm", "pgd", "apgd", "adam"]
NOTES = [
    "ratio = reached / best-known per row (one slice at one eps); best-known = max over every run made on "
    "that batch (FGM, PGD, ProjectedAdam, APGD at every N, and the reference runs named in the setup line).",
    "PGD and ProjectedAdam at N: best-so-far after N gradient evaluations of one run of max(N) steps (PGD's "
    "default step is 0.25 budgets for every N >= 10, so an N-step run is the same prefix); APGD: one "
    "separate run per N (its checkpoint schedule depends on N); FGM: its one call (N=1).",
    "ProjectedAdam (study defaults lr=0.1, max_rescales=100, patience=200) stops a row after 100 "
    "rescalings onto the ball; a stopped row keeps its best, so its N=200 value can equal N=100.",
    "seconds: wall time of the run; for values read from a history, the run's time x N / (evaluations it "
    "used), i.e. N evaluations at its measured rate (also past an Adam stop); the CPU was shared "
    "with other jobs, so times are upper bounds and vary between models run at different moments.",
]
MODEL_NOTES = {
    "irim": "i-RIM, shipped weights",
    "resunetpp": "ResUnet++, shipped weights",
    "dinv_unet": "deepinv ArtifactRemoval(UNet(2, 2, scales=2)), torch.manual_seed(0), untrained",
    "diffusion": "score-based diffusion, shipped weights, differentiable sampler",
}


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
                       f"EOT n_samples={args.diffusion_eot} fixed-seed draws averaged per call")
    return load_reconstructor(name), MODEL_NOTES[name]


def make_batch(n_slices: int, eps: list[float]):
    """``y`` with rows eps-major (all slices at eps[0], then eps[1], ...), per-row eps, physics."""
    _, y, _ = demo_batch(n=n_slices, preset="embedded")
    physics = get_preset("embedded").physics()  # one mask for any batch size
    eps_rows = torch.tensor(eps, dtype=torch.float64).repeat_interleave(n_slices)
    return y.repeat(len(eps), *([1] * (y.dim() - 1))), eps_rows, physics


def envelope(values: torch.Tensor, n_slices: int, n_eps: int, pool: bool) -> torch.Tensor:
    """Monotone envelope over the (ascending) budgets of each slice, along the last dim."""
    if not pool:
        return values
    shape = values.shape[:-1] + (n_eps, n_slices)
    return values.reshape(shape).cummax(dim=-2).values.reshape(values.shape)


def padded_history(res, length: int) -> torch.Tensor:
    """``(length, B)`` best-so-far after each gradient evaluation (eot=1), padded if it stopped early."""
    h = res.history
    if h.shape[0] < length:
        h = torch.cat([h, h[-1:].expand(length - h.shape[0], -1)])
    return h[:length]


def run_curves(model, y, eps_rows, physics, loss: str, ns: list[int], ref_steps: int, n_slices: int,
               n_eps: int) -> tuple[dict, torch.Tensor, dict]:
    """All runs for one (model, objective): ``{(attack, N): (values (B,), seconds)}``, best-known
    ``(B,)`` and the measured cost ``{"evals", "seconds"}``."""
    threat = ka.KSpaceL2(eps=eps_rows)
    reached, finals, cost = {}, [], {"evals": 0, "seconds": 0.0}

    def call(attack):
        res = attack(model, y, physics)
        cost["evals"] += res.grad_evals
        cost["seconds"] += res.seconds
        finals.append(res.loss)
        return res

    res = call(ka.FGM(threat, loss=loss))
    pool = all(torch.equal(res.x_clean[:n_slices], res.x_clean[k * n_slices:(k + 1) * n_slices])
               for k in range(n_eps))
    reached[("fgm", 1)] = (res.loss, res.seconds)
    n_max = max(ns)
    for name, attack in (("pgd", ka.PGD(threat, steps=n_max, loss=loss)),
                         ("adam", ka.ProjectedAdam(threat, max_steps=n_max, loss=loss))):
        res = call(attack)
        hist = envelope(padded_history(res, n_max), n_slices, n_eps, pool)
        for n in ns:  # seconds: the run's time prorated to N evaluations
            reached[(name, n)] = (hist[n - 1], res.seconds * n / max(res.grad_evals, 1))
    for n in ns:
        res = call(ka.APGD(threat, steps=n, loss=loss))
        reached[("apgd", n)] = (res.loss, res.seconds)
    if ref_steps > 0:
        call(ka.APGD(threat, steps=ref_steps, restarts=2, loss=loss, seed=1))
        call(ka.PGD(threat, steps=ref_steps, step_size=0.1, loss=loss, seed=1))
    best = torch.stack(finals).max(dim=0).values
    best = torch.maximum(best, torch.stack([v for v, _ in reached.values()]).max(dim=0).values)
    return reached, best, cost


def rows_for(model_name: str, objective: str, eps: list[float], n_slices: int, reached: dict,
             best: torch.Tensor, cost: dict, setup: str) -> list[dict]:
    """CSV rows of one (model, objective)."""
    b = best.shape[0]
    per_eval = cost["seconds"] / max(cost["evals"], 1)
    out = []
    for (attack, n), (values, seconds) in reached.items():
        ratio = (values / best).reshape(len(eps), n_slices)
        for k, e in enumerate(eps):
            out.append({"model": model_name, "objective": objective, "eps": e, "attack": attack,
                        "grad_evals": n, "ratio_mean": round(ratio[k].mean().item(), 4),
                        "ratio_min": round(ratio[k].min().item(), 4), "n_slices": n_slices,
                        "seconds": round(seconds, 2), "s_per_eval_batch": round(per_eval, 4),
                        "s_per_eval_sample": round(per_eval / b, 4), "rows": b, "setup": setup})
    return out


def noise_level(model, y, physics) -> float:
    """Mean ||f_seed0(y) - f_seed1(y)||^2 of the diffusion sampler (sampler noise in deviation units)."""
    with torch.no_grad():
        a = model(y, physics, differentiable=False, seed=0)
        b = model(y, physics, differentiable=False, seed=1)
    return (a - b).pow(2).flatten(1).sum(1).mean().item()


def run_model(name: str, args: argparse.Namespace, log) -> list[dict]:
    """Every objective of one model; returns CSV rows."""
    diffusion = name == "diffusion"
    n_slices = args.diffusion_slices if diffusion else args.slices
    ns = args.diffusion_ns if diffusion else args.ns
    ref_steps = args.diffusion_ref_steps if diffusion else args.ref_steps
    model, setup = load_model(name, args)
    y, eps_rows, physics = make_batch(n_slices, args.eps)
    if diffusion:
        setup += f"; seed-0 vs seed-1 clean deviation {noise_level(model, y[:n_slices], physics):.4g}"
    setup += f"; reference APGD {ref_steps}x2 + PGD {ref_steps} (step 0.1)" if ref_steps else "; no reference run"
    rows = []
    for objective in args.objectives:
        start = time.perf_counter()
        reached, best, cost = run_curves(model, y, eps_rows, physics, objective, ns, ref_steps,
                                         n_slices, len(args.eps))
        rows += rows_for(name, objective, args.eps, n_slices, reached, best, cost, setup)
        log(f"{name} {objective}: {cost['evals']} grad evals in {time.perf_counter() - start:.1f}s "
            f"({cost['seconds'] / max(cost['evals'], 1):.3f} s/eval for {y.shape[0]} rows)")
    return rows


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


def write_csv(rows: list[dict], path: Path, header: list[str]) -> None:
    with open(path, "w", newline="") as f:
        for line in header:
            f.write(f"# {line}\n")
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)


def plot(rows: list[dict], path: Path) -> None:
    """One panel per (model, objective): ratio vs gradient evaluations, eps 0.02 solid / others dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(dict.fromkeys((r["model"], r["objective"]) for r in rows))
    eps_list = sorted({float(r["eps"]) for r in rows})
    cols = min(4, len(keys))
    nrows = -(-len(keys) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.8 * cols, 3.2 * nrows), squeeze=False)
    colors = dict(zip(ATTACK_ORDER, ["C3", "C0", "C2", "C1"]))
    for ax, (m, o) in zip(axes.flat, keys):
        for attack in ATTACK_ORDER:
            for k, e in enumerate(eps_list):
                pts = sorted((int(r["grad_evals"]), float(r["ratio_mean"])) for r in rows
                             if (r["model"], r["objective"], r["attack"]) == (m, o, attack)
                             and float(r["eps"]) == e)
                if pts:
                    ax.plot(*zip(*pts), color=colors[attack], ls="-" if k == 0 else "--",
                            marker="o", ms=3, label=f"{attack} eps {e:g}")
        ax.set_xscale("log")
        ax.set_title(f"{m}, {o}", fontsize=9)
        ax.set_xlabel("gradient evaluations")
        ax.set_ylabel("reached / best-known")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _table(sub: list[dict]) -> list[str]:
    """Markdown table attack x N of ratio_mean (ratio_min) for one (model, objective, eps)."""
    ns = sorted({int(r["grad_evals"]) for r in sub})
    lines = ["| attack | " + " | ".join(f"N={n}" for n in ns) + " |", "|---" * (len(ns) + 1) + "|"]
    for attack in ATTACK_ORDER:
        cells = {int(r["grad_evals"]): f"{float(r['ratio_mean']):.3f} ({float(r['ratio_min']):.2f})"
                 for r in sub if r["attack"] == attack}
        if cells:
            lines.append(f"| {attack} | " + " | ".join(cells.get(n, "") for n in ns) + " |")
    return lines


def _verdict(model: str, rows: list[dict]) -> str:
    """One sentence: strongest attack per evaluation and whether the 0.95@100 / 0.90@20 goal holds."""
    mine = [r for r in rows if r["model"] == model and r["attack"] != "fgm"]
    wins: dict[str, int] = {}
    groups = {(r["objective"], r["eps"], r["grad_evals"]) for r in mine}
    for g in groups:
        top = max((r for r in mine if (r["objective"], r["eps"], r["grad_evals"]) == g),
                  key=lambda r: float(r["ratio_mean"]))
        wins[top["attack"]] = wins.get(top["attack"], 0) + 1
    order = sorted(wins, key=wins.get, reverse=True)
    parts = [f"**{model}**: strongest per evaluation: {order[0]} (best mean ratio in {wins[order[0]]} of "
             f"{len(groups)} (objective, eps, N) cells" + "".join(f"; {a}: {wins[a]}" for a in order[1:]) + ")."]
    for attack in ("pgd", "apgd", "adam"):
        ok, missing, fails = 0, [], []
        for o, e in sorted({(r["objective"], r["eps"]) for r in mine}):
            for n, goal in ((100, 0.95), (20, 0.90)):
                hit = [r for r in mine if (r["attack"], r["objective"], r["eps"], int(r["grad_evals"]))
                       == (attack, o, e, n)]
                if not hit:
                    missing.append(f"{o}/eps {e}/N={n}")
                elif float(hit[0]["ratio_mean"]) >= goal:
                    ok += 1
                else:
                    fails.append(f"{o} eps {e} N={n}: {float(hit[0]['ratio_mean']):.3f} < {goal}")
        status = ("FAILS " + "; ".join(fails) if fails else
                  "meets the goal in every measured cell" if ok else "goal not measurable")
        extra = f" (not measured: {', '.join(missing)})" if missing else ""
        parts.append(f"{attack.upper()} {status}{extra}.")
    return " ".join(parts)


def write_md(rows: list[dict], path: Path, header: list[str]) -> None:
    lines = ["# Attack optimality: reached / best-known worst case per gradient evaluation", ""]
    lines += [f"- {h}" for h in header] + [""]
    lines += ["Cells: mean ratio over slices (min ratio over slices). Goal: >= 0.95 at N=100 and >= 0.90 "
              "at N=20 (mean ratio).", ""] + [f"- {n}" for n in NOTES] + [""]
    for model in dict.fromkeys(r["model"] for r in rows):
        sub_m = [r for r in rows if r["model"] == model]
        lines += [f"## {model}", "", f"Setup: {sub_m[0]['setup']}. Cost per gradient evaluation: "
                  f"{float(sub_m[0]['s_per_eval_batch']):.3f} s per batch of {sub_m[0]['rows']} rows = "
                  f"{float(sub_m[0]['s_per_eval_sample']):.3f} s per row ({sub_m[0]['n_slices']} slices).", ""]
        for o in dict.fromkeys(r["objective"] for r in sub_m):
            for e in dict.fromkeys(r["eps"] for r in sub_m if r["objective"] == o):
                sub = [r for r in sub_m if r["objective"] == o and r["eps"] == e]
                lines += [f"### {model}, {o}, eps {e}", ""] + _table(sub) + [""]
        lines += [_verdict(model, rows), ""]
    path.write_text("\n".join(lines))


def parse(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["irim", "resunetpp", "dinv_unet", "diffusion"],
                   choices=["irim", "resunetpp", "dinv_unet", "diffusion"])
    p.add_argument("--slices", type=int, default=2, help="test slices (non-diffusion models)")
    p.add_argument("--eps", type=float, nargs="+", default=[0.02, 0.08])
    p.add_argument("--objectives", nargs="+", default=["deviation", "ssim"], choices=["deviation", "ssim"])
    p.add_argument("--ns", type=int, nargs="+", default=[10, 20, 50, 100, 200])
    p.add_argument("--ref-steps", type=int, default=100, help="reference APGD steps (x2 restarts) and PGD steps")
    p.add_argument("--sampler-steps", type=int, default=5, help="diffusion reverse steps (weights default: 100)")
    p.add_argument("--diffusion-eot", type=int, default=2, help="diffusion n_samples averaged per call")
    p.add_argument("--diffusion-slices", type=int, default=1)
    p.add_argument("--diffusion-ns", type=int, nargs="+", default=[10, 20, 50])
    p.add_argument("--diffusion-ref-steps", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="seconds-long smoke run (numbers not quotable)")
    p.add_argument("--combine", nargs="*", default=None, help="merge strength_optimality.csv of these dirs")
    p.add_argument("--note", action="append", default=[], help="extra header line (repeatable)")
    p.add_argument("--out", default="benchmarks/results")
    a = p.parse_args(argv)
    a.eps = sorted(a.eps)
    if a.quick:
        a.models = [m for m in a.models if m != "diffusion"][:1] or ["resunetpp"]
        a.slices, a.ns, a.ref_steps, a.objectives = 1, [2, 4], 4, a.objectives[:1]
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    torch.set_flush_denormal(True)  # denormals make CPU steps 10-30x slower
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared), "
               f"torch {torch.__version__}, {args.threads} thread(s) per process")
    if args.combine is not None:
        rows = [r for d in args.combine for r in read_csv(Path(d) / "strength_optimality.csv")]
        header = [l[2:].strip() for d in args.combine
                  for l in open(Path(d) / "strength_optimality.csv") if l.startswith("# ")]
        header = list(dict.fromkeys(header)) + args.note
    else:
        start = time.perf_counter()
        rows = [r for m in args.models for r in run_model(m, args, lambda s: print(s, flush=True))]
        header = [f"machine: {machine}", f"models {args.models}: {time.perf_counter() - start:.0f} s wall",
                  f"eps {args.eps}; slices {args.slices} (diffusion {args.diffusion_slices}); N {args.ns} "
                  f"(diffusion {args.diffusion_ns}); reference steps {args.ref_steps} "
                  f"(diffusion {args.diffusion_ref_steps})" + ("; QUICK smoke run" if args.quick else "")]
    write_csv(rows, out / "strength_optimality.csv", header)
    plot(rows, out / "strength_optimality.png")
    write_md(rows, out / "strength_optimality.md", header)
    print("\n".join(header))
    return 0


if __name__ == "__main__":
    sys.exit(main())
