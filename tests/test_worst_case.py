"""WorstCase and attack starts: two-basin optimum, spectral start, budgets, warm starts, seeds."""

from __future__ import annotations

import deepinv as dinv
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import kspace_attacks as ka
from kspace_attacks.attacks.base import Problem
from kspace_attacks.attacks.starts import spectral_directions, warm_start
from kspace_attacks.attacks.worst_case import plan_for
from kspace_attacks.losses import ReconDeviation
from kspace_attacks.result import AttackResult

from ._physics import column_mask, multi_coil, single_coil, zero_filled
from .test_attacks import WeightedLinear

C1, C2 = 2.0, 1.5  # gains of the strong and the weak basin


class TwoBasins(torch.nn.Module):
    """f(y) = c1 relu(a) e1 + c2 relu(-a) e2 with a = <y - y0, u>, u a unit vector on the mask.

    The deviation is c1^2 relu(a)^2 + c2^2 relu(-a)^2 with a = <delta, u>: over the l2 ball of
    radius b two strict local maxima, delta = +b u (value c1^2 b^2, global) and -b u (c2^2 b^2);
    gradient ascent never crosses a = 0, so the sign of a at the start decides the basin.
    """

    def __init__(self, y0, physics, seed=1):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        u = torch.randn(1, *y0.shape[1:], generator=g) * ka.sampling_mask(y0, physics)
        self.y0, self.u = y0, u / u.norm()
        self.e = torch.zeros(2, 1, *y0.shape[1:])  # two one-pixel output images
        self.e[0, 0, 0, 0, 0] = self.e[1, 0, 0, 0, 1] = 1.0

    def forward(self, y, physics):
        a = ((y - self.y0) * self.u).flatten(1).sum(1).reshape(-1, 1, 1, 1)
        return C1 * torch.relu(a) * self.e[0] + C2 * torch.relu(-a) * self.e[1]


def _two_basins(size=16):
    _, y, physics = single_coil(size=size, batch=2)
    return TwoBasins(y, physics), y, physics


def test_worst_case_finds_the_global_of_two_basins():
    model, y, physics = _two_basins()
    threat = ka.KSpaceL2(eps=0.05)
    best = C1**2 * threat.budget(y)[:, 0].pow(2)  # closed-form global maximum
    weak = 0
    for seed in range(8):
        single = ka.APGD(threat, steps=20, seed=seed)(model, y, physics).loss / best
        weak += int((single < 0.6).sum())  # ended at the weak maximum, c2^2 / c1^2 = 0.5625
        res = ka.WorstCase(threat, budget=60, seed=seed)(model, y, physics)
        ratio = res.loss / best
        assert (ratio >= 0.99).all() and (ratio <= 1 + 1e-5).all(), (seed, ratio)
        assert res.grad_evals <= 60 and (res.ratio <= 0.05 + 1e-6).all()
        assert (res.loss >= res.start_best * (1 - 1e-6)).all()
        spread = res.restart_spread
        assert ((spread >= 0) & (spread <= 1)).all()
    assert weak >= 3  # a single uniform-start run is a matter of luck here
    # APGD's spectral start takes the top singular vector with both signs: one per basin
    two = ka.APGD(threat, steps=8, restarts=2, start="spectral", monotone=False)(model, y, physics)
    torch.testing.assert_close(two.start_losses.sort(dim=1).values / best[:, None],
                               torch.tensor([[C2**2 / C1**2, 1.0]] * 2), rtol=1e-4, atol=0)


def test_restarts_are_independent_draws():
    model, y, physics = _two_basins()
    threat = ka.KSpaceL2(eps=0.05)
    one = ka.APGD(threat, steps=6, restarts=1, seed=3, monotone=False)(model, y, physics)
    three = ka.APGD(threat, steps=6, restarts=3, seed=3, monotone=False)(model, y, physics)
    assert three.start_losses.shape == (2, 3) and three.n_starts == 3 and one.n_starts == 1
    assert torch.equal(three.start_losses[:, 0], one.start_losses[:, 0])
    assert torch.equal(three.loss, three.start_losses.amax(dim=1))
    assert torch.equal(three.start_best, three.loss)
    # different starts end in different basins on this nonlinear model
    assert (three.start_losses.amax(1) > 1.5 * three.start_losses.amin(1)).any(), three.start_losses
    assert (one.restart_spread == 0).all()
    # restart 1 starts from the same draw however many steps restart 0 took
    seen = {}
    for steps in (2, 5):
        calls = []
        spy = lambda y, p, calls=calls: calls.append(y) or model(y, p)  # noqa: E731
        ka.APGD(threat, steps=steps, restarts=2, seed=3)(spy, y, physics)
        seen[steps] = calls[1 + steps + 1]  # after the clean call, restart 0's steps, last iterate
    assert torch.equal(seen[2], seen[5])


