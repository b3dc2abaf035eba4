"""Verdicts a reviewer would sign: the cluster bootstrap (slices of one subject are not
independent), the practical-effect floor (negligible differences do not hold) and the
multiplicity correction within each claim (Holm by default, Benjamini-Hochberg as an option)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kspace_attacks.stats import adjust_p, bootstrap_ci, cluster_bootstrap_ci, cluster_bootstrap_means
from kspace_attacks.study import records as R
from kspace_attacks.study.config import validate_config
from kspace_attacks.study.statistics import (DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, NEGLIGIBLE, NO_DIFFERENCE,
                                             clusters_of, correct, paired_outcome, support)
from kspace_attacks.study.verdicts import decide, render_markdown, summary_lines, write_verdicts


def _records(diffs: list[float], subjects: list | None = None, blocks: list | None = None, target: str = "t",
             noise: float = 0.2, column: str = R.RELATIVE_DEVIATION, surrogate: str = "sur") -> list[dict]:
    """One attack and the noise baseline at eps 0.08: the attack's harm is noise's + ``diffs[i]``."""
    out = []
    for i, d in enumerate(diffs):
        base = {R.SAMPLE_ID: f"s{i}", R.TARGET: target, R.EPS: 0.08}
        if subjects is not None:
            base["subject"] = subjects[i]
        if blocks is not None:
            base["block"] = blocks[i]
        out.append(dict(base, **{R.SURROGATE: surrogate, R.ATTACK: "pgd", column: noise + d}))
        if surrogate == "sur" or surrogate.endswith("0"):  # one baseline row per item and target
            out.append(dict(base, **{R.SURROGATE: R.BASELINE_SURROGATE, R.ATTACK: R.BASELINE_ATTACK,
                                     column: noise}))
    return out


# ------------------------------------------------------------------------------ cluster bootstrap
def _correlated() -> tuple[list[float], list[str]]:
    """6 subjects x 5 slices: near-identical slices within a subject, subjects far apart."""
    g = torch.Generator().manual_seed(0)
    effects = [0.12, -0.02, 0.10, 0.0, 0.08, 0.04]
    diffs = [e + 0.001 * float(torch.randn(1, generator=g)) for e in effects for _ in range(5)]
    return diffs, [f"sub-{k}" for k in range(6) for _ in range(5)]


def test_the_cluster_bootstrap_is_wider_and_is_the_one_used():
    diffs, subjects = _correlated()
    clustered = decide(_records(diffs, subjects))
    naive = decide(_records(diffs))  # the same numbers without subject ids: every slice a unit
    assert len(clustered) == len(naive) == 1
    c, i = clustered[0], naive[0]
    assert (c["unit"], c["n"], c["n_clusters"], c["n_subjects"]) == ("subject", 30, 6, 6)
    assert (i["unit"], i["n"], i["n_clusters"], i["n_subjects"]) == ("item", 30, 30, None)
    assert c["mean_diff"] == pytest.approx(i["mean_diff"])
    # the row's interval is the cluster bootstrap's, and it is much wider than the naive one
    assert (c["ci_low"], c["ci_high"]) == pytest.approx(cluster_bootstrap_ci(diffs, subjects, resamples=c["resamples"]))
    assert (i["ci_low"], i["ci_high"]) == pytest.approx(bootstrap_ci(diffs, resamples=i["resamples"]))
    assert c["ci_high"] - c["ci_low"] > 1.8 * (i["ci_high"] - i["ci_low"])
    # 30 slices "independent" would decide the claim; 6 subjects do not
    assert i["outcome"] == HOLDS and c["outcome"] == INCONCLUSIVE
    assert c["small_sample"] and not i["small_sample"]  # 6 units, not 30


def test_the_unit_falls_back_to_blocks_then_items():
    subjects = [f"sub-{k // 8}" for k in range(24)]  # 3 subjects x 4 blocks x 2 slices
    blocks = [(k // 2) % 4 for k in range(24)]
    recs = [{"subject": s, "block": b} for s, b in zip(subjects, blocks, strict=True)]
    c = clusters_of(recs)
    assert c.unit == "block" and len(set(c.labels)) == 12 and len(set(c.subjects)) == 3
    assert clusters_of(recs, min_subjects=3).unit == "subject"
    # a record without a subject (an earlier version's): every slice its own unit
    assert clusters_of(recs[:-1] + [{"block": 1}]).unit == "item"
    # JSON and CSV spell a block 3, 3.0 or "3": one block
    assert len(set(clusters_of([{"subject": "a", "block": v} for v in (3, 3.0, "3")]).labels)) == 1
    row = decide(_records([0.05 + 0.01 * (k % 3) for k in range(24)], subjects, blocks))[0]
    assert (row["unit"], row["n_clusters"], row["n_subjects"]) == ("block", 12, 3)
    assert support([row]) == "3 subjects, 12 blocks; unit: block"
    assert "3 subjects, 12 blocks; unit: block" in summary_lines([row])[0]


def test_a_few_units_cannot_decide_however_many_slices_they_hold():
    """One subject, two blocks of 10 slices each, every slice clearly worse than noise: the
    bootstrap of 2 units sees no resample below the floor, but 2 units support p >= 0.5."""
    diffs = [0.1 + 0.001 * k for k in range(20)]
    row = decide(_records(diffs, ["sub-0"] * 20, [k // 10 for k in range(20)]))[0]
    assert (row["unit"], row["n_clusters"], row["n_subjects"]) == ("block", 2, 1)
    assert row["ci_low"] > row["floor"]  # the interval of 2 units looks decisive...
    assert row["p_holds"] == 0.5 and row["outcome"] == INCONCLUSIVE  # ...the test is not
    assert decide(_records(diffs))[0]["outcome"] == HOLDS  # 20 slices taken as independent would


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.floats(-5, 5), st.integers(0, 4)), min_size=2, max_size=15))
def test_cluster_bootstrap_invariants(items):
    values, labels = [v for v, _ in items], [c for _, c in items]
    m = cluster_bootstrap_means(values, labels, resamples=500)
    # a mean over items of drawn clusters lies within the clusters' range of item values
    assert float(m.min()) >= min(values) - 1e-9 and float(m.max()) <= max(values) + 1e-9
    # every item counted twice in its own cluster: the same cluster means, the same bootstrap
    doubled = cluster_bootstrap_means(values + values, labels + labels, resamples=500)
    assert torch.allclose(m, doubled, atol=1e-9)
    # one cluster per item is the ordinary bootstrap
    assert cluster_bootstrap_ci(values, resamples=500) == pytest.approx(bootstrap_ci(values, resamples=500))


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match=r"clusters: expected one label per value \(3\), got 2"):
        cluster_bootstrap_means([1.0, 2.0, 3.0], clusters=[1, 2])
    with pytest.raises(ValueError, match="alpha: expected a number in"):
        decide([], alpha=1.5)
    with pytest.raises(ValueError, match="floors: expected metrics among"):
        decide([], floors={"sim": 0.01})
    with pytest.raises(ValueError, match="correction: expected one of"):
        decide([], correction="bonferroni")
    with pytest.raises(ValueError, match="min_subjects: expected an integer >= 1, got 0"):
        decide([], min_subjects=0)
    with pytest.raises(ValueError, match="method: expected one of"):
        adjust_p([0.1], "sidak")


# ------------------------------------------------------------------------------ practical floor
def test_a_tiny_ratio_over_noise_is_negligible_not_holds():
    g = torch.Generator().manual_seed(1)
    noise = [0.2 + 0.02 * float(torch.randn(1, generator=g)) for _ in range(20)]
    recs = []
    for i, b in enumerate(noise):  # the attack: 1 % more than noise on every slice
        base = {R.SAMPLE_ID: f"s{i}", R.TARGET: "t", R.EPS: 0.08}
        recs.append(dict(base, **{R.SURROGATE: "sur", R.ATTACK: "pgd", R.RELATIVE_DEVIATION: 1.01 * b}))
        recs.append(dict(base, **{R.SURROGATE: R.BASELINE_SURROGATE, R.ATTACK: R.BASELINE_ATTACK,
                                  R.RELATIVE_DEVIATION: b}))
    row = decide(recs)[0]
    assert row["ratio"] == pytest.approx(1.01) and row["ci_low"] > 0  # a real, tiny effect
    assert row["outcome"] == NEGLIGIBLE and row["floor"] == pytest.approx(0.1 * row["mean_b"])
    assert row["effect"] == pytest.approx(0.01, rel=1e-6)
    assert -row["floor"] < row["ci_low"] < row["ci_high"] < row["floor"]
    # without a floor the same numbers "hold": the reviewer's complaint
    assert decide(recs, floor_fraction=0.0, floors={"deviation": 0.0})[0]["outcome"] == HOLDS


def test_the_absolute_floor_catches_a_zero_sized_hold():
    """A 20-step attack that reads "+0.000 [+0.000, +0.000] holds" in SSIM: below 0.005 SSIM."""
    diffs = [2e-4 + 1e-5 * (k % 4) for k in range(12)]
    row = decide(_records(diffs, noise=-0.001, column=R.DELTA_SSIM))[0]  # harm = -Delta SSIM
    assert row["metric"] == "ssim" and row["mean_diff"] < 0  # a larger Delta SSIM is less harm
    recs = _records([-d for d in diffs], noise=-0.001, column=R.DELTA_SSIM)
    row = decide(recs)[0]
    assert row["mean_diff"] == pytest.approx(2.15e-4) and row["floor"] == pytest.approx(0.005)
    assert row["outcome"] == NEGLIGIBLE


def test_does_not_hold_means_b_is_clearly_worse():
    g = torch.Generator().manual_seed(2)
    worse = [-0.1 + 0.01 * float(torch.randn(1, generator=g)) for _ in range(12)]
    assert decide(_records(worse))[0]["outcome"] == DOES_NOT_HOLD  # noise clearly worse
    # a CI from well below -floor to inside the floor: neither clearly worse nor negligible
    o = paired_outcome([0.2 + d for d in (-0.09, 0.0, -0.05, 0.01, -0.08, 0.005)], [0.2] * 6, floor=0.02)
    assert o.ci_low < -0.02 < o.ci_high < 0.02 and o.outcome == INCONCLUSIVE


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-1, 1), min_size=3, max_size=12), st.floats(0.0, 0.3))
def test_each_uncorrected_outcome_agrees_with_the_interval_shown(diffs, floor):
    o = paired_outcome([0.5 + d for d in diffs], [0.5] * len(diffs), floor=floor)
    margin = max(o.floor, o.tolerance)
    if o.outcome == HOLDS:
        assert o.ci_low > margin and o.p_holds < 0.05
    elif o.outcome == DOES_NOT_HOLD:
        assert o.ci_high < -margin and o.p_does_not_hold < 0.05
    elif o.outcome == NEGLIGIBLE:
        assert -margin < o.ci_low <= o.ci_high < margin and o.p_negligible < 0.05
    else:
        assert o.outcome in (INCONCLUSIVE, NO_DIFFERENCE)


# ------------------------------------------------------------------------------ multiplicity
def _many_surrogates(n_cells: int = 20, n: int = 8, target: str = "t") -> list[dict]:
    """One claim about one target over 20 surrogates, each a marginal effect (+0.06 +- 0.05 over
    noise's 0.2)."""
    g = torch.Generator().manual_seed(0)
    out = []
    for k in range(n_cells):
        out += _records((torch.randn(n, generator=g) * 0.05 + 0.06).tolist(), target=target,
                        surrogate=f"s{k}")
    return out


def test_holm_corrects_within_the_claim_and_bh_decides_more():
    recs = _many_surrogates()
    holm, bh = decide(recs), decide(recs, correction="bh")

    def holds(rows, key="outcome"):
        return {r["surrogate"] for r in rows if r[key] == HOLDS}
    assert holds(holm) < holds(bh) < holds(holm, "outcome_uncorrected")  # strictly: every set differs
    assert holds(holm, "outcome_uncorrected") == holds(bh, "outcome_uncorrected")
    for r in holm:
        assert r["correction"] == "holm" and r["family_size"] == 20 and r["p_adjusted"] >= r["p_uncorrected"]
        assert (r["outcome"] == HOLDS) == (r["p_adjusted"] < 0.05)
    assert {r["correction"] for r in bh} == {"bh"}
    # the same cells alone (a family of one) are not corrected
    alone = decide([r for r in recs if r[R.SURROGATE] in ("s0", R.BASELINE_SURROGATE)])[0]
    assert alone["family_size"] == 1 and alone["p_adjusted"] == alone["p_uncorrected"]
    # a claim about another target is another question: adding it changes no answer here
    both = decide(recs + _many_surrogates(target="other"))
    assert [r for r in both if r["target"] == "t"] == holm


def test_families_are_claims_and_untested_cells_stay_out():
    rows = [paired_outcome([0.3, 0.5, 0.4, 0.05, 0.2], [0.1] * 5).as_dict() for _ in range(4)]
    tie = paired_outcome([0.1, 0.2], [0.1, 0.2]).as_dict()
    one = paired_outcome([0.5], [0.1]).as_dict()
    assert tie["outcome"] == NO_DIFFERENCE and one["outcome"] == INCONCLUSIVE
    fam = correct([dict(rows[0], claim_id="a"), *(dict(r, claim_id="b") for r in rows[1:]),
                   dict(tie, claim_id="b"), dict(one, claim_id="b")])
    assert [r["family_size"] for r in fam] == [1, 3, 3, 3, 0, 0]
    assert fam[0]["p_adjusted"] == pytest.approx(fam[0]["p_uncorrected"])
    assert fam[1]["p_adjusted"] == pytest.approx(3 * fam[1]["p_uncorrected"])
    assert fam[4]["outcome"] == NO_DIFFERENCE and fam[4]["p_adjusted"] is None
    assert fam[5]["outcome"] == INCONCLUSIVE and fam[5]["p_adjusted"] is None
    legacy = {"claim_id": "a", "outcome": HOLDS, "n": 4}  # a row of an earlier version: kept as it is
    assert correct([legacy]) == [legacy]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=20))
