"""Shared test settings."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One intra-op thread per test: the tensors here are tiny, and on a small shared CPU extra
    OpenMP threads only add synchronisation (small convolutions ran tens of times slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ------------------------------------------------------------------------------- test tiers
#: Every test has one tier (``pytest -m unit`` runs the fast ones). A module's tier is the
#: heaviest thing its tests do: ``e2e`` runs the command line, a sweep, the demo or a child
#: Python; ``integration`` loads shipped weights or runs a whole card / plugin / solver;
#: everything else is ``unit`` (tiny closed-form models, pure functions). A test may name its
#: own tier with a marker; a ``slow`` test is never ``unit``.
TIERS = ("unit", "integration", "e2e")
MODULE_TIERS = {
    "e2e": {"test_cli", "test_demo", "test_study_scale", "test_sweep_durability", "test_sweep_threads",
            "test_sweep_units", "test_sweep_data", "test_reproducibility", "test_report_html",
            "test_isolation", "test_readme"},
    "integration": {"test_adapters_diffusion", "test_adapters_supervised", "test_card", "test_certify",
                    "test_deepinv_solvers", "test_registry", "test_physical_integration",
                    "test_testing_plugin", "test_defense", "test_realistic_acquisition", "test_safe_loading",
                    "test_sanity", "test_docs", "test_measurement_and_schema", "test_verdicts"},
}


def tier_of(module: str, slow: bool) -> str:
    """The tier of a test in ``module`` (file stem) without a tier marker of its own."""
    for tier, modules in MODULE_TIERS.items():
        if module in modules:
            return tier
    return "integration" if slow else "unit"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if not any(item.get_closest_marker(t) for t in TIERS):
            item.add_marker(getattr(pytest.mark, tier_of(item.path.stem, item.get_closest_marker("slow") is not None)))
