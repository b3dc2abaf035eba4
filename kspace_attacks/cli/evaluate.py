"""``kspace-attacks evaluate --model SPEC --out DIR``: a robustness card under a fixed protocol.

>>> import argparse
>>> from kspace_attacks.cli.common import Parents
>>> sub = argparse.ArgumentParser(prog="kspace-attacks").add_subparsers(dest="command")
>>> args = add_parser(sub, Parents()).parse_args(["--model", "zero_filled", "--out", "card"])
>>> args.model, args.protocol, args.seed, args.device, args.certify
('zero_filled', 'v3', 0, None, None)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..testing.protocol import DEFAULT_PROTOCOL
from .common import EXIT_ERROR, EXIT_OK, Parents

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any, parents: Parents) -> argparse.ArgumentParser:
    """Declare ``evaluate`` on ``subparsers`` with the shared options of ``parents`` (its own
    options are parent parsers too, so that ``--help`` lists them all in this order)."""
    model, data, attack, certify = (argparse.ArgumentParser(add_help=False) for _ in range(4))
    model.add_argument("--model", required=True, metavar="SPEC",
                       help="a registered name (see `kspace-attacks models`) or module:callable / "
                            "file.py:callable returning a model(y, physics)")
    data.add_argument("--data", default=None, metavar="PATH",
                      help="a NIfTI volume or fastMRI file/folder instead of the protocol's data "
                           "(recorded as non-standard)")
    data.add_argument("--protocol", default=DEFAULT_PROTOCOL, help="protocol version (default: %(default)s)")
    data.add_argument("--name", default=None, help="model name on the card (default: SPEC)")
    attack.add_argument("--attack-model", default=None, metavar="SPEC",
                        help="craft the perturbations on this model instead (slow or stochastic models; "
                             "recorded on the card as non-standard)")
    certify.add_argument("--certify", type=float, default=None, metavar="SIGMA",
                         help="add a 'certified' section: center smoothing at this noise level (e.g. 0.04), "
                              "the smoothed model's certified radius next to the attack's lower bound")
    p = subparsers.add_parser(
        "evaluate", help="robustness card of a model under a fixed protocol (card.json, card.md)",
        description="Attack a model under a fixed, versioned protocol (v3, the default: the "
                    "WorstCase search, 100 gradient evaluations per row and more, up to 400, until "
                    "two runs agree, rows that never settle flagged unreliable, on two objectives, "
                    "eps 0.01/0.02/0.05/0.08, 8 embedded test slices, noise control, restart spread; "
                    "v2: 100 evaluations, not assessed; v1: one 20-step APGD run) and write its "
                    "robustness card.",
        parents=[model, parents.out("folder for card.json and card.md"), data,
                 parents.seed("attack and noise seed (default: %(default)s)"), attack, parents.device(),
                 certify])
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``evaluate``; returns the exit code (2 when the card cannot be made)."""
    from ..adapters import resolve_model
    from ..testing.card import CardError, evaluate

    device = args.device or "cpu"
    model = resolve_model(args.model, device=device)
    attack_model = resolve_model(args.attack_model, device=device) if args.attack_model else None
    data = _evaluate_data(args.data, device) if args.data else None
    try:
        card = evaluate(model, data=data, protocol=args.protocol, out=args.out, name=args.name or args.model,
                        seed=args.seed, attack_model=attack_model,
                        attack_model_note=f"--attack-model {args.attack_model}" if args.attack_model else None,
                        certify={"sigma": args.certify} if args.certify is not None else False)
    except CardError as e:
        print(f"kspace-attacks evaluate: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    s = card["summary"]
    print(f"{card['name']} under protocol {card['protocol']['version']}: worst slice Delta SSIM "
          f"{s['worst_delta_ssim']:+.3f} (Delta PSNR {s['worst_delta_psnr']:+.2f} dB) at eps {s['worst_eps']:g}; at eps "
          f"{s['max_eps']:g} the attack changes the image {s['attack_over_noise_deviation_at_max_eps']:.1f}x "
          f"as much as equal-norm noise ({card['cost']['total_seconds']:.0f} s)")
    print(f"Card in {Path(args.out).resolve()} (card.json, card.md)")
    return EXIT_OK


def _evaluate_data(spec: str, device: str) -> list:
    """``--data``: a NIfTI volume (8 evenly spaced slices) or fastMRI file / folder (first 8 slices),
    simulated / cropped with the embedded preset, as for a sweep's data table."""
    from ..study.config import build_data, validate_config

    kind = "nifti" if spec.endswith((".nii", ".nii.gz")) else "fastmri"
    cfg = validate_config({"data": {kind: spec}, "n_slices": 8, "batch_size": 8, "device": device})
    batches, _ = build_data(cfg)
    return batches
