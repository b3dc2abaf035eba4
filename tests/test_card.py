"""Robustness cards (``ka.evaluate``) under the versioned protocol, the model SPEC resolver, and
``assert_robust(..., protocol="v1")`` with its plugin report.

The full protocol v1 runs once (zero-filled on the protocol's own 8 slices, about 10 s);
the other tests use v1 on 2 slices or a tiny variant of it (3 steps, 2 budgets) to stay fast.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import deepinv as dinv
import pytest
import torch

import kspace_attacks as ka
from kspace_attacks.adapters import UnknownReconstructorError, resolve_model
from kspace_attacks.data import demo_batch
from kspace_attacks.testing import (
    CardError,
    RobustnessError,
    RobustnessRecorder,
    Settings,
    assert_robust,
    use_settings,
)
from kspace_attacks.testing.card import write_card
from kspace_attacks.testing.protocol import PROTOCOL_V1, get_protocol

TINY = dataclasses.replace(PROTOCOL_V1, version="test-tiny", steps=3, eps=(0.02, 0.08))


def zero_filled(y, physics):
    return physics.A_adjoint(y)


class Fragile(torch.nn.Module):
    """Zero-filled reconstruction with one sampled k-space column amplified 30x."""

    def forward(self, y, physics):
        w = torch.ones_like(y)
        w[..., 61] = 30.0
        return physics.A_adjoint(w * y)


def _unet():
    torch.manual_seed(0)
    return dinv.models.ArtifactRemoval(dinv.models.UNet(in_channels=2, out_channels=2, scales=2))


def _stable(card):
    """The card without what legitimately differs between runs (wall time, creation time)."""
    card = json.loads(json.dumps(card, default=str))
    card.pop("created")
    for c in card["cost"].values():
        if isinstance(c, dict):
            c.pop("seconds")
    card["cost"].pop("total_seconds")
    return card


@pytest.fixture(scope="module")
def v1_card(tmp_path_factory):
    out = tmp_path_factory.mktemp("card")
    return out, ka.evaluate(zero_filled, protocol="v1", out=out, name="zero_filled")


def test_v1_card_of_a_function_model(v1_card):
    out, card = v1_card
    assert sorted(p.name for p in out.iterdir()) == ["card.json", "card.md"]
    saved = json.loads((out / "card.json").read_text())
    assert saved == json.loads(json.dumps(card, default=str).replace("NaN", "null"))
    p = card["protocol"]  # the full definition is on the card
    assert (p["version"], p["eps"], p["steps"], p["attack"], p["objectives"]) == \
        ("v1", [0.01, 0.02, 0.05, 0.08], 20, "apgd", ["deviation", "ssim"])
    assert p["threat"] == {"type": "KSpaceL2", "relative": True, "per": "sample", "support": "measured"}
    assert "APGD(" in p["attack_repr"]["ssim"] and "SSIMDeviation" in p["attack_repr"]["ssim"]
    assert card["data"]["source"] == "protocol" and card["data"]["n_slices"] == 8
    assert "demo_batch(8" in card["data"]["call"] and len(card["data"]["kspace_sha256"]) == 64
    assert card["model"] == {"name": "zero_filled", "class": "tests.test_card.zero_filled", "parameters": 0,
                             "state_dict_sha256": None, "attack_model": None}
    env = card["environment"]
    assert (env["kspace_attacks"], env["torch"], env["deepinv"], env["threads"]) == \
        (ka.__version__, torch.__version__, dinv.__version__, 1)
    assert set(card["results"]) == {"attack", "deviation", "ssim", "noise"}
    for rows in card["results"].values():
        assert [r["eps"] for r in rows] == [0.01, 0.02, 0.05, 0.08]
        for r in rows:
            s = r["delta_ssim"]
            assert s["n"] == 8 and s["worst"] <= s["mean"] and s["ci95"][0] <= s["mean"] <= s["ci95"][1]
            assert r.get("ratio_max", 0) <= r["eps"] + 1e-6
            # A^H is an isometry on the measured entries: a perturbation of relative size
            # ratio <= eps moves the zero-filled image by exactly ratio of its norm (the SSIM
            # objective's worst case may stop inside the ball on noisy data)
            assert 0.95 * r["eps"] <= r["relative_deviation"]["mean"] <= r["eps"] * (1 + 2e-3)
    assert card["cost"]["deviation"]["grad_evals"] == card["cost"]["ssim"]["grad_evals"] == 20
    assert card["cost"]["rows_per_attack"] == 32
    s = card["summary"]
    assert s["worst_delta_ssim"] == min(r["delta_ssim"]["worst"] for r in card["results"]["attack"]) < 0


def test_card_md_is_readable(v1_card):
    out, card = v1_card
    text = (out / "card.md").read_text()
    assert text.startswith("# Robustness card: zero_filled")
    assert "Protocol **v1**" in text and "## Equal-norm noise".lower() in text.lower()
    assert f"Delta SSIM {card['summary']['worst_delta_ssim']:.3f}" in text
    assert "| 0.08 |" in text and "[95 % CI]" in text and "{" not in text


def test_card_of_a_deepinv_model_records_its_weights(tmp_path):
    model = _unet()
    card = ka.evaluate(model, data=demo_batch(2), protocol=TINY)
    info = card["model"]
    assert info["class"] == "deepinv.models.artifactremoval.ArtifactRemoval"
    assert info["parameters"] == sum(p.numel() for p in model.parameters()) > 0
    assert len(info["state_dict_sha256"]) == 64
    assert card["data"]["source"] == "user" and any("user data" in n for n in card["notes"])
    assert any("NON-STANDARD protocol 'test-tiny'" in n for n in card["notes"])
    with torch.no_grad():
        next(model.parameters()).add_(1e-3)
    assert ka.testing.card.model_provenance(model)["state_dict_sha256"] != info["state_dict_sha256"]


def test_cards_are_deterministic():
    batch = demo_batch(2)
    a = ka.evaluate(_unet(), data=batch, protocol=TINY)
    b = ka.evaluate(_unet(), data=batch, protocol=TINY)
    assert _stable(a) == _stable(b)
    c = ka.evaluate(_unet(), data=batch, protocol=TINY, seed=1)  # the seed matters, and is noted
    assert c["results"]["ssim"] != a["results"]["ssim"] and any("seed 1" in n for n in c["notes"])


def test_the_attack_finds_what_noise_does_not():
    card = ka.evaluate(Fragile(), data=demo_batch(2), protocol=TINY)
    attack, noise = card["results"]["attack"][-1], card["results"]["noise"][-1]
    assert attack["relative_deviation"]["mean"] > 3 * noise["relative_deviation"]["mean"]
    assert attack["delta_ssim"]["mean"] < noise["delta_ssim"]["mean"]


def test_registered_and_module_models_through_the_resolver(tmp_path):
    card = ka.evaluate(resolve_model("zero_filled"), data=demo_batch(2), protocol=TINY, name="zero_filled")
    assert card["model"]["class"] == "kspace_attacks.adapters.zero_filled.ZeroFilled"
    assert card["model"]["parameters"] == 0 and len(card["model"]["state_dict_sha256"]) == 64
    model = resolve_model(f"{Path(__file__).resolve()}:Fragile")  # a file path and a factory
    assert type(model).__name__ == "Fragile" and not model.training
    model = resolve_model("kspace_attacks.adapters.zero_filled:ZeroFilled")
    assert type(model).__name__ == "ZeroFilled"


@pytest.mark.parametrize("spec, error, match", [
    ("no_such_model", UnknownReconstructorError, r"unknown reconstructor 'no_such_model'; expected a "
                                                 r"registered name \(.*zero_filled.*\) or 'module:callable'"),
    ("no_such_module_xyz:make", ValueError, r"'no_such_module_xyz:make': cannot import module"),
    ("kspace_attacks:no_such_factory", ValueError, r"has no attribute 'no_such_factory'"),
    ("math:pi", ValueError, r"'math:pi' is float 3.14.*not a model: expected a zero-argument factory"),
    ("missing_file.py:make", ValueError, r"file missing_file.py does not exist"),
    (":make", ValueError, r"expected 'module:callable'"),
])
def test_bad_specs_say_what_is_accepted(spec, error, match):
    with pytest.raises(error, match=match):
        resolve_model(spec)


def test_a_failing_model_leaves_no_card(tmp_path):
    def broken(y, physics):
        raise RuntimeError("CUDA out of memory (simulated)")

    out = tmp_path / "card"
    with pytest.raises(CardError, match=r"model 'broken' \(.*broken\) failed under protocol 'v3' on the "
                                        r"given data: RuntimeError: CUDA out of memory \(simulated\); "
                                        r"no card was written"):
        ka.evaluate(broken, data=demo_batch(2), out=out)
    assert not out.exists()

    def nan_model(y, physics):
        return physics.A_adjoint(y) * float("nan")

    with pytest.raises(CardError, match=r"'nan_model'.*model\(y, physics\) on the clean k-space: expected finite values"):
        ka.evaluate(nan_model, data=demo_batch(2), out=out)
    assert not out.exists()


def test_a_failed_write_leaves_neither_file(tmp_path, monkeypatch):
    card = ka.evaluate(zero_filled, data=demo_batch(2), protocol=TINY)
    out = tmp_path / "card"
    out.mkdir()
    import kspace_attacks.testing.card_render as render

    monkeypatch.setattr(render, "render_card_markdown", lambda card: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        write_card(card, out)
    assert list(out.iterdir()) == []
    monkeypatch.undo()
    write_card(card, out)
    assert sorted(p.name for p in out.iterdir()) == ["card.json", "card.md"]


def test_an_attack_model_is_recorded_as_non_standard():
    card = ka.evaluate(zero_filled, data=demo_batch(2), protocol=TINY, attack_model=Fragile(),
                       attack_model_note="a surrogate with one amplified column")
    am = card["model"]["attack_model"]
    assert am["class"] == "tests.test_card.Fragile" and am["note"] == "a surrogate with one amplified column"
    assert card["notes"][0].startswith("NON-STANDARD: the perturbations were crafted on an attack model")
    assert "attack model (non-standard)" in ka.testing.card_render.render_card_markdown(card)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"unknown version 'v9'; known: \['v1', 'v2', 'v3'\]"):
        ka.evaluate(zero_filled, protocol="v9")
    with pytest.raises(TypeError, match="model: expected a callable"):
        ka.evaluate("zero_filled")
    with pytest.raises(TypeError, match=r"data: expected an \(x, y, physics\) batch"):
        ka.evaluate(zero_filled, data=3)
    assert get_protocol(TINY) is TINY


# ------------------------------------------------------------------------- assert_robust
def test_assert_robust_with_the_protocol_passes_and_fails(tmp_path):
    recorder = RobustnessRecorder()
    batch = demo_batch(2)
    with use_settings(Settings(recorder=recorder)):
        m = assert_robust(zero_filled, batch, protocol=TINY, max_delta_ssim=0.9, name="zf")
        assert m.eps == 0.08 and m.steps == 3 and -0.9 < m.delta_ssim < 0
        with pytest.raises(RobustnessError) as info:
            assert_robust(Fragile(), batch, protocol=TINY, max_delta_ssim=0.01, name="fragile",
                          artifacts_dir=tmp_path)
    err = info.value
    text = str(err)
    assert "fragile is not robust" in text and "exceeds the limit" in text
    assert "protocol test-tiny: worst of objectives deviation, ssim at eps 0.08 (grid 0.02, 0.08)" in text
    assert err.measurement.delta_ssim < -0.01 and err.artifacts["image"].is_file()
    saved = ka.data.read_perturbed_kspace(err.artifacts["perturbation"])
    assert saved.y_adv.shape == batch[1].shape
    ratio = (saved.y_adv - saved.y_clean).flatten(1).norm(dim=1) / saved.y_clean.flatten(1).norm(dim=1)
    assert float(ratio.max()) <= 0.08 + 1e-4
    rows = recorder.rows
    assert [r["status"] for r in rows] == ["ok", "FAILED"] and rows[0]["protocol"] == "test-tiny"
    assert rows[1]["card"]["summary"]["worst_delta_ssim"] == pytest.approx(err.measurement.delta_ssim)
    report = json.loads(recorder.to_json(tmp_path / "r.json").read_text())
    assert set(report["cards"]) == {"zf", "fragile"}
    assert "protocol" in recorder.table()


def test_assert_robust_protocol_arguments():
    with pytest.raises(TypeError, match=r"eps, steps: not accepted with protocol='v1'"):
        assert_robust(zero_filled, demo_batch(1), eps=0.02, steps=3, protocol="v1")
    with pytest.raises(TypeError, match=r"batch: expected an \(x, y, physics\) batch.*protocol='v1'"):
        assert_robust(zero_filled)


def test_assert_robust_without_a_batch_uses_the_protocols_data():
    m = assert_robust(zero_filled, protocol=dataclasses.replace(TINY, data=dict(TINY.data, n_slices=2)),
                      max_delta_ssim=0.9)
    assert m.n_samples == 2 and m.reference == "ground truth"


# ------------------------------------------------------------------------- the plugin report
pytest_plugins = ["pytester"]

PROTOCOL_TEST = '''
import dataclasses
from kspace_attacks.data import demo_batch
from kspace_attacks.testing import assert_robust
from kspace_attacks.testing.protocol import PROTOCOL_V1

TINY = dataclasses.replace(PROTOCOL_V1, version="test-tiny", steps=2, eps=(0.02,))

def zero_filled(y, physics):
    return physics.A_adjoint(y)

def test_card():
    assert_robust(zero_filled, demo_batch(1), protocol=TINY, max_delta_ssim=0.9, name="zf")
'''


def test_the_plugin_report_holds_each_models_card(pytester, monkeypatch):
    import importlib.metadata

    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    ep = next((e for e in importlib.metadata.entry_points(group="pytest11")
               if e.value == "kspace_attacks.testing.plugin"), None)
    plugin = ep.name if ep is not None else "kspace_attacks.testing.plugin"
    pytester.makepyfile(test_protocol=PROTOCOL_TEST)
    result = pytester.runpytest("-p", plugin, "-p", "no:unraisableexception", "-p", "no:cacheprovider",
                                "--kspace-report=report.json")
    result.assert_outcomes(passed=1)
    report = json.loads((pytester.path / "report.json").read_text())
    card = report["cards"]["zf"]
    assert card["protocol"]["version"] == "test-tiny" and report["results"][0]["protocol"] == "test-tiny"
    assert math.isfinite(card["summary"]["worst_delta_ssim"])


def test_v3_is_the_default_protocol_and_flags_what_its_search_did_not_settle():
    import inspect

    from kspace_attacks.testing.protocol import DEFAULT_PROTOCOL, PROTOCOL_V3

    assert DEFAULT_PROTOCOL == "v3" and get_protocol("v3") is PROTOCOL_V3
    assert inspect.signature(ka.evaluate).parameters["protocol"].default == "v3"
    atk = PROTOCOL_V3.attack_for("ssim", 0.05)
    assert isinstance(atk, ka.WorstCase) and atk.budget == 100 and atk.max_budget == 400
    # a tiny variant: the adaptive search's flags reach the card's rows (one count per eps)
    small = dataclasses.replace(PROTOCOL_V3, steps=8, eps=(0.02, 0.08),
                                attack_options={"preset": "default", "monotone": True, "max_budget": 8})
    card = ka.evaluate(Fragile(), data=demo_batch(2), protocol=small)
    for objective in ("deviation", "ssim"):
        flags = [r["unreliable"] for r in card["results"][objective]]
        assert len(flags) == 2 and all(0 <= f <= 2 for f in flags)
    # with no room beyond the plan, no row can be confirmed by a second run: every row is flagged
    assert sum(r["unreliable"] for r in card["results"]["ssim"]) == 4


def test_v2_runs_the_worst_case_search():
    from kspace_attacks.testing.protocol import PROTOCOL_V2

    assert get_protocol("v2") is PROTOCOL_V2 and PROTOCOL_V2.attack == "worst_case"
    atk = PROTOCOL_V2.attack_for("deviation", 0.05)
    assert isinstance(atk, ka.WorstCase) and atk.budget == 100 and atk.max_grad_evals <= 100
    small = dataclasses.replace(PROTOCOL_V2, steps=12, eps=(0.02, 0.08))
    card = ka.evaluate(Fragile(), data=demo_batch(2), protocol=small)
    assert card["protocol"]["attack"] == "worst_case" and "WorstCase(" in card["protocol"]["attack_repr"]["ssim"]
    for objective in ("deviation", "ssim"):
        cost = card["cost"][objective]
        assert cost["grad_evals"] <= 12  # the budget holds per row (one batched call per evaluation)
        assert 0.0 <= cost["restart_spread_mean"] <= cost["restart_spread_max"] <= 1.0
    assert "restart_spread_mean" not in card["cost"]["noise"]
    # the worst case still beats equal-norm noise on the fragile model
    last = card["results"]["attack"][-1]["relative_deviation"]["mean"]
    assert last > 2 * card["results"]["noise"][-1]["relative_deviation"]["mean"]


def test_a_card_can_carry_the_certified_bracket(tmp_path):
    """evaluate(certify=...) adds the smoothed model's certified radius next to the attack's lower
    bound on it, per eps; on the linear zero-filled model the bracket holds on every slice."""
    import dataclasses

    from kspace_attacks.testing.card_render import render_card_markdown
    from kspace_attacks.testing.protocol import PROTOCOL_V1

    p = dataclasses.replace(PROTOCOL_V1, version="tiny-cert", eps=(0.01, 0.02), steps=2)
    zf = lambda y, physics: physics.A_adjoint(y)  # noqa: E731
    card = ka.evaluate(zf, data=demo_batch(2), protocol=p, name="zero_filled", out=tmp_path,
                       certify={"sigma": 0.04, "n_pred": 300, "n_cert": 400, "delta": 0.2, "attack_budget": 4})
    c = card["certified"]
    assert [r["eps"] for r in c["results"]] == [0.01, 0.02] and len(c["slices"]) == 4
    for r in c["slices"]:
        assert r["abstained"] or r["lower"] <= r["radius"]
    assert all(r["certified"] == 2 for r in c["results"])
    assert "SMOOTHED reconstruction" in c["statement"] and "Nothing is certified about the base model" in c["statement"]
    md = (tmp_path / "card.md").read_text()
    assert "## Certified (the smoothed model only)" in md and md == render_card_markdown(card)
    assert "certified" not in ka.evaluate(zf, data=demo_batch(2), protocol=p)  # only when asked
