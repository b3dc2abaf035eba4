"""``kspace-attacks config-reference``: every configuration key, as Markdown (``docs/CONFIG.md``
is its output).

>>> import argparse
>>> from kspace_attacks.cli.common import Parents
>>> sub = argparse.ArgumentParser(prog="kspace-attacks").add_subparsers(dest="command")
>>> add_parser(sub, Parents()).parse_args([]).func is run
True
>>> config_reference().splitlines()[0]
'# Configuration reference'
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .common import EXIT_OK, Parents

__all__ = ["add_parser", "run", "config_reference"]


def add_parser(subparsers: Any, parents: Parents) -> argparse.ArgumentParser:
    """Declare ``config-reference`` on ``subparsers`` (no options)."""
    p = subparsers.add_parser("config-reference", help="print the reference of every configuration key (sweep / "
                                                       "demo / study files, card protocols, the pytest marker) "
                                                       "as Markdown")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Print :func:`config_reference`; returns the exit code (0)."""
    sys.stdout.write(config_reference())
    return EXIT_OK


def config_reference() -> str:
    """The Markdown reference of every configuration table (``docs/CONFIG.md``), derived from
    the typed schemas: sweep / demo / study files, card protocols and the pytest marker."""
    from ..study.config import SweepConfig
    from ..testing.protocol import Protocol
    from ..testing.settings import MarkerOptions

    return "\n".join([
        "# Configuration reference", "",
        "Generated from the typed schemas (`kspace-attacks config-reference`); every key below is",
        "checked when a file is read: an unknown key names its table and the known keys, a wrong",
        "value names the key, what was expected and what was given.", "",
        "## Sweep, demo and study files (`kspace_attacks.study.config.SweepConfig`)", "",
        "`kspace-attacks demo --print-config` prints the demo's values, `study --print-config` the",
        "study's. Tables of tables: `[attacks.<name>]` takes `type` plus the attack's own arguments;",
        "`[models.<name>]` the loader's arguments (`model = \"diffusion\"` for a variant,",
        "`model = \"file.py:make\"` for your own model); `[surrogate_models.<name>]` a surrogate's",
        "loader arguments for the attack plus `eot`, `attack_steps` and `n_slices`.", "",
        "`[threat]` names an additive norm ball (`KSpaceL2`, `KSpaceLinf`; `eps` relative to ||y||) or a",
        "physical threat (`motion`, `phase`, `spikes`, `lost_lines`; `eps` in its unit: mm per shot,",
        "radians, max |y|, lines; `coil_maps` is for cards and the Python API). Keys that do not apply",
        "to the chosen type must keep their defaults. A motion sweep:", "",
        "```toml", "eps = [0.5, 1.0, 2.0]   # mm per shot", "", "[threat]", "type = \"motion\"",
        "shots = 8", "ordering = \"interleaved\"", "```", "",
        SweepConfig.docs(), "",
        "## Robustness-card protocols (`kspace_attacks.testing.protocol.Protocol`)", "",
        Protocol.docs(), "",
        "## The pytest marker (`@pytest.mark.kspace_robustness`)", "",
        MarkerOptions.docs(), "",
    ])
