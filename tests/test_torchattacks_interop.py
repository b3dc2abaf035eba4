"""torchattacks interop: k-space attacks as torchattacks.Attack subclasses."""

from __future__ import annotations

import importlib
import sys

import pytest
import torch

import kspace_attacks as ka

from ._physics import multi_coil, single_coil, zero_filled

torchattacks = pytest.importorskip("torchattacks")
from kspace_attacks.interop.torchattacks import KSpaceAPGD, KSpaceGaussianNoise, KSpacePGDL2  # noqa: E402


class Net(torch.nn.Module):
    """A small nonlinear reconstructor with BatchNorm and Dropout (mode matters)."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = torch.nn.Conv2d(2, 2, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.copy_(0.3 * torch.randn(self.conv.weight.shape, generator=g))
        self.bn = torch.nn.BatchNorm2d(2)
        self.drop = torch.nn.Dropout(0.5)

    def forward(self, y, physics):
        x = physics.A_adjoint(y)
        return x + self.drop(torch.tanh(self.bn(self.conv(x))))


def _ratio(y_adv, y, per_coil=False):
    d = y_adv - y
    if per_coil:
        return (d.transpose(1, 2).flatten(2).norm(dim=2) / y.transpose(1, 2).flatten(2).norm(dim=2)).amax(1)
    return d.flatten(1).norm(dim=1) / y.flatten(1).norm(dim=1)


@pytest.mark.parametrize("data, per", [(single_coil, "sample"), (multi_coil, "sample"),
                                       (multi_coil, "coil")])
def test_budget_support_and_no_clamping(data, per):
    x, y, physics = data(16, 2)
    y = 50 * y  # k-space far outside [0, 1], negative entries included
    atk = KSpacePGDL2(Net(), physics, eps=0.05, steps=3, per=per)
    assert isinstance(atk, torchattacks.attack.Attack)
    y_adv = atk(y, None)
    assert y_adv.shape == y.shape
    assert (_ratio(y_adv, y, per_coil=per == "coil") <= 0.05 * (1 + 1e-5)).all()
    assert (_ratio(y_adv, y, per_coil=per == "coil") >= 0.05 * 0.9).all()  # the budget is used
    assert y_adv.abs().max() > 1 and y_adv.min() < 0  # nothing clamped to [0, 1]
    mask = ka.sampling_mask(y, physics)
    assert torch.equal((y_adv - y) * (1 - mask), torch.zeros_like(y))  # sampled entries only
    noise = KSpaceGaussianNoise(Net(), physics, eps=0.05, per=per)(y)
    assert torch.allclose(_ratio(noise, y, per_coil=per == "coil"), torch.tensor(0.05), rtol=1e-4)


def test_matches_the_core_pgd_and_is_deterministic():
    x, y, physics = single_coil(16, 2)
    model = Net()
    atk = KSpacePGDL2(model, physics, eps=0.05, alpha=0.4, steps=4, seed=3)
    y_adv = atk(y)
    core = ka.PGD(ka.KSpaceL2(eps=0.05), steps=4, step_size=0.4, seed=3)(model, y, physics)
    assert torch.equal(y_adv, core.y_adv)
    assert torch.equal(atk(y), y_adv)  # same seed, same result
    assert torch.equal(atk.last_result.x_adv, core.x_adv)
    noise = KSpaceGaussianNoise(model, physics, eps=0.05, seed=3)
    assert torch.equal(noise(y), ka.GaussianNoise(ka.KSpaceL2(eps=0.05), seed=3)(model, y, physics).y_adv)
    # The attack is clearly worse than noise of the same norm.
    assert (atk.last_result.loss > 1.5 * noise.last_result.loss).all()


def test_targeted_mode_moves_towards_the_target():
    x, y, physics = single_coil(16, 2)
    target = physics.A_adjoint(y).clone()
    target[..., 4:8, 4:8] += 0.5  # insert a bright square
    atk = KSpacePGDL2(Net(), physics, eps=0.1, steps=5)
    atk.set_mode_targeted_by_label(quiet=True)
    assert atk.targeted and atk.get_mode() == "targeted(label)"
    res_y = atk(y, target)
    res = atk.last_result
    assert (_ratio(res_y, y) <= 0.1 * (1 + 1e-5)).all()
    before = (res.x_clean - target).flatten(1).norm(dim=1)
    after = (res.x_adv - target).flatten(1).norm(dim=1)
    assert (after < before).all()
    atk.set_mode_targeted_by_function(lambda inputs, labels: target, quiet=True)
    assert torch.equal(atk(y), res_y)
    with pytest.raises(ValueError, match="random target labels are a classification concept"):
        atk.set_mode_targeted_random()
    with pytest.raises(ValueError, match="Targeted mode is not supported"):
        KSpaceGaussianNoise(Net(), physics).set_mode_targeted_by_label(quiet=True)


def test_reference_loss_uses_labels_as_ground_truth():
    x, y, physics = single_coil(16, 2)
    atk = KSpacePGDL2(Net(), physics, eps=0.05, steps=3, loss="reference")
    atk(y, x)
    res = atk.last_result
    assert torch.allclose(res.loss, (res.x_adv - x).flatten(1).pow(2).sum(1))
    with pytest.raises(ValueError, match="loss='reference' needs the ground-truth images"):
        atk(y)


def test_repr_mode_restoration_and_device():
    x, y, physics = single_coil(16, 1)
    model = Net().train()
    atk = KSpacePGDL2(model, physics, eps=0.02, steps=2)
    text = repr(atk)
    for part in ("KSpacePGDL2(", "model_name=Net", "eps=0.02", "alpha=1.25", "steps=2",
                 "random_start=True", "per=sample", "support=measured", "loss=deviation",
                 "device=cpu", "attack_mode=default"):
        assert part in text
    seen = []
    model.register_forward_pre_hook(
        lambda m, args: seen.append((m.training, m.bn.training, m.drop.training)))
    atk(y)
    assert seen and not any(any(s) for s in seen)  # eval mode during the attack
    assert model.training and model.bn.training  # ... and training mode restored
    atk.set_model_training_mode(model_training=True)  # BatchNorm / Dropout stay in eval
    seen.clear()
    atk(y)
    assert seen and all(s == (True, False, False) for s in seen)
    model.eval()
    atk(y)
    assert not model.training  # torchattacks would leave train mode on here
    for p in model.parameters():
        assert p.grad is None  # the weights are not touched
    assert KSpacePGDL2(zero_filled, physics).device is None  # no parameters: inputs' device
    atk.set_device("cpu")
    assert atk(y).device.type == "cpu"


def test_function_models_physics_setter_and_errors():
    x, y, physics = single_coil(16, 1)
    atk = KSpacePGDL2(zero_filled, eps=0.02, steps=1)
    assert "model_name=zero_filled" in repr(atk)
    with pytest.raises(ValueError, match="the attack has no physics"):
        atk(y)
    assert atk.set_physics(physics) is atk and atk.physics is physics
    assert atk(y).shape == y.shape
    with pytest.raises(ValueError, match=r"inputs: expected k-space in deepinv layout"):
        atk(torch.rand(1, 3, 16, 16))
    with pytest.raises(TypeError, match="physics: expected a deepinv physics"):
        atk.set_physics("mri")
    with pytest.raises(ValueError, match=r"loss: expected one of \['deviation', 'reference', 'ssim'\]"):
        KSpacePGDL2(zero_filled, physics, loss="ce")
    with pytest.raises(NotImplementedError, match="image normalisation does not apply"):
        atk.set_normalization_used(mean=[0.5], std=[0.5])
    with pytest.raises(NotImplementedError, match="write_perturbed_kspace"):
        atk.save(None)


def test_missing_extra_gives_an_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchattacks", None)  # "import torchattacks" fails
    monkeypatch.delitem(sys.modules, "kspace_attacks.interop.torchattacks", raising=False)
    with pytest.raises(ImportError, match=r'pip install "kspace-attacks\[torchattacks\]"'):
        importlib.import_module("kspace_attacks.interop.torchattacks")


@pytest.mark.parametrize("loss", ["deviation", "ssim"])
def test_apgd_wrapper_runs_the_core_apgd_and_beats_noise(loss):
    x, y, physics = single_coil(32, 2)
    model = Net()
    atk = KSpaceAPGD(model, physics, eps=0.05, steps=10, loss=loss)
    assert isinstance(atk, torchattacks.attack.Attack)
    y_adv = atk(y)
    assert (_ratio(y_adv, y) <= 0.05 * (1 + 1e-5)).all()
    core = ka.APGD(ka.KSpaceL2(eps=0.05), steps=10, loss=loss)
    model.eval()
    res = core(model, y, physics)
    assert torch.allclose(y_adv, res.y_adv, atol=1e-6)  # the same attack, seeded alike
    noise = ka.GaussianNoise(ka.KSpaceL2(eps=0.05), loss=loss)(model, y, physics)
    assert (res.loss > noise.loss).all()


def test_the_default_search_is_worst_case_and_tests_default_to_apgd():
    from kspace_attacks.attacks import DEFAULT_ATTACK, default_attack
    from kspace_attacks.testing import build_attack

    assert DEFAULT_ATTACK == "worst_case" and isinstance(default_attack(), ka.WorstCase)
    assert default_attack().budget == 100 and default_attack(budget=30).max_grad_evals <= 30
    # assertions and the plugin stay at suite scale: APGD with the given steps
    assert isinstance(build_attack(0.02, 5), ka.APGD) and build_attack(0.02, 5).steps == 5
    assert build_attack(0.02, 40, "worst_case").budget == 40
