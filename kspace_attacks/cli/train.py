"""``kspace-attacks train NAME [...]``: train a shipped reconstructor; the arguments after NAME
go to its trainer (``kspace-attacks train NAME --help`` lists them).

>>> import argparse
>>> from kspace_attacks.cli.common import Parents
>>> sub = argparse.ArgumentParser(prog="kspace-attacks").add_subparsers(dest="command")
>>> args = add_parser(sub, Parents()).parse_args(["irim"])
>>> args.name, args.rest
('irim', [])
"""

from __future__ import annotations

import argparse
from typing import Any

from .common import Parents

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any, parents: Parents) -> argparse.ArgumentParser:
    """Declare ``train`` on ``subparsers``. Its ``rest`` default says that it takes the arguments
    it does not declare: ``main`` puts them there."""
    p = subparsers.add_parser("train", help="train a reconstructor on the embedded data (see train NAME --help)",
                              add_help=False)
    p.add_argument("name", help="diffusion, irim or resunetpp")
    p.set_defaults(func=run, rest=[])
    return p


def run(args: argparse.Namespace) -> int:
    """Run the trainer of ``args.name`` with the arguments ``args.rest``; returns its exit code."""
    if args.name == "diffusion":
        from ..adapters.training.diffusion import main as train_main

        return int(train_main(args.rest) or 0)
    from ..adapters.training.supervised import main as train_main

    return int(train_main([args.name, *args.rest]) or 0)
