"""Targeted mode: inserting a synthetic structure and checking whether targets show it."""

from __future__ import annotations

import pytest
import torch

import kspace_attacks as ka
from kspace_attacks.losses import ReconDeviation
from kspace_attacks.study.targeted import insert_structure, targeted_transfer, targeted_verdicts

from ._physics import single_coil, zero_filled

SIZE = 32


def _images(channels: int, seed: int = 0) -> torch.Tensor:
    """Real-valued, strictly positive images: ``(2, 1, H, W)`` or ``(2, 2, H, W)`` with imag 0."""
    mag = 0.2 + 0.6 * torch.rand(2, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))
    return mag if channels == 1 else torch.cat([mag, torch.zeros_like(mag)], dim=1)


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("contrast", [0.0, 0.25, 0.5])
def test_blob_adds_contrast_at_its_peak(channels, contrast):
    x = _images(channels)
    # centre on a pixel: (0.5 * 32, 0.25 * 32) = (16, 8), where the blob's shape is exactly 1
    target, roi = insert_structure(x, kind="blob", center=(0.5, 0.25), size=0.1, contrast=contrast)
    assert target.shape == x.shape and roi.shape == (SIZE, SIZE)
    added = target - x
    # real images: the whole change is in the real part (phase kept), `contrast` at the peak
    assert torch.allclose(added[:, 0, 16, 8], torch.full((2,), contrast), atol=1e-5)
    if channels == 2:
        assert torch.equal(target[:, 1], x[:, 1])
    assert float(added.max()) == pytest.approx(contrast, abs=1e-5)
    assert float(added.min()) >= -1e-6  # only adds
    # the change decays away from the blob
    assert float(added[:, 0, 0, 31].abs().max()) < 1e-3 * max(contrast, 1e-3)
    # ROI: non-empty, 0/1, centred on the given centre, independent of the contrast
    assert set(roi.unique().tolist()) == {0.0, 1.0}
    rows, cols = torch.nonzero(roi, as_tuple=True)
    assert roi[16, 8] == 1
    assert float(rows.float().mean()) == pytest.approx(16, abs=0.5)
    assert float(cols.float().mean()) == pytest.approx(8, abs=0.5)


def test_roi_is_where_the_structure_is_above_half():
    target, roi = insert_structure(torch.zeros(1, 1, SIZE, SIZE), center=(0.35, 0.6), size=0.1, contrast=1.0)
    # on a zero image the target is the shape itself
    assert torch.equal(roi.bool(), target[0, 0] > 0.5)
    # radius 0.1 * 32 = 3.2 px, Gaussian std 3.2 / 1.5: half maximum at sqrt(2 ln 2) std = 2.5 px
    area = float(roi.sum())
    assert 3.14 * 2.0**2 < area < 3.14 * 3.0**2


@pytest.mark.parametrize("background", [0.0, 1e-7])
def test_dark_complex_pixels_get_the_structure(background):
    x = torch.zeros(1, 2, SIZE, SIZE)
    x[:, 0] = background
    target, _ = insert_structure(x, center=(0.5, 0.5), contrast=0.4)
    assert float(target[0, 0, 16, 16]) == pytest.approx(background + 0.4, abs=1e-5)
    assert torch.equal(target[:, 1], torch.zeros(1, SIZE, SIZE))


def test_line_is_a_horizontal_bar():
    _, roi = insert_structure(torch.zeros(1, 1, SIZE, SIZE), kind="line", center=(0.5, 0.5), size=0.1)
    rows, cols = torch.nonzero(roi, as_tuple=True)
    assert rows.unique().tolist() == [16]  # one row thick
    assert int(cols.min()) == 10 and int(cols.max()) == 22  # |col - 16| <= 2 * 3.2


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(kind="ring"), r"kind: expected one of \['blob', 'line'\]"),
        (dict(size=0), r"size: expected a finite number > 0"),
        (dict(contrast=-0.1), r"contrast: expected a finite number >= 0"),
    ],
)
def test_insert_structure_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        insert_structure(torch.zeros(1, 1, 8, 8), **kwargs)


@pytest.fixture(scope="module")
def problem():
    _, y, physics = single_coil(SIZE, batch=2, seed=0)
    return y, physics


