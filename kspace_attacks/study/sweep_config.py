"""The typed sweep configuration: every key of a sweep, demo or study file, its type, default
and meaning (:class:`SweepConfig` and its tables). Reading files, the rules across keys and
building what a configuration describes are :mod:`kspace_attacks.study.config`'s.

Example:

    >>> from kspace_attacks.study.sweep_config import SweepConfig
    >>> cfg = SweepConfig.from_mapping({"eps": [0.0, 0.05], "targets": ["zero_filled"]})
    >>> cfg.eps, cfg.targets, cfg.attacks["worst_case"].options
    ([0.0, 0.05], ['zero_filled'], {'budget': 100})
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..schema import ConfigError, Table, setting
from ..threat_spec import ThreatSpec
from .data_tables import check_data
from .records import STUDY_EPS
from .specs import AttackSpec, ModelSpec, SurrogateSpec
from .verdicts import VerdictSpec

__all__ = ["SweepConfig", "TargetedSpec", "ReportSpec"]


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
    title: str = setting("", "the verdicts' title (verdict.md, report.html); empty: the command's own "
                             "('Verdicts' for a sweep)")


@dataclass(frozen=True)
class SweepConfig(Table):
    """A sweep's (and the demo's and study's) whole configuration: every key, its type,
    default and meaning, and the carrier every step of a run takes. It is valid once built:
    besides each key, construction checks the rules across keys (attack arguments on the
    threat model, surrogate tables, data tables, the device), so a bad value fails before
    models and data load. :func:`~kspace_attacks.study.config.validate_config` builds it from
    a parsed file merged over the defaults."""

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
    attacks: dict[str, AttackSpec] = setting(
        doc="one table per attack: type (worst_case, apgd, pgd, adam, fgm, noise) + its arguments; "
            "a given [attacks] replaces the default attacks", check=_not_empty,
        factory=lambda: {"worst_case": AttackSpec("worst_case", {"budget": 100}),
                         "adam": AttackSpec("adam", {"lr": 0.1, "max_steps": 100, "max_rescales": 100})})
    models: dict[str, ModelSpec] = setting(doc="load_reconstructor arguments per model; model = '<registered>' makes "
                                               "a variant, model = 'file.py:make' a user's model", factory=dict)
    surrogate_models: dict[str, SurrogateSpec] = setting(
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

    def _check(self, where: str) -> None:
        super()._check(where)  # every key
        for name in self.surrogate_models:
            if name not in self.surrogates:
                raise ConfigError(f"{where}.surrogate_models: {name!r} is not a surrogate; expected some of "
                                  f"{self.surrogates}")
            n = self.surrogate_models[name].n_slices
            if n is not None and n % self.batch_size:
                raise ConfigError(f"{where}: surrogate_models.{name}.n_slices must be a positive multiple of "
                                  f"batch_size ({self.batch_size}), got {n!r}")
        if self.threat.type == "coil_maps":
            # a sweep hands every target the perturbed k-space with the clean physics
            raise ConfigError(f"{where}.threat: type 'coil_maps' changes the coil maps the model is told, not the "
                              "k-space a sweep transfers; measure it with ka.evaluate(model, physical=['coil_maps']) "
                              "or an attack's result (.x_adv, .physics_adv)")
        threat = self.threat.build()
        for name, spec in self.attacks.items():  # argument values, on the threat they will run on
            spec.build(threat, self.seed, f"{where}.attacks.{name}")
        check_data(self.data)
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"{where}: device {self.device!r} requested but CUDA is not available; "
                              f"use device = \"cpu\"")
