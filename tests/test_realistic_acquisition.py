"""Realistic acquisitions by default: k-space carries a noise floor, so no reconstruction sees
(or shows) an exactly-zero background; the noiseless setting is one preset name away."""

from __future__ import annotations

import pytest
import torch

from kspace_attacks.adapters import load_reconstructor
from kspace_attacks.data import EmbeddedBrain, demo_batch, get_preset


def _exact_zero_fraction(x: torch.Tensor) -> float:
    """Fraction of pixels whose every channel (real, imag) is exactly 0."""
    return float((x.abs().sum(dim=1) == 0).float().mean())


@pytest.fixture(scope="module")
def batch():
    return demo_batch(2)


@pytest.mark.parametrize("name, kwargs", [("zero_filled", {}), ("irim", {}), ("resunetpp", {}),
                                          ("diffusion", {"steps": 5})])
def test_clean_reconstructions_of_the_shipped_models_have_no_exactly_zero_background(batch, name, kwargs):
    x, y, physics = batch
    assert _exact_zero_fraction(x) > 0.3  # the ground truth's background is exactly 0
    model = load_reconstructor(name, **kwargs)
    with torch.no_grad():
        x_hat = model(y, physics)
    assert _exact_zero_fraction(x_hat) == 0.0


def test_the_noiseless_setting_is_one_preset_away():
    noisy, clean = EmbeddedBrain("test"), EmbeddedBrain("test", preset="embedded_noiseless")
    (x, y), (x0, y0) = noisy[3], clean[3]
    assert torch.equal(x, x0)
    physics = get_preset("embedded").physics()
    assert torch.equal(y0, physics.A(x0[None])[0])
    snr = 10 * torch.log10(y0.norm() ** 2 / (y - y0).norm() ** 2)
    assert abs(float(snr) - 30.0) < 0.3
    assert torch.equal(noisy[3][1], y)  # seeded per item
