"""``kspace-attacks sweep``: any models, data, attack and eps grid, from a TOML/YAML config.

>>> import argparse
>>> from kspace_attacks.cli.common import Parents
>>> sub = argparse.ArgumentParser(prog="kspace-attacks").add_subparsers(dest="command")
>>> args = add_parser(sub, Parents()).parse_args(["--config", "c.toml", "--out", "o"])
>>> args.config, args.out, args.device, args.allow_failures
('c.toml', 'o', None, False)
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path
from typing import Any

from .common import EXIT_FAILED_SLICES, EXIT_OK, Parents, print_tables, print_verdicts

__all__ = ["add_parser", "run", "SWEEP_EXIT_CODES"]

SWEEP_EXIT_CODES = """\
exit codes:
  0    every slice succeeded (or some failed and --allow-failures was given)
  2    error in the arguments, the configuration or a data file
  3    some slices failed (listed in OUT/failed.csv); with --allow-failures, only
       when every slice failed
  130  interrupted (run the same command again to resume)
"""


def add_parser(subparsers: Any, parents: Parents) -> argparse.ArgumentParser:
    """Declare ``sweep`` on ``subparsers`` with the shared options of ``parents``."""
    p = subparsers.add_parser(
        "sweep", help="run a sweep from a TOML/YAML config", epilog=SWEEP_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[parents.config("sweep configuration (.toml, .yaml)", required=True), parents.out(),
                 parents.device("override the config's device"),
                 parents.quiet("no progress (bars on a terminal, one log line per finished step otherwise)"),
                 parents.dry_run("print the plan (batches, rows, units, gradient evaluations, reconstructions) "
                                 "and a wall time estimated from a short timing here, then exit; writes nothing")])
    p.add_argument("--allow-failures", action="store_true",
                   help="exit 0 (with a warning) when some but not all slices failed")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``sweep``; returns the exit code (3 when slices failed, see ``SWEEP_EXIT_CODES``)."""
    from ..study.config import load_config, validate_config
    from ..study.sweep import run_sweep

    cfg = load_config(args.config)
    if args.device:
        cfg = validate_config({"device": args.device}, cfg)
    if args.dry_run:  # the plan and a timed estimate; nothing is written to --out
        from ..study.plan import plan_sweep

        print(f"Plan of {args.config} (dry run: nothing is written to {args.out})")
        print(plan_sweep(cfg).text())
        return EXIT_OK
    from ..study.config import build_models

    models = build_models(cfg)  # once: for the sweep and for the stored report panels
    run = run_sweep(cfg, args.out, progress=not args.quiet, models=models)
    report = run.report
    failures = _failures(Path(args.out), report)
    code = EXIT_OK
    if failures is not None:
        code = EXIT_OK if args.allow_failures and not failures[1] else EXIT_FAILED_SLICES
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, rank 0 reports the merged run
        from ..study.demo import finish_run

        print_tables(report)
        result = finish_run(run, title=cfg.report.title or "Verdicts")
        print_verdicts(result["verdicts"])
        print(f"Report: {Path(result['report']).resolve()} (self-contained: open it in a browser)")
        if failures is not None:
            what = ("warning: partial results accepted (--allow-failures): " if code == EXIT_OK
                    else "every slice failed: " if failures[1] else "")
            print(f"kspace-attacks sweep: {what}{failures[0]}", file=sys.stderr)
        print(f"Results in {Path(args.out).resolve()}")
    return code


def _failures(out: Path, report: Any) -> tuple[str, bool] | None:
    """A one-line summary of ``failed.csv`` and whether every slice failed; None if none did."""
    from ..study import records as R

    path = out / "failed.csv"
    if not path.is_file():
        return None
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    bad_slices = sum(len(r.get("sample_ids", "").split()) or 1 for r in rows)
    ok_batches = {r.get(R.BATCH) for r in report.records}
    ok_slices = len({(r.get(R.BATCH), r.get(R.SAMPLE_ID)) for r in report.records})
    first = rows[0]
    text = (f"{bad_slices} of {bad_slices + ok_slices} slice(s) in {len(rows)} of "
            f"{len(rows) + len(ok_batches)} batch(es) failed; first error (batch {first.get('batch')}, "
            f"slices {first.get('sample_ids')}): {first.get('error')}; see {path}")
    return text, ok_slices == 0
