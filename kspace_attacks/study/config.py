"""Sweep configurations: data, models, attacks and budgets described in TOML or YAML.

The configuration half of ``kspace-attacks sweep`` and ``kspace-attacks demo`` (running is
:mod:`kspace_attacks.study.sweep`): it validates a configuration, resolves model names
through :mod:`kspace_attacks.adapters` (imported on use), builds the
data and attacks. The library core (threat models, attacks, metrics) does not depend on it.

A configuration (every key optional; defaults are the demo's)::

    preset = "embedded"              # acquisition preset (30 dB k-space noise; "embedded_noiseless")
    data = "embedded"                # "embedded", {nifti = "file.nii.gz", ...}, {fastmri = "dir", ...}, a list
    split = "test"                   # split of the embedded data
    n_slices = 4                     # slices used, unless the data table selects them
    batch_size = 4
    seed = 0
    device = "cpu"
    threads = 1                      # torch CPU threads of every unit (one process or each rank)
    eps = [0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08]
    surrogates = ["irim", "resunetpp"]
    targets = ["irim", "resunetpp", "diffusion", "zero_filled"]
    baseline = true
    normalization = "reference"      # metrics on the reference's scale ("minmax": the original study's)
    fail_fast = false                # true: stop at the first failing batch

    [threat]                         # KSpaceL2 or KSpaceLinf
    type = "KSpaceL2"
    per = "sample"
    support = "measured"

    [attacks.pgd]                    # one table per attack: type (an attack name) + its arguments
    type = "pgd"                     # worst_case, apgd, pgd, adam, fgm, noise (class names work too)
    steps = 20                       # (worst_case: budget = 100 gradient evaluations per row)

    [models.diffusion]               # keyword arguments for load_reconstructor
    steps = 50
    [models.diffusion_nodc]          # a variant of a registered model, under its own name
    model = "diffusion"
    final_dc = false
    [surrogate_models.diffusion]     # the surrogate's own arguments (white-box attack), e.g. a
    differentiable = true            # differentiable sampler with fewer steps; "eot" goes to
    steps = 10                       # the attacks (expectation over the sampler's noise);
    attack_steps = 20                # "attack_steps": every attack's steps / budget on this
                                     # surrogate (an expensive one gets fewer);
    n_slices = 8                     # "n_slices": attack it on the first 8 slices only
                                     # (a multiple of batch_size)

    null_draws = 8                   # equal-norm noise draws per target that calibrate the
                                     # artifact statistics (0: none)

    [verdicts]                       # how the claims are decided (kspace_attacks.study.verdicts):
    correction = "holm"              # floor_fraction, floors, alpha, correction, min_subjects

``threads`` (an int >= 1) is the number of torch intra-op threads every unit of work runs
with, in one process or in each ``torchrun`` rank (:func:`~kspace_attacks.study.sweep.rank_threads`).
Float reductions split over another number of threads round differently and attacks amplify
that, so the count is part of the numbers' identity: records are a function of the
configuration (``threads`` included) and the seed, however the run is launched. A launch whose
ranks would need more threads than the node's cores stops before any work and says which
launch keeps the numbers; ``oversubscribe = true`` runs it anyway (same numbers, slower). A
folder's units all carry the thread count they ran with, and a resume or merge at another
count is refused. Configurations written before the key existed load with the default, 1.

Data tables (details in :mod:`kspace_attacks.study.sources`)::

    data = {nifti = "brain.nii.gz", slices = [10, 20]}          # these slices
    data = {nifti = "brain.nii.gz", slices = "10:40:5"}         # a range, Python slicing rules
    data = {nifti = "brain.nii.gz", n_slices = 8, min_content = 0.1}  # 8 evenly spaced slices
    data = {fastmri = "folder_or_file.h5"}                      # preset-size crop, preset mask
    data = {fastmri = "test.h5", mask = "file", coil_maps = "estimate", normalize = "max",
            target = "complex", slices = "0:10"}

Sample ids name the file and slice (``<file stem>-<slice>``; embedded: ``<split>-<index>``); a
sweep's records also carry each item's ``slice`` and ``contrast``
(:func:`~kspace_attacks.study.sources.item_coordinates`).
"""

