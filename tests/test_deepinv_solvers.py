"""deepinv's diffusion solvers driven by a score network: the denoiser, the [0, 1] lift, seeding,
the registered targets, and a tiny solver through the card and the transfer sweep.

Tiny networks (random weights) at 16x16 with 2-3 solver steps: behaviour, not quality.
"""

from __future__ import annotations

import math

import deepinv as dinv
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import kspace_attacks as ka
from kspace_attacks.adapters import load_reconstructor
from kspace_attacks.adapters.deepinv_solvers import (
    SolverReconstructor,
    UnitRangeDenoiser,
    load_diffpir,
    load_dps,
)
from kspace_attacks.adapters.diffusion import DiffusionReconstructor
from kspace_attacks.adapters.score_denoiser import ScoreDenoiser, from_reconstructor
from kspace_attacks.adapters.score_unet import ScoreUNet
from kspace_attacks.adapters.vp_schedule import VPSchedule

from ._physics import multi_coil, single_coil

TINY = {"channels": (8, 16), "attn_levels": ()}


@pytest.fixture(autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def tiny_denoiser(clip=1.0) -> ScoreDenoiser:
    torch.manual_seed(0)
    net = ScoreUNet(**TINY)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():  # the zero-initialised output layer made non-trivial
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return ScoreDenoiser(net.requires_grad_(False), clip=clip).eval()


def tiny_dps(steps: int = 3) -> SolverReconstructor:
    solver = dinv.sampling.DPS(tiny_denoiser(), num_steps=steps, dtype=torch.float32,
                               minus_one_one=False, rng=torch.Generator())
    return SolverReconstructor(solver, seed=0)


# ------------------------------------------------------------------------------- denoiser
@given(st.floats(0.0, 0.99), st.sampled_from(["cosine", "linear"]))
@settings(max_examples=40, deadline=None)
def test_time_of_inverts_alpha_bar(t, kind):
    s = VPSchedule(kind)
    t_ = torch.tensor([t], dtype=torch.float64)
    assert float(s.time_of(s.alpha_bar(t_))) == pytest.approx(t, abs=1e-4)


def test_denoiser_at_zero_noise_is_the_identity_and_keeps_dtype():
    d = tiny_denoiser(clip=None)
    x = torch.rand(2, 2, 16, 16, dtype=torch.float64)
    out = d(x, 0.0)
    assert out.dtype == torch.float64 and torch.allclose(out, x, atol=1e-6)
    # noise levels per batch item give what each item gets alone
    both = d(x, torch.tensor([0.05, 0.3]))
    assert torch.allclose(both[1:], d(x[1:], 0.3), atol=1e-6)
    assert not torch.allclose(both[:1], d(x[:1], 0.3), atol=1e-4)


def test_denoiser_matches_the_samplers_tweedie_step():
    """D(x, sigma) is the sampler's x0 estimate at the time whose noise level is sigma."""
    d = tiny_denoiser()
    model = DiffusionReconstructor(d.net, d.schedule, data_scale=d.data_scale, channels_last=False)
    t = 0.4
    ab = d.schedule.alpha_bar(t)
    sigma = math.sqrt((1 - ab) / ab) / d.data_scale
    x = torch.rand(1, 2, 16, 16)
    x_t = math.sqrt(ab) * d.data_scale * x
    eps = model._eps(x_t, t)
    x0 = (x_t - math.sqrt(1 - ab) * eps) / math.sqrt(ab) / d.data_scale
    mag = x0.pow(2).sum(1, keepdim=True).sqrt()
    torch.testing.assert_close(d(x, sigma), x0 * (1 / mag).clamp(max=1), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("call, error, message", [
    (lambda d: d(torch.rand(1, 1, 8, 8), 0.1), ValueError, "x: expected a complex image"),
    (lambda d: d(torch.rand(2, 2, 8, 8), torch.tensor([0.1, 0.2, 0.3])), ValueError, "sigma"),
    (lambda d: d(torch.rand(1, 2, 8, 8), -0.1), ValueError, "sigma"),
    (lambda d: ScoreDenoiser("net"), TypeError, "net: expected a score network"),
    (lambda d: from_reconstructor(object()), TypeError, "model: expected a DiffusionReconstructor"),
])
def test_denoiser_validation(call, error, message):
    with pytest.raises(error, match=message):
        call(tiny_denoiser())


def test_unit_range_denoiser_is_the_change_of_variables():
    def shrink(x, sigma):
        return x / (1 + torch.as_tensor(sigma) ** 2)

    v, s = torch.rand(1, 2, 8, 8), 0.2
    expected = ((2 * v - 1) / (1 + (2 * s) ** 2) + 1) / 2
    torch.testing.assert_close(UnitRangeDenoiser(shrink)(v, s), expected)


# ------------------------------------------------------------------------- reconstructors
@pytest.mark.parametrize("data", [single_coil, multi_coil])
def test_unit_range_lift_is_exact_for_a_linear_problem(data):
    """A solver taking one data-consistency step u + A^H (y - A u) from a fixed image, run on
    (u + 1) / 2, returns the same image: the lift changes variables, not the problem."""
    x, y, physics = data(16, 2)
    ref = torch.rand(1, 2, 16, 16, generator=torch.Generator().manual_seed(3))

    def project(ref_img):
        def solver(y_, physics_):
            u = ref_img.expand(y_.shape[0], -1, -1, -1)
            return u + physics_.A_adjoint(y_ - physics_.A(u))
        return solver

    lifted = SolverReconstructor(project((ref + 1) / 2), unit_range=True)(y, physics)
    native = SolverReconstructor(project(ref))(y, physics)
    torch.testing.assert_close(lifted, native, atol=1e-4, rtol=1e-4)


def test_solver_reconstructor_is_seeded_and_leaves_the_global_rng():
    x, y, physics = single_coil(16, 2)
    model = tiny_dps()
    state = torch.get_rng_state()
    a = model(y, physics)
    assert torch.equal(torch.get_rng_state(), state)
    assert a.shape == (2, 2, 16, 16) and torch.isfinite(a).all()
    assert torch.equal(a, model(y, physics))
    assert not torch.equal(a, model(y, physics, seed=1))
    # a solver without its own generator draws from the (seeded) global RNG, without warnings
    bare = SolverReconstructor(dinv.sampling.DPS(tiny_denoiser(), num_steps=3, dtype=torch.float32,
                                                 minus_one_one=False), seed=0)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(bare(y, physics), bare(y, physics))


def test_registered_solver_targets_load_and_run():
    x, y, physics = single_coil(16, 1)
    dps = load_reconstructor("diffusion_dps", weights=None, num_steps=2)
    pir = load_reconstructor("diffusion_diffpir", weights=None, max_iter=3)
    for model in (dps, pir):
        out = model(y, physics)
        assert out.shape == (1, 2, 16, 16) and torch.isfinite(out).all()
        assert torch.equal(out, model(y, physics))
    assert pir.unit_range and not dps.unit_range
    with pytest.raises(TypeError, match=r"diffusion_dps: unknown argument\(s\) \['steps'\]"):
        load_dps(None, steps=3)
    with pytest.raises(TypeError, match="diffusion_diffpir: unknown"):
        load_diffpir(None, num_steps=3)
    with pytest.raises(TypeError, match="solver: expected a deepinv solver"):
        SolverReconstructor("dps")
    with pytest.raises(TypeError, match="unit_range: expected a bool"):
        SolverReconstructor(tiny_dps().solver, unit_range=1)


@pytest.mark.filterwarnings("ignore:non_blocking_transfers")
def test_a_tiny_solver_through_the_card_and_the_transfer_sweep():
    """The path the shipped solver targets take: a card crafted on a differentiable sampler
    (the solver itself has no gradient in y), and a transfer sweep with it as a target."""
    x, y, physics = single_coil(16, 2)
    target = tiny_dps()
    d = target.solver.sde.denoiser
    surrogate = DiffusionReconstructor(d.net, d.schedule, data_scale=d.data_scale, steps=2,
                                       differentiable=True, channels_last=False)
    from dataclasses import replace

    from kspace_attacks.testing.protocol import PROTOCOL_V1

    protocol = replace(PROTOCOL_V1, version="test-tiny", steps=2, eps=(0.05,))
    card = ka.evaluate(target, data=(x, y, physics), protocol=protocol, name="tiny_dps",
                       attack_model=surrogate, attack_model_note="2-step differentiable sampler")
    assert card["name"] == "tiny_dps" and card["model"]["attack_model"] is not None
    report = ka.transfer({"sampler": surrogate}, {"dps": target}, (x, y, physics), eps=[0.05],
                         attack=ka.PGD(ka.KSpaceL2(), steps=1), baseline=True, progress=False,
                         keep_perturbations=False)
    rows = [r for r in report.records if r["target"] == "dps"]
    assert "transfer" in {r["setting"] for r in rows} and len({r["surrogate"] for r in rows}) == 2
    assert all(math.isfinite(r["delta_psnr"]) for r in rows)
    assert all(r["ratio"] == pytest.approx(0.05, rel=1e-4) for r in rows)
