"""Metrics against independent implementations (scikit-image) and their conventions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

import kspace_attacks as ka
from kspace_attacks import metrics


def _images(seed=0, b=3, size=48):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    base = (xx.pow(2) + yy.pow(2) < 0.6).float() * 0.7 + 0.2 * torch.cos(4 * xx)
    ref = base.expand(b, 1, size, size) + 0.02 * torch.randn(b, 1, size, size, generator=g)
    noisy = ref + 0.08 * torch.randn(b, 1, size, size, generator=g)
    return noisy, ref


def _np_minmax(a):
    return (a - a.min()) / (a.max() - a.min())


def test_psnr_ssim_match_skimage_minmax():
    x_hat, x_ref = _images()
    p = metrics.psnr(x_hat, x_ref)
    s = metrics.ssim(x_hat, x_ref)
    for i in range(x_hat.shape[0]):
        a, b = _np_minmax(x_hat[i, 0].double().numpy()), _np_minmax(x_ref[i, 0].double().numpy())
        assert p[i].item() == pytest.approx(peak_signal_noise_ratio(b, a, data_range=1.0), abs=1e-3)
        s_ref = structural_similarity(
            b, a, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
        assert s[i].item() == pytest.approx(s_ref, abs=1e-4)


def test_fastmri_normalisation_uses_reference_max():
    x_hat, x_ref = _images()
    x_hat, x_ref = 3 * x_hat, 3 * x_ref
    p = metrics.psnr(x_hat, x_ref, normalization="fastmri")
    s = metrics.ssim(x_hat, x_ref, normalization="fastmri")
    for i in range(x_hat.shape[0]):
        a, b = x_hat[i, 0].double().numpy(), x_ref[i, 0].double().numpy()
        mse = np.mean((a - b) ** 2)
        assert p[i].item() == pytest.approx(10 * np.log10(b.max() ** 2 / mse), abs=1e-3)
        s_ref = structural_similarity(
            b, a, data_range=b.max(), gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
        assert s[i].item() == pytest.approx(s_ref, abs=1e-4)


def test_complex_inputs_use_magnitude():
    x_hat, x_ref = _images()
    phase = torch.rand(1, 1, 48, 48, generator=torch.Generator().manual_seed(1)) * 6.28
    c_hat = torch.cat([x_hat * torch.cos(phase), x_hat * torch.sin(phase)], 1)
    c_ref = torch.cat([x_ref * torch.cos(phase), x_ref * torch.sin(phase)], 1)
    torch.testing.assert_close(metrics.ssim(c_hat, c_ref), metrics.ssim(x_hat.abs(), x_ref.abs()), atol=1e-4, rtol=0)


def test_nmse_closed_form():
    x_hat, x_ref = _images()
    n = metrics.nmse(x_hat, x_ref, normalization="fastmri")
    expected = (x_hat - x_ref).pow(2).flatten(1).sum(1) / x_ref.pow(2).flatten(1).sum(1)
    torch.testing.assert_close(n, expected, rtol=1e-4, atol=1e-7)


def test_deltas_signs():
    x_hat, x_ref = _images()
    worse = x_hat + 0.2 * torch.randn_like(x_hat)
    d = metrics.deltas(x_hat, worse, x_true=x_ref)
    assert (d["delta_ssim"] < 0).all() and (d["delta_psnr"] < 0).all() and (d["delta_nmse"] > 0).all()
    assert (d["ssim_vs_clean"] < 1).all()
    same = metrics.deltas(x_hat, x_hat)
    torch.testing.assert_close(same["ssim_vs_clean"], torch.ones(3), atol=1e-5, rtol=0)


@pytest.mark.parametrize("bad, match", [
    (dict(normalization="max"), "normalization"),
    (dict(x_hat=torch.zeros(2, 3, 8, 8)), "x_hat"),
    (dict(x_hat=torch.zeros(2, 1, 8, 9)), "x_hat"),
    (dict(x_ref=torch.zeros(2, 1, 8, 8, dtype=torch.int64)), "x_ref"),
])
def test_metric_input_errors(bad, match):
    kw = dict(x_hat=torch.rand(2, 1, 8, 8), x_ref=torch.rand(2, 1, 8, 8), normalization="minmax")
    kw.update(bad)
    with pytest.raises((ValueError, TypeError), match=match):
        ka.metrics.psnr(**kw)