from __future__ import annotations

import copy
import inspect
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from .. import attacks as _attacks
from .._checks import describe
from ..schema import Table, setting
from ..threat_spec import ThreatSpec
from .errors import ConfigError
from .records import STUDY_EPS
from .verdicts import VerdictSpec
from .sources import build_data, check_data

__all__ = ["SweepConfig", "TargetedSpec", "ReportSpec", "VerdictSpec", "DEMO_CONFIG", "DEMO_OVERRIDES", "STUDY_CONFIG", "ConfigError", "load_config", "dump_toml", "validate_config",
           "build_threat", "build_attacks", "build_models", "build_surrogates", "surrogate_batches", "surrogate_options", "build_data", "canonical"]


def _null_draws(n: int) -> str | None:
    return None if n == 0 or n >= 2 else "0 or an integer >= 2"


def _not_empty(values: list) -> str | None:
    return None if values else "at least one entry"


@dataclass(frozen=True)
class TargetedSpec(Table):
    """``[targeted]``: the targeted false-structure test (a blob inserted into the first
    surrogate's reconstruction, transferred to every target; demo and study, or any sweep)."""

    TABLE: ClassVar[str] = "config.targeted"

    slices: int = setting(0, "slices it runs on: the first ones of the first batch, at most this many "
                             "(0: no targeted test)", minimum=0)
    eps: float = setting(0.05, "its relative budget", minimum=0.0)


@dataclass(frozen=True)
class ReportSpec(Table):
    """``[report]``: what ``report.html`` shows."""

    TABLE: ClassVar[str] = "config.report"

    panel_slices: int = setting(2, "slices whose image panels are stored with the run (report.html)", minimum=0)


@dataclass(frozen=True)
class SweepConfig(Table):
    """A sweep's (and the demo's and study's) whole configuration: every key, its type,
    default and meaning. :func:`validate_config` checks a parsed file against it, plus the
    cross-key rules (attack arguments, surrogate tables, data tables)."""

    TABLE: ClassVar[str] = "config"

    preset: str = setting("embedded", "acquisition preset of the simulated data (size, mask, coils, noise: "
                                      "embedded, paper, embedded_noiseless, paper_noiseless)")
    data: str | dict | list = setting("embedded", "'embedded', {embedded = 'test', ...}, {nifti = 'file', ...}, "
                                      "{shipped = 'dipy_s0', ...}, {fastmri = 'dir', ...} or a list of simulated "
                                      "sources (kspace_attacks.study.sources)")
    split: str = setting("test", "split of the embedded data", choices=("train", "val", "test"))
    n_slices: int = setting(4, "slices used, unless the data table selects them", minimum=1)
    batch_size: int = setting(4, "slices per batch (a unit of work)", minimum=1)
    seed: int = setting(0, "seed of the data simulation, the attacks' starts and the noise")
    device: str = setting("cpu", "torch device")
    eps: list[float] = setting(doc="the budget grid (relative to ||y|| for a relative threat)",
                               minimum=0.0, check=_not_empty, factory=lambda: list(STUDY_EPS))
    surrogates: list[str] = setting(doc="models the perturbations are crafted on (white-box)",
                                    check=_not_empty, factory=lambda: ["irim", "resunetpp"])
    targets: list[str] = setting(doc="models that reconstruct the perturbed k-space", check=_not_empty,
                                 factory=lambda: ["irim", "resunetpp", "diffusion", "zero_filled"])
    baseline: bool = setting(True, "also evaluate equal-norm noise (surrogate 'random', attack 'noise')")
    normalization: str = setting("reference", "metric normalisation of the records: 'reference' (images on the "
                                              "reference's scale, data range = its max; 'fastmri' is an alias) or "
                                              "'minmax' (per image, the original study's; always also recorded as "
                                              "*_minmax columns)", choices=("reference", "minmax", "fastmri"))
    threat: ThreatSpec = setting(doc="the threat model", factory=ThreatSpec)
    attacks: dict[str, dict] = setting(
        doc="one table per attack: type (worst_case, apgd, pgd, adam, fgm, noise) + its arguments; "
            "a given [attacks] replaces the default attacks", check=_not_empty,
        factory=lambda: {"worst_case": {"type": "worst_case", "budget": 100},
                         "adam": {"type": "adam", "lr": 0.1, "max_steps": 100, "max_rescales": 100}})
    models: dict[str, dict] = setting(doc="load_reconstructor arguments per model; model = '<registered>' makes a "
                                          "variant, model = 'file.py:make' a user's model", factory=dict)
    surrogate_models: dict[str, dict] = setting(
        doc="a surrogate's own loading arguments for the attack, plus eot, attack_steps and n_slices", factory=dict)
    null_draws: int = setting(8, "equal-norm noise draws per target and row that calibrate the artifact statistics",
                              check=_null_draws)
    fail_fast: bool = setting(False, "stop at the first failing unit instead of recording it")
    threads: int = setting(1, "torch CPU threads of every unit, in one process or in each torchrun rank "
                              "(part of the numbers' identity)", minimum=1)
    oversubscribe: bool = setting(False, "let torchrun ranks x threads exceed the node's cores (same numbers, "
                                         "slower) instead of refusing to start")
    targeted: TargetedSpec = setting(doc="the targeted false-structure test", factory=TargetedSpec)
    report: ReportSpec = setting(doc="report.html", factory=ReportSpec)
    verdicts: VerdictSpec = setting(doc="how the claims are decided", factory=VerdictSpec)


