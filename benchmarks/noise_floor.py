"""What the presets' k-space noise floor means in the image, and what it costs the models.

    python benchmarks/noise_floor.py [--snr 40 30 25] [--out benchmarks/results]

For each k-space SNR (dB over the measured entries, per sample: the presets' ``snr_db``) and
the noiseless setting, on the embedded test split (70 items, every contrast):

- ``image_snr``: mean tissue magnitude (ground truth > 0.1) over the per-component std of the
  k-space noise, i.e. of the noise in the *fully sampled* image (the SNR one would quote for the
  scan);
- ``exact_zero_background``: fraction of pixels of each clean reconstruction that are exactly 0
  (the setting in which white noise collapses SSIM);
- clean SSIM / PSNR of the zero-filled, i-RIM and ResUnet++ reconstructions against the
  ground truth, on the reference's scale (data range = the ground truth's max).

Writes ``noise_floor.csv`` and prints it. The models are the shipped weights (whatever
``load_reconstructor`` loads), so run it again after retraining.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import torch

from kspace_attacks import metrics
from kspace_attacks.adapters import load_reconstructor
from kspace_attacks.data import EmbeddedBrain, get_preset
from kspace_attacks.losses import magnitude

MODELS = ("zero_filled", "irim", "resunetpp")


def image_snr(x: torch.Tensor, snr_db: float | None, seed: int = 0) -> float:
    """Mean tissue magnitude over the per-component std of the k-space noise at ``snr_db``: the
    image SNR of the same scan fully sampled (orthonormal FFT: a k-space entry's noise std is a
    pixel's)."""
    if snr_db is None:
        return float("inf")
    preset = get_preset("embedded", snr_db=snr_db)
    physics = preset.physics()
    noise = preset.simulate(x, physics=physics, generator=torch.Generator().manual_seed(seed)) - physics.A(x)
    measured = physics.mask.expand_as(noise) > 0
    sigma = noise[measured].std()
    tissue = magnitude(x) > 0.1
    return float(magnitude(x)[tissue].mean() / sigma)


def row(snr_db: float | None) -> dict:
    preset = get_preset("embedded", snr_db=snr_db)
    ds = EmbeddedBrain("test", preset=preset)
    xs, ys = zip(*(ds[i] for i in range(len(ds))), strict=True)
    x, y = torch.stack(xs), torch.stack(ys)
    physics = preset.physics()
    out = {"snr_db": "none" if snr_db is None else snr_db, "items": len(ds),
           "image_snr": round(image_snr(x, snr_db), 1)}
    for name in MODELS:
        model = load_reconstructor(name)
        with torch.no_grad():
            x_hat = model(y, physics)
        out[f"{name}_exact_zero_background"] = round(float((x_hat.abs().sum(dim=1) == 0).float().mean()), 4)
        out[f"{name}_ssim"] = round(float(metrics.ssim(x_hat, x, "fastmri").mean()), 4)
        out[f"{name}_psnr"] = round(float(metrics.psnr(x_hat, x, "fastmri").mean()), 2)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--snr", type=float, nargs="*", default=[40.0, 30.0, 25.0])
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    rows = [row(None)] + [row(s) for s in a.snr]
    a.out.mkdir(parents=True, exist_ok=True)
    with open(a.out / "noise_floor.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    for r in rows:
        print(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
