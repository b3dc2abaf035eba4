"""Image quality of registered reconstructors on the embedded test split.

PSNR / SSIM on min-max normalised magnitude images (data range 1; the study's convention),
mean and standard deviation over the split, plus the time per image::

    python benchmarks/evaluate_reconstructors.py                      # irim resunetpp zero_filled
    python benchmarks/evaluate_reconstructors.py irim --n 16 --json out.json
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from kspace_attacks import metrics
from kspace_attacks.adapters import load_reconstructor
from kspace_attacks.data import EmbeddedBrain, get_preset


def evaluate(name: str, ds: EmbeddedBrain, physics, n: int, batch_size: int = 16,
             weights: str | None = "embedded") -> dict:
    model = load_reconstructor(name, weights=weights)
    psnr, ssim, seconds = [], [], 0.0
    with torch.no_grad():
        for start in range(0, n, batch_size):
            items = [ds[i] for i in range(start, min(n, start + batch_size))]
            x, y = torch.stack([a for a, _ in items]), torch.stack([b for _, b in items])
            t0 = time.perf_counter()
            x_hat = model(y, physics)
            seconds += time.perf_counter() - t0
            psnr.append(metrics.psnr(x_hat, x))
            ssim.append(metrics.ssim(x_hat, x))
    p, s = torch.cat(psnr), torch.cat(ssim)
    return {"name": name, "n": n, "psnr": p.mean().item(), "psnr_std": p.std().item(),
            "ssim": s.mean().item(), "ssim_std": s.std().item(), "ms_per_image": 1e3 * seconds / n}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("names", nargs="*", default=["irim", "resunetpp", "zero_filled"])
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--n", type=int, default=None, help="first n items (default: all)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None, help="write the rows to this file")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.set_flush_denormal(True)
    ds = EmbeddedBrain(a.split)
    physics = get_preset("embedded").physics()
    n = len(ds) if a.n is None else min(a.n, len(ds))
    rows = [evaluate(name, ds, physics, n) for name in a.names]
    print(f"{'model':<14}{'PSNR (dB)':>16}{'SSIM':>16}{'ms/img':>9}   split={a.split}, n={n}")
    for r in rows:
        print(f"{r['name']:<14}{r['psnr']:>9.2f} ± {r['psnr_std']:<4.2f}"
              f"{r['ssim']:>9.3f} ± {r['ssim_std']:<5.3f}{r['ms_per_image']:>8.1f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
