"""What the ``kspace-attacks`` commands share: exit codes, the shared options and the printed
tables and verdicts.

The shared options (``--device``, ``--out``, ``--quiet``, ``--seed``, ``--config``,
``--dry-run``) are parent parsers made by :class:`Parents`, declared once in
:mod:`kspace_attacks._cli_options` (the core, where the ``certify`` command takes them from too).

>>> print_verdicts([])  # no verdicts: nothing printed
>>> run_title(Path("no-such-folder"))
'Verdicts'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._cli_options import Parents

__all__ = ["Parents", "EXIT_OK", "EXIT_ERROR", "EXIT_FAILED_SLICES", "EXIT_INTERRUPTED",
           "print_tables", "print_verdicts", "run_title"]

EXIT_OK, EXIT_ERROR, EXIT_FAILED_SLICES, EXIT_INTERRUPTED = 0, 2, 3, 130


def print_tables(report: Any) -> None:
    """Print the report's tables of SSIM vs clean, delta SSIM and delta PSNR (those it has)."""
    from ..study import records as R

    for metric in (R.SSIM_VS_CLEAN, R.DELTA_SSIM, R.DELTA_PSNR):
        if report.records and metric in report.records[0]:
            print(report.table(metric))
            print()


def print_verdicts(items: list, always: bool = False) -> None:
    """Print one summary line per claim and metric of the verdicts ``items``, under a heading
    that points to ``verdict.md``; nothing when there are none, unless ``always`` (the demo
    prints its heading in any case)."""
    if not items and not always:
        return
    from ..study.verdicts import summary_lines

    print("Verdicts (verdict.md has every claim with its CI):")
    print("\n".join(f"  {line}" for line in summary_lines(items)))


def run_title(directory: Path) -> str:
    """The title a run gave its verdicts (``verdict.md``'s first line), else "Verdicts"."""
    previous = directory / "verdict.md"
    first = previous.read_text(encoding="utf-8").split("\n", 1)[0] if previous.is_file() else ""
    return first[2:].strip() if first.startswith("# ") else "Verdicts"
