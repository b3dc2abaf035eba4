"""``kspace-attacks demo``: the study on the embedded default (and what ``study`` shares with it).

>>> import argparse
>>> from kspace_attacks.cli.common import Parents
>>> sub = argparse.ArgumentParser(prog="kspace-attacks").add_subparsers(dest="command")
>>> args = add_parser(sub, Parents()).parse_args(["--dry-run"])
>>> args.out, args.config, args.device, args.dry_run
('kspace-attacks-demo', None, None, True)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Mapping

from .common import EXIT_OK, Parents, print_tables, print_verdicts

__all__ = ["add_parser", "run", "declare", "run_config"]


def add_parser(subparsers: Any, parents: Parents) -> argparse.ArgumentParser:
    """Declare ``demo`` on ``subparsers`` with the shared options of ``parents``."""
    p = declare(subparsers, parents, "demo",
                help="run the study on the embedded default (4 items; 7.9 min on 2 CPU cores)",
                out="kspace-attacks-demo", print_config="print the demo's settings as a sweep config and exit")
    p.set_defaults(func=run)
    return p


def declare(subparsers: Any, parents: Parents, name: str, help: str, out: str,
            print_config: str) -> argparse.ArgumentParser:
    """The subcommand ``name`` with the options ``demo`` and ``study`` share: ``--out`` (default
    ``out``), ``--print-config`` (help ``print_config``), ``--device``, ``--quiet``, ``--config``
    and ``--dry-run``."""
    flag = argparse.ArgumentParser(add_help=False)
    flag.add_argument("--print-config", action="store_true", help=print_config)
    config = parents.config(f"settings (.toml, .yaml) merged over the {name}'s own, e.g. an edited "
                            f"copy of --print-config's output", metavar="FILE")
    return subparsers.add_parser(name, help=help, parents=[
        parents.out("output folder (default: %(default)s)", default=out), flag, parents.device(),
        parents.quiet(), config, parents.dry_run()])


def run(args: argparse.Namespace) -> int:
    """Run ``demo``; returns the exit code."""
    from ..study.config import DEMO_CONFIG, DEMO_OVERRIDES

    return run_config(args, {**DEMO_CONFIG, **DEMO_OVERRIDES}, "Verdicts of the demo (small sample: {n} slices)")


def run_config(args: argparse.Namespace, base: Mapping[str, Any], title: str) -> int:
    """Run the configuration ``base`` (``--config`` merged over it) as ``demo`` does: print it
    (``--print-config``), plan it (``--dry-run``) or run it, its verdicts titled ``title``
    (``{n}``: the number of slices); returns the exit code."""
    from ..study.config import dump_toml, load_config, validate_config

    cfg = load_config(args.config, base) if args.config else validate_config(base)
    if args.device:
        cfg = validate_config({"device": args.device}, cfg)
    if args.print_config:
        sys.stdout.write(dump_toml(cfg))
        return EXIT_OK
    if args.dry_run:  # the plan and a timed estimate; nothing is written to --out
        from ..study.plan import plan_sweep

        print(f"Plan of the {args.command}{f' ({args.config})' if args.config else ''} (dry run: nothing "
              f"is written to {args.out}; the targeted test and verdicts add a minute or two)")
        print(plan_sweep(cfg).text())
        return EXIT_OK
    from ..study.demo import run_demo

    result = run_demo(args.out, cfg, progress=not args.quiet, title=cfg.report.title or title.format(n=cfg.n_slices))
    print_tables(result["run"].report)
    print_verdicts(result["verdicts"], always=True)
    if "targeted_roi_contrast" in result:
        shown = ", ".join(f"{t}: {c:.2f}" for t, c in result["targeted_roi_contrast"].items())
        print(f"Targeted blob insertion (ROI contrast, 1 = fully shown): {shown}")
    print(f"Results in {Path(args.out).resolve()} (records.csv, summary.json, *.png, verdict.md)")
    return EXIT_OK
