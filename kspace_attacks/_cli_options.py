"""The options several ``kspace-attacks`` commands share, each declared once, as argparse
parent parsers.

A command lists the parents it takes, in the order its ``--help`` shows them
(``subparsers.add_parser(name, parents=[...])``); a command's own options can be a parent of
their own, placed between them. The variants (a command's own help text, a default output
folder) are arguments; the same variant is the same parent parser, shared.

This module is in the core (it imports nothing of the package) so that the ``certify``
command, which lives in the core (:mod:`kspace_attacks.certify.command`), takes its options
from here too; :mod:`kspace_attacks.cli.common` re-exports it for the command line.

>>> import argparse
>>> shared = Parents()
>>> p = argparse.ArgumentParser(prog="x", parents=[shared.out(), shared.device(), shared.quiet()])
>>> p.parse_args(["--out", "o", "--quiet"])
Namespace(out='o', device=None, quiet=True)
>>> shared.device() is shared.device() and shared.device() is not shared.device("another help")
True
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["Parents", "DEVICE_HELP"]

DEVICE_HELP = "torch device, e.g. cpu or cuda"
DRY_RUN_HELP = ("print the plan and a wall time estimated from a short timing here, then exit; "
                "writes nothing")


class Parents:
    """Factory of the shared parent parsers (``add_help=False``, one option each).

    Each method returns the parent parser of one option; a command passes its own help text
    where it words the option differently. Calls with the same arguments return the same
    parser.
    """

    def __init__(self) -> None:
        self._made: dict[tuple, argparse.ArgumentParser] = {}

    def _parent(self, option: str, **kwargs: Any) -> argparse.ArgumentParser:
        key = (option, tuple(sorted(kwargs.items())))
        if key not in self._made:
            parser = argparse.ArgumentParser(add_help=False)
            parser.add_argument(option, **kwargs)
            self._made[key] = parser
        return self._made[key]

    def device(self, help: str = DEVICE_HELP) -> argparse.ArgumentParser:
        """``--device`` (default None: the configuration's device, else cpu)."""
        return self._parent("--device", default=None, help=help)

    def out(self, help: str = "output folder", default: str | None = None) -> argparse.ArgumentParser:
        """``--out``, the output folder: required unless a ``default`` is given."""
        given: dict[str, Any] = {"required": True} if default is None else {"default": default}
        return self._parent("--out", help=help, **given)

    def quiet(self, help: str = "no progress bars") -> argparse.ArgumentParser:
        """``--quiet``: no progress output."""
        return self._parent("--quiet", action="store_true", help=help)

    def seed(self, help: str) -> argparse.ArgumentParser:
        """``--seed`` (an int, default 0)."""
        return self._parent("--seed", type=int, default=0, help=help)

    def config(self, help: str, required: bool = False, metavar: str | None = None) -> argparse.ArgumentParser:
        """``--config``, a settings file (.toml, .yaml)."""
        return self._parent("--config", required=required, metavar=metavar, help=help)

    def dry_run(self, help: str = DRY_RUN_HELP) -> argparse.ArgumentParser:
        """``--dry-run``: print the plan and exit."""
        return self._parent("--dry-run", action="store_true", help=help)