def _weighted8(seed=0):
    """WeightedLinear on 8x8 with a unique largest weight: real part of one sampled entry."""
    g = torch.Generator().manual_seed(seed)
    mask = column_mask(8, every=2, center=2)
    physics = dinv.physics.MRI(mask=mask, img_size=(8, 8))
    y = physics(torch.rand(2, 2, 8, 8, generator=g))
    w = 1 + 0.5 * torch.rand(1, 2, 8, 8, generator=g)
    assert mask[3, 2] == 1
    w[0, 0, 3, 2], w[0, 1, 3, 2] = 3.0, 1.5  # the imaginary part of that entry is not as strong
    return WeightedLinear(w), y, physics


def test_spectral_direction_on_a_linear_model():
    model, y, physics = _weighted8()
    threat = ka.KSpaceL2(eps=0.05)
    b = threat.budget(y)[:, 0]
    x_clean = model(y, physics).detach()
    problem = Problem(model, y, physics, threat, ReconDeviation(), x_clean, None, None)
    dirs, gains = spectral_directions(problem, 2, 8, torch.Generator().manual_seed(0))
    assert dirs.shape == (2, *y.shape) and gains.shape == (2, 2)
    assert problem.grad_evals == 2 * 8
    # ||J d|| = ||w d|| (orthonormal FFT): the top right singular vector is that entry's real part
    e = torch.zeros_like(y)
    e[:, 0, 3, 2] = 1.0
    cos = (dirs[0] * e).flatten(1).sum(1) / dirs[0].flatten(1).norm(dim=1)
    assert (cos.abs() >= 0.999).all(), cos
    torch.testing.assert_close(threat.unit_norm(dirs[0])[:, 0], torch.ones(2))
    torch.testing.assert_close(gains[0], 3.0 * b, rtol=1e-3, atol=0)
    assert (gains[1] < gains[0]).all()
    optimum = 9.0 * b.pow(2)
    attack = ka.APGD(threat, steps=1, start="spectral", spectral_iterations=8)
    res = attack(model, y, physics)
    assert (res.loss >= 0.999 * optimum).all() and (res.loss <= optimum * (1 + 1e-4)).all()
    assert res.grad_evals == attack.max_grad_evals == 1 + 8


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 3000), st.sampled_from(["default", "strong"]), st.integers(1, 3))
def test_plan_fits_and_uses_the_budget(budget, preset, eot):
    if budget < 2 * eot:
        return
    plan = plan_for(budget, preset, eot)
    cost = plan.cost(eot)
    assert cost <= budget
    assert budget - cost < eot * (plan.keep[-1] + 1)  # the last round takes the remainder
    assert plan.starts >= 1 and min(plan.rounds) >= 1 and plan.keep[0] == plan.starts
    attack = ka.WorstCase(ka.KSpaceL2(eps=0.05), budget=budget, preset=preset, eot=eot)
    assert attack.max_grad_evals <= budget


@pytest.mark.parametrize("preset", ["default", "strong"])
@pytest.mark.parametrize("eot", [1, 2])
def test_worst_case_stays_within_budget(preset, eot):
    _, y, physics = single_coil(size=16, batch=1)
    for budget in [2, 3, 7, 20, 41, 100]:
        if budget < 2 * eot:
            with pytest.raises(ValueError, match="budget"):
                ka.WorstCase(ka.KSpaceL2(eps=0.05), budget=budget, preset=preset, eot=eot)
            continue
        attack = ka.WorstCase(ka.KSpaceL2(eps=0.05), budget=budget, preset=preset, eot=eot)
        res = attack(zero_filled, y, physics)
        assert res.grad_evals <= attack.max_grad_evals <= budget, (budget, res.grad_evals)
        assert res.n_starts == attack.plan.starts
        plan, extra = attack.plan, attack._cross_steps  # spectral and second-objective costs
        spectral = plan.spectral * plan.spectral_iterations
        assert res.history.shape[0] * eot == res.grad_evals - eot * (spectral + extra)


