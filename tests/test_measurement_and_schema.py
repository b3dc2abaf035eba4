"""One measurement kernel for the study, the cards and the test helpers; one typed schema for every
configuration table; one meaning of "deviation"."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings, strategies as st

import kspace_attacks as ka
from kspace_attacks import measurement
from kspace_attacks.cli import config_reference, main
from kspace_attacks.schema import ConfigError
from kspace_attacks.study import records as R
from kspace_attacks.study.config import (DEMO_CONFIG, DEMO_OVERRIDES, STUDY_CONFIG, SweepConfig, dump_toml,
                                         validate_config)
from kspace_attacks.study.transfer import Stacked, noise_baseline, TransferPlan
from kspace_attacks.testing.card import run_protocol
from kspace_attacks.testing.measure import measure_robustness
from kspace_attacks.testing.protocol import PROTOCOL_V1, PROTOCOL_V2, Protocol
from kspace_attacks.testing.settings import MarkerOptions
from kspace_attacks.threat import sampling_mask

from ._physics import multi_coil, single_coil

ROOT = Path(__file__).resolve().parents[1]


def zero_filled(y, physics):
    return physics.A_adjoint(y)


def _delivered(y_noise, y, physics):
    """||M (y_noise - y)|| / ||y|| per row: what reaches the model, relative to the signal."""
    d = (y_noise - y) * sampling_mask(y, physics)
    return d.flatten(1).norm(dim=1) / y.flatten(1).norm(dim=1)


# ------------------------------------------------------------------------- the measurement kernel
@settings(max_examples=12, deadline=None)
@given(support=st.sampled_from(["measured", "full"]), coils=st.sampled_from([1, 3]), eps=st.floats(0.01, 0.1))
def test_every_caller_delivers_the_attacks_energy_to_the_model(support, coils, eps):
    """The study's baseline, the cards' control and measure_robustness's control all come from
    the kernel: each delivers eps ||y|| on the entries the model sees, as the attack does."""
    x, y, physics = single_coil(batch=2) if coils == 1 else multi_coil(batch=2, coils=coils)
    threat = ka.KSpaceL2(eps=eps, support=support)
    # the study
    g = measurement.Grid.of(x, y, physics, [eps])
    plan = TransferPlan.of({"zf": zero_filled}, {"zf": zero_filled}, ka.PGD(threat, steps=2), True, "minmax",
                           None, False, 0, None)
    study = noise_baseline(plan, g)
    assert torch.allclose(_delivered(study.y_adv, g.y, g.physics), torch.full((2,), eps, dtype=torch.float32),
                          rtol=1e-4)
    # the cards
    p = dataclasses.replace(PROTOCOL_V1, version="t", eps=(eps,), steps=2,
                            threat=dict(PROTOCOL_V1.threat, support=support))
    run = run_protocol(zero_filled, data=(x, y, physics), protocol=p)
    assert torch.allclose(_delivered(run.conditions["noise"].y_adv[0], y, physics),
                          torch.full((2,), eps), rtol=1e-4)
    # the test helpers: the attack and its control deliver the same energy
    m = measure_robustness(zero_filled, (x, y, physics), eps=eps, steps=2,
                           attack=ka.PGD(threat, steps=2, start="spectral"))  # J lives on M
    attack = _delivered(m.result.y_adv, y, physics)
    assert torch.allclose(attack, torch.full((2,), eps), rtol=1e-3)
    y_noise = measurement.control_grid(threat, measurement.Grid.of(x, y, physics, [eps])).y
    assert torch.allclose(_delivered(y_noise, y, physics), attack, rtol=1e-3)


def test_grid_rows_and_generators_do_not_depend_on_the_batch():
    x, y, physics = single_coil(batch=3)
    full = measurement.Grid.of(x, y, physics, [0.02, 0.05], ids=["a", "b", "c"])
    part = measurement.Grid.of(x[1:], y[1:], physics, [0.05], ids=["b", "c"])
    assert full.rows == 6 and full.row_id(4) == "b" and full.row_eps(4) == 0.05
    assert full.per_eps(torch.arange(6.0)).tolist() == [[0, 1, 2], [3, 4, 5]]
    a = measurement.control_grid(ka.KSpaceL2(), full, seed=0).y
    b = measurement.control_grid(ka.KSpaceL2(), part, seed=0).y
    assert torch.equal(a[4:], b)  # sample b at 0.05: the same noise in either batch
    assert not torch.equal(measurement.control_grid(ka.KSpaceL2(), part, seed=1).y, b)  # the seed matters
    assert not torch.equal(measurement.control_grid(ka.KSpaceL2(), part, seed=0, draw=1).y, b)  # so does the draw
    assert Stacked is measurement.Grid  # the study's name of the same thing
    with pytest.raises(ValueError, match="ids: expected one id per sample"):
        measurement.Grid.of(x, y, physics, [0.1], ids=["a"])
    with pytest.raises(ValueError, match="grid: expected at least one budget"):
        measurement.Grid.of(x, y, physics, [])


def test_metrics_against_a_missing_ground_truth_are_absent_not_made_up():
    x, y, physics = single_coil(batch=2)
    x_clean = zero_filled(y, physics)
    x_adv = x_clean + 0.01
    without = measurement.row_metrics(x_adv, x_clean, None)
    assert not any(k.startswith(("delta_", "clean_", "adv_")) for k in without)
    ref = measurement.against_reference(without)
    assert torch.equal(ref["ssim_clean"], torch.ones(2)) and ref["psnr_clean"].isnan().all()
    assert ref["delta_psnr"].isnan().all() and torch.allclose(ref["delta_ssim"], without["ssim_vs_clean"] - 1)
    truth = measurement.against_reference(measurement.row_metrics(x_adv, x_clean, x))
    assert torch.allclose(truth["delta_ssim"], truth["ssim_adv"] - truth["ssim_clean"])  # adv - clean


# ------------------------------------------------------------------------- one meaning of deviation
def test_deviation_means_the_relative_change():
    x, y, physics = single_coil(batch=2)
    res = ka.PGD(ka.KSpaceL2(eps=0.05), steps=2)(zero_filled, y, physics)
    change = res.x_adv - res.x_clean
    assert torch.allclose(res.relative_deviation, change.flatten(1).norm(dim=1) / res.x_clean.flatten(1).norm(dim=1))
    assert torch.allclose(res.squared_deviation, change.pow(2).flatten(1).sum(1))
    assert not hasattr(res, "deviation") and R.SQUARED_DEVIATION == "squared_deviation"
    assert "'the deviation'" in R.COLUMNS[R.RELATIVE_DEVIATION].meaning


def test_committed_records_use_todays_column_names():
    for folder in ("docs/demo", "docs/study"):
        with open(ROOT / folder / "records.csv", newline="") as f:
            header = next(csv.reader(f))
        assert "squared_deviation" in header and "deviation" not in header


# ------------------------------------------------------------------------- one typed schema
def test_the_docs_are_derived_from_the_schemas(capsys):
    assert (ROOT / "docs" / "CONFIG.md").read_text() == config_reference()
    assert main(["config-reference"]) == 0
    assert capsys.readouterr().out == config_reference()


@pytest.mark.parametrize("raw, message", [
    ({"nslices": 3}, "config: unknown key 'nslices'; known keys: ['attacks', 'baseline'"),
    ({"threat": {"suport": "full"}}, "config.threat: unknown key 'suport'; known keys: ['basis', 'count', 'degrees_per_mm', 'drift', 'ordering', 'per', 'pixel_mm', 'relative', 'shots', 'support', 'type']"),
    ({"targeted": {"slice": 2}}, "config.targeted: unknown key 'slice'; known keys: ['eps', 'slices']"),
    ({"report": {"panels": 2}}, "config.report: unknown key 'panels'; known keys: ['panel_slices', 'title']"),
    ({"attacks": {"w": {"type": "worst_case", "budegt": 9}}}, "config.attacks.w: unknown key(s) ['budegt'] for WorstCase; known keys: ['type'"),
    ({"targeted": {"slices": -1}}, "config.targeted.slices: expected a value >= 0, got -1"),
    ({"threads": 0}, "config.threads: expected a value >= 1, got 0"),
    ({"split": "tset"}, "config.split: expected one of ['train', 'val', 'test'], got 'tset'"),
    ({"models": {"irim": "fast"}}, "config.models.irim: expected a table, got str 'fast'"),
])
def test_a_typo_anywhere_names_the_table_the_key_and_the_known_keys(raw, message):
    with pytest.raises(ConfigError) as err:
        validate_config(raw)
    assert message in str(err.value)


def test_a_typo_in_a_models_table_names_the_model_and_the_loaders_keys():
    from kspace_attacks.study.config import build_models

    cfg = validate_config({"surrogates": ["irim"], "targets": ["irim"], "models": {"irim": {"n_stpes": 3}}})
    with pytest.raises(ConfigError, match=r"config\.models\.irim \(model 'irim', keys \['n_stpes'\]\):.*n_steps"):
        build_models(cfg)


@pytest.mark.parametrize("base", [DEMO_CONFIG, {**DEMO_CONFIG, **DEMO_OVERRIDES}, STUDY_CONFIG])
def test_configs_round_trip_through_toml_and_the_schema(base, tmp_path):
    import tomllib

    cfg = validate_config(base)
    assert SweepConfig.from_mapping(cfg.as_dict()) == cfg
    assert validate_config(tomllib.loads(dump_toml(cfg))) == cfg


def test_demo_print_config_reproduces_the_whole_demo(capsys):
    import tomllib

    assert main(["demo", "--print-config"]) == 0
    printed = tomllib.loads(capsys.readouterr().out)
    assert printed == validate_config({**DEMO_CONFIG, **DEMO_OVERRIDES}).as_dict()
    assert printed["targeted"] == {"slices": 2, "eps": 0.05}  # the targeted test is part of it
    assert main(["study", "--print-config"]) == 0
    assert tomllib.loads(capsys.readouterr().out)["targeted"] == {"slices": 8, "eps": 0.05}


def test_protocols_and_the_marker_use_the_same_schema():
    assert Protocol.from_mapping({"version": "v2", "eps": [0.01, 0.02, 0.05, 0.08], "steps": 100,
                                  "attack": "worst_case", "attack_options": {"preset": "default", "monotone": True},
                                  "description": PROTOCOL_V2.description}) == PROTOCOL_V2
    with pytest.raises(ConfigError, match=r"protocol: unknown key 'step'; known keys: \['attack', 'attack_options'"):
        Protocol.from_mapping({"version": "x", "eps": [0.1], "step": 3})
    with pytest.raises(ConfigError, match=r"protocol\.eps: expected budgets > 0"):
        dataclasses.replace(PROTOCOL_V1, eps=(0.0,))
    with pytest.raises(ConfigError, match=r"protocol\.threat: expected a threat table .*'KSpaceL3'"):
        Protocol.from_mapping({"version": "x", "eps": [0.1], "threat": {"type": "KSpaceL3"}})
    from kspace_attacks.testing.plugin import _MARKER_KEYS

    assert set(MarkerOptions.known_keys()) == set(_MARKER_KEYS)
    with pytest.raises(ConfigError, match=r"kspace_robustness\.eps: expected a number, got str"):
        MarkerOptions.from_mapping({"eps": "0.1"})
