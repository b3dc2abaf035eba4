"""Robust training losses: gradients, budgets, noise levels, a toy run that gains robustness,
the deepinv Trainer path and the supervised trainer's robust runs."""

from __future__ import annotations

import json

import deepinv as dinv
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import kspace_attacks as ka
from kspace_attacks.defense import AdversarialLoss, JitterLoss, robust_loss
from kspace_attacks.threat import sampling_mask

from ._physics import multi_coil, single_coil


class Gain(nn.Module):
    """f(y) = g A^H y with one learnable gain: a linear model whose worst-case deviation is
    eps ||y|| |g| and whose clean optimum is g = 1 (jittering at level eps gives 1/(1+eps^2))."""

    def __init__(self, start: float = 1.0) -> None:
        super().__init__()
        self.g = nn.Parameter(torch.tensor(start))

    def forward(self, y, physics):
        return self.g * physics.A_adjoint(y)


def _unet():
    torch.manual_seed(0)
    return dinv.models.ArtifactRemoval(dinv.models.UNet(2, 2, scales=2))


def _train(model, loss, x, y, physics, steps=60, lr=0.05):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        value = loss(model(y, physics), x, y, physics, model)
        value.mean().backward()
        opt.step()
    return model


def _worst_deviation(model, y, physics, eps):
    res = ka.APGD(ka.KSpaceL2(eps=eps), steps=20)(model, y, physics)
    return ((res.x_adv - res.x_clean).flatten(1).norm(dim=1)).mean().item()


# ------------------------------------------------------------------------------ gradients
@pytest.mark.parametrize("make", [lambda: AdversarialLoss(ka.KSpaceL2(eps=0.05), budget=3),
                                  lambda: JitterLoss(level=0.05)], ids=["adversarial", "jitter"])
def test_gradients_reach_every_weight_and_the_model_is_left_trainable(make):
    x, y, physics = single_coil()
    model, loss = _unet().train(), make()
    value = loss(model(y, physics), x, y, physics, model)
    assert value.dim() == 0 and torch.isfinite(value)
    value.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0
    assert model.training and all(p.requires_grad for p in model.parameters())


def test_mix_weights_the_clean_and_the_perturbed_terms():
    x, y, physics = single_coil()
    model = _unet().eval()
    x_net = model(y, physics)
    metric = nn.MSELoss()
    clean = metric(x_net, x).item()
    only = AdversarialLoss(budget=2, mix=1.0, seed=3)(x_net, x, y, physics, model).item()
    half = AdversarialLoss(budget=2, mix=0.5, seed=3)(x_net, x, y, physics, model).item()
    none = AdversarialLoss(budget=2, mix=0.0, seed=3)(x_net, x, y, physics, model).item()
    assert none == pytest.approx(clean, rel=1e-6)
    assert half == pytest.approx(0.5 * clean + 0.5 * only, rel=1e-5)
    assert only > clean  # the inner attack found a worse input


# ---------------------------------------------------------------------------- the budget
@pytest.mark.parametrize("attack", ["apgd", "pgd", "worst_case", "adam"])
@pytest.mark.parametrize("budget", [2, 3, 7])
def test_inner_attack_stays_within_its_budget(attack, budget):
    x, y, physics = single_coil()
    model = Gain()
    loss = AdversarialLoss(ka.KSpaceL2(eps=0.1), attack=attack, budget=budget)
    loss(model(y, physics), x, y, physics, model)
    assert 0 < loss.last_grad_evals <= budget
    assert torch.all(loss.last_ratio <= 0.1 + 1e-6)


def test_an_attack_instance_over_budget_is_refused_with_its_cost():
    atk = ka.APGD(ka.KSpaceL2(), steps=10, restarts=2)
    with pytest.raises(ValueError, match=r"attack: .*20 gradient evaluations, over budget=5"):
        AdversarialLoss(attack=atk, budget=5)
    assert AdversarialLoss(attack=atk, budget=20).attack is atk