#: The defaults of every key (the demo's sweep before :data:`DEMO_OVERRIDES`).
DEMO_CONFIG: dict[str, Any] = SweepConfig().as_dict()
#: What ``kspace-attacks demo`` changes from the defaults above to stay within 10 minutes on 2
#: cores: 2 threads (part of its configuration, so its records stay reproducible), 4 null
#: draws per target, the targeted test on 2 slices, report.html without image panels (they
#: would re-run every target), and 4 items from 2 subjects (2 template test slices, 2 slices of
#: the shipped unseen brain; ``demo --print-config`` shows the result).
DEMO_OVERRIDES: dict[str, Any] = {"threads": 2, "null_draws": 4, "targeted": {"slices": 2, "eps": 0.05},
                                  "report": {"panel_slices": 0},
                                  "data": [{"embedded": "test", "n_slices": 2},
                                           {"shipped": "dipy_s0", "slices": [3, 7]}]}

#: The study at scale (``kspace-attacks study``), shaped to finish within an hour on 2 idle
#: cores (``study --dry-run`` shows the plan and its estimate; docs/study/README.md says why
#: each reduction was chosen and what it costs in power):
#:
#: - 32 items from 3 subjects in 4 batches of 8 for every transfer cell and every target,
#:   including the diffusion sampler without its final data consistency (it shares the full
#:   sampler's run: both outputs come from one trajectory), and deepinv's DPS and DiffPIR
#:   driven by the shipped score network at 50 steps (half their tuned 100: the dry run put
#:   them at 31 and 13 min otherwise), so each answer can be read per model; the earlier
#:   diffusion model is not re-run: its records on the same (seeded) perturbations are the
#:   previous study's: the 14 test slices of the template
#:   (5 anatomical blocks, none adjacent to another or to a training slice; the contrasts
#:   cycle), the 10 slices of the shipped unseen brain and 8 slices (10 mm apart) of the shipped
#:   whole-brain volume, all with the preset's 30 dB k-space noise;
#: - the eps grid of the verdicts (0.02, 0.05, 0.08) instead of 0..0.08 in steps of 0.01:
#:   the claims are decided per eps and "grows with eps" compares the largest with the smallest;
#: - both runners (the default worst-case search and the study's Adam) and the SSIM objective on
#:   i-RIM and ResUnet++;
#: - no white-box attack through the diffusion sampler (the previous run's, on 16 items in 6
#:   blocks, decided none of its 9 cells; its 16 minutes now go to the solver targets);
#: - 4 equal-norm noise draws per target and row for the calibrated statistics (8 before);
#: - 2 threads: the whole machine, in one process;
#: - the targeted test on the 8 slices of the first batch.
STUDY_CONFIG: dict[str, Any] = {
    **DEMO_CONFIG,
    "threads": 2,
    "null_draws": 4,
    "data": [{"embedded": "test", "n_slices": 14}, {"shipped": "dipy_s0", "slices": "0:10"},
             {"shipped": "dipy_aniso", "slices": "5:21:2"}],
    "n_slices": 32,
    "batch_size": 8,
    "eps": [0.02, 0.05, 0.08],
    "surrogates": ["irim", "resunetpp"],
    "targets": ["irim", "resunetpp", "diffusion", "diffusion_nodc", "dps_50", "diffpir_50", "zero_filled"],
    "attacks": {
        "worst_case": {"type": "worst_case", "budget": 100},
        "adam": {"type": "adam", "lr": 0.1, "max_steps": 100, "max_rescales": 100},
        "worst_case_ssim": {"type": "worst_case", "budget": 100, "loss": "ssim"},
    },
    "models": {"diffusion_nodc": {"model": "diffusion", "final_dc": False},
               # deepinv's solvers at half their tuned steps: DPS at 100 steps (1.5 s per row,
               # a gradient through the score network at every step) would take 31 min alone
               "dps_50": {"model": "diffusion_dps", "num_steps": 50},
               "diffpir_50": {"model": "diffusion_diffpir", "max_iter": 50}},
    # no white-box attack through the diffusion sampler: 16 items in 6 blocks decided none of
    # its 9 cells in the previous run, and the time now goes to the solver targets (a
    # differentiable sampler is a surrogate again with surrogate_models.diffusion, see DEMO_CONFIG's docs)
    "surrogate_models": {},
    "targeted": {"slices": 8, "eps": 0.05},  # the first batch
}

