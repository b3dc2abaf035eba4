"""deepinv interop: AttackedPhysics in deepinv.test, deepinv models as white-box targets,
DPS / DiffPIR as transfer-only targets, fastMRI models (optional extra)."""

from __future__ import annotations

import copy
import math

import deepinv as dinv
import pytest
import torch

import kspace_attacks as ka
from kspace_attacks.interop.deepinv import AttackedPhysics

from ._physics import multi_coil, single_coil, zero_filled

SIZE = 32


class Images(torch.utils.data.Dataset):
    """Ground-truth images only: deepinv simulates the measurements online."""

    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i]}


def _dncnn():
    return dinv.models.DnCNN(2, 2, depth=3, nf=8, pretrained=None)


def modl():
    torch.manual_seed(0)
    return dinv.models.MoDL(_dncnn(), num_iter=2)


def unfolded_pgd():
    torch.manual_seed(0)
    return dinv.unfolded.unfolded_builder(
        iteration="PGD",
        params_algo={"stepsize": [1.0, 1.0], "g_param": [0.01, 0.01], "lambda": 1.0},
        trainable_params=["stepsize", "g_param"],
        data_fidelity=dinv.optim.data_fidelity.L2(),
        prior=dinv.optim.PnP(denoiser=_dncnn()),
        max_iter=2,
    )


def artifact_removal_unet():
    torch.manual_seed(0)
    return dinv.models.ArtifactRemoval(dinv.models.UNet(
        2, 2, scales=2, residual=True, batch_norm=False, channels_per_scale=[8, 16]))


def _test(model, x, physics):
    loader = torch.utils.data.DataLoader(Images(x), batch_size=len(x))
    return dinv.test(model, loader, physics=physics, online_measurements=True,
                     metrics=dinv.metric.PSNR(), show_progress_bar=False, verbose=False)


@pytest.mark.filterwarnings("ignore:non_blocking_transfers")
@pytest.mark.parametrize("build", [modl, unfolded_pgd, artifact_removal_unet])
def test_deepinv_test_reports_attacked_metrics(build):
    x, _, physics = single_coil(SIZE, 2)
    model = build()
    attacked = AttackedPhysics(physics, model, ka.PGD(ka.KSpaceL2(eps=0.1), steps=2))
    clean = _test(model, x, physics)
    adv = _test(model, x, attacked)
    assert attacked.calls == 1 and attacked.last_result.grad_evals == 2  # white-box, online
    assert adv["PSNR"] < clean["PSNR"] - 0.1
    # The no-learning baseline A^H y sees the same attacked measurements.
    assert adv["PSNR no learning"] < clean["PSNR no learning"]


def test_attacked_physics_is_the_wrapped_physics_except_forward():
    x, y, physics = single_coil(SIZE, 2)
    attacked = AttackedPhysics(physics, zero_filled, ka.PGD(ka.KSpaceL2(eps=0.05), steps=1))
    for cls in (dinv.physics.MRI, dinv.physics.DecomposablePhysics, dinv.physics.LinearPhysics,
                AttackedPhysics):
        assert isinstance(attacked, cls)
    assert type(attacked).__name__ == "AttackedMRI" and attacked.physics is physics
    assert torch.equal(attacked.A(x), physics.A(x))
    assert torch.equal(attacked.A_adjoint(y), physics.A_adjoint(y))
    assert torch.equal(attacked.prox_l2(x, y, 0.5), physics.prox_l2(x, y, 0.5))
    y_adv = attacked(x)
    ratio = (y_adv - y).flatten(1).norm(dim=1) / y.flatten(1).norm(dim=1)
    assert torch.allclose(ratio, torch.full((2,), 0.05), rtol=1e-4)
    assert torch.equal(y_adv * (1 - ka.sampling_mask(y, physics)), torch.zeros_like(y))
    # State is shared: a mask update through either object is seen by both.
    new_mask = torch.ones(SIZE, SIZE)
    attacked.update(mask=new_mask)
    assert torch.equal(physics.mask, attacked.mask) and bool(physics.mask.all())
    # Copies are independent; eps= overrides the attack's budget on a copy.
    clone = attacked.clone()
    assert isinstance(clone, type(attacked)) and clone.physics is not physics
    other = AttackedPhysics(physics, zero_filled, attacked.attack, eps=0.01)
    assert other.attack.threat.eps == 0.01 and attacked.attack.threat.eps == 0.05
    assert "AttackedMRI(physics=MRI, model=zero_filled, attack=PGD(" in repr(attacked)
    ref = AttackedPhysics(physics, zero_filled, ka.PGD(ka.KSpaceL2(eps=0.05), steps=1,
                                                       loss=ka.losses.GroundTruthDeviation()))
    ref(x)
    assert torch.allclose(ref.last_result.loss,
                          (ref.last_result.x_adv - x).flatten(1).pow(2).sum(1))  # x as x_true


