"""Typed configuration tables: one frozen dataclass per table, from which parsing, defaults,
validation, TOML output and the documentation all derive.

A table is a frozen dataclass that inherits :class:`Table`; each field is declared with
:func:`setting` (default, one-line meaning, and optionally choices, a minimum or a check).
:meth:`Table.from_mapping` builds it from a parsed TOML / YAML mapping: an unknown key names
the table, the key and the known keys; a wrong type or value names the key, what was expected
and what was given. Nested tables are fields whose type is another :class:`Table`, or a
``dict[str, <Table>]`` of named ones. :meth:`Table.docs` writes the reference table the docs
quote, :meth:`Table.as_dict` the plain values (what ``--print-config`` prints).

Example:

    >>> from dataclasses import dataclass
    >>> from kspace_attacks.schema import Table, setting
    >>> @dataclass(frozen=True)
    ... class Budget(Table):
    ...     eps: float = setting(0.05, "relative l2 budget", minimum=0.0)
    ...     norm: str = setting("l2", "the norm", choices=("l2", "linf"))
    >>> Budget.from_mapping({"eps": 0.02}).as_dict()
    {'eps': 0.02, 'norm': 'l2'}
    >>> Budget.from_mapping({"esp": 0.02}, where="config.budget")
    Traceback (most recent call last):
    ...
    kspace_attacks.schema.ConfigError: config.budget: unknown key 'esp'; known keys: ['eps', 'norm']
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar, Union

__all__ = ["ConfigError", "Table", "setting"]

_T = TypeVar("_T", bound="Table")


class ConfigError(ValueError):
    """A configuration value is missing, unknown or of the wrong type."""


def setting(default: Any = dataclasses.MISSING, doc: str = "", *, choices: tuple | None = None,
            minimum: float | None = None, check: Callable[[Any], str | None] | None = None,
            factory: Callable[[], Any] | None = None) -> Any:
    """A field of a :class:`Table`.

    :param default: the default value (immutable; use ``factory`` for lists and dicts).
    :param str doc: one line on what the setting means (goes into :meth:`Table.docs`).
    :param tuple choices: the allowed values.
    :param float minimum: the smallest allowed number (also for each number of a list).
    :param check: ``check(value) -> None`` when fine, or the expectation as text (e.g.
        ``"0 or an integer >= 2"``) when not.
    :param factory: makes the default (mutable defaults).
    """
    meta = {"doc": doc, "choices": choices, "minimum": minimum, "check": check}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _args(hint: Any) -> tuple:
    return typing.get_args(hint)


def _origin(hint: Any) -> Any:
    return typing.get_origin(hint)


def _is_table(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, Table)


def _type_name(hint: Any) -> str:
    """``hint`` as a user reads it: "a number", "a list of strings", "a table"."""
    origin = _origin(hint)
    if hint is Any:
        return "any value"
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in _args(hint) if a is not type(None))
    if origin in (list, tuple):
        inner = _args(hint)[0] if _args(hint) else Any
        return f"a list of {_type_name(inner).removeprefix('a ').removeprefix('an ')}s"
    if origin is dict and _args(hint) and (_args(hint)[1] is dict or _is_table(_args(hint)[1])):
        return "a table of tables"
    if origin is dict or hint is dict or _is_table(hint):
        return "a table"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(hint, str(hint))


def _conforms(value: Any, hint: Any) -> bool:
    origin = _origin(hint)
    if hint is Any:
        return True
    if origin in (Union, types.UnionType):
        return any(_conforms(value, a) for a in _args(hint))
    if hint is type(None):
        return value is None
    if origin in (list, tuple):
        inner = _args(hint)[0] if _args(hint) else Any
        return isinstance(value, (list, tuple)) and all(_conforms(v, inner) for v in value)
    if origin is dict or hint is dict:
        inner = _args(hint)[1] if _args(hint) else Any
        return isinstance(value, Mapping) and all(isinstance(k, str) and _conforms(v, inner)
                                                  for k, v in value.items())
    if _is_table(hint):
        return isinstance(value, (Mapping, hint))
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return isinstance(value, hint)


def _numbers(value: Any) -> list:
    items = value if isinstance(value, (list, tuple)) else [value]
    return [v for v in items if isinstance(v, (int, float)) and not isinstance(v, bool)]


@dataclasses.dataclass(frozen=True)
class Table:
    """A configuration table (a frozen dataclass of :func:`setting` fields); see the module."""

    #: how messages name the table when no ``where`` is given
    TABLE: ClassVar[str] = "config"

    def __post_init__(self) -> None:
        self._check(self.TABLE)

    # ------------------------------------------------------------------------------ building
    @classmethod
    def known_keys(cls) -> list[str]:
        """The table's keys, sorted."""
        return sorted(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_mapping(cls: type[_T], raw: Any, where: str | None = None) -> _T:
        """The table from parsed TOML / YAML (missing keys take their defaults); raises
        :class:`ConfigError` naming ``where`` (default: :attr:`TABLE`), the key and what was
        expected."""
        where = where or cls.TABLE
        if isinstance(raw, cls):
            return raw
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where}: expected a table of settings, got {_describe(raw)}")
        known = cls.known_keys()
        for key in raw:
            if key not in known:
                raise ConfigError(f"{where}: unknown key {key!r}; known keys: {known}")
        hints = _hints(cls)
        values = {}
        for key, value in raw.items():
            values[key] = _build(hints[key], value, f"{where}.{key}")
        obj = cls.__new__(cls)
        for f in dataclasses.fields(cls):  # defaults first, then the given values
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if f.name not in values and default is dataclasses.MISSING:
                raise ConfigError(f"{where}: missing key {f.name!r} ({f.metadata.get('doc', '')})")
            object.__setattr__(obj, f.name, values.get(f.name, default))
        obj._check(where)
        return obj

    def replace(self: _T, **changes: Any) -> _T:
        """A copy with ``changes``, validated."""
        return type(self).from_mapping({**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)},
                                        **changes})

    # ------------------------------------------------------------------------------ checking
    def _check(self, where: str) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):
            value, key = getattr(self, f.name), f"{where}.{f.name}"
            hint = hints[f.name]
            if _origin(hint) is dict and _args(hint) and isinstance(value, Mapping):
                for k, v in value.items():  # name the entry that is wrong
                    if not _conforms(v, _args(hint)[1]):
                        raise ConfigError(f"{key}.{k}: expected {_type_name(_args(hint)[1])}, got {_describe(v)}")
            if not _conforms(value, hint):
                raise ConfigError(f"{key}: expected {_type_name(hint)}, got {_describe(value)}")
            meta = f.metadata
            if meta.get("choices") is not None and value not in meta["choices"]:
                raise ConfigError(f"{key}: expected one of {list(meta['choices'])}, got {value!r}")
            if meta.get("minimum") is not None and any(v < meta["minimum"] for v in _numbers(value)):
                what = "numbers" if isinstance(value, (list, tuple)) else "a value"
                raise ConfigError(f"{key}: expected {what} >= {meta['minimum']}, got {value!r}")
            if meta.get("check") is not None:
                problem = meta["check"](value)
                if problem:
                    raise ConfigError(f"{key}: expected {problem}, got {value!r}")

    # ------------------------------------------------------------------------------ output
    def as_dict(self) -> dict[str, Any]:
        """Plain values (nested tables as dicts, tuples as lists), in declaration order."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def docs(cls, prefix: str = "") -> str:
        """A Markdown reference of every key (nested tables included): key, type, default,
        meaning."""
        rows = ["| key | type | default | meaning |", "|---|---|---|---|"] if not prefix else []
        hints = _hints(cls)
        for f in dataclasses.fields(cls):
            hint, name = hints[f.name], f"{prefix}{f.name}"
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            meaning = f.metadata.get("doc", "")
            if f.metadata.get("choices"):
                meaning += f" (one of {', '.join(repr(c) for c in f.metadata['choices'])})"
            shown = "required" if default is dataclasses.MISSING else f"`{_plain(default)!r}`"
            cells = [f"`{name}`", _type_name(hint), shown, meaning]
            rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
            if _is_table(hint):
                rows.append(hint.docs(prefix=f"{name}."))
            elif _origin(hint) is dict and _args(hint) and _is_table(_args(hint)[1]):
                rows.append(_args(hint)[1].docs(prefix=f"{name}.<name>."))
        return "\n".join(rows)


def _build(hint: Any, value: Any, where: str) -> Any:
    """``value`` with nested tables built (and their keys checked)."""
    if _is_table(hint) and isinstance(value, Mapping):
        return hint.from_mapping(value, where)
    if _origin(hint) is dict and _args(hint) and _is_table(_args(hint)[1]) and isinstance(value, Mapping):
        return {k: _args(hint)[1].from_mapping(v, f"{where}.{k}") for k, v in value.items()}
    if _origin(hint) is tuple and isinstance(value, list):
        return tuple(value)
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, Table):
        return value.as_dict()
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _describe(value: Any) -> str:
    from ._checks import describe

    return describe(value)
