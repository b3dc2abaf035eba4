"""Run the docstring examples of the core modules (they are part of the documentation)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "kspace_attacks",
    "kspace_attacks.threat",
    "kspace_attacks.losses",
    "kspace_attacks.metrics",
    "kspace_attacks.io",
    "kspace_attacks.attacks",
    "kspace_attacks.attacks.base",
    "kspace_attacks.attacks.pgd",
    "kspace_attacks.attacks.apgd",
    "kspace_attacks.attacks.projected_adam",
    "kspace_attacks.attacks.fgm",
    "kspace_attacks.attacks.gaussian_noise",
    "kspace_attacks.attacks.starts",
    "kspace_attacks.attacks.worst_case",
    "kspace_attacks.result",
    "kspace_attacks.measurement",
    "kspace_attacks.hallucination",
    "kspace_attacks.schema",
    "kspace_attacks.threat_spec",
    "kspace_attacks.physical",
    "kspace_attacks.physical.catalog",
    "kspace_attacks.physical.lines",
    "kspace_attacks.physical.motion",
    "kspace_attacks.physical.phase",
    "kspace_attacks.physical.spikes",
    "kspace_attacks.physical.coil_maps",
    "kspace_attacks.physical.lost_lines",
    "kspace_attacks.testing.card_stats",
    "kspace_attacks.testing.card_physical",
    "kspace_attacks._lazy",
    "kspace_attacks.certify",
    "kspace_attacks.certify.api",
    "kspace_attacks.certify.smoothing",
    "kspace_attacks.certify.bound",
    "kspace_attacks.certify.center",
    "kspace_attacks.certify.command",
    "kspace_attacks._cli_options",
    "kspace_attacks.cli",
    "kspace_attacks.cli.common",
    "kspace_attacks.cli.demo",
    "kspace_attacks.cli.study",
    "kspace_attacks.cli.sweep",
    "kspace_attacks.cli.report",
    "kspace_attacks.cli.evaluate",
    "kspace_attacks.cli.models",
    "kspace_attacks.cli.certify",
    "kspace_attacks.cli.config_reference",
    "kspace_attacks.cli.train",
    "kspace_attacks.study.records",
    "kspace_attacks.study.transfer",
    "kspace_attacks.study.artifacts",
    "kspace_attacks.study.targeted",
    "kspace_attacks.study.verdicts",
    "kspace_attacks.study.answers",
    "kspace_attacks.study.statistics",
    "kspace_attacks.study.sweep",
    "kspace_attacks.study.demo",
    "kspace_attacks.study.report",
    "kspace_attacks.study.report_io",
    "kspace_attacks.study.perturbations",
    "kspace_attacks.adapters.diffusion",
    "kspace_attacks.adapters.sampler_settings",
    "kspace_attacks.adapters.score_denoiser",
    "kspace_attacks.adapters.deepinv_solvers",
    "kspace_attacks.adapters.vp_schedule",
    "kspace_attacks.adapters.registry",
    "kspace_attacks.adapters.training.diffusion_eval",
    "kspace_attacks.testing.measure",
    "kspace_attacks.testing.assertions",
    "kspace_attacks.interop.deepinv",
    "kspace_attacks.data.selection",
    "kspace_attacks.stats",
    "kspace_attacks.testing.protocol",
    "kspace_attacks.testing.card",
    "kspace_attacks.testing.card_render",
    "kspace_attacks.defense.adversarial",
    "kspace_attacks.defense.jitter",
    "kspace_attacks.defense.factory",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    failures, tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert tried > 0, f"{name} has no examples"
    assert failures == 0
