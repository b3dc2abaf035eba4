"""Reference-scaled metrics (the records' default), the min-max comparison columns and the
foreground SSIM: a perturbed reconstruction is scored on the reference's scale, so an attack
cannot buy "quality lost" by moving the one pixel min-max normalisation divides by."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from skimage.metrics import structural_similarity

import kspace_attacks as ka
from kspace_attacks import measurement, metrics
from kspace_attacks.study import records as R
from kspace_attacks.study.config import DEMO_CONFIG, SweepConfig, validate_config

from ._physics import single_coil, zero_filled

SIZE = 64


def _phantom(seed: int = 0, b: int = 2, size: int = 128, noise: float = 0.03) -> tuple[torch.Tensor, torch.Tensor]:
    """A smooth disc phantom in [0, 1] on a dark background (``x_true``) and a close clean
    reconstruction of it (``x_clean``: Gaussian error inside the disc), ``(b, 1, size, size)``."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    disc = (xx.pow(2) + yy.pow(2) < 0.5).float()
    x_true = (disc * (0.6 + 0.3 * torch.cos(3 * xx) * torch.sin(2 * yy))).expand(b, 1, size, size).clone()
    x_clean = x_true + noise * disc * torch.randn(b, 1, size, size, generator=g)
    return x_true, x_clean


def _one_pixel(x: torch.Tensor, factor: float = 2.0) -> torch.Tensor:
    """``x`` with its maximum pixel (per sample) set to ``factor`` times the maximum."""
    out = x.clone().flatten(1)
    idx = out.argmax(dim=1)
    rows = torch.arange(out.shape[0])
    out[rows, idx] = factor * out[rows, idx]
    return out.reshape(x.shape)


# ------------------------------------------------------------------------- the exploit
def test_one_pixel_change_games_minmax_but_not_the_reference_scale():
    """Changing ONE pixel (the maximum, x2) rescales the whole image under min-max: it reports a
    large loss. On the reference's scale the same change costs what one pixel costs."""
    x_true, x_clean = _phantom()
    x_adv = _one_pixel(x_clean)
    assert int((x_adv != x_clean).sum()) == x_clean.shape[0]  # one pixel per sample
    m = measurement.row_metrics(x_adv, x_clean, x_true)
    # min-max: a large "loss" (the study's gameable number)
    assert (m["delta_psnr_minmax"] < -10).all() and (m["delta_ssim_minmax"] < -0.03).all()
    # the reference scale: almost nothing, a tenth of min-max's at most
    assert (m["delta_psnr"].abs() < 1).all() and (m["delta_ssim"].abs() < 0.005).all()
    assert (m["delta_ssim_fg"].abs() < 0.005).all()
    assert (m["delta_psnr"].abs() < 0.1 * m["delta_psnr_minmax"].abs()).all()
    assert (m["delta_ssim"].abs() < 0.1 * m["delta_ssim_minmax"].abs()).all()
    # vs the clean reconstruction: after min-max, NMSE is many times the unnormalised one
    assert (m["nmse_vs_clean_minmax"] > 10 * m["nmse_vs_clean"]).all()


def test_minmax_rewards_the_one_pixel_change_over_equal_norm_noise():
    """Against equal-norm noise spread over the image, min-max pays the one-pixel change far more
    "PSNR lost"; the reference scale pays both about the same (PSNR sees only the squared error)."""
    x_true, x_clean = _phantom(seed=1)
    pixel = _one_pixel(x_clean) - x_clean
    noise = torch.randn(x_clean.shape, generator=torch.Generator().manual_seed(2))
    noise = noise * (pixel.flatten(1).norm(dim=1) / noise.flatten(1).norm(dim=1)).view(-1, 1, 1, 1)
    one = measurement.row_metrics(x_clean + pixel, x_clean, x_true)
    spread = measurement.row_metrics(x_clean + noise, x_clean, x_true)
    assert (one["delta_psnr_minmax"] < spread["delta_psnr_minmax"] - 5).all()
    assert torch.allclose(one["delta_psnr"], spread["delta_psnr"], atol=0.3)


