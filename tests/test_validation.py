"""Bad input fails early with a message naming the argument, what was expected and what came."""

from __future__ import annotations

import deepinv as dinv
import pytest
import torch

import kspace_attacks as ka

from ._physics import single_coil, zero_filled


@pytest.fixture
def data():
    return single_coil()


def _attack(**kw):
    return ka.PGD(ka.KSpaceL2(eps=0.05), steps=2, **kw)


@pytest.mark.parametrize(
    "make_y, match",
    [
        (lambda y: y[:, :1], r"y: expected k-space in deepinv layout.*got shape \(2, 1, 16, 16\)"),
        (lambda y: y[0], r"y: expected k-space in deepinv layout.*got shape \(2, 16, 16\)"),
        (lambda y: y.long(), r"y: expected a real floating-point tensor, got dtype torch.int64"),
        (lambda y: torch.complex(y[:, 0], y[:, 1]), r"y: expected a real floating-point tensor.*complex"),
        (lambda y: torch.where(y == y.max(), torch.nan, y), r"y: expected finite values, got 1 NaN/Inf"),
        (lambda y: y.masked_fill(y == y.min(), float("inf")), r"y: expected finite values"),
        (lambda y: y.numpy(), r"y: expected a torch.Tensor, got ndarray"),
        (lambda y: y[..., :8], r"y: spatial size \(16, 8\) does not match the physics' mask size \(16, 16\)"),
    ],
)
def test_bad_y(data, make_y, match):
    _, y, physics = data
    with pytest.raises((ValueError, TypeError), match=match):
        _attack()(zero_filled, make_y(y), physics)


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: ka.KSpaceL2(eps=-0.1), r"eps: expected a finite number >= 0, got -0.1"),
        (lambda: ka.KSpaceL2(eps="big"), r"eps: expected a float or a tensor"),
        (lambda: ka.KSpaceL2(eps=torch.tensor([0.1, -1.0])), r"eps: expected finite values >= 0"),
        (lambda: ka.KSpaceL2(eps=float("nan")), r"eps: expected a finite number"),
        (lambda: ka.KSpaceL2(per="pixel"), r"per: expected one of \['sample', 'coil'\], got 'pixel'"),
        (lambda: ka.KSpaceL2(support="outside"), r"support: expected one of"),
        (lambda: ka.KSpaceLinf(relative="yes"), r"relative: expected a bool"),
        (lambda: ka.PGD(ka.KSpaceL2(), steps=0), r"steps: expected an integer >= 1, got 0"),
        (lambda: ka.PGD(ka.KSpaceL2(), steps=2.5), r"steps: expected an integer >= 1, got float"),
        (lambda: ka.PGD(ka.KSpaceL2(), restarts=-1), r"restarts: expected an integer >= 1"),
        (lambda: ka.PGD(ka.KSpaceL2(), step_size=0), r"step_size: expected a finite number > 0"),
        (lambda: ka.ProjectedAdam(ka.KSpaceL2(), lr=-1), r"lr: expected a finite number > 0"),
        (lambda: ka.ProjectedAdam(ka.KSpaceL2(), max_steps=0), r"max_steps: expected an integer >= 1"),
        (lambda: ka.GaussianNoise(ka.KSpaceL2(), draws=0), r"draws: expected an integer >= 1"),
        (lambda: ka.PGD(0.05), r"threat: expected a ThreatModel"),
        (lambda: ka.PGD(ka.KSpaceL2(), loss="l2"), r"loss: expected a callable"),
        (lambda: ka.losses.ReconDeviation(domain="phase"), r"domain: expected one of"),
        (lambda: ka.losses.roi_box((8, 8), rows=(4, 2), cols=(0, 8)), r"rows/cols"),
    ],
)
def test_bad_arguments(build, match):
    with pytest.raises((ValueError, TypeError), match=match):
        build()


def test_model_and_loss_output_checked(data):
    _, y, physics = data
    with pytest.raises(TypeError, match="model: expected a callable"):
        _attack()("unet", y, physics)
    with pytest.raises(ValueError, match=r"model\(y, physics\): expected an image batch"):
        _attack()(lambda y, p: y.flatten(1), y, physics)
    bad_loss = lambda x_adv, x_clean, x_true=None, target=None: (x_adv - x_clean).sum()  # noqa: E731
    with pytest.raises(ValueError, match=r"loss: expected a tensor of shape \(2,\)"):
        ka.PGD(ka.KSpaceL2(), steps=1, loss=bad_loss)(zero_filled, y, physics)


def test_mask_batch_mismatch(data):
    _, y, _ = data
    mask = torch.ones(3, 2, 16, 16)
    physics = dinv.physics.MRI(mask=mask, img_size=(16, 16))
    with pytest.raises(ValueError, match=r"physics.mask: batch size 3 does not match y's batch size 2"):
        _attack()(zero_filled, y, physics)


def test_delta_shape_checked(data):
    _, y, physics = data
    with pytest.raises(ValueError, match=r"delta: expected the shape of y"):
        ka.KSpaceL2().project(torch.zeros(1, 2, 16, 16), y, physics)


def test_x_true_needed(data):
    _, y, physics = data
    with pytest.raises(ValueError, match="x_true"):
        ka.PGD(ka.KSpaceL2(), loss=ka.losses.GroundTruthDeviation())(zero_filled, y, physics)