def test_multicoil_attacked_physics():
    x, y, physics = multi_coil(SIZE, 2, coils=3)
    attacked = AttackedPhysics(physics, modl(), ka.PGD(ka.KSpaceL2(eps=0.05, per="coil"), steps=1))
    assert isinstance(attacked, dinv.physics.MultiCoilMRI)
    y_adv = attacked(x)
    d, ref = (y_adv - y).transpose(1, 2).flatten(2), y.transpose(1, 2).flatten(2)
    assert ((d.norm(dim=2) / ref.norm(dim=2)) <= 0.05 * (1 + 1e-5)).all()  # per coil
    assert torch.equal(attacked.A_adjoint(y), physics.A_adjoint(y))


@pytest.mark.parametrize("call, error, message", [
    (lambda: AttackedPhysics("mri", zero_filled), TypeError, "physics: expected a deepinv Physics"),
    (lambda: AttackedPhysics(dinv.physics.MRI(img_size=(8, 8)), "model"), TypeError,
     "model: expected a callable model(y, physics)"),
    (lambda: AttackedPhysics(dinv.physics.MRI(img_size=(8, 8)), zero_filled, attack="pgd"),
     TypeError, "attack: expected a kspace_attacks.Attack"),
    (lambda: AttackedPhysics(AttackedPhysics(dinv.physics.MRI(img_size=(8, 8)), zero_filled),
                             zero_filled), TypeError, "already an AttackedPhysics"),
    (lambda: AttackedPhysics(dinv.physics.MRI(img_size=(8, 8)), zero_filled, eps=-1.0),
     ValueError, "eps"),
])
def test_attacked_physics_validation(call, error, message):
    with pytest.raises(error) as info:
        call()
    assert message in str(info.value)


def _samplers():
    torch.manual_seed(0)
    denoiser = dinv.models.DRUNet(2, 2, nc=(8, 16, 32, 64), nb=1, pretrained=None)
    dps = dinv.sampling.DPS(denoiser, num_steps=3, dtype=torch.float32,
                            rng=torch.Generator().manual_seed(0))
    diffpir = dinv.sampling.DiffPIR(denoiser, dinv.optim.data_fidelity.L2(), max_iter=3)
    return dps, diffpir


@pytest.mark.filterwarnings("ignore:non_blocking_transfers")
def test_dps_and_diffpir_as_transfer_only_targets():
    x, y, physics = single_coil(SIZE, 1)
    surrogate = modl()
    dps, diffpir = _samplers()
    report = ka.transfer({"modl": surrogate}, {"modl": surrogate, "dps": dps, "diffpir": diffpir},
                         (x, y, physics), eps=[0.05], attack=ka.PGD(ka.KSpaceL2(), steps=2),
                         baseline=False, progress=False, keep_perturbations=False)
    settings = {r["target"]: r["setting"] for r in report.records}
    assert settings == {"modl": "white-box", "dps": "transfer", "diffpir": "transfer"}
    for r in report.records:
        assert math.isfinite(r["ssim_vs_clean"]) and math.isfinite(r["delta_psnr"])
        assert r["ratio"] == pytest.approx(0.05, rel=1e-4)
    # The same transfer through deepinv.test: the surrogate crafts, DiffPIR is evaluated.
    attacked = AttackedPhysics(physics, surrogate, ka.PGD(ka.KSpaceL2(eps=0.05), steps=1))
    out = _test(diffpir, x, attacked)
    assert math.isfinite(out["PSNR"]) and attacked.calls == 1


# --------------------------------------------------------------------------- fastMRI (extra)


@pytest.mark.parametrize("name, kwargs", [
    ("fastmri_unet", {"chans": 4, "num_pool_layers": 2}),
    ("fastmri_varnet", {"num_cascades": 1, "chans": 4, "pools": 2, "sens_chans": 2, "sens_pools": 2}),
])
@pytest.mark.parametrize("data", [single_coil, multi_coil])
def test_fastmri_models_as_attack_targets(name, kwargs, data):
    pytest.importorskip("fastmri")
    from kspace_attacks.adapters import load_reconstructor

    torch.manual_seed(0)
    model = load_reconstructor(name, weights=None, **kwargs)
    x, y, physics = data(SIZE, 1)
    threat = ka.KSpaceL2(eps=0.05)
    res = ka.PGD(threat, steps=2)(model, y, physics)
    noise = ka.GaussianNoise(threat)(model, y, physics)
    assert res.ratio.item() == pytest.approx(0.05, rel=1e-4)
    assert res.x_adv.shape == (1, 2, SIZE, SIZE)
    assert (res.loss > noise.loss).all()
    # ... and through the deepinv physics wrapper: the same perturbed measurements.
    attacked = AttackedPhysics(physics, model, ka.PGD(threat, steps=2))
    assert torch.equal(attacked(x), res.y_adv)
    assert not model.training


def test_deepcopy_of_attack_inside_physics_is_independent():
    _, _, physics = single_coil(16, 1)
    attacked = AttackedPhysics(physics, zero_filled, ka.PGD(ka.KSpaceL2(eps=0.05), steps=1))
    twin = copy.deepcopy(attacked)
    twin.attack.threat.eps = 0.2
    assert attacked.attack.threat.eps == 0.05
