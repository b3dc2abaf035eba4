"""Sweep configurations: TOML/YAML loading, validation errors naming the key, TOML writing,
and building attacks, data and models from a configuration."""

from __future__ import annotations

import copy
import tomllib

import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import kspace_attacks as ka
from kspace_attacks.study.sweep import (
    DEMO_CONFIG,
    ConfigError,
    build_attacks,
    build_data,
    build_models,
    dump_toml,
    load_config,
    validate_config,
)

from ._physics import single_coil


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_demo_config_round_trips_through_toml(tmp_path):
    text = dump_toml(DEMO_CONFIG)
    assert tomllib.loads(text) == DEMO_CONFIG  # valid TOML, nothing lost
    loaded = load_config(_write(tmp_path / "demo.toml", text))
    assert loaded.as_dict() == DEMO_CONFIG
    assert loaded.as_dict()["attacks"] is not DEMO_CONFIG["attacks"]


def test_validate_does_not_touch_the_defaults():
    before = copy.deepcopy(DEMO_CONFIG)
    cfg = validate_config({"eps": [0.1]}).as_dict()
    cfg["attacks"]["worst_case"]["budget"] = 1
    cfg["threat"]["per"] = "coil"
    assert DEMO_CONFIG == before
    # the typed configuration's tables are its own, not the defaults'
    typed = validate_config({})
    typed.attacks["worst_case"].options["budget"] = 7
    assert DEMO_CONFIG == before and validate_config({}).attacks["worst_case"].options["budget"] == 100


def test_yaml_config(tmp_path):
    raw = {
        "surrogates": ["zero_filled"],
        "targets": ["zero_filled", "irim"],
        "eps": [0.0, 0.05],
        "n_slices": 2,
        "threat": {"type": "KSpaceLinf", "per": "coil"},
        "attacks": {"fgm": {"type": "FGM", "init_scale": 0.01}},
        "models": {"irim": {"weights": "none"}},
        "data": {"nifti": "brain.nii.gz"},
    }
    for suffix in (".yaml", ".yml"):
        cfg = load_config(_write(tmp_path / f"c{suffix}", yaml.safe_dump(raw)))
        # given keys replace the defaults, others stay; a given table is completed with its defaults
        assert cfg.as_dict() == {**DEMO_CONFIG, **raw, "threat": {**DEMO_CONFIG["threat"], **raw["threat"]}}
    # TOML with the same content gives the same configuration
    assert load_config(_write(tmp_path / "c.toml", dump_toml(raw))) == cfg
    # an empty file is the demo
    assert load_config(_write(tmp_path / "empty.yaml", "")).as_dict() == DEMO_CONFIG


def test_given_attacks_replace_the_default_attacks():
    cfg = validate_config({"attacks": {"only": {"type": "PGD", "steps": 2}}})
    assert list(cfg.attacks) == ["only"]


@pytest.mark.parametrize(
    "raw, match",
    [
        ({"epsilon": [0.1]}, r"unknown key 'epsilon'"),
        ({"n_slices": "4"}, r"config\.n_slices: expected an integer, got str '4'"),
        ({"n_slices": True}, r"config\.n_slices: expected an integer"),
        ({"batch_size": 0}, r"config\.batch_size: expected a value >= 1, got 0"),
        ({"eps": 0.05}, r"config\.eps: expected a list of numbers, got"),
        ({"eps": [0.0, -0.01]}, r"config\.eps: expected numbers >= 0.0, got \[0.0, -0.01\]"),
        ({"eps": [0.0, float("inf")]}, r"config\.eps: expected a list of numbers"),
        ({"eps": ["0.1"]}, r"config\.eps: expected a list of numbers"),
        ({"eps": []}, r"config\.eps: expected at least one entry, got \[\]"),
        ({"baseline": "yes"}, r"config\.baseline: expected true or false"),
        ({"surrogates": []}, r"config\.surrogates: expected at least one entry"),
        ({"targets": ["irim", 3]}, r"config\.targets: expected a list of strings"),
        ({"normalization": "zscore"}, r"config\.normalization: expected one of \['reference', 'minmax', 'fastmri'\], got 'zscore'"),
        ({"threat": {"type": "KSpaceL1"}}, r"config\.threat\.type: expected one of \['KSpaceL2', 'KSpaceLinf', 'motion', 'phase', 'spikes', 'coil_maps', 'lost_lines'\], got 'KSpaceL1'"),
        ({"threat": "KSpaceL2"}, r"config\.threat: expected a table"),
        ({"attacks": {}}, r"config\.attacks: expected at least one entry"),
        ({"attacks": {"x": {"type": "CW"}}}, r"config\.attacks\.x\.type: expected one of \[.*'adam', (.*, )?'fgm', 'noise', 'pgd', 'worst_case'\], got 'CW'"),
        ({"attacks": {"x": {"steps": 3}}}, r"config\.attacks\.x\.type: expected one of"),
        ({"attacks": {"x": "PGD"}}, r"config\.attacks\.x: expected a table, got str"),
        ({"data": "fastmri"}, r"data must be 'embedded', \{embedded = 'test'\}, \{fastmri = 'dir'\}, \{nifti = "
                              r"'file'\}, \{shipped = 'name'\} or a list of these tables \(fastmri alone\), got 'fastmri'"),
        ({"data": {"dicom": "dir"}}, r"data must be 'embedded'"),
        ({"data": {"fastmri": "a", "nifti": "b"}}, r"data must be 'embedded'"),
    ],
)
def test_validation_errors_name_the_key(raw, match):
    with pytest.raises(ConfigError, match=match):
        validate_config(raw)


