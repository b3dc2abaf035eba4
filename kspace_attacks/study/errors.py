"""The error of a bad sweep configuration (its own module, so the configuration and the data
sources it builds can both raise it without importing each other)."""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """A configuration value is missing, unknown or of the wrong type."""

    __module__ = "kspace_attacks.study.config"  # where users import it from
