"""``kspace-attacks models``: the registered reconstructors and their clean quality.

>>> import argparse
>>> from kspace_attacks.cli.common import Parents
>>> sub = argparse.ArgumentParser(prog="kspace-attacks").add_subparsers(dest="command")
>>> add_parser(sub, Parents()).parse_args([]).func is run
True
"""

from __future__ import annotations

import argparse
from typing import Any

from .common import EXIT_OK, Parents

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any, parents: Parents) -> argparse.ArgumentParser:
    """Declare ``models`` on ``subparsers`` (no options)."""
    p = subparsers.add_parser("models", help="list the registered reconstructors and their clean quality")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Print the table of the registered reconstructors; returns the exit code (0)."""
    from ..adapters import list_reconstructors
    from ..adapters.registry import model_quality

    print(f"{'model':<22}{'test SSIM':>10}{'PSNR':>8}{'unseen SSIM':>13}{'PSNR':>8}")
    for name in list_reconstructors():
        q = model_quality(name)
        cells = []
        for data in ("test", "unseen"):
            r = q.get(data)
            cells += ([f"{r['ssim']:.3f}", f"{r['psnr']:.2f}"] if r else ["-", "-"])
        print(f"{name:<22}{cells[0]:>10}{cells[1]:>8}{cells[2]:>13}{cells[3]:>8}")
    print("clean quality on the reference's scale (the records' default) on the embedded test split "
          "and on the shipped\nunseen brain, both with the embedded preset's 30 dB noise floor "
          "(benchmarks/evaluate_reconstructors.py; '-': not measured)")
    return EXIT_OK
