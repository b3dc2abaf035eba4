"""Steps after the records: none of them may turn a finished sweep into an error.

A sweep's records, summary and verdicts are its results; what follows them (figures, the image
panels, the targeted test, the HTML page's panels) only presents them. When such a step fails,
:func:`best_effort` keeps the run going, warns, and notes the failure in ``report_notes.json``,
which ``report.html`` shows, so a reader sees what is missing and why.

    >>> import tempfile; from pathlib import Path
    >>> out = Path(tempfile.mkdtemp())
    >>> best_effort(out, "image panel", lambda: 1 / 0) is None
    True
    >>> read_notes(out)[0]["step"], read_notes(out)[0]["error"]
    ('image panel', 'ZeroDivisionError: division by zero')
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ..io import atomic_write_json, read_json

__all__ = ["NOTES_FILE", "best_effort", "read_notes", "clear_notes"]

#: Where the failures of steps after the records are noted, in the result folder.
NOTES_FILE = "report_notes.json"

_T = TypeVar("_T")


def read_notes(out: str | Path) -> list[dict[str, str]]:
    """The noted failures of ``out``'s steps after the records (empty when none failed)."""
    path = Path(out) / NOTES_FILE
    return list(read_json(path).get("failed_steps", [])) if path.is_file() else []


def clear_notes(out: str | Path) -> None:
    """Forget the notes of an earlier run (a re-run that succeeds must not show old failures)."""
    (Path(out) / NOTES_FILE).unlink(missing_ok=True)


def best_effort(out: str | Path, step: str, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T | None:
    """``fn(*args, **kwargs)``; if it raises an ``Exception``, warn, note it in ``out`` and
    return ``None`` (interrupts still stop the run).

    :param out: the result folder (``report_notes.json`` is written there, atomically).
    :param step: what the step makes, as a reader should see it (``"image panels"``).
    """
    if not isinstance(step, str) or not step:
        raise ValueError(f"step: expected a non-empty name, got {step!r}")
    try:
        return fn(*args, **kwargs)
    except Exception as err:  # noqa: BLE001 - any failure of a presentation step is reported, not raised
        text = f"{type(err).__name__}: {err}"
        notes = [n for n in read_notes(out) if n.get("step") != step]
        notes.append({"step": step, "error": text})
        Path(out).mkdir(parents=True, exist_ok=True)
        atomic_write_json(Path(out) / NOTES_FILE, {"failed_steps": notes}, indent=1)
        warnings.warn(f"{step} not made ({text}); the records and verdicts are complete "
                      f"(noted in {Path(out) / NOTES_FILE})", RuntimeWarning, stacklevel=2)
        return None
