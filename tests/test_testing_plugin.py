"""The pytest plugin and ``kspace_attacks.testing``: user tests run through ``pytester``.

The inner pytest sessions run in this process (``runpytest`` in-process), so the heavy modules
are imported here first; the plugin is loaded with ``-p`` (by its entry-point name once the
``pytest11`` entry point is installed, so that it is not registered twice).
"""

from __future__ import annotations

import importlib.metadata
import json
import re
from pathlib import Path

import deepinv  # noqa: F401  (imported before the in-process sessions, see the docstring)
import h5py  # noqa: F401
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot  # noqa: E402,F401
import pytest  # noqa: E402
import torch  # noqa: E402

import kspace_attacks.adapters.zero_filled  # noqa: E402,F401
import kspace_attacks.testing.plugin  # noqa: E402,F401
from kspace_attacks.data import demo_batch, read_perturbed_kspace  # noqa: E402
from kspace_attacks.testing import (  # noqa: E402
    RobustnessError,
    RobustnessMeasurement,
    RobustnessRecorder,
    Settings,
    assert_robust,
    build_attack,
    measure_robustness,
    use_settings,
)

pytest_plugins = ["pytester"]

PLUGIN_MODULE = "kspace_attacks.testing.plugin"


def _entry_point():
    return next((ep for ep in importlib.metadata.entry_points(group="pytest11")
                 if ep.value == PLUGIN_MODULE), None)


ENTRY_POINT = _entry_point()


def plugin_args() -> list[str]:
    """``-p`` arguments that load the plugin exactly once, with or without the entry point.

    With the ``pytest11`` entry point installed, ``-p kspace_attacks.testing.plugin`` would
    register the module a second time under another name (an error), so the entry point is
    loaded by its name. The garbage-collection sweep of ``unraisableexception`` (seconds with a
    torch heap) and the cache are switched off in the inner sessions.
    """
    plugin = ENTRY_POINT.name if ENTRY_POINT is not None else PLUGIN_MODULE
    return ["-p", plugin, "-p", "no:unraisableexception", "-p", "no:cacheprovider"]