# ---------------------------------------------------------------------------------- files
def load_config(path: str | os.PathLike, base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``) sweep configuration, merged over
    ``base`` (default :data:`DEMO_CONFIG`) and validated."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config: file {p} does not exist")
    text = p.read_text(encoding="utf-8")
    if p.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ConfigError(f"config: {p} is YAML but PyYAML is not installed; pip install pyyaml, or use TOML") from e
        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config: {p} is not valid YAML: {e}") from e
    elif p.suffix.lower() == ".toml":
        try:
            import tomllib
        except ImportError:  # Python 3.10
            import tomli as tomllib  # type: ignore[no-redef]
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config: {p} is not valid TOML: {e}") from e
    else:
        raise ConfigError(f"config: expected a .toml, .yaml or .yml file, got {p.name}")
    if not isinstance(raw, dict):
        raise ConfigError(f"config: expected a table of settings in {p}, got {describe(raw)}")
    return validate_config(raw, base)


def _toml_string(v: str) -> str:
    # TOML basic strings: escape backslash, quote and control characters; keep the rest as is
    # (json.dumps would write non-BMP characters as surrogate pairs, which TOML rejects).
    out = []
    for ch in v:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_key(k: str) -> str:
    return k if k and all(c.isascii() and (c.isalnum() or c in "-_") for c in k) else _toml_string(k)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return repr(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return "nan" if v != v else ("inf" if v > 0 else "-inf")
        return repr(v)
    if isinstance(v, str):
        return _toml_string(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise ConfigError(f"config: cannot write {describe(v)} as TOML")


def dump_toml(config: Mapping[str, Any]) -> str:
    """Write a configuration as TOML (scalars and lists first, then tables)."""
    lines = ["# kspace-attacks sweep configuration", ""]
    tables = {}
    for k, v in config.items():
        if isinstance(v, Mapping) and k in ("threat", "attacks", "models", "targeted", "report", "verdicts"):
            tables[k] = v
        else:
            lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
    for k, v in tables.items():
        nested = {n: t for n, t in v.items() if isinstance(t, Mapping)}
        flat = {n: t for n, t in v.items() if not isinstance(t, Mapping)}
        if flat or not nested:
            lines += ["", f"[{k}]"] + [f"{_toml_key(n)} = {_toml_value(t)}" for n, t in flat.items()]
        for n, t in nested.items():
            lines += ["", f"[{k}.{_toml_key(n)}]"] + [f"{_toml_key(a)} = {_toml_value(b)}" for a, b in t.items()]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------- checks
def validate_config(raw: Mapping[str, Any], base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Merge ``raw`` over ``base`` (default: the demo's defaults, :data:`DEMO_CONFIG`) and check
    every value against :class:`SweepConfig` and the rules across keys; raises
    :class:`ConfigError` naming the table, the key and what was expected."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config: expected a table of settings, got {describe(raw)}")
    merged = {**copy.deepcopy(dict(DEMO_CONFIG if base is None else base)), **copy.deepcopy(dict(raw))}
    cfg = SweepConfig.from_mapping(merged).as_dict()  # keys, types, choices, nested tables
    for name, spec in cfg["surrogate_models"].items():
        if name not in cfg["surrogates"]:
            raise ConfigError(f"config.surrogate_models: {name!r} is not a surrogate; expected some of "
                              f"{cfg['surrogates']}")
    for name, spec in cfg["attacks"].items():
        try:
            _attacks.attack_class(spec.get("type"))
        except ValueError:
            raise ConfigError(f"config.attacks.{name}.type: expected one of {sorted(_attacks.ATTACKS)}, "
                              f"got {spec.get('type')!r}") from None
        # class names of earlier configs ("PGD") stay as the user wrote them
    # Build the threat model and attacks now, so a bad value fails before models and data load.
    build_attacks(cfg)
    surrogate_batches(cfg)
    surrogate_options(cfg)
    check_data(cfg["data"])
    if cfg["device"] != "cpu" and cfg["device"].startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"config: device {cfg['device']!r} requested but CUDA is not available; use device = \"cpu\"")
    return cfg


def canonical(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``cfg`` with every attack type spelled as the attack's name ("PGD" -> "pgd"), for
    comparing configurations written before and after the names were unified."""
    out = dict(cfg)
    out["attacks"] = {k: dict(v, type=_attacks.attack_class(v["type"]).name)
                      for k, v in cfg["attacks"].items()}
    return out


# ---------------------------------------------------------------------------------- building
def build_threat(cfg: Mapping[str, Any]):
    """The threat model of ``cfg["threat"]`` (its budget set per row by the eps grid)."""
    if "eps" in cfg["threat"]:
        raise ConfigError("config.threat: eps is set by the top-level eps grid; remove it from [threat]")
    spec = ThreatSpec.from_mapping(cfg["threat"], "config.threat")
    if spec.type == "coil_maps":
        # a sweep hands every target the perturbed k-space with the clean physics
        raise ConfigError("config.threat: type 'coil_maps' changes the coil maps the model is told, not the "
                          "k-space a sweep transfers; measure it with ka.evaluate(model, physical=['coil_maps']) "
                          "or an attack's result (.x_adv, .physics_adv)")
    return spec.build()


def build_attacks(cfg: Mapping[str, Any]) -> dict[str, _attacks.Attack]:
    threat = build_threat(cfg)
    out = {}
    for name, spec in cfg["attacks"].items():
        spec = dict(spec)
        cls = _attacks.attack_class(spec.pop("type"))
        known = [p for p in inspect.signature(cls).parameters if p not in ("threat", "seed")]
        unknown = sorted(set(spec) - set(known))
        if unknown:
            raise ConfigError(f"config.attacks.{name}: unknown key(s) {unknown} for {cls.__name__}; "
                              f"known keys: {['type', *known]}")
        try:
            out[name] = cls(threat, seed=cfg["seed"], **spec)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"config.attacks.{name}: {e}") from e
    return out


def _load(name: str, spec: Mapping[str, Any], device: str) -> Any:
    from ..adapters import load_reconstructor  # the application layer resolves model names

    kwargs = dict(spec)
    registered = kwargs.pop("model", name)  # models.diffusion_nodc = {model = "diffusion", ...}
    if ":" in registered:  # a user's model: models.mine = {model = "mymodel.py:make"}
        from ..adapters import resolve_model

        if kwargs:
            raise ConfigError(f"config: models.{name}: a model given as {registered!r} takes no "
                              f"loading arguments, got {sorted(kwargs)}")
        return resolve_model(registered, device=device)
    weights = kwargs.pop("weights", "embedded")
    weights = None if weights in ("none", "random") else weights  # TOML has no null
    if kwargs.get("seed") == "none":
        kwargs["seed"] = None
    from ..adapters import UnknownReconstructorError

    try:
        return load_reconstructor(registered, weights=weights, device=device, **kwargs)
    except TypeError as e:  # a typo in the table reaches the model's loader
        raise ConfigError(f"config.models.{name} (model {registered!r}, keys {sorted(spec)}): {e}") from e
    except UnknownReconstructorError as e:
        raise ConfigError(f"config: model {name!r}: {e}; for your own model add a table "
                          f"[models.{name}] with model = \"mymodel.py:make\" (or \"package.module:make\"): "
                          f"a zero-argument factory, an nn.Module or a function f(y, physics)") from None


def build_models(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Every surrogate and target by name (``models.<name>`` holds load_reconstructor arguments;
    ``model = "<registered name>"`` makes ``<name>`` a variant of a registered model)."""
    return {name: _load(name, cfg["models"].get(name, {}), cfg["device"])
            for name in dict.fromkeys([*cfg["surrogates"], *cfg["targets"]])}


def build_surrogates(cfg: Mapping[str, Any], models: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, dict]]:
    """The surrogates as attacked, and per-surrogate attack options.

    ``surrogate_models.<name>`` changes a surrogate's loading arguments for the attack only
    (e.g. the diffusion sampler's ``differentiable = true`` and fewer ``steps``); the target of
    the same name stays as ``models.<name>`` says. Its ``eot`` key goes to the attacks instead,
    and ``attack_steps`` sets every attack's ``steps`` (a :class:`~kspace_attacks.WorstCase`'s
    budget) on this surrogate; ``n_slices`` is :func:`surrogate_batches`'.
    """
    surrogates = {}
    for name in cfg["surrogates"]:
        spec = {k: v for k, v in cfg["surrogate_models"].get(name, {}).items() if k not in _ATTACK_KEYS}
        surrogates[name] = _load(name, {**cfg["models"].get(name, {}), **spec}, cfg["device"]) if spec \
            else models[name]
    return surrogates, surrogate_options(cfg)


#: keys of ``surrogate_models.<name>`` that are not loading arguments
_ATTACK_KEYS = ("eot", "attack_steps", "n_slices")


def surrogate_options(cfg: Mapping[str, Any]) -> dict[str, dict]:
    """Per-surrogate attack arguments from ``surrogate_models``: ``eot`` and ``attack_steps``
    (every attack's ``steps``)."""
    options: dict[str, dict] = {}
    for name in cfg["surrogates"]:
        spec = cfg["surrogate_models"].get(name, {})
        if "eot" in spec:
            options.setdefault(name, {})["eot"] = spec["eot"]
        if "attack_steps" in spec:
            steps = spec["attack_steps"]
            if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
                raise ConfigError(f"surrogate_models.{name}.attack_steps: expected an integer >= 1, got {steps!r}")
            options.setdefault(name, {})["steps"] = steps
    return options


def surrogate_batches(cfg: Mapping[str, Any]) -> dict[str, int]:
    """Surrogates attacked on the first batches only: ``surrogate_models.<name>.n_slices`` (a
    multiple of ``batch_size``) -> ``{name: number of batches}``; the others attack every batch.

    An expensive white-box surrogate (the differentiable diffusion sampler) is attacked on
    fewer slices than the transfer cells use; its records hold those slices only.
    """
    out = {}
    for name, spec in cfg["surrogate_models"].items():
        n = spec.get("n_slices")
        if n is None:
            continue
        if isinstance(n, bool) or not isinstance(n, int) or n < 1 or n % cfg["batch_size"]:
            raise ConfigError(f"config: surrogate_models.{name}.n_slices must be a positive multiple of "
                              f"batch_size ({cfg['batch_size']}), got {n!r}")
        out[name] = n // cfg["batch_size"]
    return out
