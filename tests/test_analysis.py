"""Artifact statistics: white noise vs structured residuals, closed forms, invariances."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kspace_attacks.study.artifacts import (
    artifact_stats,
    excess_kurtosis,
    hallucination_fraction,
    hallucination_map,
    residual,
    spectral_flatness,
)

EULER_GAMMA = 0.5772156649015329
P_3SIGMA = math.erfc(3 / math.sqrt(2))  # P(|N(0, 1)| > 3) = 0.0027


def _noise(batch=4, size=32, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 1, size, size, generator=g, dtype=torch.float64).to(dtype)


def _blob(size=32, center=(12.0, 18.0), width=3.0, amplitude=1.0):
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float64),
                            torch.arange(size, dtype=torch.float64), indexing="ij")
    d2 = (yy - center[0]) ** 2 + (xx - center[1]) ** 2
    return (amplitude * torch.exp(-d2 / (2 * width**2)))[None, None].float()


def test_residual_is_magnitude_difference():
    x_clean = torch.zeros(1, 2, 4, 4)
    x_clean[:, 0] = 3.0
    x_adv = x_clean.clone()
    x_adv[:, 1] = 4.0  # |3 + 4i| = 5
    r = residual(x_adv, x_clean)
    assert r.shape == (1, 1, 4, 4)
    assert torch.allclose(r, torch.full_like(r, 2.0))
    with pytest.raises(ValueError, match=r"x_adv: expected the shape of x_clean"):
        residual(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 5))


def test_white_noise_looks_like_noise():
    r = _noise(batch=4, size=32)
    flat = spectral_flatness(r)
    kurt = excess_kurtosis(r)
    # The periodogram of white Gaussian noise is exponentially distributed around a flat
    # spectrum, so geometric / arithmetic mean -> exp(-Euler gamma) = 0.561 (not 1).
    assert (flat > 0.45).all(), flat
    assert float(flat.mean()) == pytest.approx(math.exp(-EULER_GAMMA), abs=0.05)
    # Excess kurtosis of 1024 Gaussian values has std sqrt(24 / 1024) = 0.15.
    assert (kurt.abs() < 0.6).all() and float(kurt.mean().abs()) < 0.3, kurt
    # mean over the batch: the per-image count of 3-sigma exceedances is small and clustered
    big = _noise(batch=4, size=64, seed=1)
    assert float(hallucination_fraction(big).mean()) < 0.01


def test_white_noise_false_alarm_rate_away_from_borders():
    # Away from the reflect-padded borders the smoothed noise is exactly Gaussian with the
    # predicted std, so the flagged fraction is P(|N(0,1)| > 3) = 0.27 %.
    m = hallucination_map(_noise(batch=8, size=64, seed=2)).float()
    interior = float(m[..., 6:-6, 6:-6].mean())
    assert P_3SIGMA / 2 < interior < 2 * P_3SIGMA, interior
    # a higher threshold flags fewer pixels
    assert hallucination_fraction(_noise(8, 64, 2), threshold=4.0).mean() < m.mean()


def test_smooth_blob_is_structure():
    r = _blob()
    assert float(spectral_flatness(r)) < 0.01
    assert float(excess_kurtosis(r)) > 3  # sparse and heavy-tailed
    frac = float(hallucination_fraction(r))
    assert frac > 0.05
    m = hallucination_map(r)[0, 0]
    half_max = r[0, 0] > 0.5  # the blob's core is flagged entirely ...
    assert m[half_max].all()
    far = _blob(width=9.0)[0, 0] < 1e-3  # ... and nothing far from it
    assert not m[far].any()
    assert m[12, 18] and not m[0, 0]


def test_artifact_stats_of_a_zero_residual_are_undefined():
    x = torch.rand(2, 2, 16, 16, generator=torch.Generator().manual_seed(0))
    stats = artifact_stats(x, x.clone())
    assert sorted(stats) == ["excess_kurtosis", "hallucination_fraction", "residual_rms", "spectral_flatness"]
    assert torch.equal(stats["residual_rms"], torch.zeros(2))
    assert torch.isnan(stats["spectral_flatness"]).all()
    assert torch.isnan(stats["excess_kurtosis"]).all()
    assert torch.equal(stats["hallucination_fraction"], torch.zeros(2))


def test_artifact_stats_mixed_batch():
    # one unchanged sample, one with a noise change, one with a blob: each judged on its own
    x = torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(1)) + 1
    change = torch.cat([torch.zeros(1, 1, 32, 32), 0.01 * _noise(1, 32, seed=3), 0.2 * _blob()])
    stats = artifact_stats(x + change, x)
    rms = stats["residual_rms"]
    expected = float(0.01 * _noise(1, 32, seed=3).pow(2).mean().sqrt())
    assert float(rms[0]) == 0 and float(rms[1]) == pytest.approx(expected, rel=1e-3)
    flat, hall = stats["spectral_flatness"], stats["hallucination_fraction"]
    assert torch.isnan(flat[0]) and flat[1] > 0.45 and flat[2] < 0.01
    # 32x32 noise flags up to ~3 % (mostly along the reflect-padded borders, see
    # test_white_noise_false_alarm_rate_away_from_borders); the blob flags much more
    assert hall[1] < 0.03 and hall[2] > 0.05


def test_bad_arguments():
    r = _noise(1, 16)
    with pytest.raises(ValueError, match=r"sigma: expected a finite number > 0"):
        hallucination_map(r, sigma=0)
    with pytest.raises(ValueError, match=r"threshold: expected a finite number > 0"):
        hallucination_map(r, threshold=-1)
    with pytest.raises(ValueError, match=r"r: expected an image batch"):
        spectral_flatness(r[0])


@settings(max_examples=20, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 2**16),
    scale=st.floats(1e-3, 1e3),
    blob=st.floats(0.0, 5.0),
    sigma=st.sampled_from([1.0, 1.5, 2.5]),
)
def test_hallucination_fraction_is_scale_invariant(seed, scale, blob, sigma):
    # float64 so that rounding cannot move a pixel across the threshold
    r = _noise(1, 24, seed=seed, dtype=torch.float64) + blob * _blob(24, (10.0, 14.0)).double()
    base = hallucination_fraction(r, sigma=sigma)
    assert torch.equal(hallucination_fraction(scale * r, sigma=sigma), base)
    assert torch.equal(hallucination_map(scale * r, sigma=sigma), hallucination_map(r, sigma=sigma))
    # the shape statistics are scale invariant too
    assert spectral_flatness(scale * r) == pytest.approx(float(spectral_flatness(r)), rel=1e-9)
    assert excess_kurtosis(scale * r) == pytest.approx(float(excess_kurtosis(r)), rel=1e-5, abs=1e-6)
