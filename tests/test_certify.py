"""Center smoothing certificates: formulas, soundness on a linear model, abstention, seeds,
batching, validation, the attack bracket, multi-coil data and the ``certify`` subcommand."""

from __future__ import annotations

import argparse
import csv
import json
import math
from statistics import NormalDist

import deepinv as dinv
import pytest
import torch

import kspace_attacks as ka
import kspace_attacks.certify as kc
from kspace_attacks.certify import Certificate, SmoothedModel, certify
from kspace_attacks.certify.bound import (center_is_good, certified_quantile, max_eps_over_sigma,
                                          min_n_pred, order_statistic)
from kspace_attacks.certify.center import median_center
from kspace_attacks.certify.smoothing import NoiseSource, noise_std, row_physics

from ._physics import column_mask, multi_coil, single_coil, zero_filled

# Small but valid settings: delta 0.15 needs n_pred >= 134 (alpha 0.01) and 600 leaves the
# check a margin of ~3 standard deviations; n_cert 1000 certifies eps/sigma up to ~1.4.
FAST = dict(n_pred=600, n_cert=1000, delta=0.15, batch_size=128)


class TinyNet(torch.nn.Module):
    """A seeded nonlinear reconstructor: zero-filling plus a small residual conv net."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(2, 8, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(8, 2, 3, padding=1)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(0.3 * torch.randn(p.shape, generator=g))

    def forward(self, y, physics):
        x = physics.A_adjoint(y)
        return x + self.conv2(torch.tanh(4.0 * self.conv1(x)))


# ----------------------------------------------------------------------------- formulas
def test_quantile_is_the_papers_formula():
    n = NormalDist()
    for ratio, delta, n_cert in [(0.0, 0.05, 10**6), (1.0, 0.05, 10**4), (0.5, 0.15, 1000)]:
        expected = n.cdf(n.inv_cdf(0.5 + delta) + ratio) + math.sqrt(math.log(1 / 0.005) / (2 * n_cert))
        assert certified_quantile(ratio, delta, 0.005, n_cert) == pytest.approx(expected, rel=1e-12)
    # the largest certifiable ratio is where the quantile reaches 1
    top = max_eps_over_sigma(0.15, 0.005, 1000)
    assert certified_quantile(top, 0.15, 0.005, 1000) == pytest.approx(1.0)


def test_center_check_and_order_statistic():
    d1 = math.sqrt(math.log(2 / 0.005) / (2 * 10**4))  # the authors' delta_1
    assert center_is_good(0.5 - (0.05 - d1) + 1e-9, 0.05, 0.005, 10**4)
    assert not center_is_good(0.5 - (0.05 - d1) - 1e-3, 0.05, 0.005, 10**4)
    assert not center_is_good(1.0, 0.05, 0.005, 100)  # margin above delta: never good
    assert min_n_pred(0.005, 0.05) == 1199
    d = torch.arange(1.0, 101.0)
    assert order_statistic(d, 0.5) == 50.0 and order_statistic(d, 0.501) == 51.0  # ceil: conservative
    assert order_statistic(d, 1.0) == 100.0 and order_statistic(d, 1.001) is None


def test_median_center_matches_brute_force():
    g = torch.Generator().manual_seed(3)
    pts = torch.randn(41, 2, 4, 4, generator=g) + 100.0  # far from 0: the centering matters
    index, radius = median_center(pts)
    dist = torch.cdist(pts.flatten(1).double(), pts.flatten(1).double())
    med = dist.sort(dim=1).values[:, 20]  # the 21st smallest = ceil(41 / 2), self included
    assert index == int(med.argmin()) and radius == pytest.approx(float(med.min()), rel=1e-9)


# ----------------------------------------------------------------------------- soundness
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_soundness_on_the_linear_model(seed):
    """Zero filling ``f(y) = A^H y`` with deepinv's orthonormal FFT is linear and an isometry on
    the measured entries. Every noisy output is ``f(y) + A^H n_j``, and distances between outputs
    do not depend on ``y``, so with the same draws (common random numbers) the smoothed model
    selects the same draw at ``y`` and at ``y + delta``: ``S(y + delta) - S(y) = A^H delta``,
    whose norm is ``||delta||``. The smoothed model's exact worst case is therefore
    ``eps ||y||`` (the center is ``f(y)`` plus a symmetric noise term that the perturbation
    only translates). So (1) the attack's lower bound equals ``eps ||y||`` and (2) no sound
    certificate is below it; (3) with fresh draws at ``y + delta`` (the theorem's setting) the
    smoothed output stays within the radius."""
    _, y, physics = single_coil(16, batch=2, seed=seed)
    eps = 0.01
    cert = certify(zero_filled, y, physics, eps=eps, sigma=0.01, seed=seed, attack_budget=6,
                   attack_n=8, **FAST)
    exact = eps * y.flatten(1).norm(dim=1).double()
    assert not cert.abstained.any()
    assert torch.allclose(cert.lower, exact, rtol=1e-4)
    assert (cert.radius >= exact).all() and (cert.lower <= cert.radius).all()
    # (3) the attack's perturbation, a fresh center at y + delta from other draws
    delta = ka.WorstCase(ka.KSpaceL2(eps=eps), budget=6)(zero_filled, y, physics).delta
    fresh = SmoothedModel(zero_filled, 0.01, n=FAST["n_pred"], seed=seed + 100, reference=y)(y + delta, physics)
    moved = (fresh.double() - cert.reconstruction.double()).flatten(1).norm(dim=1)
    assert (moved <= cert.radius).all()


def test_the_certified_center_is_the_smoothed_model_with_the_same_draws():
    """The lower bound compares SmoothedModel(n=n_pred, seed, reference=y) at y + delta with
    the certificate's reconstruction: at delta = 0 the two must be the same tensor."""
    _, y, physics = single_coil(16, batch=2, seed=4)
    net = TinyNet(3)
    cert = certify(net, y, physics, eps=0.005, sigma=0.01, seed=9, **FAST)
    smoothed = SmoothedModel(net, 0.01, n=FAST["n_pred"], batch_size=FAST["batch_size"], seed=9,
                             reference=y)
    with torch.no_grad():
        assert torch.equal(smoothed(y, physics), cert.reconstruction)


def test_the_smoothed_linear_model_moves_by_exactly_the_perturbation():
    _, y, physics = single_coil(16, batch=2, seed=5)
    smoothed = SmoothedModel(zero_filled, sigma=0.02, n=64, seed=1, reference=y)
    delta = ka.KSpaceL2(eps=0.05).sphere(y, physics, generator=torch.Generator().manual_seed(0))
    moved = smoothed(y + delta, physics) - smoothed(y, physics)
    assert torch.allclose(moved, physics.A_adjoint(delta), atol=1e-5)


def test_center_is_the_base_output_of_the_selected_draw():
    """Keyed draws and per-sample masks: the center of row i is f(y_i + std_i M_i g) for the
    selected draw g of row i (masks differ per row here)."""
    _, y, physics = single_coil(16, batch=3, seed=2)
    masks = torch.stack([column_mask(16, every=k) for k in (2, 3, 4)])[:, None].repeat(1, 2, 1, 1)
    physics = dinv.physics.MRI(mask=masks, img_size=(16, 16))
    y = physics.A(physics.A_adjoint(y))
    smoothed = SmoothedModel(zero_filled, sigma=0.01, n=40, batch_size=7, seed=4)
    z = smoothed(y, physics)
    std = noise_std(y, 0.01)
    for i, j in enumerate(smoothed.last_index):
        g = NoiseSource(4, "predict").draws(i, j, 1, tuple(y.shape[1:])).float()
        p = row_physics(physics, i, 1, 3)
        expected = p.A_adjoint(y[i : i + 1] + std[i] * masks[i : i + 1] * g)
        assert torch.allclose(z[i : i + 1], expected, atol=1e-6)


def test_gradients_flow_through_the_selected_draw():
    _, y, physics = single_coil(16, batch=2)
    w = torch.randn(2, 2, 16, 16, generator=torch.Generator().manual_seed(0))
    y = y.clone().requires_grad_(True)
    (SmoothedModel(zero_filled, sigma=0.01, n=16)(y, physics) * w).sum().backward()
    assert torch.allclose(y.grad, physics.A(w), atol=1e-5)  # the adjoint of A^H is A


# ----------------------------------------------------------------------------- abstention
def test_abstains_when_eps_over_sigma_is_too_large():
    _, y, physics = single_coil(16, batch=2)
    top = max_eps_over_sigma(FAST["delta"], 0.005, FAST["n_cert"])
    cert = certify(zero_filled, y, physics, eps=[0.5 * top * 0.01, 1.05 * top * 0.01], sigma=0.01,
                   attack_budget=4, attack_n=4, **FAST)
    assert cert.quantile[1] > 1.0 >= cert.quantile[0]
    assert cert.abstained[:, 1].all() and torch.isnan(cert.radius[:, 1]).all()
    assert not cert.abstained[:, 0].any()
    # no bracket to close where everything abstained: that budget is not attacked
    assert torch.isfinite(cert.lower[:, 0]).all() and torch.isnan(cert.lower[:, 1]).all()
    # the same draws certify any budget afterwards, with the same numbers
    assert torch.equal(cert.radius_at(0.5 * top * 0.01), cert.radius[:, 0])
    assert torch.isnan(cert.radius_at(1.05 * top * 0.01)).all()
    assert "abstained on 2 of 2" in cert.statement


def test_abstains_when_the_center_fails_its_check():
    """A model whose outputs jump between the center's draws and the check's draws: the center's
    ball holds none of the check's outputs, so the check fails and nothing is certified."""
    _, y, physics = single_coil(16, batch=1)
    calls = []

    def drifting(y, physics):
        calls.append(y.shape[0])
        x = physics.A_adjoint(y)
        return x if sum(calls) <= 1 + FAST["n_pred"] else x + 10.0  # f(y), the center's draws

    cert = certify(drifting, y, physics, eps=0.001, sigma=0.01, **{**FAST, "batch_size": 50})
    assert not cert.center_ok[0] and cert.abstained[0] and float(cert.check_fraction[0]) == 0.0
    assert int(cert.forward_evals[0]) == 1 + 2 * FAST["n_pred"]  # no radius draws after a failed check


# ----------------------------------------------------------------------------- seeds, batching
def test_same_seed_same_certificate_different_seed_different():
    _, y, physics = single_coil(16, batch=2)
    net = TinyNet()
    a, b, c = (certify(net, y, physics, eps=0.005, sigma=0.01, seed=s, **FAST) for s in (0, 0, 1))
    assert torch.equal(a.reconstruction, b.reconstruction) and torch.equal(a.radius, b.radius, )
    assert not torch.equal(a.reconstruction, c.reconstruction)
    assert not torch.equal(a.radius, c.radius)


def test_batch_size_does_not_change_the_certificate():
    _, y, physics = single_coil(16, batch=2)
    net = TinyNet(1)
    certs = [certify(net, y, physics, eps=[0.002, 0.01], sigma=0.01, **{**FAST, "batch_size": bs})
             for bs in (1, 37, 300)]
    for other in certs[1:]:
        assert torch.equal(other.abstained, certs[0].abstained)
        assert torch.allclose(other.radius, certs[0].radius, rtol=1e-5, equal_nan=True)
        assert torch.allclose(other.reconstruction, certs[0].reconstruction, atol=1e-5)


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize("kwargs, match", [
    ({"n_pred": 100}, r"n_pred: expected at least 134 .* got 100"),
    ({"n_pred": 100, "delta": 0.05}, r"n_pred: expected at least 1199"),
    ({"n_cert": 0}, r"n_cert: expected an integer >= 1, got 0"),
    ({"attack_budget": 1}, r"attack_budget: expected an integer >= 2, got 1"),
    ({"attack_budget": 3, "eot": 2}, r"attack_budget: expected an integer >= 4, got 3"),
    ({"sigma": 0.0}, r"sigma: expected a finite number > 0, got 0.0"),
    ({"alpha": 1.5}, r"alpha: expected a number in \(0, 1\), got 1.5"),
    ({"delta": 0.6}, r"delta: expected a number in \(0, 0.5\), got 0.6"),
    ({"beta": 1.0}, r"beta: expected >= 2.0 .* got 1.0"),
    ({"eps": -0.1}, r"eps: expected a finite number >= 0, got -0.1"),
    ({"eps": []}, r"eps: expected a float >= 0 or a non-empty sequence"),
    ({"batch_size": 0}, r"batch_size: expected an integer >= 1, got 0"),
    ({"seed": 1.5}, r"seed: expected an int, got float 1.5"),
    ({"attack_n": 0}, r"attack_n: expected an integer >= 1, got 0"),
])
def test_arguments_are_validated(kwargs, match):
    _, y, physics = single_coil(16, batch=1)
    with pytest.raises((ValueError, TypeError), match=match):
        certify(zero_filled, y, physics, **{**FAST, **kwargs})


def test_model_and_data_are_validated():
    _, y, physics = single_coil(16, batch=1)
    with pytest.raises(TypeError, match="model: expected a callable"):
        certify("zero_filled", y, physics, **FAST)
    with pytest.raises(ValueError, match=r"y: expected k-space in deepinv layout"):
        certify(zero_filled, y[:, 0], physics, **FAST)
    with pytest.raises(ValueError, match=r"n: expected an integer >= 1, got 0"):
        SmoothedModel(zero_filled, n=0)


# ----------------------------------------------------------------------------- bracket, shapes
def test_bracket_on_a_nonlinear_model():
    _, y, physics = single_coil(16, batch=2, seed=7)
    cert = certify(TinyNet(2), y, physics, eps=[0.002, 0.01], sigma=0.01, attack_budget=6,
                   attack_n=8, eot=1, **FAST)
    ok = ~cert.abstained
    assert ok.any() and (cert.lower[ok] <= cert.radius[ok]).all() and (cert.lower > 0).all()
    records = cert.to_records()
    assert len(records) == 4 and {"sample", "eps", "sigma", "alpha", "n_pred", "n_cert", "radius",
                                  "radius_rel", "lower", "lower_rel", "abstained", "forward_evals",
                                  "seconds"} <= set(records[0])
    assert records[0]["forward_evals"] > 1 + 2 * FAST["n_pred"] + FAST["n_cert"]  # the attack's too
    assert "SMOOTHED" in cert.statement and "Nothing is certified about the base model" in cert.statement


def test_eot_attack_on_a_resampling_smoothed_model():
    _, y, physics = single_coil(16, batch=1)
    resampling = SmoothedModel(TinyNet(), sigma=0.01, n=4, resample=True)
    assert not torch.equal(resampling(y, physics), resampling(y, physics))
    cert = certify(TinyNet(), y, physics, eps=0.005, sigma=0.01, attack_budget=4, attack_n=4, eot=2,
                   **FAST)
    assert "eot=2" in cert.attack and torch.isfinite(cert.lower).all()


def test_multi_coil():
    _, y, physics = multi_coil(16, batch=2, coils=3)
    cert = certify(zero_filled, y, physics, eps=0.005, sigma=0.01, attack_budget=4, attack_n=4, **FAST)
    assert y.shape == (2, 2, 3, 16, 16) and cert.reconstruction.shape == (2, 2, 16, 16)
    assert cert.radius.shape == (2,) and not cert.abstained.any()
    assert (cert.lower <= cert.radius).all()
    # noise only on measured entries: sqrt(m) with m = 2 x 3 coils x measured positions
    m = 2 * 3 * column_mask(16).sum()
    assert torch.allclose(cert.noise_rel, 0.01 * m.double().sqrt().expand(2))


def test_the_package_is_callable_like_the_function():
    _, y, physics = single_coil(16, batch=1)
    a = kc(zero_filled, y, physics, eps=0.005, **FAST)
    b = certify(zero_filled, y, physics, eps=0.005, **FAST)
    assert isinstance(a, Certificate) and torch.equal(a.radius, b.radius)


# ----------------------------------------------------------------------------- command line
def test_certify_subcommand_writes_csv_and_json(tmp_path, capsys):
    from kspace_attacks.adapters.registry import resolve_model
    from kspace_attacks.certify import command
    from kspace_attacks.data import demo_batch

    parser = argparse.ArgumentParser(prog="kspace-attacks")
    command.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["certify", "zero_filled", "--eps", "0.001", "0.05", "--sigma", "0.001",
                              "--n-pred", "150", "--n-cert", "300", "--delta", "0.25", "--slices", "1",
                              "--attack-budget", "4", "--attack-n", "4", "--batch-size", "150",
                              "--out", str(tmp_path), "--quiet"])
    assert command.run(args, resolve_model=resolve_model, demo_batch=demo_batch) == 0
    with open(tmp_path / "certificate.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["eps"] for r in rows] == ["0.001", "0.05"] and rows[1]["abstained"] == "True"
    meta = json.loads((tmp_path / "certificate.json").read_text())
    assert meta["model"] == "zero_filled" and len(meta["records"]) == 2 and "SMOOTHED" in meta["statement"]
    assert "radius_rel" in capsys.readouterr().out
    with pytest.raises(TypeError, match="resolve_model"):
        command.run(args)


def test_ka_certify_and_the_package_are_one_object_in_any_import_order():
    """``ka.certify(...)`` and ``import kspace_attacks.certify`` both work, whichever comes first
    (a cached function at the top level once made the import return the function)."""
    import subprocess
    import sys

    code = ("import kspace_attacks as ka; f = ka.certify; import kspace_attacks.certify as kc; "
            "assert kc is ka.certify and callable(kc) and kc.Certificate is ka.Certificate")
    for first in ("", "import kspace_attacks.certify; "):
        subprocess.run([sys.executable, "-c", first + code], check=True)
