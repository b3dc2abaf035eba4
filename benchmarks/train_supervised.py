"""Train the supervised reconstructors (i-RIM, ResUnet++) and optionally ship the weights.

Reproduces ``kspace_attacks/adapters/weights/{irim,resunetpp}.{safetensors,json}``::

    # one thread each, both at once on a 2-core machine
    nohup python benchmarks/train_supervised.py irim --threads 1 --ship > irim.log 2>&1 &
    nohup python benchmarks/train_supervised.py resunetpp --threads 1 --ship > resunetpp.log 2>&1 &

All options of ``kspace-attacks train`` are accepted (``--steps``, ``--batch-size``, ``--lr``,
``--seed``, ``--out``, ``--resume/--no-resume``, ``--threads``, ...). ``--ship`` copies the
resulting ``<name>.safetensors`` and ``<name>.json`` into ``adapters/weights/`` after checking
the quality target (>= 4 dB PSNR and >= 0.10 SSIM over zero-filled on the test split).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from kspace_attacks.adapters.training import supervised

WEIGHTS = Path(__file__).resolve().parents[1] / "adapters" / "weights"
TARGET_PSNR_GAIN, TARGET_SSIM_GAIN = 4.0, 0.10


def ship(run_dir: Path, name: str, force: bool = False) -> None:
    """Copy a finished run's weights and JSON into ``adapters/weights``."""
    meta = json.loads((run_dir / f"{name}.json").read_text())
    m = meta["metrics"]
    gain = (m["model"]["psnr"] - m["zero_filled"]["psnr"], m["model"]["ssim"] - m["zero_filled"]["ssim"])
    print(f"{name}: PSNR gain {gain[0]:.2f} dB, SSIM gain {gain[1]:.3f} over zero-filled")
    if not force and (gain[0] < TARGET_PSNR_GAIN or gain[1] < TARGET_SSIM_GAIN):
        raise SystemExit(f"{name}: below the quality target; not shipped (use --force)")
    WEIGHTS.mkdir(exist_ok=True)
    for ext in ("safetensors", "json"):
        shutil.copy2(run_dir / f"{name}.{ext}", WEIGHTS / f"{name}.{ext}")
    print(f"shipped to {WEIGHTS}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    do_ship, force = "--ship" in argv, "--force" in argv
    argv = [a for a in argv if a not in ("--ship", "--force")]
    args = supervised.parser().parse_args(argv)
    supervised.main(argv)
    if do_ship:
        ship(Path(args.out or Path("runs") / args.name), args.name, force)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
