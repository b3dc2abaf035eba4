"""The README's "What each model reaches" table, from the shipped quality table
(``adapters/weights/quality.json``, written by ``evaluate_reconstructors.py --write-quality``)::

    python benchmarks/model_table.py

(The table's times per image are left out: they were measured while other jobs ran; the
sampler's timings are ``benchmarks/bench_diffusion.py``'s, on idle cores.)
"""

from __future__ import annotations

import json

from kspace_attacks.adapters.registry import QUALITY_FILE

ROWS = [("zero_filled", "zero-filled"), ("irim", "i-RIM"), ("resunetpp", "ResUnet++"),
        ("diffusion", "diffusion"), ("diffusion_dps", "DPS (deepinv), same score network"),
        ("diffusion_diffpir", "DiffPIR (deepinv), same score network"),
        ("diffusion_3k", "diffusion_3k (the earlier model)"), ("irim_noiseless", "i-RIM, 0.2 weights"),
        ("resunetpp_noiseless", "ResUnet++, 0.2 weights")]


def main() -> None:
    table = json.loads(QUALITY_FILE.read_text())
    print("| model | parameters | PSNR (dB) | SSIM | min-max SSIM | unseen brain PSNR | SSIM |")
    print("|---|---|---|---|---|---|---|")
    for name, label in ROWS:
        if name not in table:
            continue
        t, u = table[name].get("test", {}), table[name].get("unseen", {})
        cells = [f"{t['parameters']:,}" if t else "-",
                 f"{t['psnr']:.2f}" if t else "-", f"{t['ssim']:.3f}" if t else "-",
                 f"{t['ssim_minmax']:.3f}" if t else "-",
                 f"{u['psnr']:.2f}" if u else "-", f"{u['ssim']:.3f}" if u else "-"]
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
