"""The study at scale: targets that share one sampler run, surrogates attacked on fewer slices,
the plan that counts both, ties that are not effects, and the ``study`` command's options."""

from __future__ import annotations

import torch
import deepinv as dinv
import pytest

from kspace_attacks.adapters.diffusion import DiffusionReconstructor
from kspace_attacks.adapters.score_unet import ScoreUNet
from kspace_attacks.cli import main
from kspace_attacks.study.config import (
    STUDY_CONFIG,
    ConfigError,
    dump_toml,
    surrogate_batches,
    surrogate_options,
    validate_config,
)
from kspace_attacks.study.plan import plan_sweep
from kspace_attacks.study.statistics import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, NO_DIFFERENCE, paired_outcome
from kspace_attacks.study.sweep import run_sweep
from kspace_attacks.study.transfer import reconstruct_all, trajectory_groups
from kspace_attacks.study.units import RANDOM, Unit, units_of
from kspace_attacks.study.verdicts import decide


def _sampler(final_dc: bool = True, seed: int = 0, net: ScoreUNet | None = None, steps: int = 3):
    torch.manual_seed(0)
    net = net if net is not None else ScoreUNet(channels=(8, 16), attn_levels=())
    return DiffusionReconstructor(net, steps=steps, final_dc=final_dc, seed=seed).eval()


@pytest.fixture(scope="module")
def mri():
    mask = torch.zeros(16, 16)
    mask[:, ::2] = 1
    physics = dinv.physics.MRI(mask=mask, img_size=(16, 16))
    x = torch.rand(3, 2, 16, 16, generator=torch.Generator().manual_seed(1))
    return physics(x), physics


# ------------------------------------------------------------------ one sampler run, two targets
def test_sample_variants_equal_the_two_separate_runs(mri):
    y, physics = mri
    model, nodc = _sampler(True), _sampler(False)
    both = model.sample_variants(y, physics)
    assert torch.equal(both[True], model(y, physics))
    assert torch.equal(both[False], nodc(y, physics))
    assert not torch.equal(both[True], both[False])  # the final projection changes the output


def test_trajectory_groups_pair_only_models_that_differ_in_final_dc(mri):
    y, physics = mri
    net = ScoreUNet(channels=(8, 16), attn_levels=())
    zf = lambda y_, p: p.A_adjoint(y_)  # noqa: E731
    targets = {"dc": _sampler(True, net=net), "zf": zf, "nodc": _sampler(False, net=net),
               "other_seed": _sampler(False, seed=1, net=net), "dc_twin": _sampler(True, net=net)}
    # same weights, schedule and sampler except final_dc: one group; a different seed or a second
    # model with the same final_dc runs alone
    assert trajectory_groups(targets) == [["dc", "nodc"], ["zf"], ["other_seed"], ["dc_twin"]]
    other_weights = ScoreUNet(channels=(8, 16), attn_levels=())
    with torch.no_grad():
        next(other_weights.parameters()).add_(1.0)
    assert trajectory_groups({"a": _sampler(True, net=net), "b": _sampler(False, net=other_weights)}) == [["a"], ["b"]]
    got = reconstruct_all(targets, y, physics)
    assert list(got) == list(targets)
    for name, model in targets.items():
        with torch.no_grad():
            assert torch.equal(got[name][0], model(y, physics)), name
    # in chunks (a stochastic sampler draws per call): still each model's own chunked output
    chunked = reconstruct_all(targets, y, physics, chunk=2)
    for name, model in targets.items():
        with torch.no_grad():
            own = torch.cat([model(y[:2], physics), model(y[2:], physics)])
        assert torch.equal(chunked[name][0], own), name


def test_a_sweep_with_a_shared_run_gives_the_records_of_separate_runs(tmp_path, monkeypatch):
    """Both sampler variants as targets: records equal those of separately run targets."""
    from kspace_attacks.study import transfer

    cfg = validate_config({"n_slices": 1, "batch_size": 1, "eps": [0.05], "surrogates": ["zero_filled"],
                           "targets": ["diffusion", "diffusion_nodc"], "null_draws": 2,
                           "attacks": {"fgm": {"type": "fgm"}},
                           "models": {"diffusion": {"steps": 2}, "diffusion_nodc": {"model": "diffusion", "steps": 2,
                                                                                   "final_dc": False}}})
    strip = lambda rs: [{k: v for k, v in r.items() if "seconds" not in k} for r in rs]  # noqa: E731
    shared = strip(run_sweep(cfg, tmp_path / "shared", progress=False).report.records)
    monkeypatch.setattr(transfer, "trajectory_groups", lambda targets: [[t] for t in targets])
    separate = strip(run_sweep(cfg, tmp_path / "separate", progress=False).report.records)
    assert shared == separate and len(shared) == 4