@pytest.mark.parametrize("kwargs, match", [
    ({"mix": 1.5}, r"mix: expected a weight in \[0, 1\]"),
    ({"budget": 0}, r"budget"),
    ({"attack": "noise"}, r"attack: 'noise' takes no gradient steps"),
    ({"attack": "nope"}, r"attack: expected one of"),
    ({"attack": 3}, r"attack: expected an attack name"),
    ({"metric": "l2"}, r"metric: expected a callable"),
])
def test_adversarial_loss_validates_its_arguments(kwargs, match):
    with pytest.raises((TypeError, ValueError), match=match):
        AdversarialLoss(**kwargs)


def test_jitter_loss_validates_its_arguments():
    with pytest.raises(ValueError, match="kind"):
        JitterLoss(kind="uniform")
    with pytest.raises((TypeError, ValueError), match="level"):
        JitterLoss(level=-0.1)
    with pytest.raises(ValueError, match=r"options: unknown option\(s\) \['budget'\]"):
        robust_loss("jitter", budget=3)


# ------------------------------------------------------------------------ jitter's noise
@settings(max_examples=20, deadline=None)
@given(level=st.floats(0.001, 0.5), seed=st.integers(0, 2**31 - 1), coils=st.sampled_from([1, 3]))
def test_equal_norm_jitter_has_exactly_the_level_and_lives_on_the_mask(level, seed, coils):
    x, y, physics = single_coil(batch=3) if coils == 1 else multi_coil(batch=3, coils=coils)
    w = JitterLoss(level=level).noise(y, physics, torch.Generator().manual_seed(seed))
    ratio = w.flatten(1).norm(dim=1) / y.flatten(1).norm(dim=1)
    assert torch.allclose(ratio, torch.full_like(ratio, level), rtol=1e-5)
    assert torch.all(w * (1 - sampling_mask(y, physics)) == 0)


def test_gaussian_jitter_has_the_level_in_expectation():
    x, y, physics = single_coil(size=32, batch=1)
    loss = JitterLoss(level=0.1, kind="gaussian")
    sq = torch.stack([loss.noise(y, physics, torch.Generator().manual_seed(s)).pow(2).sum()
                      for s in range(200)])
    assert sq.mean().sqrt() / y.norm() == pytest.approx(0.1, rel=0.03)
    assert sq.std() > 0  # not normalised draw by draw


def test_draws_are_a_function_of_seed_and_call_only():
    x, y, physics = single_coil()
    model = _unet().eval()  # batch-norm statistics would change between the calls in train mode
    a, b = JitterLoss(seed=4), JitterLoss(seed=4)
    first = a(model(y, physics), x, y, physics, model)
    second = a(model(y, physics), x, y, physics, model)
    b.calls = 1  # a resumed run sets the call counter to the step
    assert b(model(y, physics), x, y, physics, model) == second != first
    adv_a = AdversarialLoss(budget=3, seed=2)
    adv_b = AdversarialLoss(budget=3, seed=2)
    assert adv_a(model(y, physics), x, y, physics, model) == adv_b(model(y, physics), x, y, physics, model)


# ------------------------------------------------------------------- training gains robustness
@pytest.mark.parametrize("loss", [AdversarialLoss(ka.KSpaceL2(eps=0.5), budget=3, mix=1.0),
                                  JitterLoss(level=0.5, mix=1.0)], ids=["adversarial", "jitter"])
@pytest.mark.isolated  # trains: a native crash must fail this test only
def test_a_tiny_robust_training_run_lowers_the_worst_case_deviation(loss):
    x, y, physics = single_coil(batch=4)
    clean = _train(Gain(), lambda x_net, x, *a: nn.functional.mse_loss(x_net, x), x, y, physics)
    robust = _train(Gain(), loss, x, y, physics)
    # closed form for this linear model: eps ||y|| |g|
    worst = [0.1 * y.flatten(1).norm(dim=1).mean().item() * m.g.abs().item() for m in (clean, robust)]
    found = [_worst_deviation(m, y, physics, 0.1) for m in (clean, robust)]
    assert found == pytest.approx(worst, rel=1e-3)
    assert found[1] < 0.9 * found[0], (found, clean.g.item(), robust.g.item())
    # the price: clean accuracy
    assert nn.functional.mse_loss(robust(y, physics), x) > nn.functional.mse_loss(clean(y, physics), x)