@pytest.mark.parametrize("make", [ka.APGD, ka.PGD])
def test_spectral_start_cost_is_counted(make):
    _, y, physics = single_coil(size=8, batch=2)
    attack = make(ka.KSpaceL2(eps=0.05), steps=5, restarts=3, start="spectral",
                  spectral_iterations=3, eot=2)
    assert attack.max_grad_evals == 5 * 3 * 2 + 3 * 2 * 2
    assert attack(zero_filled, y, physics).grad_evals == attack.max_grad_evals
    adam = ka.ProjectedAdam(ka.KSpaceL2(eps=0.05), max_steps=4, start="spectral",
                            spectral_iterations=3)
    assert adam.max_grad_evals == 4 + 3 and adam(zero_filled, y, physics).grad_evals <= 7


def test_warm_start_scales_the_next_smaller_budget():
    _, y1, physics = single_coil(size=8, batch=2)
    # rows 0-2: one sample at budgets 0.01, 0.04, 0.02; row 3: another sample at 0.03
    y = torch.cat([y1[:1].repeat(3, 1, 1, 1), y1[1:]])
    threat = ka.KSpaceL2(eps=torch.tensor([0.01, 0.04, 0.02, 0.03]))
    d = 3 * torch.randn(y.shape, generator=torch.Generator().manual_seed(0))  # outside the balls
    w = warm_start(d, y, physics, threat)
    project = threat.project
    torch.testing.assert_close(w[0], project(d, y, physics)[0])  # no smaller budget: its own
    torch.testing.assert_close(w[2], project(2 * d[[0, 0, 0, 0]], y, physics)[2])  # 0.02 <- 0.01
    torch.testing.assert_close(w[1], project(2 * d[[2, 2, 2, 2]], y, physics)[1])  # 0.04 <- 0.02
    torch.testing.assert_close(w[3], project(d, y, physics)[3])  # other sample: not mixed
    assert (threat.unit_norm(w) <= threat.budget(y) * (1 + 1e-6)).all()
    # inside the balls: exactly the doctest's property, 2x the smaller row's delta
    s = threat.sphere(y, physics, generator=torch.Generator().manual_seed(1))
    ws = warm_start(s, y, physics, threat)
    torch.testing.assert_close(ws[2], 2 * s[0])
    torch.testing.assert_close(ws[1], 2 * s[2])
    # explicit groups: every row its own sample, nothing is taken over
    own = warm_start(s, y, physics, threat, groups=torch.arange(4))
    torch.testing.assert_close(own, s)


def test_worst_case_is_deterministic_and_in_the_ball():
    model, y, physics = _two_basins()
    threat = ka.KSpaceL2(eps=0.05)
    a = ka.WorstCase(threat, budget=30, seed=5)(model, y, physics)
    b = ka.WorstCase(threat, budget=30, seed=5)(model, y, physics)
    assert torch.equal(a.delta, b.delta) and torch.equal(a.start_losses, b.start_losses)
    c = ka.WorstCase(threat, budget=30, seed=6)(zero_filled, y, physics)
    d = ka.WorstCase(threat, budget=30, seed=7)(zero_filled, y, physics)
    assert not torch.equal(c.delta, d.delta)
    _, ym, pm = multi_coil(size=8, batch=2, coils=3)
    for t in [ka.KSpaceLinf(eps=0.02, per="coil", support="full"),
              ka.KSpaceL2(eps=0.05, per="coil")]:
        res = ka.WorstCase(t, budget=24)(zero_filled, ym, pm)
        assert (res.ratio <= t.eps + 1e-6).all()
        assert (t.unit_norm(res.delta) <= t.budget(ym) * (1 + 1e-5)).all()
        assert res.grad_evals <= 24 and (res.loss > 0).all()


def test_eps_grid_warm_and_monotone():
    _, y1, physics = single_coil(size=16, batch=1)
    y = y1.repeat(3, 1, 1, 1)  # one sample at budgets 0.02, 0 and 0.04: warm starts and envelope
    model = TwoBasins(y, physics)
    threat = ka.KSpaceL2(eps=torch.tensor([0.02, 0.0, 0.04]))
    res = ka.WorstCase(threat, budget=40)(model, y, physics)
    assert torch.isfinite(res.delta).all() and res.loss[1] == 0
    assert res.grad_evals <= 40 and (res.ratio <= threat.eps + 1e-6).all()
    assert res.n_starts == ka.WorstCase(threat, budget=40).plan.starts
    b = threat.budget(y)[:, 0]
    assert (res.loss[[0, 2]] >= 0.99 * C1**2 * b[[0, 2]].pow(2)).all()