# ------------------------------------------------------------------------- names and defaults
def test_reference_is_the_records_default_and_fastmri_its_alias():
    x_true, x_clean = _phantom()
    x_adv = x_clean + 0.05 * torch.rand(x_clean.shape, generator=torch.Generator().manual_seed(3))
    for f in (metrics.psnr, metrics.ssim, metrics.nmse):
        assert torch.equal(f(x_adv, x_true, "reference"), f(x_adv, x_true, "fastmri"))
    assert metrics.canonical_normalization("fastmri") == "reference"
    default = measurement.row_metrics(x_adv, x_clean, x_true)
    ref = measurement.row_metrics(x_adv, x_clean, x_true, "reference")
    assert default.keys() == ref.keys() and all(torch.equal(default[k], ref[k]) for k in ref)
    assert torch.equal(default["delta_ssim"],
                       metrics.ssim(x_adv, x_true, "reference") - metrics.ssim(x_clean, x_true, "reference"))
    # the min-max columns are what normalization="minmax" gives its main columns, bit for bit
    mm = measurement.row_metrics(x_adv, x_clean, x_true, "minmax")
    for k in ("delta_ssim", "delta_psnr", "delta_nmse", "clean_ssim", "adv_psnr", "ssim_vs_clean", "psnr_vs_clean"):
        assert torch.equal(default[f"{k}_minmax"], mm[k]) and torch.equal(mm[f"{k}_minmax"], mm[k])
    with pytest.raises(ValueError, match=r"normalization: expected one of \['reference', 'minmax', 'fastmri'\]"):
        measurement.row_metrics(x_adv, x_clean, x_true, "zscore")


def test_the_configuration_defaults_to_the_reference_scale():
    assert SweepConfig().normalization == "reference" == DEMO_CONFIG["normalization"]
    for value in ("reference", "minmax", "fastmri"):
        assert validate_config({"normalization": value}).normalization == value


@pytest.mark.parametrize("with_truth", [True, False])
def test_every_row_metric_is_a_declared_column(with_truth):
    x, y, physics = single_coil(size=SIZE, batch=2)
    x_clean = zero_filled(y, physics)
    x_adv = x_clean + 0.01 * torch.rand(x_clean.shape, generator=torch.Generator().manual_seed(0))
    m = measurement.row_metrics(x_adv, x_clean, x if with_truth else None, physics=physics)
    assert set(m) <= set(R.COLUMNS), sorted(set(m) - set(R.COLUMNS))
    always = {"ssim_vs_clean_minmax", "psnr_vs_clean_minmax", "nmse_vs_clean_minmax", "ssim_vs_clean_fg",
              "delta_measured_norm", "delta_null_norm", "delta_null_fraction"}
    truth = {"delta_ssim_minmax", "delta_psnr_minmax", "delta_nmse_minmax", "clean_ssim_minmax", "adv_ssim_minmax",
             "clean_psnr_minmax", "adv_psnr_minmax", "clean_ssim_fg", "adv_ssim_fg", "delta_ssim_fg",
             "error_measured_norm", "error_null_norm", "error_null_fraction"}
    assert always <= set(m)
    assert truth <= set(m) if with_truth else not truth & set(m)
    for c in always | truth:
        assert R.COLUMNS[c].meaning  # every column has a meaning (and a unit, maybe empty)
    if with_truth:
        assert torch.equal(m["delta_ssim_fg"], m["adv_ssim_fg"] - m["clean_ssim_fg"])  # adv - clean
    without = measurement.row_metrics(x_adv, x_clean, None)  # no physics: no split
    assert not any("null" in k or "measured" in k for k in without)


def test_sweep_records_carry_the_reference_scale_and_the_comparison_columns():
    x, y, physics = single_coil(size=16, batch=2)
    report = ka.transfer({"zf": zero_filled}, {"zf": zero_filled}, (x, y, physics), eps=[0.05],
                         attack=ka.PGD(ka.KSpaceL2(), steps=1), progress=False, null_draws=0,
                         keep_perturbations=False)
    for r in report.records:
        assert {"delta_ssim_minmax", "delta_psnr_minmax", "delta_ssim_fg", "delta_null_fraction",
                "error_null_fraction"} <= set(r)
        assert set(r) - {"sample_id", "surrogate", "target", "attack", "setting", "eps"} <= set(R.COLUMNS)
        assert abs(r["delta_null_fraction"]) < 1e-5  # zero-filled: the change is all in the data
    assert report.normalization == "reference"


