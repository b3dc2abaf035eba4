"""The typed sweep configuration is the one carrier from a file to the last file a run writes."""

from __future__ import annotations

import pytest

from kspace_attacks.cli import main
from kspace_attacks.study.config import (AttackSpec, ModelSpec, SurrogateSpec, SweepConfig, build_attacks,
                                         build_inputs, stored_config, surrogate_options, validate_config)
from kspace_attacks.study.errors import ConfigError

TINY = {"surrogates": ["zero_filled"], "targets": ["zero_filled"], "n_slices": 2, "batch_size": 2,
        "eps": [0.0, 0.05], "null_draws": 0, "attacks": {"pgd": {"type": "PGD", "steps": 2}}}


def test_attack_tables_are_typed_and_checked_when_read():
    cfg = validate_config(TINY)
    spec = cfg.attacks["pgd"]
    assert isinstance(spec, AttackSpec) and spec.type == "PGD" and spec.name == "pgd"
    assert spec.options == {"steps": 2} and spec.as_dict() == {"type": "PGD", "steps": 2}
    assert build_attacks(cfg)["pgd"].steps == 2
    with pytest.raises(ConfigError, match=r"config\.attacks\.pgd: unknown key\(s\) \['stpes'\] for PGD"):
        validate_config({**TINY, "attacks": {"pgd": {"type": "pgd", "stpes": 2}}})
    # a bad value fails on construction too, naming the table
    with pytest.raises(ConfigError, match=r"config\.attacks\.pgd: steps"):
        validate_config({**TINY, "attacks": {"pgd": {"type": "pgd", "steps": 0}}})


def test_model_and_surrogate_tables_are_typed():
    cfg = validate_config({"surrogates": ["diffusion"], "targets": ["diffusion"],
                           "models": {"diffusion": {"steps": 50}},
                           "surrogate_models": {"diffusion": {"differentiable": True, "steps": 10, "eot": 2,
                                                              "attack_steps": 20}}})
    model, own = cfg.models["diffusion"], cfg.surrogate_models["diffusion"]
    assert isinstance(model, ModelSpec) and model.model is None and model.options == {"steps": 50}
    assert isinstance(own, SurrogateSpec) and own.attack_options == {"eot": 2, "steps": 20}
    # the surrogate's loading arguments go over the target's; eot and attack_steps go to the attacks
    assert model.merged(own).options == {"steps": 10, "differentiable": True}
    assert surrogate_options(cfg) == {"diffusion": {"eot": 2, "steps": 20}}
    assert cfg.as_dict()["surrogate_models"] == {"diffusion": {"differentiable": True, "steps": 10, "eot": 2,
                                                               "attack_steps": 20}}


def test_a_configuration_is_valid_once_built():
    cfg = validate_config(TINY)
    assert validate_config(cfg) is cfg  # nothing to check twice
    # the rules across keys hold for every way of building one, not only for files
    with pytest.raises(ConfigError, match=r"config\.surrogate_models: 'irim' is not a surrogate"):
        cfg.replace(surrogate_models={"irim": {"eot": 2}})
    with pytest.raises(ConfigError, match=r"n_slices must be a positive multiple of batch_size \(2\), got 3"):
        cfg.replace(surrogate_models={"zero_filled": {"n_slices": 3}})
    with pytest.raises(ConfigError, match=r"config\.threat: type 'coil_maps'"):
        SweepConfig.from_mapping({**TINY, "threat": {"type": "coil_maps"}})
    with pytest.raises(ConfigError, match=r"config: data: unknown key 'slcies'"):
        cfg.replace(data={"nifti": "brain.nii.gz", "slcies": [1]})


@pytest.mark.e2e
def test_the_stored_configuration_of_a_run_is_the_configuration_it_ran(tmp_path):
    from kspace_attacks.study.sweep import run_sweep

    cfg = validate_config(TINY)
    run = run_sweep(cfg, tmp_path / "out", progress=False)
    assert run.config is cfg  # carried, not rebuilt
    assert {"seconds", "world_size"} <= set(run.report.config)
    assert stored_config(run.report.config) == cfg
    from kspace_attacks.study.config import load_config

    assert load_config(tmp_path / "out" / "config.toml") == cfg  # what the folder says it ran
    with pytest.raises(ConfigError, match=r"config: expected the stored configuration of a run, got list"):
        stored_config([1])


