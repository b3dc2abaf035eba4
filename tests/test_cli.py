"""The ``kspace-attacks`` command line, called in-process (plus one real subprocess)."""

from __future__ import annotations

import atexit
import csv
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch

from kspace_attacks.cli import main
from kspace_attacks.data import read_perturbed_kspace
from kspace_attacks.study.report import TransferReport
from kspace_attacks.study.config import DEMO_OVERRIDES, validate_config
from kspace_attacks.study.sweep import DEMO_CONFIG, load_config

TINY = """\
surrogates = ["zero_filled"]
targets = ["zero_filled"]
n_slices = 2
eps = [0.0, 0.05]

[attacks.pgd]
type = "PGD"
steps = 2
"""
FIGURES = ["relative_deviation_vs_eps.png", "delta_ssim_vs_eps.png", "delta_psnr_vs_eps.png",
           "structure_fraction_vs_eps.png"]


def _start_installed_cli() -> subprocess.Popen:
    script = Path(sys.executable).with_name("kspace-attacks")
    cmd = [str(script)] if script.is_file() else [sys.executable, "-m", "kspace_attacks.cli"]
    env = dict(os.environ, OMP_NUM_THREADS="1", KSPACE_ATTACKS_DEBUG="")
    return subprocess.Popen([*cmd, "demo", "--print-config"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


# The one real subprocess: the installed console script. Its start-up (importing torch and
# deepinv, ~7 s of CPU) is the slowest step of these tests, so it is started when this module
# is collected and runs while the other tests do; test_installed_script collects it (and it
# is killed at exit if that test was deselected).
_INSTALLED = _start_installed_cli()
atexit.register(_stop, _INSTALLED)


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_print_config_is_the_demo_config(capsys):
    code, out, err = _run(capsys, "demo", "--print-config")
    assert code == 0 and err == ""
    assert tomllib.loads(out) == validate_config({**DEMO_CONFIG, **DEMO_OVERRIDES}).as_dict()  # what `demo` runs


def test_models_lists_the_shipped_reconstructors_with_their_quality(capsys):
    from kspace_attacks.adapters.registry import model_quality

    code, out, _ = _run(capsys, "models")
    assert code == 0
    lines = out.splitlines()
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:] if line and not line[0].isspace()
            and len(line.split()) == 5}
    names = list(rows)
    assert {"irim", "resunetpp", "diffusion", "diffusion_dps", "diffusion_diffpir", "zero_filled"} <= set(names)
    assert names == sorted(names)
    for name in ("irim", "diffusion", "diffusion_dps", "diffusion_diffpir"):
        q = model_quality(name)["test"]
        assert rows[name][:2] == [f"{q['ssim']:.3f}", f"{q['psnr']:.2f}"]  # printed from the table
    assert rows["fastmri_unet"] == ["-"] * 4  # not measured: said so, not invented


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """``sweep --config tiny.toml --out DIR`` run once; returns (DIR, exit code, stdout)."""
    folder = tmp_path_factory.mktemp("cli")
    config = folder / "tiny.toml"
    config.write_text(TINY)
    out = folder / "out"
    code = main(["sweep", "--config", str(config), "--out", str(out), "--quiet"])
    return config, out, code