def test_cuda_without_cuda():
    if torch.cuda.is_available():  # pragma: no cover - CPU machine
        pytest.skip("CUDA is available")
    with pytest.raises(ConfigError, match=r"device 'cuda' requested but CUDA is not available"):
        validate_config({"device": "cuda"})


@pytest.mark.parametrize(
    "name, text, error, match",
    [
        ("bad.toml", "eps = [0.0, 0.05\nseed = 1\n", ConfigError, r"bad\.toml is not valid TOML"),
        ("bad.toml", "seed = 1\nseed = 2\n", ConfigError, r"is not valid TOML"),
        ("bad.yaml", "eps: [0.0, 0.05\nseed: 1\n", ConfigError, r"bad\.yaml is not valid YAML"),
        ("list.yaml", "- 1\n- 2\n", ConfigError, r"expected a table of settings in .*list\.yaml, got list"),
        ("conf.json", "{}", ConfigError, r"expected a \.toml, \.yaml or \.yml file, got conf\.json"),
        ("neg.toml", "eps = [0.0, -0.05]\n", ConfigError, r"config\.eps: expected numbers >= 0"),
        ("key.toml", "[attack.pgd]\ntype = 'PGD'\n", ConfigError, r"unknown key 'attack'"),
    ],
)
def test_bad_files(tmp_path, name, text, error, match):
    with pytest.raises(error, match=match):
        load_config(_write(tmp_path / name, text))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config: file .*nope\.toml does not exist"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(FileNotFoundError, match=r"does not exist"):
        load_config(tmp_path)  # a directory is not a config file


def test_dump_toml_rejects_unwritable_values():
    with pytest.raises(ConfigError, match=r"cannot write NoneType None as TOML"):
        dump_toml({"seed": None})


_names = st.text("abcxyzABC_019-", min_size=1, max_size=8)  # bare TOML keys
_bmp_text = st.text(st.characters(max_codepoint=0xFFFF, exclude_categories=("Cs",)), max_size=12)
_scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    _bmp_text,
)


@settings(max_examples=20, deadline=None, derandomize=True)
@given(
    eps=st.lists(st.floats(0, 1), min_size=1, max_size=5),
    split=_bmp_text,
    seed=st.integers(0, 2**31),
    attacks=st.dictionaries(_names, st.dictionaries(_names, _scalars, max_size=3), min_size=1, max_size=3),
    models=st.dictionaries(_names, st.dictionaries(_names, st.one_of(_scalars, st.lists(_scalars, max_size=3)), max_size=3), max_size=2),
)
def test_dump_toml_round_trip(eps, split, seed, attacks, models):
    # bare-key names and Basic-Multilingual-Plane strings (quoting and non-BMP: tests below)
    config = {"eps": eps, "split": split, "seed": seed, "threat": {"type": "KSpaceL2", "per": "coil"},
              "attacks": attacks, "models": models}
    assert tomllib.loads(dump_toml(config)) == config