def test_build_inputs_builds_every_part_once():
    inputs = build_inputs(validate_config(TINY))
    assert list(inputs.models) == ["zero_filled"] and inputs.surrogates["zero_filled"] is inputs.models["zero_filled"]
    assert len(inputs.batches) == 1 and len(inputs.ids) == 2 and set(inputs.coordinates) == set(inputs.ids)
    assert list(inputs.attacks) == ["pgd"] and inputs.limits == {} and inputs.attack_options == {}


@pytest.mark.e2e
def test_a_sweeps_verdicts_take_the_title_of_its_configuration(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "verdict.md").write_text("# A title left by another run\n")
    config = tmp_path / "c.toml"
    config.write_text('surrogates = ["zero_filled"]\ntargets = ["zero_filled"]\nn_slices = 2\nbatch_size = 2\n'
                      'eps = [0.0, 0.05]\nnull_draws = 0\n\n[attacks.pgd]\ntype = "pgd"\nsteps = 2\n\n'
                      '[report]\npanel_slices = 0\ntitle = "Verdicts of my sweep"\n')
    assert main(["sweep", "--config", str(config), "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert (out / "verdict.md").read_text().splitlines()[0] == "# Verdicts of my sweep"


def test_a_users_model_takes_no_loading_arguments_from_a_surrogate_table_either(tmp_path):
    (tmp_path / "mine.py").write_text("def make():\n    return lambda y, physics: physics.A_adjoint(y)\n")
    base = ModelSpec.from_mapping({"model": f"{tmp_path / 'mine.py'}:make"}, "config.models.mine")
    own = SurrogateSpec.from_mapping({"steps": 3, "eot": 2}, "config.surrogate_models.mine")
    assert callable(base.load("mine"))
    with pytest.raises(ConfigError, match=r"config: models\.mine: a model given as .* takes no loading "
                                          r"arguments, got \['steps'\]"):
        base.merged(own).load("mine")


@pytest.mark.e2e
def test_run_demo_titles_its_verdicts_from_the_configuration_unless_told(tmp_path):
    from kspace_attacks.study.demo import run_demo

    cfg = validate_config({**TINY, "report": {"panel_slices": 0, "title": "Verdicts of a small check"}})
    run_demo(tmp_path / "a", cfg, progress=False)
    assert (tmp_path / "a" / "verdict.md").read_text().splitlines()[0] == "# Verdicts of a small check"
    run_demo(tmp_path / "b", cfg, progress=False, title="Given")
    assert (tmp_path / "b" / "verdict.md").read_text().splitlines()[0] == "# Given"


@pytest.mark.e2e
def test_a_run_reads_its_data_once_targeted_test_included(tmp_path, monkeypatch):
    """The sweep builds the data (batches, ids, coordinates) once; the steps after it, the
    targeted test's verdict units included, take them from the run instead of re-reading."""
    import kspace_attacks.data as data
    from kspace_attacks.study.demo import run_demo

    built = []
    original = data.EmbeddedBrain.__init__

    def counting(self, *args, **kwargs):
        built.append(kwargs.get("split", args[0] if args else None))
        original(self, *args, **kwargs)

    monkeypatch.setattr(data.EmbeddedBrain, "__init__", counting)
    cfg = validate_config({**TINY, "data": [{"embedded": "test", "n_slices": 2}],
                           "targeted": {"slices": 1, "eps": 0.05}, "report": {"panel_slices": 0}})
    result = run_demo(tmp_path / "out", cfg, progress=False)
    assert built == ["test"]
    run = result["run"]
    assert list(run.coordinates) == run.ids and {c["subject"] for c in run.coordinates.values()} == {"icbm152"}
    rows = (tmp_path / "out" / "targeted.csv").read_text().splitlines()
    assert rows[0].split(",")[-3:] == ["sample_id", "subject", "block"] and len(rows) == 1 + 3  # 3 conditions
    assert all(row.split(",")[-2] == "icbm152" for row in rows[1:])
