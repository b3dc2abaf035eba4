"""APGD: closed-form optima (l2 and l-inf), the checkpoint schedule, contract and validation."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import kspace_attacks as ka
from kspace_attacks.attacks import attack_class
from kspace_attacks.attacks.apgd import apgd_checkpoints, checkpoint_reduce
from kspace_attacks.attacks.base import Problem
from kspace_attacks.threat import sampling_mask

from ._physics import multi_coil, single_coil, zero_filled
from .test_attacks import _weighted_problem


def _optimum(threat, model, y, mask):
    """Closed-form max of ||f(y+d) - f(y)||^2 = ||w M d||^2 (orthonormal FFT, w real, equal
    on real and imaginary parts) over the threat's ball:

    - l2, ||d|| <= b: the whole budget on the sampled entry of largest weight, b^2 max_M w^2;
    - l-inf, |d_k| <= b per complex entry: the entries are independent, each term w_k^2 |d_k|^2
      is largest at full modulus (any phase), so b^2 sum_M w_k^2.
    """
    b = threat.budget(y)[:, 0]
    w = model.w.detach()[0, 0][mask == 1]
    return b.pow(2) * (w.max().pow(2) if threat.norm_name == "l2" else w.pow(2).sum())


@pytest.mark.parametrize("threat", [ka.KSpaceL2(eps=0.05), ka.KSpaceLinf(eps=0.01)])
def test_apgd_reaches_closed_form_optimum(threat):
    model, y, physics, mask = _weighted_problem()
    optimum = _optimum(threat, model, y, mask)
    res = ka.APGD(threat, steps=100)(model, y, physics)
    ratio = res.loss / optimum
    assert (ratio >= 0.98).all(), ratio
    assert (ratio <= 1 + 1e-4).all(), ratio  # cannot beat the optimum
    assert (threat.unit_norm(res.delta) <= threat.budget(y) * (1 + 1e-5)).all()
    assert res.grad_evals == 100 and res.forward_evals == 1 + 1


def test_linf_optimum_is_the_optimum():
    # The l-inf optimum above is attained by full-modulus entries with random phases.
    model, y, physics, mask = _weighted_problem()
    threat = ka.KSpaceLinf(eps=0.01)
    d = threat.sphere(y, physics, generator=torch.Generator().manual_seed(3))
    x_adv = model(threat.apply(y, d, physics), physics)
    value = (x_adv - model(y, physics)).pow(2).flatten(1).sum(1)
    torch.testing.assert_close(value, _optimum(threat, model, y, mask), rtol=1e-4, atol=0)


def test_checkpoints_for_100_steps():
    # p: 0, .22, .41, .57, .70, .80, .87, .93, .99 (1.05 is past the end)
    assert apgd_checkpoints(100) == [0, 22, 41, 57, 70, 80, 87, 93, 99]
    assert apgd_checkpoints(1) == [0]


def _reference_checkpoints(n):
    """The formula in integer hundredths: P_{j+1} = P_j + max(P_j - P_{j-1} - 3, 6)."""
    out, prev, p = [0], 0, 22
    while -(-p * n // 100) < n:
        w = -(-p * n // 100)
        if w > out[-1]:
            out.append(w)
        prev, p = p, p + max(p - prev - 3, 6)
    return out


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=3000))
def test_checkpoints_follow_the_formula(n):
    w = apgd_checkpoints(n)
    assert w == _reference_checkpoints(n)
    assert w[0] == 0 and all(a < b for a, b in zip(w, w[1:], strict=False)) and w[-1] < n


def test_checkpoint_conditions():
    k, ones = 20, torch.ones(3, dtype=torch.bool)
    # condition 1: increased in <= 75 % of the steps (15 of 20), whatever the best did
    increases = torch.tensor([15.0, 16.0, 20.0])
    red = checkpoint_reduce(increases, k, torch.ones(3), torch.zeros(3), ones)
    assert red.tolist() == [True, False, False]
    # condition 2: not reduced last time and no improvement of the best since
    red = checkpoint_reduce(
        torch.tensor([20.0, 20.0, 20.0]), k, torch.tensor([1.0, 1.0, 2.0]), torch.ones(3),
        torch.tensor([False, True, False]),
    )
    assert red.tolist() == [True, False, False]


def _problem(attack, y, physics):
    return Problem(zero_filled, y, physics, attack.threat, attack.loss, zero_filled(y, physics),
                   None, None)


def _flat(x_adv, x_clean, x_true=None, target=None):
    return 0 * x_adv.flatten(1).sum(1)


def test_step_halves_at_every_checkpoint_on_a_flat_loss():
    _, y, physics = single_coil()
    attack = ka.APGD(ka.KSpaceL2(eps=0.05), steps=100, loss=_flat)
    problem = _problem(attack, y, physics)
    etas = attack.run_restart(problem, torch.Generator().manual_seed(0))
    assert etas.shape == (100, 2)
    changes = (torch.nonzero(etas[1:, 0] != etas[:-1, 0]).flatten() + 1).tolist()
    assert changes == apgd_checkpoints(100)[1:]
    for j, w in enumerate([0, *changes]):
        assert (etas[w] == 2.0 / 2**j).all()


def test_step_kept_while_the_loss_keeps_increasing():
    calls = []

    def rising(x_adv, x_clean, x_true=None, target=None):  # larger at every evaluation
        calls.append(None)
        return len(calls) + 0 * x_adv.flatten(1).sum(1)

    _, y, physics = single_coil()
    attack = ka.APGD(ka.KSpaceL2(eps=0.05), steps=50, loss=rising)
    problem = _problem(attack, y, physics)
    etas = attack.run_restart(problem, torch.Generator().manual_seed(0))
    assert (etas == 2.0).all()


def test_rows_are_independent():
    # Row 0 flat (its step halves at every checkpoint) or rising (never halves): row 1, the
    # deviation plus a rising offset (never halves), must follow the same path either way.
    model, y, physics, _ = _weighted_problem()
    y = y[:2]

    def make_loss(rising):
        calls = []

        def loss(x_adv, x_clean, x_true=None, target=None):
            calls.append(None)
            dev = (x_adv - x_clean).pow(2).flatten(1).sum(1)
            offset = torch.tensor([float(len(calls)) if rising else 0.0, float(len(calls))])
            return dev * torch.tensor([0.0, 1.0]) + offset
        return loss

    runs = [ka.APGD(ka.KSpaceL2(eps=0.05), steps=12, loss=make_loss(r))(model, y, physics)
            for r in (False, True)]
    assert torch.equal(runs[0].delta[1], runs[1].delta[1])
    assert torch.equal(runs[0].history[:, 1], runs[1].history[:, 1])


def test_unreduced_rows_follow_plain_momentum_steps():
    # Row 1 always improves (rising offset), so it is never reduced: its iterates must be the
    # momentum recursion with the initial step, whatever happens to row 0 at the checkpoints.
    model, y, physics, _ = _weighted_problem()
    y, threat, steps = y[:2], ka.KSpaceL2(eps=0.05), 12
    x_clean = model(y, physics).detach()
    calls = []

    def loss(x_adv, x_clean, x_true=None, target=None):
        calls.append(None)
        dev = (x_adv - x_clean).pow(2).flatten(1).sum(1)
        return dev * torch.tensor([0.0, 1.0]) + torch.tensor([0.0, float(len(calls))])

    res = ka.APGD(threat, steps=steps, loss=loss)(model, y, physics)
    x = threat.random(y, physics, generator=torch.Generator().manual_seed(0))
    x_prev, scale = x, 2.0 * threat.step_scale(y)
    for k in range(steps):
        d = x.clone().requires_grad_(True)
        value = loss(model(threat.apply(y, d, physics), physics), x_clean)
        (g,) = torch.autograd.grad(value.sum(), d)
        z = threat.project(x + scale * threat.steepest_direction(g), y, physics)
        new = z if k == 0 else threat.project(x + 0.75 * (z - x) + 0.25 * (x - x_prev), y, physics)
        x, x_prev = new, x
    torch.testing.assert_close(res.delta[1], x[1])


@pytest.mark.parametrize(
    "threat",
    [
        ka.KSpaceL2(eps=0.05, per="coil"),
        ka.KSpaceL2(eps=0.05, support="full"),
        ka.KSpaceLinf(eps=0.02, per="coil", support="full"),
    ],
)
def test_apgd_contract_multicoil(threat):
    _, y, physics = multi_coil(coils=3)
    y_before = y.clone()
    res = ka.APGD(threat, steps=8, restarts=2)(zero_filled, y, physics)
    assert torch.equal(y, y_before)
    assert (threat.unit_norm(res.delta) <= threat.budget(y) * (1 + 1e-5)).all()
    if threat.support == "measured":
        mask = sampling_mask(y, physics).expand_as(y)
        assert (res.delta[mask == 0] == 0).all()
    x_adv = zero_filled(res.y_adv, physics)
    torch.testing.assert_close(res.x_adv, x_adv, rtol=1e-5, atol=1e-6)
    deviation = (x_adv - res.x_clean).pow(2).flatten(1).sum(1)
    torch.testing.assert_close(res.loss, deviation, rtol=1e-4, atol=1e-8)
    assert res.grad_evals == 16 and res.history.shape == (16, 2)
    assert (res.history[1:] >= res.history[:-1]).all()


def test_batched_eps_equals_separate_runs():
    model, y, physics, _ = _weighted_problem()
    y = y[:1]
    eps = [0.01, 0.04]
    batched = ka.APGD(ka.KSpaceL2(eps=torch.tensor(eps)), steps=30)
    res = batched(model, y.expand(2, -1, -1, -1).clone(), physics)
    for i, e in enumerate(eps):
        single = ka.APGD(ka.KSpaceL2(eps=e), steps=30)(model, y, physics)
        torch.testing.assert_close(res.loss[i], single.loss[0], rtol=0.02, atol=0)
    torch.testing.assert_close(res.ratio, torch.tensor(eps), rtol=1e-4, atol=1e-7)


def test_same_seed_same_perturbation():
    _, y, physics = single_coil()
    threat = ka.KSpaceL2(eps=0.03)
    a = ka.APGD(threat, steps=6)(zero_filled, y, physics)
    b = ka.APGD(threat, steps=6)(zero_filled, y, physics)
    assert torch.equal(a.delta, b.delta)
    c = ka.APGD(threat, steps=6, seed=1)(zero_filled, y, physics)
    assert not torch.equal(a.delta, c.delta)


def test_registry_repr_and_replace():
    assert attack_class("apgd") is ka.APGD and ka.APGD.name == "apgd"
    atk = ka.APGD(ka.KSpaceLinf(eps=0.02), steps=7, restarts=3, eot=2)
    r = repr(atk)
    assert "steps=7" in r and "restarts=3" in r and "eot=2" in r and "monotone=True" in r
    assert atk.max_grad_evals == 7 * 3 * 2
    new = atk.replace(eps=0.01, steps=5)
    assert new.steps == 5 and new.threat.eps == 0.01 and new.eot == 2 and new.restarts == 3


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(steps=0), r"steps: expected an integer >= 1, got 0"),
        (dict(steps=2.5), r"steps: expected an integer >= 1, got float"),
        (dict(restarts=-1), r"restarts: expected an integer >= 1, got -1"),
        (dict(initial_step=0), r"initial_step: expected a finite number > 0"),
        (dict(momentum=0.0), r"momentum: expected a number in \(0, 1\], got 0.0"),
        (dict(momentum=1.5), r"momentum: expected a number in \(0, 1\]"),
        (dict(rho="high"), r"rho: expected a real number, got str"),
        (dict(rho=2), r"rho: expected a number in \[0, 1\], got 2.0"),
        (dict(eot=0), r"eot: expected an integer >= 1, got 0"),
        (dict(eot="2"), r"eot: expected an integer >= 1, got str '2'"),
        (dict(monotone="yes"), r"monotone: expected a bool, got str 'yes'"),
        (dict(loss="nope"), r"loss: expected a callable .* or one of \['deviation', .*got 'nope'"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        ka.APGD(ka.KSpaceL2(), **kwargs)
