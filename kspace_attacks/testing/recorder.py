"""The session's robustness table: one row per measurement, printed and written as JSON."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from .._checks import describe
from ..io import atomic_write_json
from .measure import RobustnessMeasurement, measure_robustness
from .settings import current_settings

__all__ = ["RobustnessRecorder"]


class RobustnessRecorder:
    """Collects robustness numbers of a test session; prints a table and writes JSON.

    Every :func:`assert_robust` call records a row (test id, model, settings, numbers, limit,
    ``passed``, artifact paths). Use :meth:`measure` to record without asserting.
    """

    COLUMNS = (
        ("test", "test", "<"),
        ("model", "model", "<"),
        ("eps", "eps", ">"),
        ("steps", "steps", ">"),
        ("delta_ssim", "Delta SSIM", ">"),
        ("delta_psnr", "Delta PSNR", ">"),
        ("noise_delta_ssim", "noise Delta SSIM", ">"),
        ("restart_spread", "restart spread", ">"),
        ("unreliable", "unreliable", ">"),
        ("max_delta_ssim", "limit", ">"),
        ("protocol", "protocol", "<"),
        ("status", "status", "<"),
    )

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def record(self, measurement: RobustnessMeasurement, test: str | None = None,
               **extra: Any) -> dict[str, Any]:
        """Append a row for ``measurement`` (plus ``extra`` columns) and return it."""
        if not isinstance(measurement, RobustnessMeasurement):
            raise TypeError(
                f"measurement: expected a RobustnessMeasurement, got {describe(measurement)}"
            )
        row = {"test": test if test is not None else current_settings().test_id}
        row.update(measurement.as_dict())
        row.update(extra)
        if "passed" in row and "status" not in row:
            row["status"] = "ok" if row["passed"] else "FAILED"
        self.rows.append(row)
        return row

    def measure(self, model: Any, batch: Any, **kwargs: Any) -> RobustnessMeasurement:
        """:func:`measure_robustness` and record the result (no assertion)."""
        m = measure_robustness(model, batch, **kwargs)
        self.record(m, status="measured")
        return m

    def __len__(self) -> int:
        return len(self.rows)

    def table(self) -> str:
        """The rows as a fixed-width text table."""
        def fmt(key: str, v: Any) -> str:
            if v is None:
                return "-"
            if isinstance(v, float):
                if math.isnan(v):
                    return "nan"
                return f"{v:.3g}" if key == "eps" else f"{v:.4f}" if "ssim" in key else f"{v:.2f}"
            text = str(v)
            return text if len(text) <= 60 else "..." + text[-57:]

        cells = [[fmt(k, r.get(k)) for k, _, _ in self.COLUMNS] for r in self.rows]
        heads = [h for _, h, _ in self.COLUMNS]
        widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(heads)]

        def line(values: list[str]) -> str:
            out = []
            for (_, _, align), v, w in zip(self.COLUMNS, values, widths, strict=True):
                out.append(v.ljust(w) if align == "<" else v.rjust(w))
            return "  ".join(out).rstrip()

        rule = "  ".join("-" * w for w in widths)
        return "\n".join([line(heads), rule] + [line(c) for c in cells])

    def cards(self) -> dict[str, Any]:
        """The robustness card of every model measured with a protocol, by model name (the
        last one recorded for a name wins)."""
        return {r["model"]: r["card"] for r in self.rows if r.get("card") is not None}

    def to_json(self, path: str | os.PathLike, **meta: Any) -> Path:
        """Write ``{"kspace_attacks_version", **meta, "results": rows, "cards": cards}`` to
        ``path`` atomically (``cards``: :meth:`cards`, from ``assert_robust(protocol=...)``)."""
        from .. import __version__ as version

        doc = {"kspace_attacks_version": version, **meta, "results": self.rows, "cards": self.cards()}
        return atomic_write_json(path, doc, indent=2, default=str)  # Paths as text, NaN -> null
