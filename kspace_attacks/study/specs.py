"""Typed entries of a sweep configuration's tables of tables: ``[attacks.<name>]``,
``[models.<name>]`` and ``[surrogate_models.<name>]``.

Each is a :class:`~kspace_attacks.schema.Table` whose keys are open: an attack table takes
``type`` plus the chosen attack's own arguments, a model table the loader's arguments. They are
checked once, when the configuration is read (an unknown argument names the table, the key and
the arguments the attack takes), and then build what they describe
(:meth:`AttackSpec.build`, :meth:`ModelSpec.load`). :meth:`~kspace_attacks.schema.Table.as_dict`
gives back what the file said.

Example:

    >>> from kspace_attacks.study.specs import AttackSpec
    >>> spec = AttackSpec.from_mapping({"type": "pgd", "steps": 5}, "config.attacks.pgd")
    >>> spec.type, spec.options, spec.as_dict()
    ('pgd', {'steps': 5}, {'type': 'pgd', 'steps': 5})
    >>> AttackSpec.from_mapping({"type": "pgd", "stesp": 5}, "config.attacks.pgd")
    Traceback (most recent call last):
    ...
    kspace_attacks.schema.ConfigError: config.attacks.pgd: unknown key(s) ['stesp'] for PGD; known keys: ['type', 'steps', ...]
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from .. import attacks as _attacks
from .._checks import describe
from ..schema import ConfigError, Table, setting

__all__ = ["AttackSpec", "ModelSpec", "SurrogateSpec"]


def _table(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a table, got {describe(raw)}")
    for key in raw:
        if not isinstance(key, str):
            raise ConfigError(f"{where}: expected string keys, got {key!r}")
    return dict(raw)


class _OpenTable(Table):
    """A table whose keys are open (an attack's or a loader's arguments): its reference rows
    are declared (``DOC_ROWS``: key, type, default, meaning), not derived from its fields."""

    DOC_ROWS: ClassVar[tuple] = ()

    @classmethod
    def docs(cls, prefix: str = "") -> str:
        return "\n".join("| " + " | ".join(c.replace("|", "\\|") for c in (f"`{prefix}{k}`", t, d, m)) + " |"
                         for k, t, d, m in cls.DOC_ROWS)


@dataclass(frozen=True)
class AttackSpec(_OpenTable):
    """``[attacks.<name>]``: an attack by name (``type``) and its keyword arguments."""

    TABLE: ClassVar[str] = "config.attacks.<name>"

    type: str = setting("worst_case", "an attack name: worst_case, apgd, pgd, adam, fgm, noise "
                                      "(class names work too)")
    options: dict = setting(doc="the attack's keyword arguments", factory=dict)

    @classmethod
    def from_mapping(cls, raw: Any, where: str | None = None) -> AttackSpec:
        """The spec of one attack table; raises :class:`ConfigError` for a missing or unknown
        ``type`` or an argument the attack does not take."""
        where = where or cls.TABLE
        if isinstance(raw, cls):
            return raw
        options = _table(raw, where)
        if "type" not in options:
            raise ConfigError(f"{where}.type: expected one of {sorted(_attacks.ATTACKS)}, got no type")
        kind = options.pop("type")
        try:
            attack = _attacks.attack_class(kind)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}.type: expected one of {sorted(_attacks.ATTACKS)}, got {kind!r}") from None
        known = [p for p in inspect.signature(attack).parameters if p not in ("threat", "seed")]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown} for {attack.__name__}; known keys: "
                              f"{['type', *known]}")
        return Table.from_mapping.__func__(cls, {"type": kind, "options": options}, where)

    def as_dict(self) -> dict[str, Any]:
        """The table as written: ``type`` and the arguments."""
        return {"type": self.type, **self.options}

    @property
    def name(self) -> str:
        """The attack's canonical name (``"PGD"`` -> ``"pgd"``)."""
        return _attacks.attack_class(self.type).name

    def build(self, threat: Any, seed: int = 0, where: str = "config.attacks") -> _attacks.Attack:
        """The attack on ``threat`` with ``seed``; a bad argument value raises
        :class:`ConfigError` naming ``where``."""
        try:
            return _attacks.attack_class(self.type)(threat, seed=seed, **self.options)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where}: {e}") from e

    DOC_ROWS: ClassVar[tuple] = (
        ("type", "a string", "required", "an attack name: worst_case, apgd, pgd, adam, fgm, noise (class names "
                                         "work too)"),
        ("<argument>", "any value", "the attack's", "any keyword argument of the attack's class (steps, budget, "
                                                    "loss, lr, ...)"))