def test_adjusted_p_values_are_ordered_and_bounded(p):
    holm, bh = adjust_p(p, "holm"), adjust_p(p, "bh")
    for raw, h, b in zip(p, holm, bh, strict=True):
        assert raw - 1e-12 <= b <= h + 1e-12 <= 1 + 1e-12  # BH never stricter than Holm
    order = sorted(range(len(p)), key=lambda i: p[i])  # monotone in the raw p
    assert all(holm[i] <= holm[j] + 1e-12 and bh[i] <= bh[j] + 1e-12 for i, j in zip(order, order[1:]))


def test_known_adjustments():
    assert adjust_p([0.01, 0.02, 0.03, 0.5], "holm") == pytest.approx([0.04, 0.06, 0.06, 0.5])
    assert adjust_p([0.01, 0.02, 0.03, 0.5], "bh") == pytest.approx([0.04, 0.04, 0.04, 0.5])


# ------------------------------------------------------------------------------ files and config
def test_write_verdicts_stores_its_settings_and_reads_the_config(tmp_path):
    diffs, subjects = _correlated()
    report = SimpleNamespace(records=_many_surrogates() + _records(diffs, subjects, target="x"),
                             config={"verdicts": {"correction": "bh", "floor_fraction": 0.2}})
    rows = write_verdicts(report, tmp_path)
    doc = json.loads((tmp_path / "verdict.json").read_text())
    assert doc["settings"]["correction"] == "bh" and doc["settings"]["floor_fraction"] == 0.2
    assert doc["settings"]["alpha"] == 0.05 and doc["settings"]["min_subjects"] == 5
    assert len(doc["rows"]) == len(rows) == 21 and {r["correction"] for r in rows} == {"bh"}
    text = (tmp_path / "verdict.md").read_text()
    assert "after Benjamini-Hochberg correction" in text and "6 subjects; unit: subject" in text
    assert "20 % of what condition b does" in text
    # the [verdicts] table of a sweep configuration has the same keys, checked
    cfg = validate_config({"verdicts": {"correction": "bh", "floors": {"ssim": 0.01}}})
    assert write_verdicts(SimpleNamespace(records=report.records, config={}), tmp_path,
                          settings=cfg.verdicts.as_dict())[0]["correction"] == "bh"
    with pytest.raises(ValueError, match="settings: expected a mapping with keys among"):
        write_verdicts(report, tmp_path, settings={"alfa": 0.1})


def test_markdown_counts_negligible_cells_and_names_the_units():
    diffs, subjects = _correlated()
    rows = decide(_records([0.001 * (1 + k % 3) for k in range(12)]) + _records(diffs, subjects, target="x"))
    text = render_markdown(rows)
    assert "**negligible**" in text and "negligible in 1" in text
    assert "unit: item, no subject ids" in text and "6 subjects; unit: subject" in text
    assert any("negligible   1" in line for line in summary_lines(rows))
