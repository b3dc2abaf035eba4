"""Robust training measured: what the inner objective buys, what robustness costs in clean
accuracy, what it buys against the worst case, and whether a robust surrogate changes what
transfers to the diffusion model.

Parts (each writes ``benchmarks/results/robust_<part>.{csv,md}``)::

    python benchmarks/bench_robust.py objective   # inner attack objective on the shipped i-RIM
    python benchmarks/bench_robust.py clean       # clean PSNR/SSIM: embedded test split + unseen brain
    python benchmarks/bench_robust.py transfer    # robust vs standard surrogate -> diffusion, paired CIs
    python benchmarks/bench_robust.py figure      # trade-off figure from clean + the v2 cards

The worst-case side of the trade-off comes from the protocol-v2 robustness cards
(``benchmarks/make_cards.py --only irim irim_adv ...`` -> ``docs/cards/v2``): the default search
(WorstCase, 100 gradient evaluations) on both objectives, the worse per slice, 8 test slices.

Every robust model is the shipped one fine-tuned (seed 0, one thread, ``--lr 3e-4 --budget 4``)::

    kspace-attacks train irim --robust jitter --eps 0.05 --steps 800                                 # irim_jit
    kspace-attacks train irim --robust adversarial --eps 0.05 --steps 800 [--objective ssim]       # irim_adv
    kspace-attacks train resunetpp --robust adversarial --eps 0.05 --steps 1000 [--objective ssim] # resunetpp_adv
    kspace-attacks train resunetpp --robust adversarial --objective ssim --eps 0.08 --mix 0.75 --steps 1200

Variants that are not shipped are candidates: their cards (``kspace_attacks.evaluate(model,
protocol="v2")``) are in ``benchmarks/results/robust_candidates/`` and their clean accuracy is
measured with ``clean --candidate NAME=WEIGHTS``; the figure shows them as open markers.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import kspace_attacks as ka  # noqa: E402
from kspace_attacks import metrics  # noqa: E402
from kspace_attacks.adapters import load_reconstructor  # noqa: E402
from kspace_attacks.data import EmbeddedBrain, demo_batch, get_preset, unseen_brain  # noqa: E402
from kspace_attacks.io import atomic_write_text, read_json  # noqa: E402
from kspace_attacks.study.statistics import paired_outcome  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
CARDS = ROOT / "docs" / "cards" / "v2"
CANDIDATES = RESULTS / "robust_candidates"  # cards of trained variants whose weights are not shipped
PAIRS = {"irim": ("irim_adv", "irim_jit"), "resunetpp": ("resunetpp_adv",)}
EPS = (0.02, 0.05, 0.08)


def _write(name: str, rows: list[dict], md: str) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(RESULTS / f"robust_{name}.csv", buf.getvalue())
    atomic_write_text(RESULTS / f"robust_{name}.md", md)
    print(md)


def _models() -> list[str]:
    return [m for std, robust in PAIRS.items() for m in (std, *robust)]


def _rel_dev(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).flatten(1).norm(dim=1) / b.flatten(1).norm(dim=1)


# --------------------------------------------------------------------------- the objective
def part_objective(n: int = 8, eps: float = 0.05) -> None:
    x, y, physics = demo_batch(n, split="test")
    model = load_reconstructor("irim")
    with torch.no_grad():
        clean = model(y, physics)
    runs = {
        "APGD 4, ground_truth": ka.APGD(ka.KSpaceL2(eps=eps), steps=4, loss="ground_truth"),
        "APGD 4, deviation": ka.APGD(ka.KSpaceL2(eps=eps), steps=4, loss="deviation"),
        "APGD 4, ssim": ka.APGD(ka.KSpaceL2(eps=eps), steps=4, loss="ssim"),
        "WorstCase 100, deviation": ka.WorstCase(ka.KSpaceL2(eps=eps), budget=100),
        "equal-norm noise": ka.GaussianNoise(ka.KSpaceL2(eps=eps)),
    }
    rows = []
    for label, attack in runs.items():
        res = attack(model, y, physics, x_true=x, x_clean=clean)
        rows.append({"search": label, "grad_evals": res.grad_evals,
                     "delta_ssim": (metrics.ssim(res.x_adv, x) - metrics.ssim(clean, x)).mean().item(),
                     "delta_psnr": (metrics.psnr(res.x_adv, x) - metrics.psnr(clean, x)).mean().item(),
                     "relative_deviation": _rel_dev(res.x_adv, clean).mean().item()})
    md = [f"# Inner objective of adversarial training (shipped i-RIM, eps {eps}, {n} test slices)", "",
          "| search | grad evals | mean Δ SSIM | mean Δ PSNR (dB) | rel. deviation |", "|---|---|---|---|---|"]
    md += [f"| {r['search']} | {r['grad_evals']} | {r['delta_ssim']:+.3f} | {r['delta_psnr']:+.2f} | "
           f"{r['relative_deviation']:.3f} |" for r in rows]
    _write("objective", rows, "\n".join(md) + "\n")


# ------------------------------------------------------------------------------- clean cost
def _clean_metrics(model, x, y, physics) -> tuple[float, float]:
    with torch.no_grad():
        x_hat = torch.cat([model(y[i:i + 16], physics) for i in range(0, len(y), 16)])
    return metrics.psnr(x_hat, x).mean().item(), metrics.ssim(x_hat, x).mean().item()


def _load(name: str, candidates: dict[str, str]):
    """A shipped model by name, or a candidate's weights (``irim_...`` / ``resunetpp_...``)."""
    if name in candidates:
        return load_reconstructor(name.split("_")[0], weights=candidates[name])
    return load_reconstructor(name)


