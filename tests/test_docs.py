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
    "kspace_attacks.attacks.pgd",
    "kspace_attacks.attacks.projected_adam",
    "kspace_attacks.attacks.fgm",
    "kspace_attacks.attacks.gaussian_noise",
    "kspace_attacks.evaluation",
    "kspace_attacks.analysis",
    "kspace_attacks.targeted",
    "kspace_attacks.testing",
    "kspace_attacks.deepinv_interop",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    failures, tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert tried > 0, f"{name} has no examples"
    assert failures == 0
