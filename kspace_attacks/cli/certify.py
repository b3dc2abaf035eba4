"""``kspace-attacks certify MODEL --eps E.. --out DIR``: certified radius of the smoothed model.

The subcommand lives in the core (:mod:`kspace_attacks.certify.command`, which may not import
the model registry or the data layer); this module registers it and passes them in.

>>> import argparse
>>> from kspace_attacks.cli.common import Parents
>>> sub = argparse.ArgumentParser(prog="kspace-attacks").add_subparsers(dest="command")
>>> args = add_parser(sub, Parents()).parse_args(["zero_filled", "--out", "o"])
>>> args.model, args.eps, args.seed, args.device, args.func is run
('zero_filled', [0.01, 0.02, 0.05], 0, None, True)
"""

from __future__ import annotations

import argparse
from typing import Any

from ..certify import command
from .common import Parents

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any, parents: Parents) -> argparse.ArgumentParser:
    """Declare ``certify`` on ``subparsers`` with the shared options of ``parents``."""
    p = command.add_parser(subparsers, parents)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``certify`` with the model registry and the embedded demo slices; returns the exit code."""
    from ..adapters import resolve_model
    from ..data import demo_batch

    return command.run(args, resolve_model=resolve_model, demo_batch=demo_batch)
