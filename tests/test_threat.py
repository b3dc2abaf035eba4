"""Projection and sampling invariants of the k-space threat models."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import kspace_attacks as ka
from kspace_attacks.threat import sampling_mask

from ._physics import multi_coil, single_coil

SETTINGS = settings(max_examples=25, deadline=None)
THREATS = [ka.KSpaceL2, ka.KSpaceLinf]


def _data(multicoil: bool, seed: int):
    return multi_coil(seed=seed) if multicoil else single_coil(seed=seed)


threat_args = st.fixed_dictionaries(
    {
        "cls": st.sampled_from(THREATS),
        "eps": st.floats(0.0, 0.5),
        "relative": st.booleans(),
        "per": st.sampled_from(["sample", "coil"]),
        "support": st.sampled_from(["measured", "full"]),
        "multicoil": st.booleans(),
        "seed": st.integers(0, 10_000),
        "scale": st.floats(1e-3, 1e3),
    }
)


def _build(a):
    _, y, physics = _data(a["multicoil"], a["seed"] % 7)
    threat = a["cls"](eps=a["eps"], relative=a["relative"], per=a["per"], support=a["support"])
    g = torch.Generator().manual_seed(a["seed"])
    delta = torch.randn(y.shape, generator=g) * a["scale"]
    return threat, y, physics, delta


@SETTINGS
@given(threat_args)
def test_projection_is_inside_ball(a):
    threat, y, physics, delta = _build(a)
    p = threat.project(delta, y, physics)
    assert (threat.unit_norm(p) <= threat.budget(y) * (1 + 1e-6) + 1e-12).all()


@SETTINGS
@given(threat_args)
def test_projection_is_idempotent(a):
    threat, y, physics, delta = _build(a)
    p = threat.project(delta, y, physics)
    torch.testing.assert_close(threat.project(p, y, physics), p, rtol=1e-6, atol=1e-9)


@SETTINGS
@given(threat_args)
def test_measured_support_is_zero_off_mask(a):
    a = {**a, "support": "measured"}
    threat, y, physics, delta = _build(a)
    mask = sampling_mask(y, physics).expand_as(y)
    for d in (threat.project(delta, y, physics), threat.random(y, physics), threat.sphere(y, physics)):
        assert (d[mask == 0] == 0).all()


@SETTINGS
@given(threat_args)
def test_points_inside_ball_unchanged(a):
    threat, y, physics, delta = _build(a)
    inside = threat.random(y, physics, generator=torch.Generator().manual_seed(a["seed"])) * 0.9
    torch.testing.assert_close(threat.project(inside, y, physics), inside)


@SETTINGS
@given(threat_args)
def test_random_and_sphere_respect_budget(a):
    threat, y, physics, _ = _build(a)
    budget = threat.budget(y)
    r = threat.random(y, physics, generator=torch.Generator().manual_seed(1))
    s = threat.sphere(y, physics, generator=torch.Generator().manual_seed(1))
    assert (threat.unit_norm(r) <= budget * (1 + 1e-6) + 1e-12).all()
    torch.testing.assert_close(threat.unit_norm(s), budget, rtol=1e-5, atol=1e-9)


def test_l2_projection_matches_closed_form():
    _, y, physics = single_coil()
    threat = ka.KSpaceL2(eps=0.1, support="full")
    delta = torch.randn_like(y)
    p = threat.project(delta, y, physics)
    expected = delta * (0.1 * y.flatten(1).norm(dim=1) / delta.flatten(1).norm(dim=1)).view(-1, 1, 1, 1)
    torch.testing.assert_close(p, expected)


def test_per_coil_budget_uses_each_coils_norm():
    _, y, physics = multi_coil(coils=3)
    y = y * torch.tensor([1.0, 10.0, 100.0]).view(1, 1, 3, 1, 1)  # very different coil energies
    threat = ka.KSpaceL2(eps=0.05, per="coil")
    b = threat.budget(y)
    assert b.shape == (2, 3)
    coil_norms = y.transpose(1, 2).flatten(2).norm(dim=2)
    torch.testing.assert_close(b, 0.05 * coil_norms)
    s = threat.sphere(y, physics)
    torch.testing.assert_close(threat.unit_norm(s), b, rtol=1e-5, atol=0)


def test_absolute_budget_ignores_y_scale():
    _, y, physics = single_coil()
    threat = ka.KSpaceL2(eps=0.3, relative=False)
    torch.testing.assert_close(threat.budget(y), threat.budget(100 * y))
    torch.testing.assert_close(threat.budget(y), torch.full((2, 1), 0.3))


def test_per_sample_eps_tensor():
    _, y, physics = single_coil(batch=3)
    eps = torch.tensor([0.0, 0.01, 0.08])
    threat = ka.KSpaceL2(eps=eps)
    s = threat.sphere(y, physics)
    torch.testing.assert_close(threat.ratio(s, y), eps.to(y.dtype), rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="eps"):
        ka.KSpaceL2(eps=torch.tensor([0.1, 0.2])).budget(y)


def test_random_is_uniform_in_ball_radius_distribution():
    # In d dimensions the radius of a uniform point has CDF r^d: in tiny dimensions the
    # radius must spread out (a sphere sampler would put every radius at the budget).
    import deepinv as dinv

    mask = torch.zeros(4, 4)
    mask[0, 0] = 1  # one complex entry: d = 2
    physics = dinv.physics.MRI(mask=mask, img_size=(4, 4))
    y = physics(torch.rand(4000, 2, 4, 4, generator=torch.Generator().manual_seed(0)))
    threat = ka.KSpaceL2(eps=1.0, relative=False)
    r = threat.unit_norm(threat.random(y, physics, generator=torch.Generator().manual_seed(0)))[:, 0]
    # For d = 2: P(r <= 0.5) = 0.25, E[r] = 2/3.
    assert abs((r <= 0.5).float().mean().item() - 0.25) < 0.03
    assert abs(r.mean().item() - 2 / 3) < 0.02


def test_same_generator_same_draw():
    _, y, physics = single_coil()
    threat = ka.KSpaceL2(eps=0.05)
    a = threat.random(y, physics, generator=torch.Generator().manual_seed(3))
    b = threat.random(y, physics, generator=torch.Generator().manual_seed(3))
    c = threat.random(y, physics, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_linf_bounds_complex_modulus():
    _, y, physics = single_coil()
    threat = ka.KSpaceLinf(eps=0.01)
    p = threat.project(10 * torch.randn_like(y), y, physics)
    mod = p.pow(2).sum(1).sqrt()
    bound = 0.01 * y.pow(2).sum(1).sqrt().flatten(1).amax(1)
    assert (mod.flatten(1).amax(1) <= bound * (1 + 1e-6)).all()
    # a sign-like perturbation saturates the bound on every supported entry
    s = threat.sphere(y, physics)
    mask = sampling_mask(y, physics)[:, 0]
    torch.testing.assert_close(s.pow(2).sum(1).sqrt()[mask.expand(2, -1, -1) == 1].max(), bound.max())


def test_full_support_is_masked_when_applied():
    _, y, physics = single_coil()
    threat = ka.KSpaceL2(eps=0.05, support="full")
    d = threat.sphere(y, physics)
    mask = sampling_mask(y, physics).expand_as(y)
    assert (d[mask == 0] != 0).any()  # lives on the full grid ...
    y_adv = threat.apply(y, d, physics)
    assert torch.equal(y_adv[mask == 0], y[mask == 0])  # ... but only sampled entries reach f


def test_repr_lists_hyperparameters():
    r = repr(ka.KSpaceL2(eps=0.02, per="coil", support="full"))
    assert "eps=0.02" in r and "per='coil'" in r and "support='full'" in r