# ------------------------------------------------------------------------- foreground SSIM
def test_foreground_mask_thresholds_and_dilates():
    x = torch.zeros(2, 2, 24, 24)
    x[0, 0, 10:14, 10:14] = 1.0
    x[0, 1, 2, 2] = 0.05  # below 10 % of the maximum: background
    x[1, 1, 5, 5] = 2.0   # the imaginary part counts (magnitude)
    fg = metrics.foreground_mask(x, dilation=0)
    assert fg.shape == (2, 1, 24, 24) and fg.dtype == torch.bool
    assert int(fg[0].sum()) == 16 and not fg[0, 0, 2, 2] and int(fg[1].sum()) == 1
    assert int(metrics.foreground_mask(x, dilation=2)[0].sum()) == 8 * 8
    assert int(metrics.foreground_mask(x, threshold=0.01, dilation=0)[0].sum()) == 17
    for kw, err, match in [(dict(threshold=1.0), ValueError, "threshold: expected a number in"),
                           (dict(dilation=-1), ValueError, "dilation: expected an integer >= 0"),
                           (dict(dilation=1.5), TypeError, "dilation: expected an integer")]:
        with pytest.raises(err, match=match):
            metrics.foreground_mask(x, **kw)


def test_background_noise_does_not_move_the_foreground_ssim():
    x_true, x_clean = _phantom(size=SIZE, noise=0.0)
    far = ~metrics.foreground_mask(x_true, dilation=9)  # > 9 px from the object: 3 px + a window
    noisy = x_clean + 0.5 * far * torch.rand(x_clean.shape, generator=torch.Generator().manual_seed(4))
    fg = metrics.foreground_mask(x_true)
    whole = metrics.ssim(noisy, x_true, "reference")
    masked = metrics.ssim(noisy, x_true, "reference", mask=fg)
    assert (whole < 0.95).all()  # noise in the dark background costs the whole-image score
    torch.testing.assert_close(masked, torch.ones(2), atol=1e-5, rtol=0)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), frac=st.floats(0.1, 0.9))
def test_masked_ssim_is_the_mean_of_skimages_map_over_the_mask(seed, frac):
    g = torch.Generator().manual_seed(seed)
    ref = torch.rand(1, 1, 32, 32, generator=g)
    hat = ref + 0.1 * torch.randn(1, 1, 32, 32, generator=g)
    mask = torch.rand(32, 32, generator=g) < frac
    mask[16, 16] = True  # never empty inside the valid region
    value = metrics.ssim(hat, ref, "reference", mask=mask)
    a, b = hat[0, 0].double().numpy(), ref[0, 0].double().numpy()
    _, smap = structural_similarity(b, a, data_range=b.max(), gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False, full=True)
    m = mask.numpy()[5:-5, 5:-5]
    assert value.item() == pytest.approx(float(smap[5:-5, 5:-5][m].mean()), abs=1e-4)
    # an all-ones mask is the unmasked SSIM
    torch.testing.assert_close(metrics.ssim(hat, ref, mask=torch.ones(32, 32)), metrics.ssim(hat, ref),
                               atol=1e-6, rtol=0)


def test_mask_errors_and_an_empty_foreground():
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    for mask, err, match in [(np.ones((16, 16)), TypeError, "mask: expected a torch.Tensor"),
                             (torch.ones(16, 15), ValueError, r"mask: expected shape \(16, 16\)"),
                             (torch.ones(3, 1, 16, 16), ValueError, "mask: expected shape"),
                             (torch.full((16, 16), 0.5), ValueError, "mask: expected 0/1")]:
        with pytest.raises(err, match=match):
            metrics.ssim(x, x, mask=mask)
    corner = torch.zeros(16, 16)
    corner[0, 0] = 1  # outside the valid region (5-pixel border): no window to average
    assert all(math.isnan(v) for v in metrics.ssim(x, x, mask=corner).tolist())