@pytest.mark.isolated  # trains: a native crash must fail this test only
def test_the_deepinv_trainer_runs_the_adversarial_loss():
    x, _, physics = single_coil(batch=4)
    model = _unet()
    before = [p.detach().clone() for p in model.parameters()]
    loss = AdversarialLoss(ka.KSpaceL2(eps=0.05), budget=2)
    loader = torch.utils.data.DataLoader(list(x), batch_size=2)
    trainer = dinv.Trainer(model=model, physics=physics, optimizer=torch.optim.Adam(model.parameters(), 1e-3),
                           train_dataloader=loader, losses=[loss], epochs=1, online_measurements=True,
                           save_path=None, verbose=False, show_progress_bar=False, device="cpu",
                           plot_images=False)
    trainer.train()
    assert loss.calls == 2 and 0 < loss.last_grad_evals <= 2
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


# ------------------------------------------------------------------- the supervised trainer
@pytest.mark.isolated  # trains: a native crash must fail this test only
def test_robust_run_of_the_trainer_writes_named_weights_and_its_settings(tmp_path):
    from kspace_attacks.adapters import load_reconstructor
    from kspace_attacks.adapters.training import supervised
    from kspace_attacks.adapters.training.robust import Robust

    from .test_adapters_supervised import TINY_IRIM, ToyData, make_physics

    physics = make_physics("single", 32, 32)
    robust = Robust("adversarial", eps=0.05, budget=2, init=None)
    summary = supervised.train("irim", steps=3, batch_size=2, lr=1e-3, out=tmp_path, arch=TINY_IRIM,
                               train_data=ToyData(physics), physics=physics, log_every=1,
                               ckpt_every=1, progress=False, robust=robust)
    assert summary["name"] == "irim_adv"
    saved = json.loads((tmp_path / "irim_adv.json").read_text())
    assert saved["training"]["robust"] == {"kind": "adversarial", "eps": 0.05, "mix": 0.5,
                                           "init": None, "attack": "apgd", "budget": 2,
                                           "objective": "deviation",
                                           "threat": "KSpaceL2(eps, per sample, measured k-space)"}
    model = load_reconstructor("irim", weights=tmp_path / "irim_adv.safetensors")
    assert model(physics(torch.zeros(1, 2, 32, 32)), physics).shape == (1, 2, 32, 32)


def test_robust_settings_are_validated():
    from kspace_attacks.adapters.training.robust import Robust

    with pytest.raises(ValueError, match="robust"):
        Robust("mixup")
    with pytest.raises((TypeError, ValueError), match="eps"):
        Robust("jitter", eps=0)


@pytest.mark.isolated  # trains: a native crash must fail this test only
def test_the_train_command_fine_tunes_the_shipped_weights_robustly(tmp_path):
    from kspace_attacks.adapters.training import supervised

    assert supervised.main(["irim", "--robust", "jitter", "--eps", "0.02", "--steps", "2", "--batch-size", "2",
                            "--lr", "1e-5", "--out", str(tmp_path), "--val-every", "0", "--log-every", "1",
                            "--no-progress"]) == 0
    record = json.loads((tmp_path / "irim_jit.json").read_text())
    assert record["name"] == "irim_jit"
    assert record["training"]["robust"] == {"kind": "jitter", "eps": 0.02, "mix": 0.5, "init": "embedded",
                                            "noise": "equal_norm"}
    # fine-tuned from the shipped weights: two small steps keep the test accuracy near the shipped one
    assert record["metrics"]["model"]["psnr"] > 27