@pytest.fixture
def pytester(pytester, monkeypatch):
    """Inner sessions load only the plugins they are given (not every installed one)."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    return pytester


FRAGILE = '''
import torch


class Fragile(torch.nn.Module):
    """Zero-filled reconstruction with one sampled k-space column amplified 30x."""

    def forward(self, y, physics):
        w = torch.ones_like(y)
        w[..., 61] = 30.0
        return physics.A_adjoint(w * y)
'''

# The user's five-line test files.
ROBUST_TEST = '''
from kspace_attacks.adapters import load_reconstructor
from kspace_attacks.testing import assert_robust

def test_zero_filled(kspace_batch):
    assert_robust(load_reconstructor("zero_filled"), kspace_batch, eps=0.02, max_delta_ssim=0.15)
'''

FRAGILE_TEST = '''
from fragile_model import Fragile
from kspace_attacks.data import demo_batch
from kspace_attacks.testing import assert_robust

def test_fragile():
    assert_robust(Fragile(), demo_batch(2), eps=0.02, max_delta_ssim=0.1)
'''


def _paths(text: str, label: str) -> list[Path]:
    # unique, in order: the message can appear twice (traceback and short summary, e.g. under -q)
    return list(dict.fromkeys(Path(p.strip()) for p in re.findall(rf"{re.escape(label)}: (\S+)", text)))


def test_user_tests_pass_and_fail_with_readable_message(pytester):
    pytester.makepyfile(fragile_model=FRAGILE, test_robust=ROBUST_TEST, test_fragile=FRAGILE_TEST)
    artifacts = pytester.path / "artifacts"
    result = pytester.runpytest(*plugin_args(), "--kspace-steps=2", f"--kspace-artifacts={artifacts}",
                                "--kspace-report=report.json")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    # The failure message: measured numbers, limit, settings (and where they came from), files.
    assert "RobustnessError" in out
    assert "Fragile is not robust to k-space perturbations of relative size eps=0.02" in out
    assert re.search(r"Delta SSIM = -0\.\d{4} \(limit >= -0\.1, max_delta_ssim=0\.1; SSIM", out)
    assert "Delta PSNR = " in out and "equal-norm Gaussian noise: Delta SSIM" in out
    assert "attack settings: eps=0.02, steps=2, device=cpu (steps from --kspace-steps)" in out
    (png,) = _paths(out, "worst-case image (PNG)")
    (h5,) = _paths(out, "perturbation (.h5)")
    assert png.is_file() and png.suffix == ".png" and png.parent == artifacts
    saved = read_perturbed_kspace(h5)  # the perturbed k-space re-loads with its settings
    assert saved.attack_settings["steps"] == 2 and saved.y_adv.shape == (2, 2, 64, 64)
    ratio = (saved.delta.flatten(1).norm(dim=1) / saved.y_clean.flatten(1).norm(dim=1)).max()
    assert float(ratio) <= 0.02 + 1e-5
    # The session summary lists both tests; the JSON report has the same rows.
    summary = out[out.index("kspace-attacks robustness"):]
    assert "test_robust.py::test_zero_filled" in summary and "ok" in summary
    assert "test_fragile.py::test_fragile" in summary and "FAILED" in summary
    report = json.loads((pytester.path / "report.json").read_text())
    rows = {r["test"].split("::")[1]: r for r in report["results"]}
    assert rows["test_zero_filled"]["passed"] and not rows["test_fragile"]["passed"]
    assert rows["test_fragile"]["delta_ssim"] < -0.1 <= rows["test_zero_filled"]["delta_ssim"] + 0.05
    assert {r["steps"] for r in rows.values()} == {2} and report["settings"]["steps"] == 2
    assert rows["test_fragile"]["image"] == str(png)
    assert "kspace-attacks report written to" in out


MARKED_TEST = '''
import pytest
from kspace_attacks.adapters import load_reconstructor
from kspace_attacks.testing import assert_robust

pytestmark = pytest.mark.kspace_robustness(eps=0.03, n=1)


@pytest.mark.kspace_robustness(steps=3)
def test_marker_settings(kspace_batch, kspace_attack, request):
    x, y, physics = kspace_batch
    assert y.shape == (1, 2, 64, 64)  # n=1 from the module marker
    model = load_reconstructor("zero_filled")
    atk = kspace_attack(model, physics)
    expected_steps = request.config.getoption("kspace_steps") or 3
    expected_eps = request.config.getoption("kspace_eps") or 0.03
    assert atk.attack.steps == expected_steps and atk.attack.threat.eps == expected_eps
    res = atk(y)
    assert float(res.ratio.max()) <= expected_eps + 1e-6
    assert_robust(model, kspace_batch, max_delta_ssim=1.0)


@pytest.mark.parametrize("kspace_batch", [{"coils": 2, "n": 1}], indirect=True)
def test_multicoil_batch(kspace_batch, kspace_recorder):
    x, y, physics = kspace_batch
    assert y.shape == (1, 2, 2, 64, 64)
    m = kspace_recorder.measure(load_reconstructor("zero_filled"), kspace_batch, steps=1)
    assert m.n_samples == 1 and m.reference == "ground truth"
'''


@pytest.mark.parametrize("options, steps, eps", [([], 3, 0.03),
                                                 (["--kspace-steps=1", "--kspace-eps=0.01", "--kspace-device=cpu"], 1, 0.01)])
def test_marker_and_options_set_the_attack(pytester, options, steps, eps):
    pytester.makepyfile(test_marked=MARKED_TEST)
    result = pytester.runpytest(*plugin_args(), *options, "--kspace-report=r.json")
    result.assert_outcomes(passed=2)
    rows = json.loads((pytester.path / "r.json").read_text())["results"]
    by_test = {r["test"].split("::")[1]: r for r in rows}
    marked = by_test["test_marker_settings"]
    assert (marked["steps"], marked["eps"], marked["n_samples"]) == (steps, eps, 1)
    assert marked["status"] == "ok"
    multi = by_test["test_multicoil_batch[kspace_batch0]"]
    # Explicit steps=1 in the call; the command line wins over it, the marker does not.
    assert multi["status"] == "measured" and multi["steps"] == 1 and multi["eps"] == eps


@pytest.mark.parametrize("option, message", [
    ("--kspace-steps=0", "--kspace-steps: expected a positive integer, got 0"),
    ("--kspace-steps=many", "--kspace-steps: expected a positive integer, got 'many'"),
    ("--kspace-eps=-0.1", "--kspace-eps: expected a finite number >= 0, got '-0.1'"),
    ("--kspace-device=gpu7", "--kspace-device: expected a torch device such as 'cpu'"),
])
def test_bad_options_are_usage_errors(pytester, option, message):
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest(*plugin_args(), option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()


def test_help_and_markers_and_marker_validation(pytester):
    result = pytester.runpytest(*plugin_args(), "--help")
    for option in ("--kspace-eps", "--kspace-steps", "--kspace-device", "--kspace-report",
                   "--kspace-artifacts"):
        assert option in result.stdout.str()
    result = pytester.runpytest(*plugin_args(), "--markers")
    assert "@pytest.mark.kspace_robustness(eps=None, steps=None" in result.stdout.str()
    pytester.makepyfile(test_bad='''
import pytest

@pytest.mark.kspace_robustness(epsilon=0.1)
def test_bad(kspace_attack):
    kspace_attack(lambda y, p: y, None)
''')
    result = pytester.runpytest(*plugin_args())
    assert "@pytest.mark.kspace_robustness: unknown key 'epsilon'; known keys: [" in result.stdout.str()
    assert result.ret != 0


def test_pytest11_entry_point_registers_the_plugin(pytester, monkeypatch):
    # A stand-in distribution declaring the entry point the package declares in pyproject.toml.
    dist = pytester.path / "site" / "kspace_attacks_entry-0.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: kspace-attacks-entry\nVersion: 0.0\n")
    (dist / "entry_points.txt").write_text(f"[pytest11]\nkspace_attacks = {PLUGIN_MODULE}\n")
    monkeypatch.syspath_prepend(str(dist.parent))
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD")
    assert "--kspace-steps" in pytester.runpytest("-p", "no:cacheprovider", "--help").stdout.str()
    assert "--kspace-steps" in pytester.runpytest("-p", "kspace_attacks", "--help").stdout.str()
    off = pytester.runpytest("-p", "no:kspace_attacks", "--help")
    assert off.ret == pytest.ExitCode.OK and "--kspace-steps" not in off.stdout.str()


def test_no_report_and_no_table_without_measurements(pytester):
    pytester.makepyfile(test_plain="def test_plain():\n    assert True\n")
    result = pytester.runpytest(*plugin_args(), "--kspace-report=empty.json")
    result.assert_outcomes(passed=1)
    assert "kspace-attacks robustness" not in result.stdout.str()
    assert json.loads((pytester.path / "empty.json").read_text())["results"] == []


# ------------------------------------------------------------------- the library, outside pytest


@pytest.fixture
def isolated():
    """No session settings (the outer session's plugin, if installed, must not interfere)."""
    with use_settings(Settings()) as settings:
        yield settings


def zero_filled(y, physics):
    return physics.A_adjoint(y)


class Fragile(torch.nn.Module):
    def forward(self, y, physics):
        w = torch.ones_like(y)
        w[..., 61] = 30.0
        return physics.A_adjoint(w * y)


def test_assert_robust_outside_pytest(isolated, tmp_path):
    batch = demo_batch(1)
    m = assert_robust(zero_filled, batch, eps=0.02, max_delta_ssim=0.5, steps=1)
    assert isinstance(m, RobustnessMeasurement) and m.model == "zero_filled"
    assert m.reference == "ground truth" and m.ratio <= 0.02 + 1e-6 and m.steps == 1
    with pytest.raises(RobustnessError) as info:
        assert_robust(Fragile(), batch, eps=0.02, max_delta_ssim=0.05, max_delta_psnr=0.01,
                      steps=1, artifacts_dir=tmp_path)
    err = info.value
    assert isinstance(err, AssertionError) and err.measurement.delta_ssim < -0.05
    assert err.artifacts["image"].is_file() and err.artifacts["perturbation"].is_file()
    text = str(err)
    assert "max_delta_ssim=0.05" in text and "max_delta_psnr=0.01;" in text
    assert text.count("<-- exceeds the limit") == 2


def test_measure_without_ground_truth_and_settings_precedence(isolated):
    x, y, physics = demo_batch(1)
    m = measure_robustness(zero_filled, (None, y, physics), eps=0.01, steps=1)
    assert m.reference == "clean reconstruction" and m.delta_ssim <= 0
    assert m.delta_psnr != m.delta_psnr  # NaN: no PSNR change without a ground truth
    isolated.steps, isolated.marker = 2, {"eps": 0.03, "steps": 5}
    m = measure_robustness(zero_filled, (x, y, physics))
    assert (m.steps, m.eps) == (2, 0.03)  # option > marker > default
    m = measure_robustness(zero_filled, (x, y, physics), eps=0.01)
    assert m.eps == 0.01  # argument > marker


def test_recorder_table_and_json(isolated, tmp_path):
    x, y, physics = demo_batch(1)
    rec = RobustnessRecorder()
    isolated.recorder = rec
    assert_robust(zero_filled, (x, y, physics), max_delta_ssim=1.0, steps=1)
    rec.measure(zero_filled, (None, y, physics), steps=1)
    table = rec.table()
    assert table.splitlines()[0].split()[:3] == ["test", "model", "eps"]
    assert "ok" in table and "measured" in table
    doc = json.loads(rec.to_json(tmp_path / "r.json").read_text())
    assert len(doc["results"]) == 2 and doc["results"][1]["delta_psnr"] is None  # NaN -> null


def test_build_attack_methods_and_templates():
    import kspace_attacks as ka

    assert isinstance(build_attack(0.01, 3, "adam"), ka.ProjectedAdam)
    assert build_attack(0.01, 3, "adam").max_steps == 3
    assert isinstance(build_attack(0.01, 3, "noise"), ka.GaussianNoise)
    template = ka.PGD(ka.KSpaceL2(eps=0.05, per="coil"), steps=40, restarts=2)
    kept = build_attack(None, None, template)
    assert kept is template
    changed = build_attack(0.01, 4, template)
    assert (changed.steps, changed.step_size, changed.threat.eps, changed.threat.per) == (
        4, 2.5 / 4, 0.01, "coil")
    assert template.steps == 40 and template.threat.eps == 0.05  # the template is not modified


@pytest.mark.parametrize("call, message", [
    (lambda: assert_robust("model", demo_batch(1)), "model: expected a callable model(y, physics)"),
    (lambda: assert_robust(zero_filled, demo_batch(1)[1]), "batch: expected an (x, y, physics) tuple"),
    (lambda: assert_robust(zero_filled, demo_batch(1), eps=-1.0), "eps: expected a finite number >= 0"),
    (lambda: assert_robust(zero_filled, demo_batch(1), max_delta_ssim="a"),
     "max_delta_ssim: expected a real number"),
    (lambda: assert_robust(zero_filled, (None, torch.zeros(1, 3, 8, 8), None)),
     "batch[1] (y): expected k-space in deepinv layout"),
    (lambda: build_attack(0.1, 2, "cw"), "method: expected one of ['pgd', 'apgd', 'adam', 'fgm', 'noise', 'worst_case']"),
])
def test_validation_messages(isolated, call, message):
    with pytest.raises((TypeError, ValueError)) as info:
        call()
    assert message in str(info.value)
