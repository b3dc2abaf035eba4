"""SSIMDeviation: the metric's SSIM, differentiable; loss names."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchmetrics.functional.image import structural_similarity_index_measure

import kspace_attacks as ka
from kspace_attacks import metrics
from kspace_attacks.losses import (
    GroundTruthDeviation, ReconDeviation, SSIMDeviation, TargetedLoss, resolve_loss,
)

from ._physics import single_coil, zero_filled


def _pair(seed=0, b=2, c=2, size=16, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    ref = torch.rand(b, c, size, size, generator=g, dtype=dtype) + 0.1
    return ref + 0.2 * torch.rand(b, c, size, size, generator=g, dtype=dtype), ref


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(["minmax", "fastmri"]), st.sampled_from([1, 2]),
       st.sampled_from([16, 23]))
def test_loss_is_one_minus_the_metric(seed, normalization, channels, size):
    x_adv, x_clean = _pair(seed, c=channels, size=size)
    value = SSIMDeviation(normalization)(x_adv, x_clean)
    assert value.shape == (2,)
    assert torch.equal(value, 1 - metrics.ssim(x_adv, x_clean, normalization))


@pytest.mark.parametrize("normalization", ["minmax", "fastmri"])
def test_metric_values_unchanged_against_torchmetrics(normalization):
    # The former implementation: torchmetrics per sample, 5-pixel borders cropped.
    x_hat, x_ref = _pair(3, b=3, c=1, size=32)
    a, b = x_hat, x_ref
    if normalization == "minmax":
        a, b = metrics._minmax(a), metrics._minmax(b)
    old = []
    for i in range(3):
        rng = 1.0 if normalization == "minmax" else float(b[i].amax())
        _, smap = structural_similarity_index_measure(
            a[i : i + 1], b[i : i + 1], data_range=rng, gaussian_kernel=True, sigma=1.5,
            kernel_size=11, reduction="none", return_full_image=True,
        )
        old.append(smap[..., 5:-5, 5:-5].mean())
    assert torch.equal(metrics.ssim(x_hat, x_ref, normalization), torch.stack(old))


@pytest.mark.parametrize("normalization", ["minmax", "fastmri"])
def test_gradient_matches_finite_differences(normalization):
    x_adv, x_clean = _pair(1, b=2, c=2, size=12, dtype=torch.float64)
    loss = SSIMDeviation(normalization)
    assert torch.autograd.gradcheck(lambda x: loss(x, x_clean), (x_adv.requires_grad_(True),))


def test_gradient_is_zero_at_the_clean_image_and_flows_elsewhere():
    x_adv, x_clean = _pair(2, dtype=torch.float64)
    x = x_clean.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(SSIMDeviation()(x, x_clean).sum(), x)
    assert g.abs().max() < 1e-8  # SSIM is maximal there, like the deviation loss
    x = x_adv.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(SSIMDeviation()(x, x_clean).sum(), x)
    assert torch.isfinite(g).all() and (g.abs() > 0).float().mean() > 0.5


def test_attack_with_ssim_loss():
    _, y, physics = single_coil(size=32)
    res = ka.APGD(ka.KSpaceL2(eps=0.05), steps=10, loss="ssim")(zero_filled, y, physics)
    assert isinstance(res.loss, torch.Tensor) and (res.loss > 0).all()
    expected = 1 - metrics.ssim(res.x_adv, res.x_clean)
    torch.testing.assert_close(res.loss, expected, rtol=1e-5, atol=1e-6)
    noise = ka.GaussianNoise(ka.KSpaceL2(eps=0.05), loss="ssim")(zero_filled, y, physics)
    assert (res.loss > noise.loss).all()


def test_loss_names():
    assert type(resolve_loss("deviation")) is ReconDeviation
    assert type(resolve_loss("ssim")) is SSIMDeviation
    assert type(resolve_loss("ground_truth")) is GroundTruthDeviation
    assert type(resolve_loss("targeted")) is TargetedLoss
    assert type(resolve_loss(None)) is ReconDeviation
    assert "SSIMDeviation(normalization='minmax')" in repr(ka.PGD(ka.KSpaceL2(), loss="ssim"))


@pytest.mark.parametrize(
    "build, error, match",
    [
        (lambda: resolve_loss("nope"), ValueError, r"loss: expected a callable .* one of "
         r"\['deviation', 'ground_truth', 'ssim', 'targeted'\], got 'nope'"),
        (lambda: ka.PGD(ka.KSpaceL2(), loss="SSIM-ish"), ValueError, r"loss: .*got 'SSIM-ish'"),
        (lambda: resolve_loss(3), TypeError, r"loss: expected a callable"),
        (lambda: SSIMDeviation("max"), ValueError, r"normalization: expected one of"),
        (lambda: SSIMDeviation()(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8)), ValueError,
         r"x_hat: SSIM needs images of at least 11x11"),
        (lambda: SSIMDeviation()(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)), ValueError,
         r"x_hat: expected an image batch"),
    ],
)
def test_bad_inputs(build, error, match):
    with pytest.raises(error, match=match):
        build()
