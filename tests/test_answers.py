"""The study's questions answered first, from synthetic records whose answers are known."""

from __future__ import annotations

import re

import torch

from kspace_attacks.study import records as R
from kspace_attacks.study.answers import QUESTIONS, answer, diffusion_targets, render_answers_markdown
from kspace_attacks.study.verdicts import ablations_of, decide, render_markdown

CONFIG = {"surrogates": ["irim", "diffusion"], "targets": ["irim", "diffusion", "diffusion_nodc"],
          "attacks": {"worst_case": {}}, "models": {"diffusion_nodc": {"model": "diffusion", "final_dc": False}}}


def _records(n: int = 12) -> list[dict]:
    """Known answers, per slice with paired jitter:

    - transfer irim -> diffusion beats noise in deviation (+0.2), ties with it in SSIM and PSNR
      (exactly equal values), and grows with eps in deviation;
    - white-box diffusion beats noise in every metric;
    - the sampler without final data consistency is harmed more than with it (deviation +0.1)
      and exactly alike in SSIM and PSNR.
    """
    g = torch.Generator().manual_seed(3)
    recs = []

    def rec(s, a, t, eps, i, dev, ssim, psnr):
        return {R.SAMPLE_ID: f"test-{i}", R.SURROGATE: s, R.ATTACK: a, R.TARGET: t, R.EPS: eps,
                R.RELATIVE_DEVIATION: dev, R.DELTA_SSIM: -ssim, R.DELTA_PSNR: -psnr}

    for i in range(n):
        j = float(torch.randn(1, generator=g)) * 0.01
        for eps in (0.02, 0.08):
            noise_dev, noise_ssim, noise_psnr = 0.05 + eps + 0.01 * i, 0.01 + 0.1 * eps, 0.5 + 5 * eps
            grow = 2 * eps
            for t, extra in (("diffusion", 0.0), ("diffusion_nodc", 0.1)):
                recs.append(rec(R.BASELINE_SURROGATE, R.BASELINE_ATTACK, t, eps, i, noise_dev, noise_ssim, noise_psnr))
                recs.append(rec("irim", "worst_case", t, eps, i, noise_dev + 0.2 + grow + extra + j,
                                noise_ssim, noise_psnr))
                recs.append(rec("diffusion", "worst_case", t, eps, i, noise_dev + 0.3 + extra + j,
                                noise_ssim + 0.05 + j, noise_psnr + 2 + j))
    return recs


def _answers():
    rows = decide(_records(), ablations=ablations_of(CONFIG))
    return {a.question.key: a for a in answer(rows, CONFIG)}, rows


def test_ablation_pairs_come_from_the_models_table():
    assert ablations_of(CONFIG) == {"diffusion_nodc": "diffusion"}
    assert ablations_of({"targets": ["a"], "models": {"b": {"model": "a"}}}) == {}  # b is not a target
    assert diffusion_targets(CONFIG, ["irim", "diffusion", "diffusion_nodc"]) == ["diffusion", "diffusion_nodc"]
    assert diffusion_targets({"models": {"sampler2": {"model": "diffusion"}}}, ["sampler2", "irim"]) == ["sampler2"]


def test_known_answers_per_metric():
    answers, _ = _answers()
    assert [a.question.key for a in answers.values()] == [q.key for q in QUESTIONS]
    transfer = answers["transfer_beats_noise"]
    assert transfer.words == {"deviation": "yes", "ssim": "no difference", "psnr": "no difference"}
    assert answers["grows_with_eps"].words["deviation"] == "yes"
    assert answers["whitebox_beats_noise"].words == {"deviation": "yes", "ssim": "yes", "psnr": "yes"}
    assert answers["final_dc"].words == {"deviation": "yes, more without it", "ssim": "no difference",
                                         "psnr": "no difference"}
    # not measured: no structure statistic, no targeted test, no white-box change on the surrogate
    assert answers["structured"].lines == [] and answers["targeted"].lines == []
    # every line: answer, counts, a headline cell with its effect, CI and n
    line = transfer.lines[0]
    # (the counts after the Holm correction, and what stands behind them: no subject ids here)
    assert re.match(r"deviation: yes \(4 holds of 4 cells; after Holm; unit: item, no subject ids\); e\.g\. "
                    r"surrogate irim, attack worst_case, target diffusion(_nodc)?, eps 0\.08: "
                    r"\+0\.\d+ \[\+0\.\d+, \+0\.\d+\], n = 12, p_adj = 0\.00\d+, holds$", line), line
    # the headline cell is the largest eps; its numbers are the verdict row's
    h = transfer.rows[0]
    assert all(r["n"] == 12 for r in transfer.rows) and not transfer.small_sample
    assert any(f"{r['mean_diff']:+.3f}" in line for r in transfer.rows if r["eps"] == 0.08 and r["metric"] == "deviation")
    del h


def test_small_samples_and_mixed_outcomes_are_said():
    recs = [r for r in _records(n=4)]
    small = decide(recs, ablations=ablations_of(CONFIG))
    answers = {a.question.key: a for a in answer(small, CONFIG)}
    assert answers["transfer_beats_noise"].small_sample
    assert "(small sample)" in answers["transfer_beats_noise"].lines[0]
    # 4 slices are 4 units: too few to decide anything, however large the effect
    assert answers["transfer_beats_noise"].words["deviation"] == "inconclusive"
    _, rows = _answers()
    # flip one cell: the answer becomes mixed, not yes; an inconclusive one: "yes or inconclusive"
    def flip(outcome):
        return [dict(r, outcome=outcome) if r["claim_id"] == "beats_noise" and r["eps"] == 0.02
                and r["metric"] == "deviation" and r["target"] == "diffusion" and r["surrogate"] == "irim" else r
                for r in rows]
    for outcome, word in (("does not hold", "mixed"), ("inconclusive", "yes or inconclusive")):
        got = {a.question.key: a for a in answer(flip(outcome), CONFIG)}
        assert got["transfer_beats_noise"].words["deviation"] == word


def test_the_final_dc_question_is_two_sided():
    """The sampler with the final data consistency harmed more (the ablation's harm is lower):
    "yes, more with it", not "no"."""
    recs = [dict(r, **{R.RELATIVE_DEVIATION: r[R.RELATIVE_DEVIATION] - 0.2})
            if r[R.TARGET] == "diffusion_nodc" and r[R.SURROGATE] != R.BASELINE_SURROGATE else r for r in _records()]
    rows = decide(recs, ablations=ablations_of(CONFIG))
    final = {a.question.key: a for a in answer(rows, CONFIG)}["final_dc"]
    assert final.words["deviation"] == "yes, more with it"
    assert final.lines[0].startswith("deviation: yes, more with it (4 more with it of 4 cells; after Holm")
    assert final.lines[0].endswith(", more with it")


def test_markdown_puts_the_answers_first():
    answers, rows = _answers()
    text = render_answers_markdown(list(answers.values()))
    assert text.startswith("## The study's questions, answered")
    assert text.count("\n1. **") == 1 and "7. **Does the final data consistency matter" in text
    assert "not measured in this run" in text
    full = render_markdown(rows, "Verdicts", CONFIG)
    assert full.index("The study's questions") < full.index("## Every claim")
    assert "degrades diffusion_nodc (an ablation of diffusion) more than diffusion" in full
