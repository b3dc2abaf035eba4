"""Reproduce the study: the full settings on a GPU, their embedded-preset version on a CPU.

    python benchmarks/reproduce_paper.py [--out DIR] [--device cuda|cpu] [--n-slices N]

With a GPU this runs ``reproduce_paper.toml`` (256x256, acceleration 8, both runners, 2000 Adam
steps). Without one it keeps every setting of the study's attack (full-grid support, eps grid,
Adam runner with lr 0.1 / 2000 steps / 100 rescalings, PGD) but uses the embedded preset
(64x64, acceleration 4) and the shipped weights, which is what a CPU can run in about an hour.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from kspace_attacks.study.config import load_config
from kspace_attacks.study.sweep import run_sweep

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="paper-results")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--n-slices", type=int, default=None)
    args = parser.parse_args(argv)
    cfg = load_config(HERE / "reproduce_paper.toml")
    cfg["device"] = args.device
    if not args.device.startswith("cuda"):
        cfg.update(preset="embedded", n_slices=8, models={})  # CPU scale, shipped weights
    if args.n_slices:
        cfg["n_slices"] = args.n_slices
    report = run_sweep(cfg, args.out)
    for metric in ("delta_ssim", "delta_psnr"):
        print(report.table(metric))
    return 0


if __name__ == "__main__":
    sys.exit(main())
