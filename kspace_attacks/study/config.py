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
(:func:`~kspace_attacks.study.sources.build_items`).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


from .. import attacks as _attacks
from .._checks import describe
from .errors import ConfigError
from .specs import AttackSpec, ModelSpec, SurrogateSpec
from .sweep_config import ReportSpec, SweepConfig, TargetedSpec
from .verdicts import VerdictSpec
from .sources import build_data, build_items

__all__ = ["SweepConfig", "AttackSpec", "ModelSpec", "SurrogateSpec", "TargetedSpec", "ReportSpec", "VerdictSpec", "DEMO_CONFIG", "DEMO_OVERRIDES", "STUDY_CONFIG", "ConfigError", "load_config", "dump_toml", "validate_config",
           "stored_config", "build_threat", "build_attacks", "build_models", "build_surrogates", "surrogate_batches", "surrogate_options", "build_data", "canonical",
           "SweepInputs", "build_inputs"]


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
def load_config(path: str | os.PathLike, base: Mapping[str, Any] | SweepConfig | None = None) -> SweepConfig:
    """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``) sweep configuration, merged over
    ``base`` (default :data:`DEMO_CONFIG`) and validated (:func:`validate_config`)."""
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


def dump_toml(config: Mapping[str, Any] | SweepConfig) -> str:
    """Write a configuration as TOML (scalars and lists first, then tables)."""
    if isinstance(config, SweepConfig):
        config = config.as_dict()
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
def validate_config(raw: Mapping[str, Any] | SweepConfig,
                    base: Mapping[str, Any] | SweepConfig | None = None) -> SweepConfig:
    """Merge ``raw`` over ``base`` (default: the demo's defaults, :data:`DEMO_CONFIG`), check
    every value against :class:`SweepConfig` and the rules across keys, and return the typed
    configuration every later step takes; raises :class:`ConfigError` naming the table, the key
    and what was expected.

        >>> cfg = validate_config({"eps": [0.0, 0.05], "attacks": {"pgd": {"type": "pgd", "steps": 5}}})
        >>> cfg.eps, cfg.attacks["pgd"].options, cfg.threat.type
        ([0.0, 0.05], {'steps': 5}, 'KSpaceL2')
    """
    if isinstance(raw, SweepConfig) and base is None:
        return raw  # valid since it was built
    if isinstance(raw, SweepConfig):
        raw = raw.as_dict()
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config: expected a table of settings, got {describe(raw)}")
    base = base.as_dict() if isinstance(base, SweepConfig) else DEMO_CONFIG if base is None else base
    merged = {**copy.deepcopy(dict(base)), **copy.deepcopy(dict(raw))}
    if isinstance(merged.get("threat"), Mapping) and "eps" in merged["threat"]:
        raise ConfigError("config.threat: eps is set by the top-level eps grid; remove it from [threat]")
    return SweepConfig.from_mapping(merged)  # every key and the rules across keys


def stored_config(config: Mapping[str, Any]) -> SweepConfig:
    """The configuration a run's records were made with, from what the run stored
    (``report.config``: the configuration's values plus facts of the run such as ``seconds``),
    validated over the defaults (a run of an earlier version may lack later keys)."""
    if not isinstance(config, Mapping):
        raise ConfigError(f"config: expected the stored configuration of a run, got {describe(config)}")
    known = SweepConfig.known_keys()
    return validate_config({k: v for k, v in config.items() if k in known})


def canonical(cfg: SweepConfig) -> dict[str, Any]:
    """``cfg``'s plain values with every attack type spelled as the attack's name ("PGD" ->
    "pgd"), for comparing configurations written before and after the names were unified."""
    out = cfg.as_dict()
    out["attacks"] = {k: dict(spec.as_dict(), type=spec.name) for k, spec in cfg.attacks.items()}
    return out


# ---------------------------------------------------------------------------------- building
def build_threat(cfg: SweepConfig):
    """The threat model of ``cfg.threat`` (its budget set per row by the eps grid)."""
    return cfg.threat.build()


