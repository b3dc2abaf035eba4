"""Reproduce the study: the full settings on a GPU, their embedded-preset version on a CPU.

    python benchmarks/reproduce_paper.py [--out DIR] [--device cuda|cpu] [--n-slices N]

With a GPU this runs ``reproduce_paper.toml`` (256x256, acceleration 8, both runners, 2000 Adam
steps). Without one it keeps every setting of the study's attack (full-grid support, eps grid,
Adam runner with lr 0.1 / 2000 steps / 100 rescalings, PGD) but uses the embedded preset
(64x64, acceleration 4, noiseless like the study) and the shipped weights, which is what a CPU
can run in about an hour.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import tomllib

from kspace_attacks.study.config import validate_config
from kspace_attacks.study.sweep import run_sweep

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="paper-results")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--n-slices", type=int, default=None)
    args = parser.parse_args(argv)
    cfg = tomllib.loads((HERE / "reproduce_paper.toml").read_text())
    cfg["device"] = args.device  # before validation: the file asks for a GPU
    if not args.device.startswith("cuda"):  # CPU scale, shipped weights
        cfg.update(preset="embedded_noiseless", data=dict(cfg["data"], n_slices=8), models={})
    if args.n_slices:
        cfg["data"] = dict(cfg["data"], n_slices=args.n_slices)
    cfg = validate_config(cfg)
    report = run_sweep(cfg, args.out).report
    for metric in ("delta_ssim", "delta_psnr"):
        print(report.table(metric))
    return 0


if __name__ == "__main__":
    sys.exit(main())
