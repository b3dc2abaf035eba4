"""Rebuild the embedded brain data from the MNI ICBM152 template in the nilearn wheel.

    pip install --no-deps nilearn nibabel
    python benchmarks/build_embedded_data.py                 # -> kspace_attacks/data/embedded_brain_64.npz
    python benchmarks/build_embedded_data.py --size 256 --out /tmp/embedded_brain_256.npz

Sizes other than 64 are also built automatically on first use into ~/.cache/kspace_attacks.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from kspace_attacks.data.build import SPLITS, save_embedded

DEFAULT_OUT = (
    Path(__file__).resolve().parents[1] / "kspace_attacks" / "data" / "embedded_brain_64.npz"
)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size", type=int, default=64, help="output slice size S (S x S)")
    ap.add_argument(
        "--out", type=Path, default=None, help="output .npz (default: the package file for 64)"
    )
    ap.add_argument(
        "--min-area-fraction",
        type=float,
        default=0.3,
        help="keep slices whose brain area is at least this fraction of the largest",
    )
    args = ap.parse_args(argv)
    out = args.out or (DEFAULT_OUT if args.size == 64 else Path(f"embedded_brain_{args.size}.npz"))
    t0 = time.perf_counter()
    path = save_embedded(out, args.size, min_area_fraction=args.min_area_fraction)
    with np.load(path, allow_pickle=False) as f:
        counts = np.bincount(f["split"], minlength=3)
        z = f["z"]
        print(
            f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB) in {time.perf_counter() - t0:.1f} s"
        )
        print(f"{len(z)} slices, z in [{z.min()}, {z.max()}], size {args.size}x{args.size}")
        print(", ".join(f"{s}: {int(c)}" for s, c in zip(SPLITS, counts)))


if __name__ == "__main__":
    main()