# ------------------------------------------------------------------ fewer slices for a surrogate
def test_surrogate_slices_limit_its_units_and_count_in_the_plan():
    crafts = [("irim", "a"), ("diffusion", "a")]
    units = units_of(3, crafts, None, {"diffusion": 1})
    assert units == [Unit(0, RANDOM), Unit(0, "irim", "a"), Unit(0, "diffusion", "a"),
                     Unit(1, RANDOM), Unit(1, "irim", "a"), Unit(2, RANDOM), Unit(2, "irim", "a")]
    cfg = validate_config({"n_slices": 4, "batch_size": 2, "eps": [0.02, 0.08], "surrogates": ["zero_filled", "irim"],
                           "targets": ["zero_filled"], "null_draws": 2,
                           "attacks": {"w": {"type": "worst_case", "budget": 100}},
                           "surrogate_models": {"irim": {"attack_steps": 20, "n_slices": 2}}})
    assert surrogate_batches(cfg) == {"irim": 1} and surrogate_options(cfg) == {"irim": {"steps": 20}}
    plan = plan_sweep(cfg, timing=False)
    # irim: 2 slices x 2 eps = 4 rows, 20 gradient evaluations each (attack_steps)
    assert plan.grad_evals == {("zero_filled", "w"): 8 * 100, ("irim", "w"): 4 * 20}
    assert plan.reconstructions == {"zero_filled": 8 * (1 + 1 + 2) + 8 + 4}
    assert "irim / w: 4 x 20 = 80 (first 1 batch(es))" in plan.text()
    raw = {**cfg.as_dict(), "surrogate_models": {"irim": {"n_slices": 3}}}
    with pytest.raises(ConfigError, match=r"surrogate_models.irim.n_slices must be a positive multiple of "
                                          r"batch_size \(2\), got 3"):
        validate_config(raw)
    for bad, expected in ((0, "an integer >= 1, got 0"), (True, "an integer, got bool True")):
        with pytest.raises(ConfigError, match=rf"config\.surrogate_models\.irim\.n_slices: expected {expected}"):
            validate_config({**raw, "surrogate_models": {"irim": {"n_slices": bad}}})


def test_a_sweep_attacks_a_limited_surrogate_on_its_slices_only(tmp_path):
    cfg = validate_config({"n_slices": 2, "batch_size": 1, "eps": [0.05], "surrogates": ["zero_filled", "resunetpp"],
                           "targets": ["zero_filled"], "null_draws": 0, "attacks": {"fgm": {"type": "fgm"}},
                           "surrogate_models": {"resunetpp": {"n_slices": 1}}})
    records = run_sweep(cfg, tmp_path, progress=False).report.records
    by = {(r["surrogate"], r["sample_id"]) for r in records}
    ids = sorted({r["sample_id"] for r in records})
    assert len(ids) == 2
    assert ("resunetpp", ids[0]) in by or ("resunetpp", ids[1]) in by
    assert sum(s == "resunetpp" for s, _ in by) == 1
    assert {("zero_filled", i) for i in ids} <= by and {("random", i) for i in ids} <= by
    assert not (tmp_path / "shared").exists()  # every unit ran: the sweep finished and cleaned up


# ------------------------------------------------------------------ ties
def test_differences_below_the_resolution_are_no_difference():
    base = [0.0512, 0.0634, 0.0467, 0.0588, 0.0541, 0.0602, 0.0495, 0.0577]  # 8 units: enough to decide
    # the zero-filled case: attack and noise move the output alike, up to float rounding
    for delta in (1.1e-8, -3.7e-9):
        out = paired_outcome([b + delta for b in base], base)
        assert out.outcome == NO_DIFFERENCE and out.tolerance == pytest.approx(1e-6 * sum(base) / 8)
    assert paired_outcome([b + 1e-3 for b in base], base).outcome == HOLDS
    assert paired_outcome([b - 1e-3 for b in base], base).outcome == DOES_NOT_HOLD
    # a real spread around the threshold stays inconclusive
    assert paired_outcome([0.05, 0.07, 0.04, 0.06], [0.06, 0.05, 0.05, 0.05]).outcome == INCONCLUSIVE
    # resolution 0 restores the strict rule
    assert paired_outcome([b + 1.1e-8 for b in base], base, resolution=0.0).outcome == HOLDS
    with pytest.raises(ValueError, match="resolution: expected a number >= 0, got -1"):
        paired_outcome(base, base, resolution=-1)


def test_zero_filled_attack_and_noise_tie_in_deviation(tmp_path):
    """On the linear zero-filled model, an l2 attack and equal-norm noise on the measured entries
    change the output by exactly the same norm: its beats_noise / deviation verdict is a tie."""
    cfg = validate_config({"n_slices": 4, "batch_size": 4, "eps": [0.02, 0.08], "surrogates": ["zero_filled"],
                           "targets": ["zero_filled"], "null_draws": 0,
                           "attacks": {"pgd": {"type": "pgd", "steps": 3}}})
    rows = decide(run_sweep(cfg, tmp_path, progress=False).report.records)
    dev = [r for r in rows if r["claim_id"] == "beats_noise" and r["metric"] == "deviation"]
    assert len(dev) == 2 and all(r["outcome"] == NO_DIFFERENCE for r in dev), dev
    assert all(abs(r["mean_diff"]) < r["tolerance"] for r in dev)


