"""``kspace-attacks report DIR``: tables, plots, verdicts and report.html of saved results.

>>> import argparse
>>> from kspace_attacks.cli.common import Parents
>>> sub = argparse.ArgumentParser(prog="kspace-attacks").add_subparsers(dest="command")
>>> args = add_parser(sub, Parents()).parse_args(["results"])
>>> args.dir, args.rebuild_panels, args.max_slices
('results', False, 8)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .common import EXIT_OK, Parents, print_tables, print_verdicts, run_title

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any, parents: Parents) -> argparse.ArgumentParser:
    """Declare ``report`` on ``subparsers`` (it takes none of the shared options)."""
    p = subparsers.add_parser("report", help="re-render tables, plots, verdicts and report.html of saved results")
    p.add_argument("dir", help="folder written by demo or sweep")
    p.add_argument("--rebuild-panels", action="store_true",
                   help="rebuild the per-slice image panels from the configuration's models (minutes "
                        "with the diffusion model) and store them; by default report.html shows the "
                        "panels the sweep stored and no model is built")
    p.add_argument("--no-panels", action="store_true", help=argparse.SUPPRESS)  # the default now
    p.add_argument("--max-slices", type=int, default=8,
                   help="slices with image panels when rebuilding (default: %(default)s)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``report``; returns the exit code."""
    from ..study.report import TransferReport

    report = TransferReport.load(args.dir)
    paths = report.plot(args.dir)
    print_tables(report)
    print("Figures: " + ", ".join(str(p) for p in paths))
    models = _report_models(args, report.config) if args.rebuild_panels else None
    _write_verdicts_and_page(Path(args.dir), report, models, max_slices=args.max_slices)
    return EXIT_OK


def _write_verdicts_and_page(directory: Path, report: Any, models: dict | None, **panels: Any) -> None:
    """verdict.json / verdict.md (with the targeted rows when targeted.csv exists) and
    report.html of a finished run; image panels only for the given ``models``."""
    from ..study.html import write_html_report
    from ..study.report import records_from_csv
    from ..study.targeted import targeted_verdicts
    from ..study.verdicts import write_verdicts

    targeted = directory / "targeted.csv"
    extra = targeted_verdicts(records_from_csv(targeted)) if targeted.is_file() else []
    title = ((report.config or {}).get("report") or {}).get("title") or run_title(directory)
    items = write_verdicts(report, directory, title=title, extra_rows=extra)
    print_verdicts(items)
    page = write_html_report(directory, models, **panels)
    print(f"Report: {page.resolve()} (self-contained: open it in a browser)")


def _report_models(args: argparse.Namespace, cfg: dict) -> dict | None:
    """The configuration's models for the HTML image panels, when they are registered names or
    variants of them (``models.<name>.model``)."""
    from ..adapters import list_reconstructors
    from ..study.config import build_models, stored_config

    tables = cfg.get("models", {}) or {}
    names = {str((tables.get(n) or {}).get("model", n)) for n in (*cfg.get("surrogates", []), *cfg.get("targets", []))}
    if args.no_panels or not names or not names <= set(list_reconstructors()):
        return None
    try:
        return build_models(stored_config(cfg))
    except Exception as e:  # noqa: BLE001 - the page is still written, without panels
        print(f"kspace-attacks report: image panels skipped, the models could not be built "
              f"({type(e).__name__}: {e})", file=sys.stderr)
        return None