def test_targeted_transfer_inserts_the_structure(problem):
    y, physics = problem
    template = ka.PGD(ka.KSpaceL2(), steps=5)
    results = {}
    for eps in (0.0, 0.3):
        all_records, images = targeted_transfer(zero_filled, {"zf": zero_filled}, y, physics, eps=eps,
                                                contrast=0.3, attack=template)
        # three conditions per target and slice: targeted, and the two controls at the same eps
        assert sorted({r["condition"] for r in all_records}) == ["noise", "targeted", "untargeted"]
        records = [r for r in all_records if r["condition"] == "targeted"]
        results[eps] = all_records
        assert len(records) == 2
        for i, r in enumerate(records):
            assert set(r) == {"sample", "surrogate_eps", "target", "kind", "contrast", "ratio",
                              "roi_contrast", "roi_contrast_data", "roi_contrast_beyond_data",
                              "roi_contrast_null", "roi_ssim", "shown", "condition"}
            assert (r["sample"], r["target"], r["kind"], r["surrogate_eps"]) == (i, "zf", "blob", eps)
            assert r["ratio"] <= eps + 1e-6
            assert -1 <= r["roi_ssim"] <= 1
            assert r["shown"] == (r["roi_contrast"] >= 0.5)
        assert set(images) == {"target_image", "zf_clean", "zf_adv"}
        assert images["zf_adv"].shape == images["zf_clean"].shape == (2, 2, SIZE, SIZE)
    for r0 in results[0.0]:  # no budget, no change
        assert r0["ratio"] == 0 and r0["roi_contrast"] == pytest.approx(0.0, abs=1e-6)
    targeted = {e: [r for r in results[e] if r["condition"] == "targeted"] for e in results}
    for r0, r1 in zip(targeted[0.0], targeted[0.3], strict=True):
        assert r1["roi_contrast"] > r0["roi_contrast"] + 0.3
        assert r1["roi_ssim"] > r0["roi_ssim"] - 0.05
        assert r1["ratio"] > 0.1
    # the template is copied, not modified
    assert isinstance(template.loss, ReconDeviation) and template.threat.eps == 0.05


def test_targeted_transfer_target_image_matches_insert_structure(problem):
    y, physics = problem
    _, images = targeted_transfer(zero_filled, {"zf": zero_filled}, y, physics, eps=0.0, kind="line",
                                  contrast=0.2, attack=ka.PGD(ka.KSpaceL2(), steps=1))
    expected, _ = insert_structure(zero_filled(y, physics), kind="line", contrast=0.2)
    assert torch.allclose(images["target_image"], expected)
    assert torch.allclose(images["zf_adv"], images["zf_clean"])


def test_targeted_verdict_uses_controls(problem):
    y, physics = problem
    records, _ = targeted_transfer(zero_filled, {"zf": zero_filled}, y, physics, eps=0.3,
                                   contrast=0.3, attack=ka.PGD(ka.KSpaceL2(), steps=5))
    by = {(r["condition"], r["sample"]): r["roi_contrast"] for r in records}
    for i in range(2):  # the targeted perturbation shows the structure; the controls do not
        assert by[("targeted", i)] > by[("noise", i)] + 0.3 and by[("targeted", i)] > by[("untargeted", i)]
    rows = targeted_verdicts(records)
    # judged on the contrast beyond the data first, then the raw contrast (data included)
    assert [(r["metric"], r["setting"]) for r in rows] == [
        ("roi_contrast_beyond_data", "vs noise"), ("roi_contrast_beyond_data", "vs untargeted"),
        ("roi_contrast", "vs noise"), ("roi_contrast", "vs untargeted")]
    for r in rows:
        assert r["claim_id"] == "targeted_shows" and r["n"] == 2
    raw = [r for r in rows if r["metric"] == "roi_contrast"]
    assert all(r["mean_diff"] > 0.3 for r in raw)
    # the zero-filled target shows exactly what its data carry: nothing beyond them
    beyond = [r for r in rows if r["metric"] == "roi_contrast_beyond_data"]
    assert all(abs(r["mean_diff"]) < 1e-5 for r in beyond)


def test_targeted_noise_control_is_seeded_per_sample(problem):
    """A slice's noise control is a function of its id, not of the batch it is measured in."""
    y, physics = problem
    attack = ka.PGD(ka.KSpaceL2(), steps=1)

    def noise_rows(rows, ids):
        records, _ = targeted_transfer(zero_filled, {"zf": zero_filled}, y[rows], physics, eps=0.2,
                                       attack=attack, ids=ids)
        return {ids[r["sample"]]: r["roi_contrast"] for r in records if r["condition"] == "noise"}

    pair = noise_rows(slice(0, 2), ["a", "b"])
    alone = noise_rows(slice(1, 2), ["b"])
    assert alone["b"] == pytest.approx(pair["b"], abs=1e-6)  # the second row's noise, measured alone
    renamed = noise_rows(slice(1, 2), ["c"])
    assert renamed["c"] != pytest.approx(pair["b"], abs=1e-6)  # another id draws other noise
    with pytest.raises(ValueError, match="ids: expected one id per sample"):
        noise_rows(slice(0, 2), ["a"])
