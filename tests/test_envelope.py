"""Monotone worst case over a budget grid: rows of one sample reuse smaller budgets' results."""

from __future__ import annotations

import deepinv as dinv
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import kspace_attacks as ka
from kspace_attacks.attacks.base import Problem, monotone_winners
from kspace_attacks.losses import ReconDeviation, TargetedLoss

from ._physics import multi_coil, single_coil, zero_filled

EPS = [0.01, 0.02, 0.05, 0.1]


def _grid(samples=2):
    """Each sample repeated over EPS (rows sample-major), with a target 0.02 ||y|| away in
    k-space: the targeted loss peaks at eps = 0.02 and overshoots beyond."""
    _, y, physics = single_coil(batch=samples)
    g = torch.Generator().manual_seed(1)
    u = torch.randn(y.shape, generator=g) * ka.KSpaceL2().support_mask(y, physics)
    t = ka.KSpaceL2(eps=0.02).steepest_direction(u) * ka.KSpaceL2(eps=0.02).step_scale(y)
    target = zero_filled(y + t, physics)
    n = len(EPS)
    rows = lambda a: a.repeat_interleave(n, 0)  # noqa: E731  bit-equal copies per sample
    return rows(y), physics, rows(target), torch.tensor(EPS * samples, dtype=torch.float64)


def _overshooting_pgd(eps, monotone=True):
    # One full-budget step from 0 along the gradient: larger budgets overshoot the target.
    return ka.PGD(ka.KSpaceL2(eps=eps), steps=1, step_size=1.0, random_start=False,
                  loss=TargetedLoss(), monotone=monotone)


def test_larger_budget_reuses_the_better_smaller_one():
    y, physics, target, eps = _grid()
    own = _overshooting_pgd(eps, monotone=False)(zero_filled, y, physics, target=target)
    res = _overshooting_pgd(eps)(zero_filled, y, physics, target=target)
    own_loss, loss = own.loss.view(2, 4), res.loss.view(2, 4)
    # the construction: the own runs are not monotone in eps ...
    assert (own_loss[:, 2] < own_loss[:, 1]).all() and (own_loss[:, 3] < own_loss[:, 1]).all()
    # ... the envelope is, and never below the own run
    assert (loss[:, 1:] >= loss[:, :-1]).all() and (res.loss >= own.loss).all()
    assert res.source_eps.view(2, 4).tolist() == [[0.01, 0.02, 0.02, 0.02]] * 2
    assert own.source_eps is None
    torch.testing.assert_close(res.eps, eps)
    # the returned perturbation is the smaller budget's: its ratio, reconstruction and loss
    torch.testing.assert_close(res.ratio, res.source_eps.float(), rtol=1e-4, atol=1e-7)
    x_adv = zero_filled(res.y_adv, physics)
    torch.testing.assert_close(res.x_adv, x_adv)
    torch.testing.assert_close(res.loss, TargetedLoss()(x_adv, res.x_clean, target=target))
    # no extra model calls
    assert (res.grad_evals, res.forward_evals) == (own.grad_evals, own.forward_evals)


def test_samples_are_not_pooled_across():
    y, physics, target, eps = _grid()
    # second sample at the smaller budgets only: the first sample's rows must not help it
    res = _overshooting_pgd(eps)(zero_filled, y, physics, target=target)
    first = _overshooting_pgd(eps[:4])(zero_filled, y[:4], physics, target=target[:4])
    torch.testing.assert_close(res.loss[:4], first.loss)
    assert torch.equal(res.delta[:4], first.delta)