def test_restart_spread_bounds():
    t = torch.zeros(5, 1)

    def result(losses):
        return AttackResult(t, t, t, t, t[:, 0], t[:, 0], t[:, 0], 0, 0, 0.0, start_losses=losses)

    losses = torch.rand(5, 4, generator=torch.Generator().manual_seed(0))
    many, single, none = result(losses), result(losses[:, :1]), result(None)
    assert ((many.restart_spread >= 0) & (many.restart_spread <= 1)).all() and many.n_starts == 4
    assert (single.restart_spread == 0).all() and single.n_starts == 1
    assert none.n_starts == 0 and none.restart_spread is None


def test_validation():
    threat = ka.KSpaceL2(eps=0.05)
    with pytest.raises(ValueError, match="start"):
        ka.APGD(threat, start="bogus")
    with pytest.raises(ValueError, match="start"):
        ka.PGD(threat, start="bogus")
    with pytest.raises(ValueError, match="budget"):
        ka.WorstCase(threat, budget=1)
    with pytest.raises(ValueError, match="preset"):
        ka.WorstCase(threat, preset="x")
    with pytest.raises(ValueError, match="start"):
        ka.ProjectedAdam(threat, start="zero")
    with pytest.raises(ValueError, match="budget"):
        ka.WorstCase(threat, budget=5, eot=3)  # fewer than 2 steps of eot draws
    assert ka.attacks.ATTACKS["worst_case"] is ka.WorstCase
    assert ka.WorstCase(threat, budget=40).replace(steps=80, eps=0.02).budget == 80
    _, y, physics = single_coil(size=8, batch=2)
    with pytest.raises(ValueError, match="start"):
        ka.APGD(threat, steps=2, start=torch.zeros(1, 2, 8, 8))(zero_filled, y, physics)


def test_strong_preset_with_a_second_objective():
    model, y, physics = _two_basins()
    attack = ka.WorstCase(ka.KSpaceL2(eps=0.05), preset="strong", loss="deviation", budget=100)
    assert attack._cross is not None  # SSIM joins as a candidate
    res = attack(lambda y, p: zero_filled(y, p) + model(y, p), y, physics)
    assert res.grad_evals <= 100 and res.n_starts == attack.plan.starts
    assert attack._cross_steps == 10 and res.grad_evals == attack.max_grad_evals  # SSIM run spent
    assert (res.ratio <= 0.05 + 1e-6).all() and (res.loss > 0).all()


@pytest.mark.parametrize("sigma", [1e-4, 1e-3])
def test_spectral_start_of_a_stochastic_model_with_eot_uses_a_secant(sigma):
    """With eot > 1 the finite difference is taken at a tenth of the budget, so the model's own
    output noise does not swamp the direction (at 1e-3 budgets it gave |cos| 0.43, gain 18x)."""

    mask = torch.zeros(8, 8)
    mask[:, ::2] = 1
    physics = dinv.physics.MRI(mask=mask, img_size=(8, 8))
    y = physics(torch.rand(1, 2, 8, 8, generator=torch.Generator().manual_seed(0)))
    w = torch.ones(1, 2, 8, 8)
    w[0, 0, 3, 2] = 3.0
    noise = torch.Generator().manual_seed(1)

    def model(y, p):
        return p.A_adjoint(w * y) + sigma * torch.randn(1, 2, 8, 8, generator=noise)

    threat = ka.KSpaceL2(eps=0.05)
    b = threat.budget(y)[0, 0]
    x_clean = sum(model(y, physics) for _ in range(4)) / 4
    problem = Problem(model, y, physics, threat, ReconDeviation(), x_clean, None, None, eot=4)
    d, gains = spectral_directions(problem, 1, 8, torch.Generator().manual_seed(0))
    assert d[0, 0, 0, 3, 2].abs() >= 0.99
    assert abs(float(gains[0, 0] / (3 * b)) - 1) <= 0.05


def test_pgd_random_start_false_contradicts_another_start():
    with pytest.raises(ValueError, match="random_start"):
        ka.PGD(ka.KSpaceL2(eps=0.05), start="spectral", random_start=False)
    assert ka.PGD(ka.KSpaceL2(eps=0.05), start="zero", random_start=False).max_grad_evals == 50


