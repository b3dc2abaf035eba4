"""Verdicts: paired CIs and outcomes, per-metric decisions, null-calibrated artifact statistics,
and the equal-norm baseline's delivered energy."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import kspace_attacks as ka
from kspace_attacks.data import demo_batch, get_preset
from kspace_attacks.study import records as R
from kspace_attacks.study.artifacts import residual
from kspace_attacks.study.null import fit_null, structure_fraction, structure_map
from kspace_attacks.study.statistics import bootstrap_ci, paired_outcome
from kspace_attacks.study.verdicts import decide, render_markdown


def zero_filled(y, physics):
    return physics.A_adjoint(y)


# ------------------------------------------------------------------------------ statistics
def test_outcomes_on_known_answers():
    high, low = [1.0, 1.1, 0.9, 1.2, 1.0, 1.05, 0.95, 1.1], [0.1, 0.2, 0.0, 0.1, 0.2, 0.15, 0.05, 0.1]
    assert paired_outcome(high, low).outcome == "holds"
    assert paired_outcome(low, high).outcome == "does not hold"
    assert paired_outcome([0.1, 0.3, 0.0, 0.2], [0.2, 0.1, 0.1, 0.2]).outcome == "inconclusive"
    # the threshold moves the decision
    o = paired_outcome(high, [x - 0.5 for x in high], threshold=1.0)
    assert o.outcome == "does not hold" and o.ci_high <= 1.0
    # 4 independent units cannot decide (their smallest p is 2 * 2**-4), however clear they look
    o = paired_outcome(high[:4], low[:4])
    assert o.outcome == "inconclusive" and o.ci_low > 0.5 and o.p_holds == 0.125
    # NaN pairs are dropped, not propagated
    o = paired_outcome([1.0, float("nan"), 1.2], [0.0, 0.0, 0.1])
    assert o.n == 2 and o.small_sample


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-10, 10), min_size=2, max_size=12))
def test_bootstrap_ci_brackets_the_mean_and_is_seeded(values):
    lo, hi = bootstrap_ci(values)
    m = sum(values) / len(values)
    assert lo - 1e-9 <= m <= hi + 1e-9
    assert (lo, hi) == bootstrap_ci(values)


def test_outcome_logic_is_consistent_with_the_ci():
    g = torch.Generator().manual_seed(0)
    for shift in (-1.0, -0.05, 0.0, 0.05, 1.0):
        a = (torch.randn(12, generator=g) * 0.3 + shift).tolist()
        o = paired_outcome(a, [0.0] * 12)
        expected = ("holds" if o.ci_low > 0 else "does not hold" if o.ci_high <= 0 else "inconclusive")
        assert o.outcome == expected


# ------------------------------------------------------------------------------ decide / render
def _records(harm_dev: float, harm_ssim: float, n: int = 6) -> list[dict]:
    """Synthetic records: the attack is worse than noise in deviation by ``harm_dev`` and in SSIM
    by ``harm_ssim`` (per slice, with small paired jitter)."""
    g = torch.Generator().manual_seed(1)
    recs = []
    for i in range(n):
        base_dev, base_ssim = 0.1 + 0.05 * i, -0.05 - 0.01 * i
        jitter = float(torch.randn(1, generator=g)) * 0.01
        for eps in (0.02, 0.08):
            for s, a, setting, dev, ssim in (
                ("s", "pgd", "transfer", base_dev + harm_dev + jitter, base_ssim - harm_ssim - jitter),
                (R.BASELINE_SURROGATE, R.BASELINE_ATTACK, "baseline", base_dev, base_ssim),
            ):
                recs.append({R.SAMPLE_ID: f"x{i}", R.SURROGATE: s, R.ATTACK: a, R.TARGET: "t",
                             R.SETTING: setting, R.EPS: eps, R.RELATIVE_DEVIATION: dev * eps / 0.08,
                             R.DELTA_SSIM: ssim, R.DELTA_PSNR: 10 * ssim, R.STRUCTURE_FRACTION: 0.01})
    return recs


def test_each_metric_is_decided_separately():
    # The attack wins in its own objective but loses in SSIM: the verdicts must say both.
    rows = decide(_records(harm_dev=0.3, harm_ssim=-0.2, n=12))
    beats = {(r["metric"], r["eps"]): r["outcome"] for r in rows if r["claim_id"] == "beats_noise"}
    assert beats[("deviation", 0.08)] == "holds"
    assert beats[("ssim", 0.08)] == "does not hold"
    assert beats[("psnr", 0.08)] == "does not hold"
    structured = [r for r in rows if r["claim_id"] == "structured"]
    # equal areas: a tie, not "does not hold"
    assert structured and all(r["outcome"] == "no difference" for r in structured)
    grows = {r["metric"]: r["outcome"] for r in rows if r["claim_id"] == "grows_with_eps"}
    assert grows["deviation"] == "holds"
    for r in rows:  # 12 slices without subject ids: 12 units, not a small sample
        assert r["n"] == r["n_clusters"] == 12 and r["unit"] == "item" and not r["small_sample"]
        assert r["target"] == "t" and r["correction"] == "holm"
    # 6 slices: small samples; 6 units give p >= 2 * 2**-6, so Holm over each question's tested
    # cells (a claim in one metric: one per eps) decides none of beats_noise, while
    # grows_with_eps (one tested cell per metric) still holds
    few = decide(_records(harm_dev=0.3, harm_ssim=-0.2))
    assert all(r["small_sample"] for r in few)
    beats = [r for r in few if r["claim_id"] == "beats_noise"]
    assert all(r["family_size"] == 2 for r in beats)
    assert all(r["outcome"] == "inconclusive" and r["p_adjusted"] == 2 * 2 ** -5 for r in beats)
    assert {r["outcome_uncorrected"] for r in beats} == {"holds", "does not hold"}  # alone, each would
    assert [r["outcome"] for r in few if r["claim_id"] == "grows_with_eps" and r["metric"] == "deviation"] == ["holds"]


def test_markdown_is_tables_with_a_sentence_per_claim():
    rows = decide(_records(harm_dev=0.3, harm_ssim=-0.2))
    text = render_markdown(rows)
    assert "{" not in text and "| eps | deviation | ssim | psnr |" in text
    assert "it holds in" in text and "small sample" in text
    claims = text.split("## Every claim")[1]
    assert text.index("## The study's questions, answered") < text.index("## Every claim")
    assert claims.count("## ") == len({(r["claim_id"], r["surrogate"], r["attack"], r["target"], r["setting"]) for r in rows})


# ------------------------------------------------------------------------------ calibrated null
@pytest.fixture(scope="module")
def batch():
    return demo_batch(2, preset="embedded")


def _noise_rows(report) -> list[float]:
    return [r[R.STRUCTURE_FRACTION] for r in report.records if r[R.SETTING] == R.BASELINE and r[R.EPS] > 0]


def test_noise_scores_nominal_on_zero_filled(batch):
    x, y, physics = batch
    report = ka.transfer({"zf": zero_filled}, {"zf": zero_filled}, (x, y, physics), eps=[0.0, 0.04, 0.08],
                         attack=ka.FGM(ka.KSpaceL2()), progress=False, keep_perturbations=False)
    noise = _noise_rows(report)
    assert len(noise) == 4 and sum(noise) / len(noise) <= 0.02
    assert all(math.isnan(r[R.STRUCTURE_FRACTION]) for r in report.records if r[R.EPS] == 0)
    # the uncalibrated statistic flags far more than its nominal 0.3 % on the same noise rows
    hall = [r[R.HALLUCINATION_FRACTION] for r in report.records if r[R.SETTING] == R.BASELINE and r[R.EPS] > 0]
    assert sum(hall) / len(hall) > 0.05


def test_noise_scores_nominal_on_diffusion(batch):
    from kspace_attacks.adapters import load_reconstructor

    x, y, physics = batch
    diffusion = load_reconstructor("diffusion", steps=6)
    report = ka.transfer({"zf": zero_filled}, {"diffusion": diffusion}, (x, y, physics), eps=[0.04, 0.08],
                         attack=ka.FGM(ka.KSpaceL2()), progress=False, keep_perturbations=False)
    noise = _noise_rows(report)
    assert len(noise) == 4 and sum(noise) / len(noise) <= 0.02


def test_a_planted_structure_is_found(batch):
    x, y, physics = batch
    threat = ka.KSpaceL2(eps=0.05)
    clean = zero_filled(y, physics)
    null_res = []
    for k in range(8):
        d = threat.sphere(y, physics, torch.Generator().manual_seed(k))
        null_res.append(residual(zero_filled(threat.apply(y, d, physics), physics), clean))
    null = fit_null(torch.stack(null_res))
    fresh = residual(zero_filled(threat.apply(y, threat.sphere(y, physics, torch.Generator().manual_seed(99)),
                                              physics), physics), clean)
    assert float(structure_fraction(fresh, null).mean()) <= 0.02
    blob = torch.zeros_like(fresh)
    blob[:, :, 20:30, 30:40] = 6 * float(null.scale.mean())  # 100 pixels of 4096: area 0.0244
    found = structure_map(fresh + blob, null)
    inside = found[:, :, 20:30, 30:40].float().mean()
    assert float(inside) >= 0.8
    assert float(structure_fraction(fresh + blob, null).mean()) <= 0.0244 + 0.03


# ------------------------------------------------------------------------------ baseline energy
def test_full_support_noise_delivers_the_budget(batch):
    x, y, physics = batch
    eps = 0.05
    report = ka.transfer({"zf": zero_filled}, {"zf": zero_filled}, (x, y, physics), eps=[eps],
                         attack=ka.FGM(ka.KSpaceL2(support="full")), progress=False,
                         keep_perturbations=False, null_draws=0)
    budget = (eps * y.flatten(1).norm(dim=1)).pow(2)
    noise = [r for r in report.records if r[R.SETTING] == R.BASELINE]
    attack = [r for r in report.records if r[R.SETTING] != R.BASELINE]
    # zero-filled is an isometry on the measured entries: deviation = energy that reaches it
    for r in noise:
        assert r[R.RATIO] == pytest.approx(eps, rel=1e-5)
        assert r[R.SQUARED_DEVIATION] == pytest.approx(float(budget[r[R.SAMPLE_ID]]), rel=1e-4)
    for r in attack:  # the attack puts its whole budget on measured entries too
        assert r[R.SQUARED_DEVIATION] == pytest.approx(float(budget[r[R.SAMPLE_ID]]), rel=1e-3)
    # without the correction, noise drawn on the full grid and masked would deliver ~1/R of it
    threat = ka.KSpaceL2(eps=eps, support="full")
    masked = threat.apply(y, threat.sphere(y, physics, torch.Generator().manual_seed(0)), physics) - y
    accel = get_preset("embedded").acceleration
    assert float(masked.flatten(1).norm(dim=1).pow(2).mean() / budget.mean()) < 2.0 / accel
