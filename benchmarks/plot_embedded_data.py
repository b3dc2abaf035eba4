"""Figure of the embedded data: test slices of every contrast and their zero-filled recons.

python benchmarks/plot_embedded_data.py [--preset embedded] [--out docs/embedded_data.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from kspace_attacks.data import CONTRASTS, EmbeddedBrain, get_preset

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "docs" / "embedded_data.png"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--preset", default="embedded")
    ap.add_argument("--split", default="test")
    ap.add_argument("--slices", type=int, default=4)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)

    preset = get_preset(args.preset)
    physics = preset.physics()
    n_sl = args.slices
    fig, axes = plt.subplots(
        len(CONTRASTS), 2 * n_sl, figsize=(2 * n_sl * 1.3, len(CONTRASTS) * 1.45)
    )
    for r, contrast in enumerate(CONTRASTS):
        ds = EmbeddedBrain(args.split, preset, contrasts=(contrast,))
        picks = np.round(np.linspace(0, len(ds) - 1, n_sl + 2)[1:-1]).astype(int)
        for c, i in enumerate(picks):
            x, y = ds[int(i)]
            zf = physics.A_adjoint(y[None])[0].norm(dim=0)
            for k, (img, label) in enumerate(((x.norm(dim=0), "x"), (zf, "|A^H y|"))):
                ax = axes[r, 2 * c + k]
                ax.imshow(img.numpy(), cmap="gray", vmin=0, vmax=1)
                ax.set_xticks([]), ax.set_yticks([])
                if r == 0:
                    ax.set_title(f"z={ds.info(int(i))['z']} {label}", fontsize=7)
            if c == 0:
                axes[r, 0].set_ylabel(contrast, fontsize=9)
    m = preset.mask()
    fig.suptitle(
        f"Embedded ICBM152 data, preset {preset.name!r}: {preset.img_size}x{preset.img_size}, "
        f"{int(m[0].sum())}/{preset.img_size} columns (x{preset.img_size / m[0].sum():.1f}), "
        f"{args.split} split; ground truth | zero-filled",
        fontsize=8,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.96), pad=0.2, w_pad=0.1, h_pad=0.2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