# ------------------------------------------------------------------------- issue: flat objectives, groups
def test_curvature_start_finds_the_top_eigenvector_of_a_quadratic_objective():
    from kspace_attacks.attacks.base import Problem
    from kspace_attacks.attacks.starts import curvature_directions

    from ._physics import single_coil

    x, y, physics = single_coil(16, batch=1)
    p = (0, 5, 9)  # one real pixel weighted 200x: a rank-one spike on top of the identity

    class Quadratic:
        needs = ()

        def __call__(self, x_adv, x_clean, x_true=None, target=None):
            d = x_adv - x_clean
            return d.pow(2).flatten(1).sum(1) + 200 * d[:, p[0], p[1], p[2]].pow(2)

    model = lambda y, physics: physics.A_adjoint(y)  # noqa: E731 - linear: J = A^H on the support
    threat = ka.KSpaceL2(eps=0.05)
    problem = Problem(model, y, physics, threat, Quadratic(), model(y, physics), None, None)
    dirs, gains = curvature_directions(problem, count=2, iterations=6, generator=torch.Generator().manual_seed(0))
    d = torch.zeros_like(y, requires_grad=True)  # the known top eigenvector: J^T e_p
    (top,) = torch.autograd.grad(model(y + ka.sampling_mask(y, physics) * d, physics)[0, p[0], p[1], p[2]], d)
    cos = (dirs[0] * top).sum() / (dirs[0].norm() * top.norm())
    assert abs(float(cos)) >= 0.99
    assert float(gains[0, 0]) > 10 * float(gains[1, 0])  # the spike's eigenvalue dominates
    assert problem.grad_evals == 2 * 2 * 6


def test_groups_given_to_an_attack_separate_identical_rows():
    from ._physics import single_coil

    x, y, physics = single_coil(16, batch=1)
    y2 = torch.cat([y, y])
    model = lambda y, physics: physics.A_adjoint(y)  # noqa: E731

    def peaked(x_adv, x_clean, x_true=None, target=None):  # worst at ||change|| = the small budget
        return -(((x_adv - x_clean).flatten(1).norm(dim=1) - radius) ** 2)

    threat = ka.KSpaceL2(eps=torch.tensor([0.25, 0.5]))  # exact in binary: source_eps compares exactly
    radius = 0.25 * float(y.norm())
    noise = ka.GaussianNoise(threat, loss=peaked, monotone=True)
    pooled = noise(model, y2, physics)  # bit-equal rows: one sample, the envelope pools them
    assert pooled.source_eps.tolist() == [0.25, 0.25]
    apart = noise(model, y2, physics, groups=["a", "b"])  # two samples that happen to be equal
    assert apart.source_eps.tolist() == [0.25, 0.5]
    assert noise(model, y2, physics, groups=[7, 7]).source_eps.tolist() == [0.25, 0.25]
    with pytest.raises(ValueError, match="groups: expected one sample id per row"):
        noise(model, y2, physics, groups=[1])


def test_unreliable_fires_when_the_cap_is_too_small_and_clears_when_it_is_enough():
    model, y, physics = _two_basins()
    threat = ka.KSpaceL2(eps=0.05)
    best = C1**2 * threat.budget(y)[:, 0].pow(2)
    fixed = ka.WorstCase(threat, budget=60)(model, y, physics)
    assert fixed.unreliable is None  # a fixed budget is not assessed
    tight = ka.WorstCase(threat, budget=60, max_budget=60)(model, y, physics)
    assert tight.unreliable.all()  # one run: nothing confirms its worst case
    enough = ka.WorstCase(threat, budget=60, max_budget=600)(model, y, physics)
    assert not enough.unreliable.any() and enough.grad_evals <= 600
    assert torch.allclose(enough.loss / best, torch.ones(2), atol=1e-3)  # settled on the global
    assert "max_budget=600" in repr(enough.attack) or "max_budget=600" in enough.attack
    with pytest.raises(ValueError, match="max_budget: expected at least budget"):
        ka.WorstCase(threat, budget=60, max_budget=10)


def test_flat_objectives_get_the_curvature_start_within_the_budget():
    threat = ka.KSpaceL2(eps=0.05)
    assert ka.WorstCase(threat, loss="ssim").plan.curvature == 0  # opt-in (see the class docstring)
    on = ka.WorstCase(threat, loss="ssim", curvature=True)
    assert on.plan.curvature == 1 and "curvature=True" in repr(on)
    assert on.replace(budget=60).curvature is True
    with pytest.raises(ValueError, match="not flat at the clean point"):
        ka.WorstCase(threat, curvature=True)  # the deviation: its Jacobian start is its curvature
    x, y, physics = single_coil(16, batch=2)
    atk = ka.WorstCase(threat, budget=60, loss="ssim", curvature=True)
    res = atk(zero_filled, y, physics)
    assert atk.plan.curvature == 1 and res.grad_evals <= 60 and res.n_starts == atk.plan.starts >= 4
