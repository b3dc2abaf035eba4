"""A report's record files: ``records.csv``, ``summary.csv``, ``summary.json``, ``provenance.json``.

The formats are those every committed result folder holds, unchanged:

* ``records.csv``: one row per record, the union of the records' keys as columns (first-seen
  order); read back with ``""`` -> ``None``, then ``int``, then ``float``, else ``str``;
* ``summary.csv``: the summary rows (:func:`~kspace_attacks.study.report.summarize`), same CSV;
* ``summary.json``: ``normalization``, ``config``, ``n_records``, ``summary`` (and
  ``provenance`` when known), standard JSON (NaN -> ``null``);
* ``provenance.json``: the run's provenance, when known.

Every file is written atomically (:mod:`kspace_attacks.io`). The perturbation files beside them
are :mod:`kspace_attacks.study.perturbations`'.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._checks import describe
from ..io import atomic_write_json, atomic_write_text, read_json

__all__ = ["RECORDS_CSV", "SUMMARY_CSV", "SUMMARY_JSON", "PROVENANCE_JSON", "PERTURBATIONS_DIR",
           "SavedRecords", "records_to_csv", "records_from_csv", "write_records", "read_records"]

RECORDS_CSV, SUMMARY_CSV, SUMMARY_JSON, PROVENANCE_JSON = (
    "records.csv", "summary.csv", "summary.json", "provenance.json")
#: Sub-folder of a saved report holding the perturbation files.
PERTURBATIONS_DIR = "perturbations"


def _parse(value: str) -> Any:
    if value == "":
        return None
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def _check_path(name: str, value: Any) -> Path:
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name}: expected a str or os.PathLike, got {describe(value)}")
    return Path(value)


def _check_dict(name: str, value: Any) -> dict | None:
    if value is not None and not isinstance(value, Mapping):
        raise TypeError(f"{name}: expected a dict or None, got {describe(value)}")
    return value


def records_to_csv(records: Iterable[Mapping[str, Any]]) -> str:
    """CSV text with the union of the records' keys as columns (first-seen order).

    :Examples:

        >>> print(records_to_csv([{"a": 1}, {"b": "x", "a": 2.5}]), end="")
        a,b
        1,
        2.5,x
    """
    if isinstance(records, (str, bytes, Mapping)) or not isinstance(records, Iterable):
        raise TypeError(f"records: expected a list of dicts, got {describe(records)}")
    records = list(records)  # iterated twice (columns, rows): a generator must not run dry
    columns: list[str] = []
    for i, r in enumerate(records):
        if not isinstance(r, Mapping):
            raise TypeError(f"records[{i}]: expected a dict, got {describe(r)}")
        columns.extend(k for k in r if k not in columns)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return buf.getvalue()


def records_from_csv(path: str | os.PathLike) -> list[dict]:
    """Records of a CSV written by :func:`records_to_csv`: empty cells ``None``, numbers ``int``
    or ``float`` (exactly as written), anything else ``str``.

    :Examples:

        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "r.csv"
        >>> _ = p.write_text(records_to_csv([{"id": "a", "n": 3, "x": 0.1 + 0.2, "none": None}]))
        >>> records_from_csv(p)
        [{'id': 'a', 'n': 3, 'x': 0.30000000000000004, 'none': None}]
    """
    with open(_check_path("path", path), newline="", encoding="utf-8") as f:
        return [{k: _parse(v) for k, v in row.items()} for row in csv.DictReader(f)]


@dataclass
class SavedRecords:
    """What :func:`read_records` reads: the records and the settings saved with them.

    :Examples:

        >>> SavedRecords([{"eps": 0.0}]).normalization
        'minmax'
    """

    records: list[dict]
    normalization: str = "minmax"
    config: dict | None = None
    provenance: dict | None = None
    meta: dict = field(default_factory=dict, repr=False)  #: the whole ``summary.json``


def write_records(directory: str | os.PathLike, records: list[dict], summary: list[dict], *,
                  normalization: str = "minmax", config: Mapping[str, Any] | None = None,
                  provenance: Mapping[str, Any] | None = None) -> Path:
    """Write ``records.csv``, ``summary.csv``, ``summary.json`` and (when ``provenance`` is not
    ``None``) ``provenance.json`` to ``directory`` (created if missing), each atomically.

    :param summary: the summary rows (:func:`~kspace_attacks.study.report.summarize`).

    :Examples:

        >>> import tempfile
        >>> d = write_records(tempfile.mkdtemp(), [{"eps": 0.0, "ssim": 1.0}], [{"eps": 0.0, "n": 1}])
        >>> sorted(p.name for p in d.iterdir())
        ['records.csv', 'summary.csv', 'summary.json']
        >>> read_records(d).records
        [{'eps': 0.0, 'ssim': 1.0}]
    """
    d = _check_path("directory", directory)
    if not isinstance(normalization, str):
        raise TypeError(f"normalization: expected a str, got {describe(normalization)}")
    _check_dict("config", config)
    _check_dict("provenance", provenance)
    records_csv, summary_csv = records_to_csv(records), records_to_csv(summary)  # validated before writing
    d.mkdir(parents=True, exist_ok=True)
    atomic_write_text(d / RECORDS_CSV, records_csv)
    atomic_write_text(d / SUMMARY_CSV, summary_csv)
    meta = {"normalization": normalization, "config": config, "n_records": len(records), "summary": summary}
    if provenance is not None:
        meta["provenance"] = provenance
        atomic_write_json(d / PROVENANCE_JSON, provenance, indent=1, default=str)
    atomic_write_json(d / SUMMARY_JSON, meta, indent=1, default=str)
    return d


def read_records(directory: str | os.PathLike) -> SavedRecords:
    """Read what :func:`write_records` wrote (``summary.json`` and ``provenance.json`` optional);
    raises ``FileNotFoundError`` without ``records.csv``. See :func:`write_records`.

    :Examples:

        >>> import tempfile
        >>> read_records(tempfile.mkdtemp())
        Traceback (most recent call last):
        ...
        FileNotFoundError: directory: expected .../records.csv written by TransferReport.save, not found
    """
    d = _check_path("directory", directory)
    if not (d / RECORDS_CSV).is_file():
        raise FileNotFoundError(f"directory: expected {d / RECORDS_CSV} written by TransferReport.save, not found")
    meta = read_json(d / SUMMARY_JSON) if (d / SUMMARY_JSON).is_file() else {}
    provenance = read_json(d / PROVENANCE_JSON) if (d / PROVENANCE_JSON).is_file() else None
    return SavedRecords(records_from_csv(d / RECORDS_CSV), normalization=meta.get("normalization", "minmax"),
                        config=meta.get("config"), provenance=provenance, meta=meta)
