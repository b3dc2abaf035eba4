"""Physical threat models: closed forms, budgets (property-based), gradients, every attack."""

from __future__ import annotations

import itertools

import deepinv as dinv
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import kspace_attacks as ka
from kspace_attacks.physical.catalog import PHYSICAL_BUDGETS, build_physical
from kspace_attacks.physical.lines import shot_index

from ._physics import multi_coil, single_coil, smooth_coil_maps


def zero_filled(y, physics):
    return physics.A_adjoint(y)


def full_physics(size=8):
    return dinv.physics.MRI(img_size=(size, size))


# ------------------------------------------------------------------------- closed forms
@pytest.mark.parametrize("dx,dy", [(2, 0), (0, -3), (1, 2)])
def test_integer_translation_is_an_image_shift(dx, dy):
    physics = full_physics(8)
    x = torch.rand(1, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    threat = ka.RigidMotion(eps=3.0, shots=1)
    theta = torch.tensor([[[float(dx), float(dy), 0.0]]])
    moved = physics.A_adjoint(threat.apply(physics(x), theta, physics))
    assert torch.allclose(moved, torch.roll(x, (dy, dx), dims=(-2, -1)), atol=1e-5)


def test_translation_uses_the_pixel_size():
    physics = full_physics(8)
    x = torch.rand(1, 2, 8, 8, generator=torch.Generator().manual_seed(1))
    threat = ka.RigidMotion(eps=4.0, shots=1, pixel_mm=2.0)
    moved = physics.A_adjoint(threat.apply(physics(x), torch.tensor([[[4.0, 0.0, 0.0]]]), physics))
    assert torch.allclose(moved, torch.roll(x, 2, dims=-1), atol=1e-5)  # 4 mm = 2 pixels


def test_multicoil_translation_moves_every_coil_image():
    size = 8
    maps = smooth_coil_maps(3, size)
    physics = dinv.physics.MultiCoilMRI(coil_maps=maps, img_size=(size, size))
    x = torch.rand(1, 2, size, size, generator=torch.Generator().manual_seed(2))
    moved = ka.RigidMotion(eps=1.0, shots=1).apply(physics(x), torch.tensor([[[1.0, 0.0, 0.0]]]), physics)
    coil_images = physics.A_adjoint(moved, coil_maps=torch.ones_like(maps))  # not combined
    single = dinv.physics.MRI(img_size=(size, size))
    for c in range(3):
        coil = physics.to_torch_complex(x) * maps[c]
        expected = torch.roll(physics.from_torch_complex(coil), 1, dims=-1)
        got = single.A_adjoint(moved[:, :, c])
        assert torch.allclose(got, expected, atol=1e-5)
    assert coil_images.shape == (1, 2, size, size)


def test_only_the_moved_shot_changes():
    x, y, physics = single_coil(16, batch=1)
    threat = ka.RigidMotion(eps=1.0, shots=4, ordering="sequential")
    theta = threat.zeros(y)
    theta[0, 2, 0] = 1.0
    changed = (threat.apply(y, theta, physics) - y).abs().sum(dim=(0, 1, 2)) > 0
    lines = shot_index(16, 4, "sequential") == 2
    assert not changed[~lines].any() and changed[lines].any()


def test_rotation_needs_a_reference_and_goes_through_it():
    x, y, physics = single_coil(16, batch=2)
    plain = ka.RigidMotion(eps=1.0, shots=2)
    assert float(plain.weights(y)[2]) == 0.0  # no reference: translations only
    theta = plain.sphere(y, physics, generator=torch.Generator().manual_seed(0))
    assert (theta[..., 2] == 0).all()
    threat = plain.with_reference(x)
    theta = torch.zeros(2, 2, 3)
    assert torch.allclose(threat.apply(y, theta, physics), y, atol=1e-6)
    theta[:, :, 2] = 90.0  # a quarter turn of both shots: the whole image rotates
    full = dinv.physics.MRI(img_size=(16, 16))
    turned = full.A_adjoint(threat.replace(degrees_per_mm=90.0).apply(full(x), theta, full))
    assert torch.allclose(turned, torch.rot90(x, 1, dims=(-2, -1)), atol=1e-4) or \
        torch.allclose(turned, torch.rot90(x, -1, dims=(-2, -1)), atol=1e-4)


def test_zero_phase_is_the_identity_and_a_phase_rotation():
    x, y, physics = single_coil(8, batch=1)
    threat = ka.PhaseErrors(eps=0.5, drift=False)
    assert torch.equal(threat.apply(y, threat.zeros(y), physics), y)
    theta = threat.zeros(y)
    theta[0, 0, 0::2], theta[0, 0, 1::2] = 0.3, -0.2  # deepinv's RandomPhaseError pattern
    got = threat.apply(y, theta, physics)
    as_complex = physics.to_torch_complex(y) * torch.exp(1j * theta[:, 0, None, :])
    assert torch.allclose(got, physics.from_torch_complex(as_complex), atol=1e-6)
    assert torch.allclose(got.pow(2).sum(1), y.pow(2).sum(1), atol=1e-6)  # |y| is kept


def test_readout_drift_shifts_along_the_readout():
    # a shift of d pixels along the readout is the phase -2 pi d (k - H/2) / H = -pi d kappa
    physics = full_physics(8)
    x = torch.rand(1, 2, 8, 8, generator=torch.Generator().manual_seed(3))
    threat = ka.PhaseErrors(eps=4.0)
    theta = threat.zeros(physics(x))
    theta[0, 1, :] = -torch.pi  # d = 1 pixel
    moved = physics.A_adjoint(threat.apply(physics(x), theta, physics))
    assert torch.allclose(moved, torch.roll(x, 1, dims=-2), atol=1e-5)


def test_spike_projection_keeps_the_largest_entries():
    x, y, physics = single_coil(16, batch=2)
    threat = ka.Spikes(eps=0.1, count=3)
    d = threat.project(torch.randn_like(y) * 100, y, physics)
    mod = d.pow(2).sum(1).sqrt()
    assert ((mod > 0).flatten(1).sum(1) == 3).all()
    cap = 0.1 * y.pow(2).sum(1).sqrt().flatten(1).amax(1)
    assert torch.allclose(mod.flatten(1).amax(1), cap)
    assert ((mod > 0) <= (ka.sampling_mask(y, physics)[:, 0] > 0)).all()  # measured entries only


def test_lost_lines_project_to_whole_lines():
    x, y, physics = single_coil(16, batch=2)
    threat = ka.LostLines(eps=2.7)
    theta = threat.project(torch.rand(2, 16) * 2 - 0.5, y, physics)
    assert set(theta.unique().tolist()) <= {0.0, 1.0} and (theta.sum(1) <= 2).all()
    measured = ka.sampling_mask(y, physics)[0, 0].amax(0) > 0
    assert (theta[:, ~measured] == 0).all()
    assert torch.equal(threat.sphere(y, physics, torch.Generator().manual_seed(0)).sum(1), torch.tensor([2.0, 2.0]))


def test_coil_map_error_is_bounded_and_only_the_physics_changes():
    x, y, physics = multi_coil(16, batch=1, coils=3)
    threat = ka.CoilMapMismatch(eps=0.1, basis=3)
    theta = threat.sphere(y, physics, generator=torch.Generator().manual_seed(0))
    y_in, told = threat.corrupt(y, theta, physics)
    assert torch.equal(y_in, y)
    rel = told.coil_maps / physics.coil_maps - 1
    assert float(rel.real.abs().max()) <= 0.1 + 1e-5 and float(rel.imag.abs().max()) <= 0.1 + 1e-5
    assert float(rel.abs().max()) > 0.05
    same = threat.corrupt(y, threat.zeros(y), physics)[1]
    assert torch.allclose(same.coil_maps, physics.coil_maps)
    with pytest.raises(ValueError, match="multi-coil"):
        threat.zeros(single_coil(16)[1])


def test_zero_filled_worst_translation_hits_the_budget():
    x, y, physics = single_coil(16, batch=2)
    threat = ka.RigidMotion(eps=0.5, shots=2)
    res = ka.WorstCase(threat, budget=20)(zero_filled, y, physics)
    assert torch.allclose(res.ratio, torch.full((2,), 0.5))
    half = ka.GaussianNoise(threat)(zero_filled, y, physics)  # a random corner, same size
    assert (res.loss >= half.loss).all()


# ------------------------------------------------------------------------- budgets (property)
def _problem(kind: str, coils: int, seed: int):
    if kind == "coil_maps" or coils > 1:
        return multi_coil(16, batch=2, coils=max(coils, 2), seed=seed)
    return single_coil(16, batch=2, seed=seed)


@settings(max_examples=25, deadline=None)
@given(kind=st.sampled_from(sorted(PHYSICAL_BUDGETS)), coils=st.sampled_from([1, 3]),
       eps=st.floats(0.01, 3.0), seed=st.integers(0, 2**16), scale=st.floats(0.1, 100.0))
def test_every_draw_and_projection_respects_the_budget(kind, coils, eps, seed, scale):
    x, y, physics = _problem(kind, coils, seed)
    threat = build_physical(kind, eps)
    g = torch.Generator().manual_seed(seed)
    cap = threat.budget(y).amax(dim=1) * (1 + 1e-5) + 1e-6
    raw = torch.randn(threat.zeros(y).shape, generator=g) * scale
    for theta in (threat.random(y, physics, g), threat.sphere(y, physics, g), threat.project(raw, y, physics)):
        assert theta.shape == threat.zeros(y).shape
        assert (threat.unit_norm(theta).amax(dim=1) <= cap).all()
        assert (threat.ratio(theta, y) <= eps * (1 + 1e-5) + 1e-6).all()
        assert torch.isfinite(threat.apply(y, theta, physics)).all()
    again = threat.project(threat.project(raw, y, physics), y, physics)
    assert torch.allclose(again, threat.project(raw, y, physics))  # a projection is idempotent


@pytest.mark.parametrize("kind", sorted(PHYSICAL_BUDGETS))
def test_zero_parameters_are_the_identity(kind):
    x, y, physics = _problem(kind, 1, 0)
    threat = build_physical(kind)
    y_in, told = threat.corrupt(y, threat.zeros(y), physics)
    assert torch.allclose(y_in, y, atol=1e-6)
    assert torch.allclose(zero_filled(y_in, told), zero_filled(y, physics), atol=1e-5)


# ------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("kind", sorted(PHYSICAL_BUDGETS))
def test_gradient_matches_finite_differences(kind):
    x, y, physics = _problem(kind, 1, 4)
    x, y = x[:1].double(), y[:1].double()
    if hasattr(physics, "coil_maps"):
        physics = dinv.physics.MultiCoilMRI(mask=physics.mask[:1].double(),
                                            coil_maps=physics.coil_maps.to(torch.complex128),
                                            img_size=(16, 16))
    else:
        physics = dinv.physics.MRI(mask=physics.mask[:1].double(), img_size=(16, 16))
    threat = build_physical(kind, 1.0)
    if kind == "motion":
        threat = threat.with_reference(x)
    theta = 0.3 * threat.random(y, physics, torch.Generator().manual_seed(1)).double()
    if kind in ("spikes", "lost_lines"):  # additive / relaxed: any point of the relaxation
        theta = 0.3 * torch.rand(theta.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    target = torch.rand_like(x)

    def objective(t):
        y_in, told = threat.corrupt(y, t, physics)
        return (zero_filled(y_in, told) - target).pow(2).sum()

    assert torch.autograd.gradcheck(objective, (theta.requires_grad_(True),), eps=1e-6, atol=1e-5)


# ------------------------------------------------------------------------- every attack
ATTACKS = {
    "pgd": lambda t: ka.PGD(t, steps=3),
    "pgd_spectral": lambda t: ka.PGD(t, steps=2, restarts=2, start="spectral", spectral_iterations=2),
    "apgd": lambda t: ka.APGD(t, steps=3),
    "worst_case": lambda t: ka.WorstCase(t, budget=12),
    "adam": lambda t: ka.ProjectedAdam(t, max_steps=3),
    "fgm": lambda t: ka.FGM(t),
    "noise": lambda t: ka.GaussianNoise(t, draws=2),
    "eot": lambda t: ka.PGD(t, steps=2, eot=2),
}


@pytest.mark.parametrize("kind,attack", list(itertools.product(sorted(PHYSICAL_BUDGETS), sorted(ATTACKS))))
def test_every_attack_runs_on_every_physical_threat(kind, attack):
    x, y, physics = _problem(kind, 1, 0)
    eps = PHYSICAL_BUDGETS[kind]
    threat = build_physical(kind, torch.tensor([eps[0], eps[2]]))  # a monotone grid of two budgets
    y2 = torch.cat([y[:1], y[:1]])
    res = ATTACKS[attack](threat)(zero_filled, y2, physics)
    assert res.delta.shape == threat.zeros(y2).shape
    assert (res.ratio <= threat.eps_per_sample(y2).float() * (1 + 1e-5) + 1e-6).all()
    assert torch.isfinite(res.loss).all() and (res.loss >= 0).all()
    if attack != "noise":  # the monotone envelope: the larger budget is at least as bad
        assert float(res.loss[1]) >= float(res.loss[0]) - 1e-6
    again = ATTACKS[attack](threat)(zero_filled, y2, physics)
    assert torch.equal(again.delta, res.delta)  # seeded: the same worst case


def test_build_physical_rejects_unknown_settings():
    with pytest.raises(TypeError, match="shots"):
        build_physical("spikes", 0.1, shots=4)
    with pytest.raises(ValueError, match="name"):
        build_physical("earthquake", 1.0)
    with pytest.raises(ValueError, match="theta"):
        x, y, physics = single_coil(16)
        ka.RigidMotion().apply(y, torch.zeros(2, 3), physics)