# ------------------------------------------------------------------ the study command
def test_study_config_fits_the_issue_shape():
    cfg = validate_config(STUDY_CONFIG)
    assert cfg.n_slices >= 16 and {0.02, 0.05, 0.08} <= set(cfg.eps)
    assert {"diffusion", "diffusion_nodc"} <= set(cfg.targets)
    assert cfg.surrogates == ["irim", "resunetpp"] and cfg.surrogate_models == {}
    assert {a.options["loss"] for a in cfg.attacks.values() if "loss" in a.options} == {"ssim"}
    assert cfg.null_draws >= 4 and {"dps_50", "diffpir_50"} <= set(cfg.targets)
    plan = plan_sweep(cfg, timing=False)
    assert plan.surrogate_rows("irim") == cfg.n_slices * 3


def test_study_prints_its_config_and_takes_one_back(tmp_path, capsys):
    assert main(["study", "--print-config"]) == 0
    printed = capsys.readouterr().out
    path = tmp_path / "study.toml"
    assert printed.count("null_draws = 4") == 1
    path.write_text(printed.replace("null_draws = 4", "null_draws = 6"))
    assert main(["study", "--config", str(path), "--print-config"]) == 0
    again = capsys.readouterr().out
    assert again.replace("null_draws = 6", "null_draws = 4") == printed
    # a key merged over the study's own settings, not the demo's
    small = tmp_path / "small.toml"
    small.write_text("null_draws = 2\n")
    assert main(["study", "--config", str(small), "--print-config"]) == 0
    text = capsys.readouterr().out
    assert "null_draws = 2" in text and 'targets = ["irim", "resunetpp", "diffusion", "diffusion_nodc"' in text
    bad = tmp_path / "bad.toml"
    bad.write_text("n_slice = 4\n")
    assert main(["study", "--config", str(bad), "--print-config"]) == 2
    assert "unknown key 'n_slice'" in capsys.readouterr().err


def test_study_dry_run_plans_without_writing(tmp_path, capsys):
    small = tmp_path / "small.toml"
    small.write_text(dump_toml(validate_config({"n_slices": 1, "batch_size": 1, "eps": [0.05],
                                                "surrogates": ["zero_filled"], "targets": ["zero_filled"],
                                                "null_draws": 0, "attacks": {"fgm": {"type": "fgm"}},
                                                "surrogate_models": {}}, STUDY_CONFIG)))
    out = tmp_path / "never"
    assert main(["study", "--config", str(small), "--out", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert not out.exists()
    assert "Plan of the study" in text and "estimated wall time:" in text


def test_the_plan_assigns_units_to_ranks_each_at_the_configured_threads():
    cfg = validate_config({"n_slices": 2, "batch_size": 2, "eps": [0.05], "surrogates": ["zero_filled", "irim"],
                           "targets": ["zero_filled"], "null_draws": 2, "threads": 2,
                           "attacks": {"a": {"type": "pgd", "steps": 10}}})
    plan = plan_sweep(cfg, timing=False)
    # per call + per row at the configured 2 threads, which every rank runs
    plan.grad_cost = {"zero_filled": (0.0, 0.2), "irim": (0.0, 0.6)}
    plan.recon_cost = {"zero_filled": (0.0, 2.0)}
    rows = 2
    one = plan.unit_seconds()
    assert [n for n, _ in one] == ["batch 0, clean + null + noise", "batch 0, zero_filled / a", "batch 0, irim / a"]
    assert [round(s, 6) for _, s in one] == [4 * rows * 2.0, 10 * rows * 0.2 + 2 * rows, 10 * rows * 0.6 + 2 * rows]
    ranks = plan.rank_plan(2)
    assert plan.rank_threads(2) == 2 and [len(names) for names, _ in ranks] == [1, 2]
    # the references (16 s) on rank 0; zero_filled/a (8 s) then irim/a (16 s) on rank 1
    assert [round(s, 6) for _, s in ranks] == [16.0, 8.0 + 16.0]
    assert plan.seconds(1) == pytest.approx(sum(s for _, s in one)) and plan.seconds(2) == pytest.approx(24.0)
    text = plan.text()
    assert "with 2 ranks (2 thread(s) each: 4 cores, or the launch is refused unless oversubscribe = true):" in text
    assert "rank 0: 1 unit(s), about 16 s" in text and "rank 1: 2 unit(s), about 24 s" in text
