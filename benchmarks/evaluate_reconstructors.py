"""Image quality of registered reconstructors on the embedded test split.

PSNR / SSIM on the reference's scale (data range = the ground truth's maximum, the records'
default) and on min-max normalised magnitude images (data range 1; the original study's
convention), mean and standard deviation over the split, plus the time per image::

    python benchmarks/evaluate_reconstructors.py                      # irim resunetpp zero_filled
    python benchmarks/evaluate_reconstructors.py irim diffusion --preset embedded_noiseless
    python benchmarks/evaluate_reconstructors.py irim --n 16 --json out.json
    python benchmarks/evaluate_reconstructors.py --all --data unseen --write-quality
    python benchmarks/evaluate_reconstructors.py resunetpp --candidate mine=resunetpp:runs/x/resunetpp_adv.safetensors

``--write-quality`` merges the rows into ``adapters/weights/quality.json``, the table that
``kspace-attacks models`` prints (one entry per model and data: ``test`` is the embedded test
split, ``unseen`` the shipped dipy brain none of the models saw in training).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from kspace_attacks import metrics
from kspace_attacks.adapters import list_reconstructors, load_reconstructor
from kspace_attacks.adapters.registry import QUALITY_FILE
from kspace_attacks.data import EmbeddedBrain, get_preset, unseen_brain
from kspace_attacks.io import atomic_write_text

#: models that need optional packages or have no shipped weights for the embedded preset
NOT_MEASURED = ("fastmri_unet", "fastmri_varnet")


def evaluate(name: str, ds, physics, n: int, batch_size: int = 16,
             weights: str | None = "embedded", model_name: str | None = None) -> dict:
    """Quality of ``name`` (or of ``model_name`` with ``weights``, reported as ``name``)."""
    model = load_reconstructor(model_name or name, weights=weights)
    psnr, ssim, psnr_mm, ssim_mm, seconds = [], [], [], [], 0.0
    with torch.no_grad():
        for start in range(0, n, batch_size):
            items = [ds[i] for i in range(start, min(n, start + batch_size))]
            x, y = torch.stack([a for a, _ in items]), torch.stack([b for _, b in items])
            t0 = time.perf_counter()
            x_hat = model(y, physics)
            seconds += time.perf_counter() - t0
            psnr.append(metrics.psnr(x_hat, x, "fastmri"))  # the reference's scale
            ssim.append(metrics.ssim(x_hat, x, "fastmri"))
            psnr_mm.append(metrics.psnr(x_hat, x, "minmax"))
            ssim_mm.append(metrics.ssim(x_hat, x, "minmax"))
    p, s = torch.cat(psnr), torch.cat(ssim)
    pm, sm = torch.cat(psnr_mm), torch.cat(ssim_mm)
    return {"name": name, "n": n, "psnr": p.mean().item(), "psnr_std": p.std().item(),
            "ssim": s.mean().item(), "ssim_std": s.std().item(), "psnr_minmax": pm.mean().item(),
            "ssim_minmax": sm.mean().item(), "parameters": sum(q.numel() for q in model.parameters()),
            "ms_per_image": 1e3 * seconds / n}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("names", nargs="*", default=["irim", "resunetpp", "zero_filled"])
    p.add_argument("--all", action="store_true", help="every registered model (fastMRI ones aside)")
    p.add_argument("--split", "--data", dest="split", default="test",
                   choices=["train", "val", "test", "unseen"],
                   help="an embedded split, or 'unseen': the shipped dipy brain (10 slices)")
    p.add_argument("--n", type=int, default=None, help="first n items (default: all)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--preset", default="embedded", help="embedded (30 dB noise) or embedded_noiseless")
    p.add_argument("--json", default=None, help="write the rows to this file")
    p.add_argument("--candidate", action="append", default=[], metavar="NAME=MODEL:WEIGHTS",
                   help="also measure trained weights that are not shipped (never written to the quality table)")
    p.add_argument("--write-quality", action="store_true",
                   help=f"merge the rows into {QUALITY_FILE.name} (shipped with the package)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.set_flush_denormal(True)
    names = [n for n in list_reconstructors() if n not in NOT_MEASURED] if a.all else a.names
    ds = unseen_brain(a.preset) if a.split == "unseen" else EmbeddedBrain(a.split, preset=a.preset)
    physics = get_preset(a.preset).physics()
    n = len(ds) if a.n is None else min(a.n, len(ds))
    rows = []
    for name in names:
        rows.append(evaluate(name, ds, physics, n))
        if a.write_quality:
            _merge_quality(rows[-1], a.split, a.preset)
    for spec in a.candidate:
        name, _, rest = spec.partition("=")
        model, _, weights = rest.partition(":")
        if not (name and model and weights):
            p.error(f"--candidate: expected NAME=MODEL:WEIGHTS, got {spec!r}")
        rows.append(evaluate(name, ds, physics, n, weights=weights, model_name=model))
    print(f"{'model':<20}{'PSNR (dB)':>16}{'SSIM':>16}{'minmax PSNR':>13}{'SSIM':>7}{'ms/img':>9}   "
          f"split={a.split}, n={n}, preset={a.preset}")
    for r in rows:
        print(f"{r['name']:<20}{r['psnr']:>9.2f} ± {r['psnr_std']:<4.2f}"
              f"{r['ssim']:>9.3f} ± {r['ssim_std']:<5.3f}{r['psnr_minmax']:>12.2f}{r['ssim_minmax']:>8.3f}"
              f"{r['ms_per_image']:>8.1f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


def _merge_quality(row: dict, data: str, preset: str) -> None:
    """Add ``row`` to the shipped quality table (atomically: an interrupted run loses nothing)."""
    table = json.loads(QUALITY_FILE.read_text()) if QUALITY_FILE.is_file() else {}
    entry = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items() if k != "name"}
    entry.update(preset=preset, threads=torch.get_num_threads(), torch=torch.__version__)
    table.setdefault(row["name"], {})[data] = entry
    atomic_write_text(QUALITY_FILE, json.dumps(dict(sorted(table.items())), indent=2) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
