"""The search's sanity checks: closed cases, a masked gradient, and where they are reported."""

from __future__ import annotations

import torch

import kspace_attacks as ka
from kspace_attacks.data import demo_batch
from kspace_attacks.metrics import relative_deviation
from kspace_attacks.sanity import check_beats_noise, check_monotone, check_whitebox_beats_transfer
from kspace_attacks.study.verdicts import _sanity_markdown

from ._physics import single_coil
from .test_attacks import WeightedLinear


def test_monotone_and_noise_checks_name_the_rows_that_fail():
    values = torch.tensor([[1.0, 2.0, 3.0], [1.2, 1.0, 3.0], [1.3, 2.5, 2.0]])
    (fail,) = check_monotone(values, [0.01, 0.02, 0.05], where="deviation")
    assert fail["rows"] == [(0.02, 1), (0.05, 2)]  # compared with the running worst, not the last eps
    assert check_monotone(values[:, :1], [0.01, 0.02, 0.05]) == []
    ssim = -values  # delta SSIM: lower is worse
    assert check_monotone(-ssim, [0.01, 0.02, 0.05]) == check_monotone(values, [0.01, 0.02, 0.05])
    assert check_monotone(ssim, [0.01, 0.02, 0.05], higher_is_worse=False)[0]["rows"] == fail["rows"]
    (noise,) = check_beats_noise(values, values + torch.tensor([[0.0, 1.0, 0.0]] * 3), [0.01, 0.02, 0.05])
    assert [j for _, j in noise["rows"]] == [1, 1, 1]
    assert check_beats_noise(values, values * 1.005, [0.01, 0.02, 0.05]) == []  # within the tolerance


class Masked(torch.nn.Module):
    """A weighted linear reconstructor whose gradient is masked (zero): white-box search is blind."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, y, physics):
        return self.inner(y.detach() + 0 * y, physics)


def test_a_masked_gradient_trips_white_box_below_transfer():
    x, y, physics = single_coil(16, batch=2)
    w = torch.ones(1, 2, 16, 16)
    w[..., 3, 4] = 6.0  # one entry the worst case should load
    visible, masked = WeightedLinear(w), Masked(WeightedLinear(w))
    threat = ka.KSpaceL2(eps=0.05)
    own = ka.APGD(threat, steps=5, seed=0)(masked, y, physics)
    moved = ka.APGD(threat, steps=5, seed=0)(visible, y, physics)  # transferred from the open model
    clean = masked(y, physics).detach()
    records = []
    for name, res in (("masked", own), ("visible", moved)):
        dev = relative_deviation(masked(res.y_adv, physics).detach(), clean)
        records += [{"surrogate": name, "target": "masked", "attack": "apgd", "eps": 0.05, "sample_id": i,
                     "relative_deviation": float(dev[i])} for i in range(2)]
    (fail,) = check_whitebox_beats_transfer(records)
    assert fail["check"] == "white-box >= transferred" and fail["where"] == "masked (apgd) from visible"
    assert sorted(fail["rows"]) == [(0.05, 0), (0.05, 1)]
    assert "WARNING white-box >= transferred" in "\n".join(_sanity_markdown([fail]))
    assert check_whitebox_beats_transfer([r for r in records if r["surrogate"] == "masked"]) == []


def test_cards_report_sanity_checks_and_unreliable_rows():
    import dataclasses

    from kspace_attacks.testing.card_render import render_card_markdown
    from kspace_attacks.testing.protocol import PROTOCOL_V2

    adaptive = dataclasses.replace(PROTOCOL_V2, version="test-adaptive", steps=100, eps=(0.02, 0.08),
                                   attack_options={"preset": "default", "monotone": True, "max_budget": 100})
    card = ka.evaluate(lambda y, physics: physics.A_adjoint(y), data=demo_batch(2), protocol=adaptive)
    assert card["sanity"] == []  # the zero-filled model: monotone, and no point beats the search
    rows = card["results"]["deviation"]
    assert all(r["unreliable"] == 2 for r in rows)  # one run per row: nothing confirms it
    md = render_card_markdown(card)
    assert "## Sanity checks of the search" in md and "**UNRELIABLE** (deviation): 4 row(s)" in md


def test_the_committed_runs_sanity_checks_are_what_the_readme_says():
    import json
    from pathlib import Path

    from kspace_attacks.study.report import records_from_csv

    root = Path(__file__).resolve().parents[1] / "docs"
    for folder in ("study", "demo"):  # every white-box row beats every transferred one
        assert check_whitebox_beats_transfer(records_from_csv(root / folder / "records.csv")) == []
    counts = {}
    for threat in ("motion", "phase", "spikes", "lost_lines"):
        found = check_whitebox_beats_transfer(records_from_csv(root / "physical" / threat / "records.csv"))
        saved = json.loads((root / "physical" / threat / "verdict.json").read_text())["sanity"]
        assert [dict(f, rows=[list(r) for r in f["rows"]]) for f in found] == saved  # JSON: tuples as lists
        counts[threat] = sum(len(f["rows"]) for f in found)
    assert counts == {"motion": 3, "phase": 1, "spikes": 7, "lost_lines": 18}
