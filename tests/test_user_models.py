"""A user's own model wherever a model is named: every SPEC form, with errors that suggest the
form that would work; sweep configs that name user models and report typos by key."""

from __future__ import annotations

import textwrap

import pytest
import torch

from kspace_attacks.adapters import UnknownReconstructorError, resolve_model
from kspace_attacks.study.config import ConfigError, build_attacks, build_models, validate_config

from ._physics import single_coil

USER_FILE = textwrap.dedent('''
    import torch

    def recon(y, physics):                 # a plain function f(y, physics)
        return physics.A_adjoint(y)

    def make():                            # a zero-argument factory
        return Doubler()

    class Doubler(torch.nn.Module):        # a class: called without arguments
        def forward(self, y, physics):
            return 2 * physics.A_adjoint(y)

    MODEL = Doubler().train()              # an nn.Module instance

    def needs_three(y, physics, extra):
        return y

    def broken_factory(size):
        return None
''')


@pytest.fixture
def user_file(tmp_path, monkeypatch):
    path = tmp_path / "mymodel.py"
    path.write_text(USER_FILE)
    monkeypatch.chdir(tmp_path)
    return path


@pytest.mark.parametrize("attr, scale, is_module", [
    ("recon", 1, False), ("make", 2, True), ("Doubler", 2, True), ("MODEL", 2, True)])
def test_every_form_of_a_file_spec_gives_a_working_model(user_file, attr, scale, is_module):
    x, y, physics = single_coil()
    model = resolve_model(f"{user_file}:{attr}")
    assert isinstance(model, torch.nn.Module) == is_module
    if is_module:
        assert not model.training
    assert torch.allclose(model(y, physics), scale * physics.A_adjoint(y))


def test_a_model_object_is_accepted_as_is():
    def recon(y, physics):
        return physics.A_adjoint(y)

    assert resolve_model(recon) is recon
    module = torch.nn.Identity().train()
    assert resolve_model(module) is module and not module.training


def test_a_module_name_that_is_a_file_here_suggests_the_file_form(user_file):
    with pytest.raises(ValueError, match=r"cannot import module 'mymodel'.*did you mean 'mymodel.py:make'\?"):
        resolve_model("mymodel:make")
    with pytest.raises(UnknownReconstructorError, match=r"did you mean 'mymodel.py:<callable>'\?"):
        resolve_model("mymodel")


@pytest.mark.parametrize("attr, match", [
    ("needs_three", r"takes 3 required arguments; expected a zero-argument factory, an nn.Module or "
                    r"a function f\(y, physics\)"),
    ("broken_factory", r"takes 1 required arguments"),
])
def test_callables_of_the_wrong_shape_are_refused_with_the_accepted_forms(user_file, attr, match):
    with pytest.raises(ValueError, match=match):
        resolve_model(f"mymodel.py:{attr}")


def test_a_sweep_names_a_user_model_through_its_models_table(user_file):
    cfg = validate_config({"surrogates": ["mine"], "targets": ["mine", "zero_filled"],
                           "models": {"mine": {"model": f"{user_file}:recon"}}})
    models = build_models(cfg)
    x, y, physics = single_coil()
    assert torch.allclose(models["mine"](y, physics), physics.A_adjoint(y))
    # refused when the file is read, before any model loads
    with pytest.raises(ConfigError, match=r"config\.models\.mine: a model given as .* takes no loading arguments"):
        validate_config({"surrogates": ["mine"], "targets": ["zero_filled"],
                         "models": {"mine": {"model": f"{user_file}:recon", "steps": 3}}})


def test_an_unknown_model_in_a_sweep_says_how_to_add_ones_own():
    cfg = validate_config({"surrogates": ["mymodel"], "targets": ["zero_filled"]})
    with pytest.raises(ConfigError, match=r"model 'mymodel': .*\[models.mymodel\] with model = \"mymodel.py:make\""):
        build_models(cfg)


def test_a_typo_inside_an_attack_table_names_the_table_the_key_and_the_known_keys():
    with pytest.raises(ConfigError, match=r"attacks.pgd: unknown key\(s\) \['step'\] for PGD; known keys: "
                                          r"\['type', 'steps', 'restarts', 'step_size'"):
        validate_config({"attacks": {"pgd": {"type": "pgd", "step": 3}}})
    cfg = validate_config({"attacks": {"pgd": {"type": "pgd", "steps": 3}}})
    assert build_attacks(cfg)["pgd"].steps == 3


def test_more_slices_than_the_embedded_split_has_is_an_error_naming_the_count():
    from kspace_attacks.study.sources import build_data

    cfg = validate_config({"n_slices": 100, "split": "test"})
    with pytest.raises(ConfigError, match=r"n_slices = 100, but the embedded 'test' split has 70 items "
                                          r"\(14 slices x 5 contrasts\); expected n_slices <= 70"):
        build_data(cfg)
