"""The one measurement path (``kspace_attacks.measurement.measure``) and its views: cards and
test helpers measure a row the same way, whatever batch the row is in."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import kspace_attacks as ka
from kspace_attacks import measurement
from kspace_attacks.measurement import CONTROL, Grid, measure
from kspace_attacks.testing.card import run_protocol
from kspace_attacks.testing.measure import measure_robustness
from kspace_attacks.testing.protocol import PROTOCOL_V1

from ._physics import single_coil, zero_filled


class Smooth(torch.nn.Module):
    """A small nonlinear reconstructor: zero-filling, then a fixed blur and a soft threshold."""

    def forward(self, y, physics):
        x = physics.A_adjoint(y)
        blurred = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1)
        return torch.nn.functional.softshrink(blurred, 0.01) + 0.5 * x


def test_rows_are_condition_major_with_sample_ids_and_budgets():
    x, y, physics = single_coil(batch=2)
    g = Grid.of(x, y, physics, [0.01, 0.05], ids=["a", "b"])
    run = measure(Smooth(), g, {"pgd": ka.PGD(ka.KSpaceL2().with_eps(g.eps), steps=2)})
    rows = run.rows()
    assert [r["condition"] for r in rows] == ["pgd"] * 4 + [CONTROL] * 4
    assert [(r["sample_id"], r["eps"]) for r in rows[:4]] == [("a", 0.01), ("b", 0.01), ("a", 0.05), ("b", 0.05)]
    assert all(abs(r["ratio"] - r["eps"]) < 1e-6 for r in rows)  # both spend the whole budget
    assert rows[0]["delta_ssim"] == pytest.approx(float(run.values["pgd"]["delta_ssim"][0]))
    assert run.reference == "ground truth" and set(run.seconds) == {"pgd", CONTROL}


def test_a_rows_control_does_not_depend_on_the_batch_it_is_in():
    x, y, physics = single_coil(batch=3)
    attack = ka.PGD(ka.KSpaceL2(), steps=1)
    full = measure(Smooth(), Grid.of(x, y, physics, [0.02, 0.05], ids=[0, 1, 2]),
                   {"pgd": attack.replace(eps=torch.tensor([0.02] * 3 + [0.05] * 3, dtype=torch.float64))})
    part = measure(Smooth(), Grid.of(x[2:], y[2:], physics, [0.05], ids=[2]), {"pgd": attack.replace(eps=0.05)})
    for column in ("delta_ssim", "relative_deviation", "ratio"):
        assert torch.allclose(full.values[CONTROL][column][5], part.values[CONTROL][column][0], atol=1e-6)


def test_card_and_test_helper_controls_are_the_kernels():
    """The card's noise rows and measure_robustness's noise numbers are what measure() gives."""
    x, y, physics = single_coil(batch=2)
    p = dataclasses.replace(PROTOCOL_V1, version="t", eps=(0.03,), steps=1)
    run = run_protocol(Smooth(), data=(x, y, physics), protocol=p)
    kernel = measure(Smooth(), Grid.of(x, y, physics, [0.03]), {}, control=p.threat_model(torch.full((2,), 0.03)),
                     normalization=p.normalization)
    card_noise = run.conditions["noise"].values["delta_ssim"][0]
    assert torch.allclose(card_noise, measurement.against_reference(kernel.values[CONTROL])["delta_ssim"].double())
    m = measure_robustness(Smooth(), (x, y, physics), eps=0.03, steps=1, normalization=p.normalization)
    assert m.noise_delta_ssim == pytest.approx(float(card_noise.min()), abs=1e-6)


def test_harm_has_one_sign():
    """Worst = smallest Delta, in the measurement as in the records: degradation is negative."""
    x, y, physics = single_coil(batch=2)
    m = measure_robustness(Smooth(), (x, y, physics), eps=0.1, steps=3, attack="pgd")
    assert m.delta_ssim < 0 and m.delta_ssim <= m.delta_ssim_mean
    assert m.delta_ssim == pytest.approx(m.ssim_adv - m.ssim_clean)
    assert m.x_adv.shape == x.shape and m.y_adv.shape == y.shape and "x_adv" not in m.as_dict()


def test_transfer_crafts_on_the_surrogate_and_measures_the_model():
    x, y, physics = single_coil(batch=2)
    g = Grid.of(x, y, physics, [0.05])
    attack = {"pgd": ka.PGD(ka.KSpaceL2().with_eps(g.eps), steps=3)}
    white = measure(Smooth(), g, attack, with_control=False)
    transfer = measure(Smooth(), g, attack, surrogate=zero_filled, with_control=False)
    assert list(transfer.values) == ["pgd"]
    assert not torch.equal(white.perturbed["pgd"].y, transfer.perturbed["pgd"].y)
    # the surrogate's perturbation, reconstructed by the model
    assert torch.allclose(transfer.x_adv["pgd"], Smooth()(transfer.perturbed["pgd"].y, physics))


def test_measure_names_what_is_wrong():
    x, y, physics = single_coil(batch=1)
    g = Grid.of(x, y, physics, [0.05])
    with pytest.raises(ValueError, match="the noise control's"):
        measure(zero_filled, g, {CONTROL: ka.PGD(ka.KSpaceL2(eps=0.05), steps=1)})
    with pytest.raises(TypeError, match="attacks: expected a dict label -> kspace_attacks.Attack"):
        measure(zero_filled, g, [ka.PGD(ka.KSpaceL2(eps=0.05))])
    with pytest.raises(ValueError, match="attacks: expected at least one attack"):
        measure(zero_filled, g, {}, with_control=False)
    with pytest.raises(TypeError, match="threat: expected a kspace_attacks.ThreatModel"):
        measurement.control_grid("l2", g)
    with pytest.raises(TypeError, match="grid: expected a kspace_attacks.measurement.Grid"):
        measure(zero_filled, (x, y, physics), {"pgd": ka.PGD(ka.KSpaceL2(eps=0.05))})
    with pytest.raises(TypeError, match="model: expected a callable"):
        measurement.attack_grid(ka.PGD(ka.KSpaceL2(eps=0.05)), "irim", g)
