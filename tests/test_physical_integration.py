"""Physical threats everywhere a threat is named: config, cards, assertions, marker, torchattacks,
and the worst case against a random imperfection of the same size on the shipped i-RIM."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import deepinv as dinv
import pytest
import torch

import kspace_attacks as ka
from kspace_attacks.data import demo_batch
from kspace_attacks.physical.catalog import EMBEDDED_PIXEL_MM, PHYSICAL_BUDGETS
from kspace_attacks.schema import ConfigError
from kspace_attacks.study.config import build_attacks, build_threat, validate_config
from kspace_attacks.testing import RobustnessError, assert_robust, measure_robustness
from kspace_attacks.testing.protocol import PROTOCOL_V1
from kspace_attacks.threat_spec import ThreatSpec, resolve_threat

from ._physics import multi_coil

ROOT = Path(__file__).resolve().parents[1]
TINY = dataclasses.replace(PROTOCOL_V1, version="test-tiny", steps=3, eps=(0.02, 0.08))
pytest_plugins = ["pytester"]


def zero_filled(y, physics):
    return physics.A_adjoint(y)


# ------------------------------------------------------------------------- configuration
def test_threat_tables_build_physical_threats():
    motion = ThreatSpec.from_mapping({"type": "motion", "shots": 4, "ordering": "sequential"}).build(2.0)
    assert isinstance(motion, ka.RigidMotion) and (motion.shots, motion.ordering, motion.eps) == (4, "sequential", 2.0)
    assert motion.pixel_mm == EMBEDDED_PIXEL_MM
    phase = ThreatSpec.from_mapping({"type": "phase", "shots": 0, "drift": False}).build()
    assert isinstance(phase, ka.PhaseErrors) and phase.shots is None and not phase.drift
    assert phase.eps == PHYSICAL_BUDGETS["phase"][1]
    assert ThreatSpec.from_mapping({"type": "spikes", "count": 2}).build(0.1).count == 2
    assert isinstance(ThreatSpec.from_mapping({"type": "lost_lines"}).build(2), ka.LostLines)
    assert ThreatSpec.from_mapping({"type": "coil_maps", "basis": 3}).build(0.1).basis == 3


@pytest.mark.parametrize("raw, message", [
    ({"type": "spikes", "shots": 4}, r"config\.threat: shots = 4 does not apply to type 'spikes' \(its keys: count, relative\)"),
    ({"type": "motion", "support": "full"}, r"support = 'full' does not apply to type 'motion'"),
    ({"type": "KSpaceL2", "count": 2}, r"count = 2 does not apply to type 'KSpaceL2'"),
    ({"type": "motion", "shots": 0}, r"config\.threat\.shots: expected an integer >= 1 for motion"),
    ({"type": "motion", "degrees_per_mm": 1.0}, r"rotations need the object as a reference image"),
    ({"type": "motion", "pixel_mm": -1.0}, r"config\.threat\.pixel_mm: expected a value >= 1e-09"),
])
def test_threat_tables_reject_keys_that_would_change_nothing(raw, message):
    with pytest.raises(ConfigError, match=message):
        validate_config({"threat": raw})


def test_a_sweep_refuses_coil_maps_and_builds_the_other_threats():
    with pytest.raises(ConfigError, match="coil_maps.*ka.evaluate"):
        build_threat(validate_config({"threat": {"type": "coil_maps"}}))
    cfg = validate_config({"threat": {"type": "phase"}, "eps": [0.05, 0.1],
                           "attacks": {"w": {"type": "worst_case", "budget": 8}}})
    assert isinstance(build_attacks(cfg)["w"].threat, ka.PhaseErrors)


def test_the_config_reference_example_is_a_valid_motion_sweep():
    import tomllib

    text = (ROOT / "docs" / "CONFIG.md").read_text()
    example = re.search(r"A motion sweep:\n\n```toml\n(.*?)```", text, re.S).group(1)
    cfg = validate_config(tomllib.loads(example))
    threat = build_threat(cfg)
    assert isinstance(threat, ka.RigidMotion) and cfg.eps == [0.5, 1.0, 2.0]


def test_resolve_threat_names_and_models():
    assert resolve_threat("motion", 0.5).eps == 0.5
    assert resolve_threat(ka.PhaseErrors(0.1), 0.3).eps == 0.3
    with pytest.raises(ValueError, match="expected one of"):
        resolve_threat("earthquake")


# ------------------------------------------------------------------------- cards
def test_card_physical_section_compares_with_a_random_imperfection():
    card = ka.evaluate(zero_filled, data=demo_batch(2), protocol=TINY, physical=["motion", "lost_lines"])
    section = card["physical"]
    assert list(section) == ["motion", "lost_lines"]
    for name, s in section.items():
        eps = list(PHYSICAL_BUDGETS[name])
        assert s["eps"] == eps and [r["eps"] for r in s["attack_vs_random"]] == eps
        for row in s["results"]["noise"]:
            assert row["ratio_max"] <= row["eps"] + 1e-6  # the control uses the same size
        for c in s["attack_vs_random"]:
            assert c["answer"] in ("worse than random", "not worse", "inconclusive") and c["n"] == 2
    lost = section["lost_lines"]["results"]["attack"]
    assert lost[-1]["delta_ssim"]["mean"] < lost[0]["delta_ssim"]["mean"] + 1e-9  # 4 lines >= 1 line
    from kspace_attacks.testing.card_render import render_card_markdown

    md = render_card_markdown(card)
    assert "## Physical threats" in md and "| motion (`RigidMotion`) | 0.5 mm |" in md


def test_card_physical_all_skips_coil_maps_on_single_coil_data_and_measures_it_on_multicoil():
    from kspace_attacks.testing.card_physical import physical_threats_for

    assert "coil_maps" not in physical_threats_for(True, multi_coil=False)
    with pytest.raises(ValueError, match="multi-coil"):
        physical_threats_for(["coil_maps"], multi_coil=False)
    x, y, physics = multi_coil(16, batch=2, coils=3)
    card = ka.evaluate(zero_filled, data=(x, y, physics), protocol=TINY, physical=["coil_maps"])
    rows = card["physical"]["coil_maps"]["results"]
    # the model is told wrong maps: both the worst case and the random control change it
    assert rows["noise"][-1]["relative_deviation"]["mean"] > 0.01
    assert rows["attack"][-1]["relative_deviation"]["mean"] >= rows["noise"][-1]["relative_deviation"]["mean"] - 1e-6


# ------------------------------------------------------------------------- assertions and marker
def test_assert_robust_with_a_physical_threat_reports_the_same_size_control():
    m = assert_robust(zero_filled, demo_batch(2), threat="lost_lines", eps=2, max_delta_ssim=0.9, steps=4)
    assert m.eps == 2.0 and m.ratio <= 2.0 and "LostLines" in m.attack
    with pytest.raises(RobustnessError, match="SSIM"):
        assert_robust(zero_filled, demo_batch(2), threat="lost_lines", eps=4, max_delta_ssim=0.001, steps=4,
                      attack=ka.WorstCase(ka.LostLines(4), budget=12))


def test_measure_robustness_coil_maps_uses_the_wrong_maps_for_the_control_too():
    x, y, physics = multi_coil(16, batch=2, coils=3)
    m = measure_robustness(zero_filled, (x, y, physics), threat=ka.CoilMapMismatch(0.2), steps=3)
    assert m.noise_delta_ssim < 0 and m.delta_ssim < 0
    assert m.result.physics_adv is not None and m.result.model_inputs(physics)[1] is m.result.physics_adv


MARKED = '''
import pytest
from kspace_attacks.adapters import load_reconstructor
from kspace_attacks.testing import assert_robust


@pytest.mark.kspace_robustness(threat="phase", eps=0.1, steps=2, n=1)
def test_phase(kspace_batch, kspace_attack):
    atk = kspace_attack(load_reconstructor("zero_filled"), kspace_batch[2])
    assert type(atk.attack.threat).__name__ == "PhaseErrors" and atk.attack.threat.eps == 0.1
    m = assert_robust(load_reconstructor("zero_filled"), kspace_batch, max_delta_ssim=0.5)
    assert "PhaseErrors" in m.attack and m.ratio <= 0.1 + 1e-6
'''


def test_the_marker_names_a_physical_threat(pytester, monkeypatch):
    from .test_testing_plugin import plugin_args

    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile(test_marked=MARKED)
    result = pytester.runpytest(*plugin_args())
    result.assert_outcomes(passed=1)


# ------------------------------------------------------------------------- torchattacks
def test_torchattacks_wrapper_attacks_within_a_physical_threat():
    ta = pytest.importorskip("kspace_attacks.interop.torchattacks")
    x, y, physics = demo_batch(2)
    atk = ta.KSpaceAPGD(zero_filled, physics, eps=1.0, steps=3, threat="motion")
    y_adv = atk(y)
    core = ka.APGD(ka.RigidMotion(1.0, pixel_mm=EMBEDDED_PIXEL_MM, degrees_per_mm=0.0), steps=3)(zero_filled, y, physics)
    assert torch.allclose(y_adv, core.y_adv)
    assert (atk.last_result.ratio <= 1.0 + 1e-6).all()
    with pytest.raises(ValueError, match="changes the physics"):
        ta.KSpaceAPGD(zero_filled, physics, eps=0.1, threat="coil_maps")


# ------------------------------------------------------------------------- the shipped i-RIM
@pytest.mark.parametrize("kind", ["motion", "phase"])
def test_worst_case_beats_the_random_control_on_irim(kind):
    from kspace_attacks.adapters import load_reconstructor

    x, y, physics = demo_batch(4)
    eps = torch.tensor(PHYSICAL_BUDGETS[kind]).repeat_interleave(4)
    y3 = y.repeat(3, 1, 1, 1)
    physics3 = dinv.physics.MRI(mask=physics.mask.repeat(3, 1, 1, 1), img_size=tuple(y.shape[-2:]))
    threat = resolve_threat(kind, eps)
    model = load_reconstructor("irim")
    worst = ka.WorstCase(threat, budget=30)(model, y3, physics3)
    random = ka.GaussianNoise(threat, draws=1)(model, y3, physics3)
    assert (worst.ratio <= eps.float() + 1e-5).all()
    assert (worst.loss > random.loss).all(), (worst.loss, random.loss)
