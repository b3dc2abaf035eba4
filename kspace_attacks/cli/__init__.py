"""The ``kspace-attacks`` command line: one module per command, each with
``add_parser(subparsers, parents)`` and ``run(args) -> int``.

    kspace-attacks demo [--out DIR] [--print-config]   the study on the embedded default
    kspace-attacks sweep --config FILE --out DIR       any models, data, attack and eps grid
    kspace-attacks study [--out DIR] [--config FILE] [--print-config] [--dry-run]
                                                       the study at scale (24 slices, white-box diffusion)
    kspace-attacks report DIR                          tables, plots, verdicts and report.html of results
    kspace-attacks evaluate --model SPEC --out DIR     a robustness card under a fixed protocol
    kspace-attacks train NAME [...]                    train a shipped reconstructor
    kspace-attacks models                              list the registered reconstructors
    kspace-attacks certify MODEL --eps E.. --out DIR   certified radius of the smoothed model (center smoothing)
    kspace-attacks config-reference                    every configuration key (docs/CONFIG.md)

Exit codes: 0 success; 2 an error in the arguments, the configuration or a data file (one
line is printed; set ``KSPACE_ATTACKS_DEBUG=1`` to see the traceback instead); 3 a sweep in
which some slices failed (see ``failed.csv``; ``--allow-failures`` accepts partial results and
exits 0 with a warning, but a sweep in which every slice failed still exits 3); 130 interrupted.

The options several commands share are parent parsers (:class:`~kspace_attacks.cli.common.Parents`),
the verdicts are printed by :func:`~kspace_attacks.cli.common.print_verdicts`.

>>> args = build_parser().parse_args(["sweep", "--config", "c.toml", "--out", "o"])
>>> args.command, args.device, args.func.__module__
('sweep', None, 'kspace_attacks.cli.sweep')
>>> [m.__name__.rpartition(".")[2] for m in COMMANDS][:3]
['demo', 'study', 'sweep']
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from . import certify, demo, evaluate, models, report, study, sweep, train
from . import config_reference as _config_reference_command
from .common import EXIT_ERROR, EXIT_FAILED_SLICES, EXIT_INTERRUPTED, EXIT_OK, Parents
from .config_reference import config_reference

__all__ = ["main", "build_parser", "COMMANDS", "config_reference", "EXIT_OK", "EXIT_ERROR",
           "EXIT_FAILED_SLICES", "EXIT_INTERRUPTED"]

# the command modules, in the order of ``kspace-attacks --help``
COMMANDS = (demo, study, sweep, report, evaluate, models, certify, _config_reference_command, train)


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``kspace-attacks``: every command of :data:`COMMANDS`, sharing one set of
    parent parsers; a command's ``run`` is its ``func`` default."""
    parser = argparse.ArgumentParser(
        prog="kspace-attacks",
        description="Worst-case k-space perturbations for MRI reconstruction models.",
        epilog="exit codes: 0 success, 2 error in arguments, configuration or data, 3 a sweep with "
               "failed slices (see sweep --help), 130 interrupted",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    parents = Parents()
    for command in COMMANDS:
        command.add_parser(sub, parents)
    return parser


def _interruptible() -> None:
    """Let SIGINT interrupt the command even when the process started with it ignored.

    A process launched in the background by a non-interactive shell (``cmd &`` in a script, some
    CI runners) inherits SIGINT as ignored, and Python then installs no KeyboardInterrupt: a
    ``kill -INT`` would be dropped and the sweep run to the end. Every command here is resumable
    and documents exit code 130 for an interruption, so SIGINT always means "stop now".
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``kspace-attacks``; returns the exit code."""
    _interruptible()
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args, rest = parser.parse_known_args(argv)
    if rest:
        if not hasattr(args, "rest"):  # only a command with a ``rest`` default (train) takes them
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        args.rest = rest
    from ..study.config import ConfigError

    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError, KeyError, ValueError, TypeError) as e:
        if os.environ.get("KSPACE_ATTACKS_DEBUG"):
            raise
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"kspace-attacks {args.command}: error: {msg}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"kspace-attacks {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