def part_clean(candidates: dict[str, str] | None = None) -> None:
    candidates = candidates or {}
    preset = get_preset("embedded")
    physics = preset.physics()
    sets = {"embedded test (80)": EmbeddedBrain("test", preset="embedded"),
            "unseen brain (10)": unseen_brain()}
    stacked = {k: tuple(torch.stack(t) for t in zip(*(ds[i] for i in range(len(ds))), strict=True))
               for k, ds in sets.items()}
    rows = []
    for name in ["zero_filled", *_models(), *candidates]:
        model = _load(name, candidates)
        row = {"model": name, "shipped": name not in candidates}
        for label, (x, y) in stacked.items():
            key = label.split(" ")[0]
            row[f"{key}_psnr"], row[f"{key}_ssim"] = _clean_metrics(model, x, y, physics)
        rows.append(row)
    by = {r["model"]: r for r in rows}
    md = ["# Clean accuracy of the standard and robust models", "",
          "Mean PSNR (dB) / SSIM, magnitude, minmax; embedded test split (80 images, 5 contrasts) and "
          "the unseen brain (`kspace_attacks.data.unseen_brain()`: dipy's b0 volume, 10 axial slices, "
          "a person and contrast none of the models saw).", "",
          "| model | embedded PSNR | embedded SSIM | unseen PSNR | unseen SSIM | PSNR lost vs standard (embedded / unseen) |",
          "|---|---|---|---|---|---|"]
    for r in rows:
        std = next((s for s, robust in PAIRS.items() if r["model"] in robust), None) or \
            next((s for s in PAIRS if r["model"] in candidates and r["model"].startswith(s + "_")), None)
        lost = (f"{by[std]['embedded_psnr'] - r['embedded_psnr']:+.2f} / {by[std]['unseen_psnr'] - r['unseen_psnr']:+.2f}"
                if std else "")
        md.append(f"| {r['model']} | {r['embedded_psnr']:.2f} | {r['embedded_ssim']:.3f} | {r['unseen_psnr']:.2f} | "
                  f"{r['unseen_ssim']:.3f} | {lost} |")
    _write("clean", rows, "\n".join(md) + "\n")


# -------------------------------------------------------------------------------- transfer
def _harm(x_adv, x_clean, x) -> dict[str, torch.Tensor]:
    return {"ssim_lost": metrics.ssim(x_clean, x) - metrics.ssim(x_adv, x),
            "psnr_lost": metrics.psnr(x_clean, x) - metrics.psnr(x_adv, x),
            "relative_deviation": _rel_dev(x_adv, x_clean)}


def _transfer_harm(surrogates: list[str], n: int, budget: int) -> dict[str, dict[str, dict[str, list[float]]]]:
    """Per-slice harm on the diffusion model, by surrogate ("noise": equal-norm noise) and eps;
    cached in ``robust_transfer_slices.json`` (recomputed for a surrogate whose weights changed)."""
    from kspace_attacks.adapters._weights import embedded_path
    from kspace_attacks.io import atomic_write_json

    cache_path = RESULTS / "robust_transfer_slices.json"
    cache = read_json(cache_path) if cache_path.is_file() else {}
    if cache.get("setup") != {"n": n, "budget": budget, "eps": list(EPS)}:
        cache = {"setup": {"n": n, "budget": budget, "eps": list(EPS)}, "harm": {}, "weights": {}}
    x, y, physics = demo_batch(n, split="test")
    target = load_reconstructor("diffusion")
    clean = None
    for name in ["noise", *surrogates]:
        digest = "" if name == "noise" else _digest(embedded_path(name))
        if name in cache["harm"] and cache["weights"].get(name, "") == digest:
            continue
        if clean is None:
            with torch.no_grad():
                clean = target(y, physics)
        per_eps = {}
        for eps in EPS:
            if name == "noise":
                x_adv = ka.GaussianNoise(ka.KSpaceL2(eps=eps))(target, y, physics, x_clean=clean).x_adv
            else:
                res = ka.WorstCase(ka.KSpaceL2(eps=eps), budget=budget)(load_reconstructor(name), y, physics)
                with torch.no_grad():
                    x_adv = target(res.y_adv, physics)
            per_eps[str(eps)] = {k: v.tolist() for k, v in _harm(x_adv, clean, x).items()}
            print(f"eps {eps} {name}: diffusion SSIM lost {sum(per_eps[str(eps)]['ssim_lost']) / n:.4f}", flush=True)
        cache["harm"][name], cache["weights"][name] = per_eps, digest
        atomic_write_json(cache_path, cache)
    return cache["harm"]


