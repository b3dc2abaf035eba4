"""Durable per-unit record journals: append-and-fsync, crash-tolerant reading, resume.

A sweep appends, for each finished unit of work, its records followed by a marker line
``{"_unit_done": [b, ...], "n": N, ...}`` in a single write that is flushed and fsynced (the
unit within batch ``b``: ``[b, surrogate, attack]``, or ``[b, "random"]`` for the batch's clean
reconstructions, noise null and equal-norm baseline; the marker also carries the rank, thread
count and deterministic mode the unit ran with). Reading keeps a unit only when its marker is present
and counts match, so a process killed mid-write (even with SIGKILL) leaves at most a torn tail
that is discarded on resume; the journal is then rewritten atomically with the complete units
only, and the sweep continues with the rest.

Journals of earlier versions hold whole batches, ``{"_batch_done": b, "n": N}``; they read as
key ``b`` (an int), unit journals as the tuple ``(b, ...)``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Union

from .._checks import describe
from ..io import atomic_write_text

__all__ = ["Journal", "read_journal", "read_markers", "Key", "batch_of"]

#: a journal key: ``b`` (a whole batch, journals of earlier versions) or ``(b, *names)`` (a unit)
Key = Union[int, tuple]


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []


def batch_of(key: Key) -> int:
    """The batch of a journal key."""
    return key if isinstance(key, int) else key[0]


def _marker_key(item: Mapping[str, Any]) -> Key | None:
    if "_batch_done" in item:
        return int(item["_batch_done"])
    if "_unit_done" in item:
        batch, *names = item["_unit_done"]
        return (int(batch), *map(str, names))
    return None


def _read(path: Path) -> tuple[dict[Key, list[dict]], dict[Key, dict]]:
    done: dict[Key, list[dict]] = {}
    markers: dict[Key, dict] = {}
    pending: list[dict] = []
    for line in _lines(path):
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            pending = []  # a torn write: whatever preceded it in this unit is incomplete
            continue
        if not isinstance(item, dict):
            continue
        key = _marker_key(item)
        if key is None:
            pending.append(item)
            continue
        b = batch_of(key)
        if len(pending) == int(item.get("n", -1)) and all(r.get("batch") == b for r in pending):
            done[key], markers[key] = pending, item
        pending = []
    return done, markers


def read_journal(path: str | os.PathLike) -> dict[Key, list[dict]]:
    """Complete units of a journal file: ``{key: records}`` (torn or partial units dropped)."""
    return _read(Path(path))[0]


def read_markers(path: str | os.PathLike) -> dict[Key, dict]:
    """The marker of every complete unit: ``{key: marker}`` (the settings a unit ran with)."""
    return _read(Path(path))[1]


def _check_key(key: Any) -> Key:
    def index(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0

    ok_unit = (isinstance(key, tuple) and len(key) >= 2 and index(key[0])
               and all(isinstance(v, str) for v in key[1:]))
    if not (index(key) or ok_unit):
        raise TypeError(f"key: expected a batch index >= 0 or a (batch, name, ...) tuple, got {describe(key)}")
    return key


class Journal:
    """Append-only journal of one process (one rank) of a sweep.

    :param path: the journal file, e.g. ``OUT/records.rank0.jsonl``.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.done, self._markers = _read(self.path)
        # Drop any torn tail now, so appends start on a clean line.
        atomic_write_text(self.path, "".join(self._encode(k, r, self._markers[k]) for k, r in self.done.items()))

    @staticmethod
    def _encode(key: Key, records: Iterable[dict], info: Mapping[str, Any] | None = None) -> str:
        records = list(records)
        body = "".join(json.dumps(r, allow_nan=True) + "\n" for r in records)
        marker = {"_batch_done": key} if isinstance(key, int) else {"_unit_done": list(key)}
        marker.update({k: v for k, v in (info or {}).items() if k not in ("_batch_done", "_unit_done")})
        marker["n"] = len(records)
        return body + json.dumps(marker) + "\n"

    def append(self, key: Key, records: list[dict], info: Mapping[str, Any] | None = None) -> None:
        """Durably add one finished unit (records must carry ``"batch"``: the key's batch);
        ``info`` (JSON values) goes into its marker."""
        key = _check_key(key)
        b = batch_of(key)
        wrong = [r.get("batch") for r in records if r.get("batch") != b]
        if wrong:
            raise ValueError(f"records: expected every record to carry batch = {b}, got {wrong[0]!r}")
        text = self._encode(key, records, info)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        self.done[key] = list(records)
        self._markers[key] = json.loads(text.splitlines()[-1])
