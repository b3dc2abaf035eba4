"""Durable per-batch record journals: append-and-fsync, crash-tolerant reading, resume.

A sweep appends, for each finished batch, its records followed by a marker line
``{"_batch_done": b, "n": N}`` in a single write that is flushed and fsynced. Reading keeps a
batch only when its marker is present and counts match, so a process killed mid-write (even
with SIGKILL) leaves at most a torn tail that is discarded on resume; the journal is then
rewritten atomically with the complete batches only, and the sweep continues with the rest.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from ..io import atomic_write_text

__all__ = ["Journal", "read_journal"]


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []


def read_journal(path: str | os.PathLike) -> dict[int, list[dict]]:
    """Complete batches of a journal file: ``{batch: records}`` (torn or partial batches dropped)."""
    done: dict[int, list[dict]] = {}
    pending: list[dict] = []
    for line in _lines(Path(path)):
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            pending = []  # a torn write: whatever preceded it in this batch is incomplete
            continue
        if isinstance(item, dict) and "_batch_done" in item:
            b = int(item["_batch_done"])
            if len(pending) == int(item.get("n", -1)) and all(r.get("batch") == b for r in pending):
                done[b] = pending
            pending = []
        elif isinstance(item, dict):
            pending.append(item)
    return done


class Journal:
    """Append-only journal of one process (one rank) of a sweep.

    :param path: the journal file, e.g. ``OUT/records.rank0.jsonl``.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.done = read_journal(self.path)
        # Drop any torn tail now, so appends start on a clean line.
        atomic_write_text(self.path, "".join(self._encode(b, r) for b, r in sorted(self.done.items())))

    @staticmethod
    def _encode(batch: int, records: Iterable[dict]) -> str:
        records = list(records)
        body = "".join(json.dumps(r, allow_nan=True) + "\n" for r in records)
        return body + json.dumps({"_batch_done": batch, "n": len(records)}) + "\n"

    def append(self, batch: int, records: list[dict]) -> None:
        """Durably add one finished batch (records must carry ``"batch": batch``)."""
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(self._encode(batch, records))
            f.flush()
            os.fsync(f.fileno())
        self.done[batch] = list(records)
