"""Learning curves of the diffusion reconstructor: validation quality against training steps
(the EMA snapshots of a run) and against sampler steps (the shipped weights)::

    python benchmarks/diffusion_learning_curve.py --run runs/diffusion_ft --offset 3000

``--offset`` is the number of steps the run's starting weights had already been trained
(``train(..., init=...)``); the starting weights themselves are the first point. Sampler
settings are the shipped ones (``weights/diffusion.json``). Writes
``benchmarks/results/diffusion_learning_curve.csv`` (one row per point) and
``diffusion_learning_curve.png``.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import torch

from kspace_attacks.adapters.diffusion import load
from kspace_attacks.adapters.training.diffusion import _eval_data, evaluate_sampler, load_checkpoint

RESULTS = Path(__file__).resolve().parent / "results"
SAMPLER_KEYS = ("steps", "eta", "lam", "corrector_steps", "snr", "n_samples", "clip_x0", "final_lam")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, default=Path("runs/diffusion_ft"))
    p.add_argument("--offset", type=int, default=3000, help="training steps of the run's init")
    p.add_argument("--init", default="diffusion_3k", help="registered weights the run started from")
    p.add_argument("--n-val", type=int, default=40)
    p.add_argument("--sampler-steps", default="10,20,50,100,200")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_flush_denormal(True)
    shipped = load("embedded")
    sampler = {k: v for k, v in shipped.sampler_kwargs.items() if k in SAMPLER_KEYS}
    data = _eval_data("val", a.n_val)
    rows = []

    def point(curve: str, x: int, model, **kw) -> None:
        t0 = time.perf_counter()
        r = evaluate_sampler(model, data=data, **{**sampler, **kw})
        rows.append({"curve": curve, "x": x, "psnr": round(r["psnr"], 3), "ssim": round(r["ssim"], 4),
                     "s_per_slice": round(r["s_per_slice_batched"], 3)})
        print(f"{curve} {x}: psnr {r['psnr']:.2f} ssim {r['ssim']:.4f} ({time.perf_counter() - t0:.0f} s)",
              flush=True)

    from kspace_attacks.adapters import load_reconstructor

    start = load_reconstructor(a.init)
    start.sampler_kwargs.update(sampler)  # the same sampler on every point
    point("training_steps", a.offset, start)
    for snap in sorted((a.run / "snapshots").glob("ema_*.pt")):
        step = int(snap.stem.split("_")[1])
        point("training_steps", a.offset + step, load_checkpoint(snap))
    for steps in [int(s) for s in a.sampler_steps.split(",")]:
        point("sampler_steps", steps, shipped, steps=steps)

    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "diffusion_learning_curve.csv"
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    meta = {"sampler": sampler, "n_val": a.n_val, "threads": a.threads, "run": str(a.run)}
    (RESULTS / "diffusion_learning_curve.json").write_text(json.dumps(meta, indent=2) + "\n")
    _plot(rows, RESULTS / "diffusion_learning_curve.png")


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, curve, label in zip(axes, ("training_steps", "sampler_steps"),
                                ("score-network training steps", "sampler steps (reverse diffusion)")):
        pts = [r for r in rows if r["curve"] == curve]
        xs = [r["x"] for r in pts]
        ax.plot(xs, [r["ssim"] for r in pts], "o-", color="C0")
        ax.set_xlabel(label)
        ax.set_ylabel("val SSIM (min-max)", color="C0")
        ax2 = ax.twinx()
        ax2.plot(xs, [r["psnr"] for r in pts], "s--", color="C1")
        ax2.set_ylabel("val PSNR (dB)", color="C1")
        if curve == "sampler_steps":
            ax.set_xscale("log")
    fig.suptitle("Diffusion reconstructor on the validation split (30 dB noise floor)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
