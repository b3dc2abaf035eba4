"""Progress of sweeps and transfers that tells the truth on a terminal, in a CI log, and quietly.

On a terminal (``stream.isatty()``), nested tqdm bars with rates and ETAs: over the sweep's
units or the transfer's batches, over a surrogate's attacks (counted in gradient evaluations,
from each attack's ``max_grad_evals``), and over the targets (counted in reconstructions).
When the stream is not a terminal (a CI log, a pipe), one plain line per finished piece of work
instead, with its counts, the elapsed time and, for the outer level, an ETA. Disabled
(``--quiet``, ``progress=False``): nothing.

Example (a log, as in CI):

    >>> import io
    >>> log = io.StringIO()
    >>> p = Progress(True, label="demo", stream=log)
    >>> with p.task("attacks", total=40, unit="grad evals", level=1) as t:
    ...     t.advance(20, "pgd: 20 gradient evaluations of 4 rows")
    >>> print(log.getvalue().split("] ", 1)[1].split(" in ")[0])
    attacks: pgd: 20 gradient evaluations of 4 rows (20/40 grad evals,
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from .._checks import describe

__all__ = ["Progress", "Task", "as_progress"]

_MODES = ("bars", "log", "off")


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or not a real stream
        return False


class Progress:
    """Where progress goes: tqdm bars, log lines or nowhere.

    :param bool enabled: ``False`` shows nothing.
    :param str label: prefix of log lines (e.g. ``"sweep"``, ``"sweep rank 1/2"``).
    :param stream: the text stream (default ``sys.stderr``, looked up when used).
    :param mode: ``"bars"``, ``"log"`` or ``"off"``; default: bars when ``stream`` is a
        terminal, log lines otherwise (off when not ``enabled``).
    """

    def __init__(self, enabled: bool = True, label: str = "progress", stream: TextIO | None = None,
                 mode: str | None = None) -> None:
        if not isinstance(enabled, bool):
            raise TypeError(f"enabled: expected a bool, got {describe(enabled)}")
        if mode is not None and mode not in _MODES:
            raise ValueError(f"mode: expected one of {list(_MODES)} or None, got {mode!r}")
        self._stream = stream
        self.label = label
        if not enabled:
            mode = "off"
        self.mode = mode if mode is not None else ("bars" if _isatty(self.stream) else "log")
        self.start = time.perf_counter()

    @property
    def stream(self) -> TextIO:
        """The stream progress is written to."""
        return self._stream if self._stream is not None else sys.stderr

    def task(self, desc: str, total: float | None, unit: str, level: int = 0) -> "Task":
        """A piece of work of ``total`` ``unit`` s (``None``: unknown) at nesting ``level``
        (0 = outermost); a total of 0 shows no bar."""
        return Task(self, desc, total, unit, level)

    def line(self, text: str) -> None:
        """One log line (only in log mode)."""
        if self.mode == "log":
            print(f"[{self.label} {_clock(time.perf_counter() - self.start)}] {text}", file=self.stream,
                  flush=True)


class Task:
    """One progress bar, or its log lines (see :meth:`Progress.task`); a context manager."""

    def __init__(self, progress: Progress, desc: str, total: float | None, unit: str, level: int) -> None:
        self.progress, self.desc, self.total, self.unit, self.level = progress, desc, total, unit, level
        self.done = 0.0
        self.start = time.perf_counter()
        self._bar = None
        if progress.mode == "bars" and total != 0:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=f" {unit}", position=level, leave=level == 0,
                             file=progress.stream, dynamic_ncols=True)

    def advance(self, n: float, what: str = "", log: bool = True) -> None:
        """``n`` more units are done; ``what`` says which (a bar's postfix, a log line's text);
        ``log=False`` moves a bar but writes no log line (e.g. work another rank does)."""
        self.done += n
        if self._bar is not None:
            if what:
                self._bar.set_postfix_str(what, refresh=False)
            self._bar.update(n)
            return
        if not log:
            return
        elapsed = time.perf_counter() - self.start
        text = f"{self.desc}: {what} " if what else f"{self.desc}: "
        count = f"{self.done:g}{'' if self.total is None else f'/{self.total:g}'} {self.unit}"
        eta = ""
        if self.level == 0 and self.total is not None and 0 < self.done < self.total:
            eta = f", eta {_clock(elapsed / self.done * (self.total - self.done))}"
        self.progress.line(f"{text}({count}, in {elapsed:.1f} s{eta})")

    def close(self) -> None:
        """Close the bar (log mode: nothing left to say)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "Task":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def as_progress(progress: Any, label: str) -> Progress:
    """``progress`` as a :class:`Progress`: one is passed on; otherwise its truth value enables
    or disables the default one (as the ``progress`` flags always did)."""
    if isinstance(progress, Progress):
        return progress
    return Progress(bool(progress), label=label)
