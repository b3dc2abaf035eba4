"""The score-based diffusion reconstructor: sampler, data consistency, gradients, training.

Everything except the shipped-weights check runs on a tiny seeded score network (random
weights, so the sampler is non-linear in y) at 16x16 with a handful of reverse steps.
"""

from __future__ import annotations

import json

import deepinv as dinv
import pytest
import torch

from kspace_attacks.adapters import load_reconstructor
from kspace_attacks.adapters.diffusion import (
    DiffusionReconstructor,
    VPSchedule,
    _weights,
    load,
)
from kspace_attacks.adapters.score_unet import ScoreUNet, count_parameters
from kspace_attacks.adapters.training.diffusion import load_checkpoint, train

from ._physics import multi_coil, single_coil

TINY = {"channels": (8, 16), "attn_levels": (1,)}
FAST = {"steps": 4, "eta": 1.0, "lam": 0.7, "corrector_steps": 1}


@pytest.fixture(autouse=True)
def one_thread():
    # The CPU is shared: more threads than free cores makes OpenMP spin (100x slower).
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    yield
    torch.set_flush_denormal(False)  # hypothesis (other tests) refuses to run with it on
    torch.set_num_threads(old)


def tiny_model(dtype=torch.float32, seed: int = 0, **kw) -> DiffusionReconstructor:
    """Untrained tiny network with its zero-initialised layers randomised (non-linear in y)."""
    torch.manual_seed(seed)
    net = ScoreUNet(**TINY)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    net.requires_grad_(False)
    return DiffusionReconstructor(net, **{**FAST, **kw}).to(dtype).eval()


def to_double(physics):
    physics.mask = physics.mask.double()
    if hasattr(physics, "coil_maps"):
        physics.coil_maps = physics.coil_maps.to(torch.complex128)
    return physics


@pytest.mark.parametrize("kind", ["single", "multi"])
def test_output_shape_dtype_and_seed(kind):
    x, y, physics = single_coil(16, 2) if kind == "single" else multi_coil(16, 2, coils=3)
    model = tiny_model()
    out = model(y, physics)
    assert out.shape == (2, 2, 16, 16) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert torch.equal(out, model(y, physics))  # same seed, same output
    assert not torch.allclose(out, model(y, physics, seed=1))  # different seed
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(model(y, physics, generator=g1), model(y, physics, generator=g2))
    assert model(y, physics, n_samples=3).shape == (2, 2, 16, 16)


def test_per_sample_mask_and_n_samples_average():
    """A (B, 2, H, W) mask works with n_samples > 1, which averages seeded single runs."""
    x, y, physics = single_coil(16, 2)
    physics = dinv.physics.MRI(mask=physics.mask.repeat(2, 1, 1, 1), img_size=(16, 16))
    model = tiny_model()
    out = model(y, physics, n_samples=2, steps=3)
    assert out.shape == (2, 2, 16, 16)
    # the mean over samples differs from any single run but stays consistent with y
    assert not torch.allclose(out, model(y, physics, steps=3))


@pytest.mark.parametrize("kind", ["single", "multi"])
def test_hard_data_consistency(kind):
    """lam=1 and noiseless y: A(x_hat) == y on the sampled locations (single coil exactly)."""
    x, y, physics = single_coil(16, 2) if kind == "single" else multi_coil(16, 2, coils=3)
    model = tiny_model(lam=1.0)
    out = model(y, physics)
    resid = (physics.A(out) - y).norm() / y.norm()
    # single coil: exact projection; multi-coil: fixed-iteration conjugate gradients
    assert resid < (1e-5 if kind == "single" else 5e-3)


def test_differentiable_equals_no_grad():
    x, y, physics = single_coil(16, 2)
    model = tiny_model()
    ref = model(y, physics)
    yg = y.clone().requires_grad_(True)
    out = model(yg, physics, differentiable=True)
    assert out.requires_grad
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    assert not model(yg, physics).requires_grad  # default: no graph


@pytest.mark.parametrize("kind", ["single", "multi"])
def test_gradient_matches_finite_differences(kind):
    """Autograd directional derivative of the seeded sampler == central finite difference."""
    x, y, physics = single_coil(16, 1) if kind == "single" else multi_coil(16, 1, coils=2)
    physics = to_double(physics)
    y = y.double()
    model = tiny_model(torch.float64, n_samples=2, differentiable=True)
    g = torch.Generator().manual_seed(1)
    v = torch.randn(y.shape, generator=g, dtype=torch.float64)
    w = torch.randn(1, 2, 16, 16, generator=g, dtype=torch.float64)

    def f(yy):
        return (model(yy, physics) * w).sum()

    yg = y.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(f(yg), yg)
    h = 1e-6
    with torch.no_grad():
        fd = (f(y + h * v) - f(y - h * v)) / (2 * h)
    torch.testing.assert_close((grad * v).sum(), fd, rtol=1e-6, atol=1e-8)