def test_sweep_writes_results(swept):
    config, out, code = swept
    assert code == 0
    for name in ("records.csv", "summary.json", "summary.csv", "config.toml", *FIGURES,
                 "verdict.json", "verdict.md", "report.html"):  # every sweep ends with its answers
        assert (out / name).is_file(), name
    # the config that ran, as TOML, loads back to the validated tiny config
    assert load_config(out / "config.toml") == load_config(config)
    with open(out / "records.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    # 2 slices x 2 eps x (pgd + noise baseline) x 1 target
    assert len(rows) == 2 * 2 * 2
    assert {(r["surrogate"], r["attack"], r["setting"]) for r in rows} == {
        ("zero_filled", "pgd", "white-box"), ("random", "noise", "baseline")}
    assert {float(r["eps"]) for r in rows} == {0.0, 0.05}
    assert all(abs(float(r["ratio"]) - float(r["eps"])) < 1e-4 for r in rows)
    ids = sorted({r["sample_id"] for r in rows})
    assert len(ids) == 2 and all(i.startswith("test-") for i in ids)
    meta = json.loads((out / "summary.json").read_text())
    assert meta["n_records"] == 8 and meta["config"]["eps"] == [0.0, 0.05]
    assert meta["config"]["surrogates"] == ["zero_filled"] and meta["config"]["seconds"] > 0
    # one batch (n_slices 2 <= batch_size 4), journaled and with its perturbations
    assert {r["batch"] for r in rows} == {"0"}
    assert (out / "records.rank0.jsonl").is_file() and not (out / "failed.csv").exists()
    files = {p.name for p in (out / "perturbations" / "batch0000").iterdir()}
    assert files == {"random-noise-eps0.h5", "random-noise-eps0.05.h5",
                     "zero_filled-pgd-eps0.h5", "zero_filled-pgd-eps0.05.h5"}
    f = read_perturbed_kspace(out / "perturbations" / "batch0000" / "zero_filled-pgd-eps0.05.h5")
    assert f.attack_settings["sample_ids"] == [r["sample_id"] for r in rows[:2]]
    ratio = f.delta.flatten(1).norm(dim=1) / f.y_clean.flatten(1).norm(dim=1)
    assert torch.allclose(ratio, torch.full((2,), 0.05), atol=1e-4)


def test_report_rerenders(swept, capsys):
    _, out, code = swept
    assert code == 0
    for name in FIGURES:
        (out / name).unlink()
    code, text, err = _run(capsys, "report", str(out))
    assert code == 0, err
    assert all((out / name).is_file() for name in FIGURES)
    assert "ssim_vs_clean (mean per eps)" in text and "delta_psnr (mean per eps)" in text
    assert "zero_filled -> zero_filled" in text and "random -> zero_filled" in text
    assert any(line.startswith("Figures: ") for line in text.splitlines())


def test_report_shows_the_panels_the_sweep_stored_without_any_model(swept, capsys, monkeypatch):
    _, out, code = swept
    assert code == 0
    index = json.loads((out / "panels" / "index.json").read_text())
    assert index["targets"] == ["zero_filled"] and len(index["panels"]) == 2  # eps 0.05 x 2 slices

    def no_models(*a, **k):
        raise AssertionError("report built a model")

    import kspace_attacks.study.config as config_module

    monkeypatch.setattr(config_module, "build_models", no_models)
    (out / "report.html").unlink()
    code, _, err = _run(capsys, "report", str(out))
    assert code == 0, err
    page = (out / "report.html").read_text()
    assert page.count("class='slice-panel'") + page.count('class="slice-panel"') >= 2
    assert "not computed" not in page


def _bad_config(tmp_path, text):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return str(path)


def test_unknown_model_exits_2_listing_models(tmp_path, capsys):
    config = _bad_config(tmp_path, TINY.replace('targets = ["zero_filled"]', 'targets = ["nope"]'))
    code, _, err = _run(capsys, "sweep", "--config", config, "--out", str(tmp_path / "o"), "--quiet")
    assert code == 2
    assert err.startswith("kspace-attacks sweep: error: ")
    assert "unknown reconstructor 'nope'" in err
    for name in ("irim", "resunetpp", "diffusion", "zero_filled"):
        assert f"'{name}'" in err
    assert len(err.strip().splitlines()) == 1  # one line, no traceback


@pytest.mark.parametrize(
    "text, extra, match",
    [
        (None, (), "does not exist"),
        (TINY.replace("eps = [0.0, 0.05]", "eps = [0.0, -0.05]"), (), "config.eps: expected numbers >= 0"),
        (TINY.replace("eps = [0.0, 0.05]", 'eps = "0.05"'), (), "config.eps: expected a list of numbers"),
        ("unknown = 1\n" + TINY, (), "unknown key 'unknown'"),
        ("eps = [\n", (), "is not valid TOML"),
        (TINY, ("--device", "cuda:0"), "CUDA is not available"),
    ],
)
def test_sweep_config_errors_exit_2(tmp_path, capsys, text, extra, match):
    if extra and torch.cuda.is_available():  # pragma: no cover - CPU machine
        pytest.skip("CUDA is available")
    config = str(tmp_path / "missing.toml") if text is None else _bad_config(tmp_path, text)
    code, out, err = _run(capsys, "sweep", "--config", config, "--out", str(tmp_path / "o"), *extra)
    assert code == 2
    assert match in err and err.startswith("kspace-attacks sweep: error: ")
    assert out == ""


def test_report_of_missing_folder_exits_2(tmp_path, capsys):
    code, _, err = _run(capsys, "report", str(tmp_path / "none"))
    assert code == 2 and "records.csv" in err


def test_debug_mode_raises(tmp_path, monkeypatch):
    monkeypatch.setenv("KSPACE_ATTACKS_DEBUG", "1")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        main(["sweep", "--config", str(tmp_path / "missing.toml"), "--out", str(tmp_path)])


@pytest.mark.parametrize(
    "argv",
    [[], ["fly"], ["sweep", "--out", "x"], ["report"], ["models", "--extra"]],
)
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "usage: kspace-attacks" in capsys.readouterr().err


def test_report_of_empty_results_exits_2(tmp_path, capsys):
    TransferReport([]).save(tmp_path)
    code, _, err = _run(capsys, "report", str(tmp_path))
    assert code == 2 and "no records" in err


def test_sweep_where_every_batch_fails_is_reported(tmp_path, capsys, monkeypatch):
    from kspace_attacks.study import units

    def broken(*args, **kwargs):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(units, "craft_surrogate", broken)
    config = _bad_config(tmp_path, TINY)
    code, out, err = _run(capsys, "sweep", "--config", config, "--out", str(tmp_path / "o"), "--quiet")
    assert (tmp_path / "o" / "failed.csv").is_file()  # the failure is on disk ...
    assert code != 0 and "failed" in err  # ... and the command says so


def test_installed_script():
    out, err = _INSTALLED.communicate(timeout=300)
    assert _INSTALLED.returncode == 0, err
    assert tomllib.loads(out) == validate_config({**DEMO_CONFIG, **DEMO_OVERRIDES}).as_dict()  # what `demo` runs


# ---------------------------------------------------------------------------------- exit codes
def _fail_batches(monkeypatch, failing: set[int]) -> None:
    """Make the sweep's crafting raise on the given (1-based) calls, i.e. batches (one surrogate)."""
    from kspace_attacks.study import units

    real, calls = units.craft_surrogate, {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] in failing:
            raise RuntimeError(f"simulated failure in call {calls['n']}")
        return real(*args, **kwargs)

    monkeypatch.setattr(units, "craft_surrogate", flaky)


def _two_batches(tmp_path) -> str:
    """The tiny config with one slice per batch: 2 batches."""
    return _bad_config(tmp_path, "batch_size = 1\n" + TINY)


def test_partial_failure_exits_3_with_a_summary(tmp_path, capsys, monkeypatch):
    _fail_batches(monkeypatch, {2})
    code, out, err = _run(capsys, "sweep", "--config", _two_batches(tmp_path), "--out", str(tmp_path / "o"), "--quiet")
    assert code == 3
    assert "1 of 2 slice(s) in 1 of 2 batch(es) failed" in err
    assert "first error (batch 1, slices test-69): RuntimeError: simulated failure in call 2" in err
    assert str(tmp_path / "o" / "failed.csv") in err and "warning" not in err
    assert (tmp_path / "o" / "records.csv").is_file()  # the slices that worked are saved


def test_allow_failures_accepts_partial_results(tmp_path, capsys, monkeypatch):
    _fail_batches(monkeypatch, {1})
    code, out, err = _run(capsys, "sweep", "--config", _two_batches(tmp_path), "--out", str(tmp_path / "o"),
                          "--quiet", "--allow-failures")
    assert code == 0
    assert "kspace-attacks sweep: warning: partial results accepted (--allow-failures): 1 of 2 slice(s)" in err
    with open(tmp_path / "o" / "records.csv", newline="") as f:
        assert {r["sample_id"] for r in csv.DictReader(f)} == {"test-69"}


@pytest.mark.parametrize("allow", [False, True])
def test_all_failed_is_non_zero_even_with_allow_failures(tmp_path, capsys, monkeypatch, allow):
    _fail_batches(monkeypatch, {1, 2})
    extra = ["--allow-failures"] if allow else []
    code, _, err = _run(capsys, "sweep", "--config", _two_batches(tmp_path), "--out", str(tmp_path / "o"),
                        "--quiet", *extra)
    assert code == 3
    assert "every slice failed: 2 of 2 slice(s) in 2 of 2 batch(es) failed" in err


def test_exit_codes_are_in_the_help(capsys):
    with pytest.raises(SystemExit):
        main(["sweep", "--help"])
    text = capsys.readouterr().out
    assert "--allow-failures" in text and "exit codes:" in text
    assert all(f"\n  {code} " in text for code in (0, 2, 3, 130))


@pytest.mark.parametrize("broken", [
    '\n[models.mine]\nmodel = "no_such_file.py:make"\n',              # the model cannot be built
    'data = {nifti = "no_such_volume.nii.gz"}\n',                      # the data cannot be read
])
def test_sweep_that_cannot_start_writes_nothing(tmp_path, capsys, broken):
    text = TINY.replace('targets = ["zero_filled"]', 'targets = ["zero_filled", "mine"]') if "mine" in broken \
        else broken + TINY
    code, _, err = _run(capsys, "sweep", "--config", _bad_config(tmp_path, text), "--out", str(tmp_path / "o"))
    assert code == 2 and "error" in err
    assert not (tmp_path / "o").exists()