def test_rows_with_different_masks_are_not_pooled():
    y, physics_a, target, eps = _grid(samples=1)
    physics_b = dinv.physics.MRI(mask=torch.ones(16, 16), img_size=(16, 16))
    masks = torch.stack([physics_a.mask[0]] * 2 + [physics_b.mask[0]] * 2)
    physics = dinv.physics.MRI(mask=masks, img_size=(16, 16))
    res = _overshooting_pgd(eps)(zero_filled, y, physics, target=target)
    # the same as attacking the rows of each mask on their own
    for rows, ph in ((slice(0, 2), physics_a), (slice(2, 4), physics_b)):
        alone = _overshooting_pgd(eps[rows])(zero_filled, y[rows], ph, target=target[rows])
        assert torch.equal(res.source_eps[rows], alone.source_eps)
        torch.testing.assert_close(res.loss[rows], alone.loss)
    assert (res.source_eps[2:] >= 0.05).all()  # never the other mask's rows


class PerRowNoise(torch.nn.Module):
    """Reconstructs equal rows differently (like a sampler with per-row noise)."""

    def forward(self, y, physics):
        x = physics.A_adjoint(y)
        return x + 0.01 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))


def test_stochastic_rows_are_not_pooled():
    y, physics, target, eps = _grid(samples=1)
    res = _overshooting_pgd(eps)(PerRowNoise(), y, physics, target=target)
    assert torch.equal(res.source_eps, eps)


def test_equal_budgets_stay_independent():
    _, y, physics = single_coil(batch=1)
    yb = y.expand(3, -1, -1, -1).clone()
    a = ka.PGD(ka.KSpaceL2(eps=0.05), steps=2)(zero_filled, yb, physics)
    assert torch.equal(a.source_eps, a.eps)
    assert not torch.equal(a.delta[0], a.delta[1])  # different random starts kept


def _expected(loss, eps, sample):
    out = loss.clone()
    for i in range(len(loss)):
        for j in range(len(loss)):
            if sample[j] == sample[i] and eps[j] < eps[i]:
                out[i] = max(out[i], loss[j])
    return out


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 5), st.floats(-5, 5)),
             min_size=1, max_size=7),
    st.sampled_from(["sample", "coil"]),
)
def test_envelope_is_the_running_max_over_smaller_budgets(rows, per):
    # rows: (sample index, eps in hundredths, own loss); equal eps of one sample stay apart
    _, y_all, physics = multi_coil(batch=3, coils=2) if per == "coil" else single_coil(batch=3)
    sample = [r[0] for r in rows]
    eps = torch.tensor([r[1] / 100 for r in rows], dtype=torch.float64)
    loss = torch.tensor([r[2] for r in rows])
    y = y_all[sample]
    threat = ka.KSpaceL2(eps=eps, per=per)
    x_clean = zero_filled(y, physics)
    problem = Problem(zero_filled, y, physics, threat, ReconDeviation(), x_clean, None, None)
    problem.best_loss = loss
    winner = monotone_winners(problem)
    envelope = loss[winner]
    torch.testing.assert_close(envelope, _expected(loss, eps, sample))
    for w, s, e in zip(winner.tolist(), sample, eps, strict=True):
        assert sample[w] == s and eps[w] <= e
    for i in range(len(rows)):
        for j in range(len(rows)):
            if sample[i] == sample[j] and eps[j] <= eps[i]:
                assert envelope[j] <= envelope[i] or eps[j] == eps[i]


def test_monotone_in_repr_and_replace():
    atk = ka.PGD(ka.KSpaceL2(eps=0.05), steps=3, monotone=False)
    assert "monotone=False" in repr(atk) and atk.replace(steps=4).monotone is False
    assert ka.GaussianNoise(ka.KSpaceL2()).monotone is False  # equal-norm baseline by default


@pytest.mark.parametrize(
    "make",
    [lambda **kw: ka.PGD(ka.KSpaceL2(), **kw), lambda **kw: ka.APGD(ka.KSpaceL2(), **kw),
     lambda **kw: ka.FGM(ka.KSpaceL2(), **kw), lambda **kw: ka.ProjectedAdam(ka.KSpaceL2(), **kw),
     lambda **kw: ka.GaussianNoise(ka.KSpaceL2(), **kw)],
)
@pytest.mark.parametrize("value", ["yes", 1, None])
def test_bad_monotone(make, value):
    with pytest.raises(TypeError, match=r"monotone: expected a bool, got"):
        make(monotone=value)
