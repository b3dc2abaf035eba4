"""Expectation over transformation: averaged objective, gradient and clean reference; costs."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import kspace_attacks as ka
from kspace_attacks.attacks.base import Problem
from kspace_attacks.losses import ReconDeviation

from ._physics import single_coil, zero_filled


class RandomSign(torch.nn.Module):
    """A stochastic reconstructor: f(y) = A^H y + s * (A^H y)^2 with random signs s per call.

    The squared term makes the gradient depend on the draw; all noise comes from an internal
    generator, so reseeding it replays the same draws.
    """

    def __init__(self, seed: int = 0):
        super().__init__()
        self.g = torch.Generator().manual_seed(seed)

    def reseed(self, seed: int = 0) -> None:
        self.g.manual_seed(seed)

    def forward(self, y, physics):
        x = physics.A_adjoint(y)
        s = torch.randint(0, 2, x.shape, generator=self.g).to(x.dtype) * 2 - 1
        return x + s * x.pow(2)


ALL = [
    lambda **kw: ka.PGD(ka.KSpaceL2(eps=0.05), steps=3, **kw),
    lambda **kw: ka.APGD(ka.KSpaceL2(eps=0.05), steps=3, **kw),
    lambda **kw: ka.ProjectedAdam(ka.KSpaceL2(eps=0.05), max_steps=3, **kw),
    lambda **kw: ka.FGM(ka.KSpaceL2(eps=0.05), **kw),
    lambda **kw: ka.GaussianNoise(ka.KSpaceL2(eps=0.05), draws=2, **kw),
]


def test_gradient_is_the_mean_of_the_draws():
    _, y, physics = single_coil()
    model, threat, loss = RandomSign(), ka.KSpaceL2(eps=0.05), ReconDeviation()
    x_clean = zero_filled(y, physics)
    delta = threat.random(y, physics, generator=torch.Generator().manual_seed(1))
    problem = Problem(model, y, physics, threat, loss, x_clean, None, None, eot=3)
    model.reseed(7)
    value, grad, x = problem.evaluate(delta)
    assert problem.grad_evals == 3 and problem.forward_evals == 0
    model.reseed(7)  # replay the same three draws by hand
    values, grads, xs = [], [], []
    for _ in range(3):
        d = delta.clone().requires_grad_(True)
        xk = model(threat.apply(y, d, physics), physics)
        vk = loss(xk, x_clean)
        (gk,) = torch.autograd.grad(vk.sum(), d)
        values.append(vk.detach()), grads.append(gk), xs.append(xk.detach())
    assert not torch.allclose(grads[0], grads[1])  # the draws really differ
    support = threat.support_mask(y, physics)
    torch.testing.assert_close(grad, torch.stack(grads).mean(0) * support)
    torch.testing.assert_close(value, torch.stack(values).mean(0))
    torch.testing.assert_close(x, torch.stack(xs).mean(0))
    # the mean reconstruction is the one kept for the best iterate
    torch.testing.assert_close(problem.best_x, x)
    torch.testing.assert_close(problem.best_loss, value)


def test_clean_reference_is_the_mean_of_clean_draws():
    _, y, physics = single_coil()
    model = RandomSign()
    model.reseed(3)
    res = ka.FGM(ka.KSpaceL2(eps=0.05), eot=4)(model, y, physics)
    model.reseed(3)
    expected = torch.stack([model(y, physics) for _ in range(4)]).mean(0)
    torch.testing.assert_close(res.x_clean, expected)
    assert res.grad_evals == 4 and res.forward_evals == 4 + 4  # clean + final iterate


def test_fgm_steps_along_the_mean_gradient():
    _, y, physics = single_coil()
    threat = ka.KSpaceL2(eps=0.05)
    model = RandomSign()
    model.reseed(5)
    attack = ka.FGM(threat, eot=3)
    res = attack(model, y, physics)
    # replay: 3 clean draws, 3 gradient draws at FGM's start point
    model.reseed(5)
    x_clean = torch.stack([model(y, physics) for _ in range(3)]).mean(0)
    g0 = torch.Generator().manual_seed(0)
    start = attack.init_scale * threat.sphere(y, physics, generator=g0)
    grads = []
    for _ in range(3):
        d = start.clone().requires_grad_(True)
        v = ReconDeviation()(model(threat.apply(y, d, physics), physics), x_clean)
        grads.append(torch.autograd.grad(v.sum(), d)[0])
    g = torch.stack(grads).mean(0) * threat.support_mask(y, physics)
    expected = threat.ascent_step(torch.zeros_like(y), g, y, physics, 1.0)
    # FGM keeps the better of its start and its step; the step wins by far here
    torch.testing.assert_close(res.delta, expected)


@pytest.mark.parametrize("make", ALL)
def test_eot_one_is_the_default_and_bit_identical(make):
    _, y, physics = single_coil()
    a = make()(zero_filled, y, physics)
    b = make(eot=1)(zero_filled, y, physics)
    assert torch.equal(a.delta, b.delta) and torch.equal(a.loss, b.loss)
    assert "eot=1" in repr(make())


@settings(max_examples=8, deadline=None)
@given(st.integers(min_value=1, max_value=4), st.sampled_from(range(len(ALL))))
def test_counts_scale_with_eot(eot, which):
    _, y, physics = single_coil()
    attack = ALL[which](eot=eot)
    base = ALL[which]()
    res = attack(zero_filled, y, physics)
    ref = base(zero_filled, y, physics)
    assert res.grad_evals == ref.grad_evals * eot
    assert res.forward_evals == ref.forward_evals * eot
    assert attack.max_grad_evals == base.max_grad_evals * eot
    assert res.grad_evals <= attack.max_grad_evals
    if ref.history is not None:  # one history entry per step, not per draw
        assert res.history.shape == ref.history.shape
    # a deterministic model gives the same result, up to the rounding of the average
    torch.testing.assert_close(res.loss, ref.loss, rtol=1e-4, atol=1e-7)


def test_replace_keeps_eot():
    atk = ka.PGD(ka.KSpaceL2(eps=0.05), steps=4, eot=3).replace(eps=0.02)
    assert atk.eot == 3 and atk.max_grad_evals == 12


@pytest.mark.parametrize("make", ALL)
@pytest.mark.parametrize(
    "eot, match",
    [(0, r"eot: expected an integer >= 1, got 0"), ("2", r"eot: expected an integer >= 1, got str"),
     (1.0, r"eot: expected an integer >= 1, got float"), (True, r"eot: expected an integer")],
)
def test_bad_eot(make, eot, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make(eot=eot)