def test_checkpointed_gradient_equals_plain():
    x, y, physics = single_coil(16, 2)
    model = tiny_model()
    grads = []
    for ckpt in (True, False):
        yg = y.clone().requires_grad_(True)
        out = model(yg, physics, differentiable=True, checkpointing=ckpt)
        (grad,) = torch.autograd.grad(out.pow(2).sum(), yg)
        grads.append(grad)
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-6)


def test_validation_errors_name_the_argument():
    x, y, physics = single_coil(16, 1)
    model = tiny_model()
    with pytest.raises(ValueError, match="lam"):
        model(y, physics, lam=1.5)
    with pytest.raises(TypeError, match="steps"):
        model(y, physics, steps=2.5)
    with pytest.raises(TypeError, match="unknown"):
        model(y, physics, stepz=3)
    with pytest.raises(ValueError, match="y"):
        model(y[:, :1], physics)
    with pytest.raises(ValueError, match="divisible"):
        model(torch.zeros(1, 2, 9, 9), dinv.physics.MRI(img_size=(9, 9)))
    with pytest.raises(TypeError, match="physics"):
        model(y, object())


def test_schedule():
    for kind in ("cosine", "linear"):
        s = VPSchedule(kind)
        t = torch.linspace(0, 1, 11)
        ab = s.alpha_bar(t)
        assert ab[0] == pytest.approx(1.0) and ab[-1] < 1e-3
        assert (ab[1:] <= ab[:-1]).all()
        assert s.alpha_bar(0.3) == pytest.approx(float(s.alpha_bar(torch.tensor(0.3))), rel=1e-6)


@pytest.mark.isolated  # trains: a native crash must fail this test only
def test_train_resume_and_checkpoint(tmp_path):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(6, 2, 16, 16, generator=g)
    images[:, 1] = 0
    common = dict(batch_size=3, images=images, arch=TINY, progress=False, ckpt_every=2)
    # 2 + 2 resumed steps == 4 straight steps (model, EMA, optimizer and RNG restored)
    train(steps=2, out=tmp_path / "a", resume=False, **common)
    ckpt_a = train(steps=4, out=tmp_path / "a", resume=True, **common)
    ckpt_b = train(steps=4, out=tmp_path / "b", resume=False, **common)
    sa = torch.load(ckpt_a, weights_only=True)
    sb = torch.load(ckpt_b, weights_only=True)
    assert sa["step"] == sb["step"] == 4
    for k in sa["ema"]:
        torch.testing.assert_close(sa["ema"][k], sb["ema"][k])
    rows = (tmp_path / "a" / "log.csv").read_text().splitlines()
    assert [int(r.split(",")[0]) for r in rows[1:]] == [1, 2, 3, 4]
    losses = [float(r.split(",")[1]) for r in rows[1:]]
    assert all(torch.isfinite(torch.tensor(losses)))
    model = load_checkpoint(ckpt_a, steps=2)
    _, y, physics = single_coil(16, 1)
    assert torch.isfinite(model(y, physics)).all()


def test_load_none_and_registry():
    model = load(None, steps=3)
    assert not model.training and model.sampler_kwargs["steps"] == 3
    assert not any(p.requires_grad for p in model.parameters())
    assert "steps=3" in repr(model)
    model = load_reconstructor("diffusion", weights=None, steps=2)
    assert isinstance(model, DiffusionReconstructor)


def _shipped_or_skip():
    try:
        return _weights.embedded_path("diffusion")
    except FileNotFoundError:
        pytest.skip("diffusion weights not shipped yet")


def test_shipped_weights_beat_zero_filled():
    path = _shipped_or_skip()
    info = json.loads(path.with_suffix(".json").read_text())
    model = load("embedded")
    assert count_parameters(model.net) == info["parameters"]
    assert info["metrics"]["delta_psnr"] >= 3 and info["metrics"]["delta_ssim"] >= 0.08
    from kspace_attacks import metrics
    from kspace_attacks.data import demo_batch

    x, y, physics = demo_batch(2)
    # few steps: the ancestral predictor with a stronger consistency weight is the robust choice
    out = model(y, physics, steps=20, eta=1.0, lam=0.7)
    zf = physics.A_adjoint(y)
    assert (metrics.psnr(out, x) > metrics.psnr(zf, x)).all()
    assert (metrics.ssim(out, x) > metrics.ssim(zf, x)).all()


@pytest.mark.slow
def test_shipped_weights_default_sampler_on_test_split():
    _shipped_or_skip()
    from kspace_attacks.adapters.training.diffusion import evaluate_sampler

    r = evaluate_sampler(load("embedded"), "test", n=20)
    assert r["delta_psnr"] >= 3 and r["delta_ssim"] >= 0.08


@pytest.mark.parametrize(
    "name", ["kspace_attacks.adapters.score_unet", "kspace_attacks.adapters.diffusion"]
)
def test_docstring_examples(name):
    import doctest
    import importlib

    failures, tried = doctest.testmod(importlib.import_module(name), verbose=False)
    assert tried > 0 and failures == 0