def test_dump_toml_non_bmp_string():
    assert tomllib.loads(dump_toml({"split": "test-\U0001f600"})) == {"split": "test-\U0001f600"}


@pytest.mark.parametrize("name", ["pgd 20", "fastmri.unet"])
def test_dump_toml_quotes_keys(name):
    config = {"attacks": {name: {"type": "PGD"}}, "models": {name: {}}}
    assert tomllib.loads(dump_toml(config)) == config


# ---------------------------------------------------------------------------------- building
def test_build_attacks_from_config():
    cfg = validate_config({
        "seed": 7,
        "threat": {"type": "KSpaceLinf", "relative": False, "per": "coil", "support": "full"},
        "attacks": {"p": {"type": "PGD", "steps": 3, "restarts": 2}, "n": {"type": "GaussianNoise", "draws": 2}},
    })
    attacks = build_attacks(cfg)
    assert list(attacks) == ["p", "n"]
    p, n = attacks["p"], attacks["n"]
    assert isinstance(p, ka.PGD) and (p.steps, p.restarts, p.seed) == (3, 2, 7)
    assert isinstance(n, ka.GaussianNoise) and (n.draws, n.seed) == (2, 7)
    t = p.threat
    assert isinstance(t, ka.KSpaceLinf) and (t.relative, t.per, t.support) == (False, "coil", "full")
    with pytest.raises(ConfigError, match=r"attacks\.p: unknown key\(s\) \['stepz'\] for PGD; known keys"):
        build_attacks(validate_config({"attacks": {"p": {"type": "PGD", "stepz": 3}}}))
    with pytest.raises(ConfigError, match=r"config\.threat: unknown key 'radius'; known keys: \['basis', 'count', "
                                          r"'degrees_per_mm', 'drift', 'ordering', 'per', 'pixel_mm', 'relative', 'shots', "
                                          r"'support', 'type'\]"):
        build_attacks(validate_config({"threat": {"radius": 1}}))


@pytest.mark.parametrize(
    "raw, match",
    [
        ({"attacks": {"p": {"type": "PGD", "steps": 0}}}, r"attacks\.p"),
        ({"threat": {"per": "pixel"}}, r"threat\.per"),
        ({"surrogates": ["zero_filled"], "targets": ["zero_filled"], "models": {"zero_filled": 3}}, r"models\.zero_filled"),
    ],
)
def test_table_values_are_validated_with_the_key(raw, match):
    with pytest.raises(ConfigError, match=match):
        cfg = validate_config(raw)
        build_attacks(cfg)
        build_models(cfg)


def test_build_data_embedded():
    cfg = validate_config({"n_slices": 3, "batch_size": 2, "seed": 1})
    batches, ids = build_data(cfg)
    assert [b[1].shape[0] for b in batches] == [2, 1]  # batches of batch_size
    assert len(ids) == 3 and ids[0] == "test-0" and len(set(ids)) == 3
    assert all(i.startswith("test-") for i in ids)
    x, y, physics = batches[0]
    assert x.shape == (2, 2, 64, 64) and y.shape == (2, 2, 64, 64)
    # the measurements are the physics applied to the images plus the preset's 30 dB noise floor
    clean = physics.A(x)
    snr = 10 * torch.log10(clean.flatten(1).norm(dim=1) ** 2 / (y - clean).flatten(1).norm(dim=1) ** 2)
    assert torch.allclose(snr, torch.full_like(snr, 30.0), atol=0.3)
    noiseless = build_data(validate_config({"n_slices": 3, "batch_size": 2, "seed": 1,
                                            "preset": "embedded_noiseless"}))[0][0]
    assert torch.equal(noiseless[0], x) and torch.allclose(physics.A(x), noiseless[1], atol=1e-6)


def test_build_models_resolves_names_and_weights():
    cfg = validate_config({"surrogates": ["zero_filled"], "targets": ["zero_filled"],
                           "models": {"zero_filled": {"weights": "none"}}})
    models = build_models(cfg)
    assert list(models) == ["zero_filled"]
    _, y, physics = single_coil(16, batch=1)
    assert torch.allclose(models["zero_filled"](y, physics), physics.A_adjoint(y))
    with pytest.raises(ConfigError, match=r"unknown reconstructor 'nope'; available: \[.*'zero_filled'.*\[models.nope\]"):
        build_models(validate_config({"surrogates": ["nope"]}))