def build_attacks(cfg: SweepConfig) -> dict[str, _attacks.Attack]:
    """Every attack of ``cfg.attacks`` on its threat model, seeded with ``cfg.seed``."""
    threat = build_threat(cfg)
    return {name: spec.build(threat, cfg.seed, f"config.attacks.{name}") for name, spec in cfg.attacks.items()}


def build_models(cfg: SweepConfig) -> dict[str, Any]:
    """Every surrogate and target by name (``models.<name>`` holds load_reconstructor arguments;
    ``model = "<registered name>"`` makes ``<name>`` a variant of a registered model)."""
    return {name: cfg.models.get(name, ModelSpec()).load(name, cfg.device)
            for name in dict.fromkeys([*cfg.surrogates, *cfg.targets])}


def build_surrogates(cfg: SweepConfig, models: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, dict]]:
    """The surrogates as attacked, and per-surrogate attack options.

    ``surrogate_models.<name>`` changes a surrogate's loading arguments for the attack only
    (e.g. the diffusion sampler's ``differentiable = true`` and fewer ``steps``); the target of
    the same name stays as ``models.<name>`` says. Its ``eot`` key goes to the attacks instead,
    and ``attack_steps`` sets every attack's ``steps`` (a :class:`~kspace_attacks.WorstCase`'s
    budget) on this surrogate; ``n_slices`` is :func:`surrogate_batches`'.
    """
    surrogates = {}
    for name in cfg.surrogates:
        own = cfg.surrogate_models.get(name)
        if own is not None and (own.model or own.options):
            surrogates[name] = cfg.models.get(name, ModelSpec()).merged(own).load(name, cfg.device)
        else:
            surrogates[name] = models[name]
    return surrogates, surrogate_options(cfg)


def surrogate_options(cfg: SweepConfig) -> dict[str, dict]:
    """Per-surrogate attack arguments from ``surrogate_models``: ``eot`` and ``attack_steps``
    (every attack's ``steps``)."""
    return {name: spec.attack_options for name, spec in cfg.surrogate_models.items() if spec.attack_options}


def surrogate_batches(cfg: SweepConfig) -> dict[str, int]:
    """Surrogates attacked on the first batches only: ``surrogate_models.<name>.n_slices`` (a
    multiple of ``batch_size``) -> ``{name: number of batches}``; the others attack every batch.

    An expensive white-box surrogate (the differentiable diffusion sampler) is attacked on
    fewer slices than the transfer cells use; its records hold those slices only.
    """
    out = {}
    for name, spec in cfg.surrogate_models.items():
        if spec.n_slices is not None:  # a multiple of batch_size (SweepConfig checks it)
            out[name] = spec.n_slices // cfg.batch_size
    return out


@dataclass
class SweepInputs:
    """Everything a sweep's configuration describes, built once (:func:`build_inputs`).

    :param models: name -> reconstructor (every surrogate and target).
    :param surrogates: name -> the surrogate as attacked (``surrogate_models`` may load another).
    :param attack_options: per surrogate, the attacks' arguments there (``eot``, ``steps``).
    :param attacks: name -> attack, on the threat model, seeded.
    :param batches: ``(x, y, physics)`` per batch.
    :param ids: the sample id of every slice, in batch order.
    :param coordinates: per id, its slice, contrast, subject and block.
    :param limits: surrogates attacked on the first batches only -> number of batches.
    """

    models: dict[str, Any]
    surrogates: dict[str, Any]
    attack_options: dict[str, dict]
    attacks: dict[str, _attacks.Attack]
    batches: list
    ids: list
    coordinates: dict[str, dict[str, Any]]
    limits: dict[str, int]


def build_inputs(cfg: SweepConfig, models: Mapping[str, Any] | None = None) -> SweepInputs:
    """Build the models (unless given), data and attacks of ``cfg``: everything that can fail on
    a configuration, before a sweep writes anything."""
    models = dict(models) if models is not None else build_models(cfg)
    surrogates, options = build_surrogates(cfg, models)
    attacks, limits = build_attacks(cfg), surrogate_batches(cfg)
    data = build_items(cfg)
    return SweepInputs(models, surrogates, options, attacks, data.batches, data.ids, data.coordinates, limits)
