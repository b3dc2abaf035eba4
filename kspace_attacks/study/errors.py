"""The error of a bad sweep configuration (its own module, so the configuration and the data
sources it builds can both raise it without importing each other)."""

from __future__ import annotations

__all__ = ["ConfigError"]


# One error for every configuration table (sweeps, protocols, plugin options): the schema's.
from ..schema import ConfigError  # noqa: E402