@dataclass(frozen=True)
class ModelSpec(_OpenTable):
    """``[models.<name>]``: which model ``<name>`` is and its loader's keyword arguments.

    ``model`` names a registered reconstructor (``<name>`` itself when absent), or a user's
    model as ``"file.py:make"`` / ``"package.module:make"`` (which takes no arguments); the rest
    goes to :func:`~kspace_attacks.adapters.load_reconstructor` (``weights = "none"`` or
    ``"random"``: no weights; ``seed = "none"``: an unseeded model; TOML has no null)."""

    TABLE: ClassVar[str] = "config.models.<name>"
    #: keys that are not the loader's
    OWN: ClassVar[tuple[str, ...]] = ("model",)

    model: str | None = setting(None, "a registered model, 'file.py:make' or 'package.module:make' "
                                      "(default: the table's name)")
    options: dict = setting(doc="the loader's keyword arguments", factory=dict)

    @classmethod
    def from_mapping(cls, raw: Any, where: str | None = None) -> ModelSpec:
        where = where or cls.TABLE
        if isinstance(raw, cls):
            return raw
        options = _table(raw, where)
        own = {k: options.pop(k) for k in cls.OWN if k in options}
        model = own.get("model")
        if model is not None and (not isinstance(model, str) or not model):
            raise ConfigError(f"{where}.model: expected a model name or 'file.py:make', got {model!r}")
        if model and ":" in model and options:
            raise ConfigError(f"{where}: a model given as {model!r} takes no loading arguments, got {sorted(options)}")
        return Table.from_mapping.__func__(cls, {"options": options, **own}, where)

    def as_dict(self) -> dict[str, Any]:
        """The table as written."""
        own = {k: getattr(self, k) for k in self.OWN if getattr(self, k) is not None}
        return {**({"model": own.pop("model")} if "model" in own else {}), **self.options, **own}

    def merged(self, other: ModelSpec) -> ModelSpec:
        """This spec with ``other``'s model and loading arguments on top (a surrogate's own
        loading arguments over the target's)."""
        return ModelSpec(model=other.model or self.model, options={**self.options, **other.options})

    def load(self, name: str, device: str = "cpu") -> Any:
        """The reconstructor ``name`` on ``device``; a loader's complaint (an unknown model, a
        typo in the table) raises :class:`ConfigError` naming the table."""
        from ..adapters import UnknownReconstructorError, load_reconstructor, resolve_model

        registered = self.model or name
        if ":" in registered:  # a user's model: models.mine = {model = "mymodel.py:make"}
            if self.options:  # e.g. a surrogate table's loading arguments over a user's model
                raise ConfigError(f"config: models.{name}: a model given as {registered!r} takes no loading "
                                  f"arguments, got {sorted(self.options)}")
            return resolve_model(registered, device=device)
        kwargs = dict(self.options)
        weights = kwargs.pop("weights", "embedded")
        weights = None if weights in ("none", "random") else weights
        if kwargs.get("seed") == "none":
            kwargs["seed"] = None
        try:
            return load_reconstructor(registered, weights=weights, device=device, **kwargs)
        except TypeError as e:  # a typo in the table reaches the model's loader
            raise ConfigError(f"config.models.{name} (model {registered!r}, keys "
                              f"{sorted(self.as_dict())}): {e}") from e
        except UnknownReconstructorError as e:
            raise ConfigError(f"config: model {name!r}: {e}; for your own model add a table "
                              f"[models.{name}] with model = \"mymodel.py:make\" (or \"package.module:make\"): "
                              f"a zero-argument factory, an nn.Module or a function f(y, physics)") from None

    DOC_ROWS: ClassVar[tuple] = (
        ("model", "a string", "the table's name", "a registered model (a variant of it), 'file.py:make' or "
                                                  "'package.module:make' (a user's model, no other keys)"),
        ("<argument>", "any value", "the loader's", "any keyword argument of load_reconstructor for that model "
                                                    "(weights, steps, ...)"))


def _positive_int(value: Any) -> str | None:
    ok = value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 1)
    return None if ok else "an integer >= 1"


@dataclass(frozen=True)
class SurrogateSpec(ModelSpec):
    """``[surrogate_models.<name>]``: a surrogate's own loading arguments for the attack (over
    ``[models.<name>]``'s), plus what the attacks do on it: ``eot`` (model calls averaged per
    evaluation), ``attack_steps`` (every attack's ``steps``, a worst-case search's budget) and
    ``n_slices`` (attack it on the first slices only, a multiple of ``batch_size``)."""

    TABLE: ClassVar[str] = "config.surrogate_models.<name>"
    OWN: ClassVar[tuple[str, ...]] = ("model", "eot", "attack_steps", "n_slices")

    eot: int | None = setting(None, "model calls averaged per attack evaluation", check=_positive_int)
    attack_steps: int | None = setting(None, "every attack's steps (budget) on this surrogate", check=_positive_int)
    n_slices: int | None = setting(None, "attack it on the first slices only", check=_positive_int)

    @property
    def attack_options(self) -> dict[str, int]:
        """The attacks' arguments on this surrogate (``eot``, ``steps``)."""
        return {k: v for k, v in (("eot", self.eot), ("steps", self.attack_steps)) if v is not None}

    DOC_ROWS: ClassVar[tuple] = (
        *ModelSpec.DOC_ROWS,
        ("eot", "an integer", "1", "model calls averaged per attack evaluation (a stochastic surrogate)"),
        ("attack_steps", "an integer", "the attack's", "every attack's steps (a worst-case search's budget) on "
                                                       "this surrogate"),
        ("n_slices", "an integer", "all", "attack it on the first slices only (a multiple of batch_size)"))
