"""``kspace-attacks study``: the study at scale (24 slices, white-box diffusion); the options
and the run are the demo's (:func:`kspace_attacks.cli.demo.declare`, ``run_config``) on the
study's configuration.

>>> import argparse
>>> from kspace_attacks.cli.common import Parents
>>> sub = argparse.ArgumentParser(prog="kspace-attacks").add_subparsers(dest="command")
>>> add_parser(sub, Parents()).parse_args(["--out", "o", "--quiet"]).out
'o'
"""

from __future__ import annotations

import argparse
from typing import Any

from .common import Parents
from .demo import declare, run_config

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any, parents: Parents) -> argparse.ArgumentParser:
    """Declare ``study`` on ``subparsers`` with the shared options of ``parents``."""
    p = declare(subparsers, parents, "study",
                help="the study at scale: 24 slices, both runners, SSIM objective, white-box diffusion, "
                     "sampler ablation (under an hour on 2 idle CPU cores; resumable)",
                out="kspace-attacks-study", print_config="print the study's settings and exit")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``study``; returns the exit code."""
    from ..study.config import STUDY_CONFIG

    return run_config(args, STUDY_CONFIG, "Verdicts of the study ({n} test slices)")
