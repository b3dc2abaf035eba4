"""The demo pipeline end to end on a tiny configuration (the full demo is `kspace-attacks demo`)."""

from __future__ import annotations

import json

import pytest

from kspace_attacks.study.demo import run_demo
from kspace_attacks.study.verdicts import decide
from kspace_attacks.study.report import TransferReport
from kspace_attacks.study.sweep import DEMO_CONFIG, validate_config

TINY = dict(
    DEMO_CONFIG,
    n_slices=2,
    batch_size=2,
    eps=[0.0, 0.04, 0.08],
    attacks={"pgd": {"type": "PGD", "steps": 3}, "adam": {"type": "ProjectedAdam", "max_steps": 3}},
    models={"diffusion": {"steps": 4}},
    targeted={"slices": 2, "eps": 0.05},  # the configuration decides every step of the run
    report={"panel_slices": 1},
    null_draws=2,
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return out, run_demo(out, validate_config(TINY), progress=False)


def test_demo_writes_every_artifact(demo):
    out, result = demo
    for name in ("records.csv", "summary.json", "summary.csv", "config.toml", "panel.png", "verdict.md",
                 "targeted.csv", "targeted_panel.png", "delta_ssim_vs_eps.png", "delta_psnr_vs_eps.png"):
        assert (out / name).is_file(), name
    report = TransferReport.load(out)
    # 2 slices x 3 eps x (2 surrogates x 2 attacks + noise) x 4 targets
    assert len(report) == 2 * 3 * 5 * 4
    assert {r["target"] for r in report.records} == {"irim", "resunetpp", "diffusion", "zero_filled"}
    assert set(result["targeted_roi_contrast"]) == {"irim", "resunetpp", "diffusion", "zero_filled"}
    # the provenance splits the wall time by phase, and the phases add up to (nearly) all of it
    provenance = json.loads((out / "provenance.json").read_text())
    phases = provenance["phase_seconds"]
    assert list(phases) == ["models", "sweep", "panel", "targeted", "verdicts", "report"]
    assert 0.8 * provenance["wall_seconds"] <= sum(phases.values()) <= provenance["wall_seconds"] + 0.1


def test_demo_verdicts_carry_their_numbers(demo):
    out, result = demo
    rows = result["verdicts"]
    claims = {r["claim_id"] for r in rows}
    assert {"beats_noise", "grows_with_eps", "structured", "noise_like", "targeted_shows"} <= claims
    assert {r["metric"] for r in rows if r["claim_id"] == "beats_noise"} == {"deviation", "ssim", "psnr"}
    assert any(r["target"] == "diffusion" and r["setting"] == "transfer" for r in rows)
    for r in rows:
        assert r["outcome"] in ("holds", "does not hold", "negligible", "inconclusive", "no difference")
        assert r["small_sample"] and r["n"] == 2  # the tiny demo: 2 slices per cell
        if r["outcome"] == "holds":
            assert r["ci_low"] > r["threshold"]
    text = (out / "verdict.md").read_text()
    assert "{" not in text  # tables, not raw JSON
    for r in rows:
        assert r["claim"] in text
    doc = json.loads((out / "verdict.json").read_text())
    assert len(doc["rows"]) == len(rows)
    # recomputing from the saved records gives the same verdicts
    again = decide(TransferReport.load(out).records)
    sweep_rows = [r for r in rows if r["claim_id"] != "targeted_shows"]
    assert [(r["claim"], r["metric"], r["eps"], r["outcome"]) for r in again] == \
        [(r["claim"], r["metric"], r["eps"], r["outcome"]) for r in sweep_rows]


def test_white_box_attack_beats_noise_on_irim(demo):
    out, _ = demo
    report = TransferReport.load(out)
    pgd = [r["squared_deviation"] for r in report.filter(target="irim", surrogate="irim", attack="pgd", eps=0.08)]
    noise = [r["squared_deviation"] for r in report.filter(target="irim", surrogate="random", eps=0.08)]
    assert sum(pgd) > 2 * sum(noise)


def test_sweep_of_the_demo_config_reproduces_its_records(demo, tmp_path):
    # `kspace-attacks demo --print-config > cfg.toml; kspace-attacks sweep --config cfg.toml`
    # must give the demo's records (timing columns aside)
    import csv

    from kspace_attacks.cli import main
    from kspace_attacks.study.sweep import dump_toml

    out, _ = demo
    cfg = tmp_path / "demo.toml"
    cfg.write_text(dump_toml(validate_config(TINY)))
    assert main(["sweep", "--config", str(cfg), "--out", str(tmp_path / "again"), "--quiet"]) == 0

    def rows(path):
        with open(path, newline="") as f:
            return [{k: v for k, v in r.items() if "seconds" not in k} for r in csv.DictReader(f)]

    assert rows(tmp_path / "again" / "records.csv") == rows(out / "records.csv")