@pytest.mark.isolated  # trains: a native crash must fail this test only
def test_fine_tuning_run_resumes_to_the_uninterrupted_weights(tmp_path, monkeypatch):
    """init + cosine schedule + snapshots: a 4-step run interrupted after step 2 and resumed
    ends with the weights of the same run done in one go."""
    from kspace_attacks.adapters.training import diffusion as training

    g = torch.Generator().manual_seed(1)
    images = torch.rand(6, 2, 16, 16, generator=g)
    images[:, 1] = 0
    base = train(steps=1, out=tmp_path / "base", resume=False, batch_size=2, images=images,
                 arch=TINY, progress=False)
    init = training.export(base, tmp_path / "init.safetensors")
    common = dict(steps=4, batch_size=3, images=images, progress=False, ckpt_every=2, init=init,
                  lr_schedule="cosine", warmup=1, keep_every=2)
    straight = torch.load(train(out=tmp_path / "b", resume=False, **common), weights_only=True)

    real_step, calls = training._train_step, []

    def dies_at_step_3(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(training, "_train_step", dies_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        train(out=tmp_path / "a", resume=False, **common)
    monkeypatch.setattr(training, "_train_step", real_step)
    resumed = torch.load(train(out=tmp_path / "a", resume=True, **common), weights_only=True)
    assert resumed["step"] == straight["step"] == 4
    for part in ("ema", "model"):
        for k in straight[part]:
            torch.testing.assert_close(resumed[part][k], straight[part][k])
    assert sorted(p.name for p in (tmp_path / "a" / "snapshots").iterdir()) == [
        "ema_000002.pt", "ema_000004.pt"]
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["training"]["lr_schedule"] == "cosine"
    # the starting weights were used: one step of a small rate stays close to them
    start = torch.load(base, weights_only=True)["ema"]
    snap = torch.load(tmp_path / "b" / "snapshots" / "ema_000002.pt", weights_only=True)["ema"]
    k = next(iter(start))
    assert (snap[k] - start[k]).abs().max() < 0.1


def test_learning_rate_schedule_and_training_arguments(tmp_path):
    from kspace_attacks.adapters.training.diffusion import _Hyper, learning_rate

    hp = _Hyper(100, 1, 1.0, 10, 0.9, 10, "cosine")
    rates = [learning_rate(s, hp) for s in range(100)]
    assert rates[0] == pytest.approx(0.1) and rates[10] == pytest.approx(1.0)
    assert rates[-1] == pytest.approx(0.05, abs=1e-3)
    assert all(a >= b for a, b in zip(rates[10:], rates[11:]))
    flat = _Hyper(100, 1, 1.0, 10, 0.9, 10, "constant")
    assert learning_rate(99, flat) == 1.0
    with pytest.raises(ValueError, match="lr_schedule: expected one of"):
        train(steps=1, out=tmp_path, lr_schedule="step", images=torch.rand(2, 2, 16, 16))
    with pytest.raises(ValueError, match="keep_every: expected an integer >= 0"):
        train(steps=1, out=tmp_path, keep_every=-1, images=torch.rand(2, 2, 16, 16))


def test_final_consistency_weight():
    model = tiny_model()
    _, y, physics = single_coil(16, 1)
    both = model.sample_variants(y, physics)
    torch.testing.assert_close(model(y, physics, final_lam=1.0), both[True])
    torch.testing.assert_close(model(y, physics, final_lam=0.0), both[False])
    mid = model(y, physics, final_lam=0.25)
    torch.testing.assert_close(mid, both[False] + 0.25 * (both[True] - both[False]), atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match=r"final_lam: expected a number in \[0, 1\]"):
        model(y, physics, final_lam=1.5)


def test_tuning_scores_every_final_weight_from_one_run_and_keeps_a_final_step():
    from kspace_attacks.adapters.training.diffusion_eval import (choose, evaluate_final_weights, evaluate_sampler,
                                                                 score_against)
    from kspace_attacks.data import demo_batch

    model = tiny_model(steps=2)
    x, y, _ = demo_batch(2)
    rows = evaluate_final_weights(model, (x, y), (0.0, 0.5, 1.0), steps=2)
    assert [r["final_lam"] for r in rows] == [0.0, 0.5, 1.0]
    for w, r in zip((0.0, 0.5, 1.0), rows):
        alone = evaluate_sampler(model, data=(x, y), steps=2, final_lam=w)
        assert r["psnr"] == pytest.approx(alone["psnr"], abs=1e-4)
        assert r["ssim"] == pytest.approx(alone["ssim"], abs=1e-5)
    ref = {"psnr": rows[0]["psnr"] + 1.5, "ssim": rows[0]["ssim"]}
    assert score_against(rows[0], ref) == pytest.approx(-1.0)
    for r in rows:
        r["score"] = -r["final_lam"]  # weight 0 would win: it is the ablation, not a choice
    assert choose(rows)["final_lam"] == 0.5
    with pytest.raises(ValueError, match="final_lam > 0"):
        choose(rows[:1])