def _digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def part_transfer(n: int = 16, budget: int = 100) -> None:
    harm = _transfer_harm(_models(), n, budget)
    rows = []
    for std, robust_models in PAIRS.items():
        for robust in robust_models:
            for eps in EPS:
                for metric in ("relative_deviation", "ssim_lost", "psnr_lost"):
                    a, b = harm[std][str(eps)][metric], harm[robust][str(eps)][metric]
                    out = paired_outcome(a, b)
                    noise = sum(harm["noise"][str(eps)][metric]) / n
                    rows.append({"standard": std, "robust": robust, "eps": eps, "metric": metric, "n": out.n,
                                 "standard_mean": out.mean_a, "robust_mean": out.mean_b, "noise_mean": noise,
                                 "diff": out.mean_diff, "ci_low": out.ci_low, "ci_high": out.ci_high,
                                 "standard_transfers_more": out.outcome})
    md = [f"# Does a robust surrogate change what transfers to the diffusion model? ({n} test slices)", "",
          f"Perturbations crafted by the default search (WorstCase {budget}, deviation objective) on each surrogate, "
          "evaluated on the shipped diffusion model (100-step sampler with final data consistency). Harm = clean "
          "minus perturbed (SSIM, PSNR) or relative deviation of the output; diff = standard − robust surrogate, "
          "paired per slice, 95 % bootstrap CI; *standard transfers more* is the claim diff > 0. Per-slice values: "
          "`robust_transfer_slices.json`.", "",
          "| standard → robust | eps | metric | standard | robust | noise | diff [95 % CI] | standard transfers more |",
          "|---|---|---|---|---|---|---|---|"]
    md += [f"| {r['standard']} → {r['robust']} | {r['eps']:g} | {r['metric']} | {r['standard_mean']:.4f} | "
           f"{r['robust_mean']:.4f} | {r['noise_mean']:.4f} | {r['diff']:+.4f} [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}] | "
           f"{r['standard_transfers_more']} |" for r in rows]
    _write("transfer", rows, "\n".join(md) + "\n")


# ---------------------------------------------------------------------------------- figure
def _worst_delta_ssim(card: dict) -> dict[float, tuple[float, float, float]]:
    return {r["eps"]: (r["delta_ssim"]["mean"], *r["delta_ssim"]["ci95"]) for r in card["results"]["attack"]}


def _card_path(name: str) -> Path | None:
    for folder in (CARDS, CANDIDATES):
        if (folder / name / "card.json").is_file():
            return folder / name / "card.json"
    return None


def part_figure() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kspace_attacks.figures import save_figure

    clean = {r["model"]: r for r in csv.DictReader((RESULTS / "robust_clean.csv").open())}
    fig, axes = plt.subplots(1, len(EPS), figsize=(4.4 * len(EPS), 3.8), sharey=True)
    colors = {"irim": "tab:blue", "resunetpp": "tab:orange"}
    for ax, eps in zip(axes, EPS, strict=True):
        for name, row in clean.items():
            family = name.split("_")[0]
            path = _card_path(name)
            if family not in colors or path is None:
                continue
            mean, lo, hi = _worst_delta_ssim(read_json(path))[eps]
            marker = "o" if name == family else "^" if name.endswith("_jit") else "s"
            face = colors[family] if row["shipped"] == "True" else "white"
            ax.errorbar(-mean, float(row["embedded_psnr"]), xerr=[[hi - mean], [mean - lo]], fmt=marker,
                        color=colors[family], mfc=face, capsize=3, label=name)
        ax.set_title(f"eps {eps:g}")
        ax.set_xlabel("worst-case SSIM lost (mean, 95 % CI)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("clean PSNR, embedded test split (dB)")
    axes[-1].legend(fontsize=7, loc="lower left")
    fig.suptitle("Robustness-accuracy trade-off: default search, worse of both objectives, 8 test slices "
                 "(filled: shipped; open: candidates)", fontsize=9)
    fig.tight_layout()
    print(save_figure(fig, ROOT / "docs" / "robust_tradeoff.png"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("part", choices=["objective", "clean", "transfer", "figure"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--candidate", action="append", default=[], metavar="NAME=PATH",
                        help="clean: also measure candidate weights not shipped (NAME starts with irim_ or resunetpp_)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    if args.part == "clean":
        part_clean(dict(c.split("=", 1) for c in args.candidate))
    else:
        {"objective": part_objective, "transfer": part_transfer, "figure": part_figure}[args.part]()
    return 0


if __name__ == "__main__":
    sys.exit(main())
