"""Presets, masks, coil maps, k-space simulation and the image synthesizer."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kspace_attacks.data import (
    CONTRASTS,
    Preset,
    augment,
    birdcage_maps,
    deepinv_mask,
    get_preset,
    list_presets,
    paper_mask,
    synthesize,
)
from kspace_attacks.data.presets import DEFAULT_SNR_DB


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _cols(mask: torch.Tensor) -> list[int]:
    assert bool((mask == mask[:1]).all()), "mask must be a set of full columns"
    return mask[0].nonzero().flatten().tolist()


def _maps(size: int = 32) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    r = (xx**2 + yy**2).sqrt()
    brain = (r < 0.8).float()
    wm = ((r < 0.5) & (r > 0.15)).float()
    gm = brain * (1 - wm) * (r > 0.15).float()
    csf = (brain - gm - wm).clamp(0, 1)
    return torch.stack([0.3 * gm + 0.9 * wm, gm, wm, csf, brain])


# --- presets and masks -------------------------------------------------------------------


def test_paper_preset_mask_is_the_study_mask():
    p = get_preset("paper")
    assert (p.img_size, p.acceleration, p.coils, p.snr_db) == (256, 8, 1, DEFAULT_SNR_DB)
    assert not get_preset("paper_noiseless").noisy
    assert torch.equal(get_preset("paper_noiseless").mask(), p.mask())
    cols = _cols(p.mask())
    assert len(cols) == 32
    assert list(range(124, 132)) == [c for c in cols if 124 <= c < 132]
    outer = [c for c in cols if not 124 <= c < 132]
    gaps = (
        torch.diff(torch.tensor(outer[:12])).tolist()
        + torch.diff(torch.tensor(outer[12:])).tolist()
    )
    assert max(gaps) - min(gaps) <= 1  # equispaced up to rounding
    assert torch.equal(p.mask(), paper_mask())


def test_embedded_preset_mask():
    p = get_preset("embedded")
    assert (p.img_size, p.coils, p.snr_db) == (64, 1, DEFAULT_SNR_DB)
    assert not get_preset("embedded_noiseless").noisy
    cols = _cols(p.mask())
    assert 64 / len(cols) == pytest.approx(4, abs=0.3)
    assert set(range(30, 35)) <= set(cols)  # 0.08 * 64 = 5 centre lines around 32


@settings(max_examples=25, deadline=None)
@given(size=st.integers(8, 160), acc=st.integers(2, 8), center=st.integers(1, 8))
def test_paper_mask_invariants(size, acc, center):
    if center > size // acc:
        with pytest.raises(ValueError, match="center_lines"):
            paper_mask(size, acc, center)
        return
    cols = _cols(paper_mask(size, acc, center))
    assert len(cols) == size // acc
    start = size // 2 - center // 2
    assert set(range(start, start + center)) <= set(cols)


@pytest.mark.parametrize("kind", ["equispaced", "random", "gaussian"])
def test_deepinv_masks_fixed_by_seed(kind):
    a, b = deepinv_mask(kind, 64, 4, 0.08, seed=3), deepinv_mask(kind, 64, 4, 0.08, seed=3)
    assert torch.equal(a, b) and a.shape == (64, 64)
    assert 64 / len(_cols(a)) == pytest.approx(4, abs=0.5)
    p = get_preset("embedded", mask_kind=kind, mask_seed=3)
    assert torch.equal(p.mask(), a)


def test_preset_overrides_and_errors():
    assert set(list_presets()) >= {"paper", "embedded"}
    p = get_preset("embedded", coils=4, snr_db=30.0)
    assert (p.coils, p.snr_db, p.img_size) == (4, 30.0, 64)
    assert get_preset(p) is p
    with pytest.raises(ValueError, match="name"):
        get_preset("fastmri")
    with pytest.raises(TypeError, match="overrides"):
        get_preset("embedded", colis=4)
    with pytest.raises(ValueError, match="coils"):
        get_preset("embedded", coils=0)
    with pytest.raises(ValueError, match="mask_kind"):
        Preset("x", 64, 4, 0.08, mask_kind="radial")
    with pytest.raises(ValueError, match="center_fraction"):
        Preset("x", 64, 4, 0.5)
    with pytest.raises(TypeError, match="img_size"):
        Preset("x", 64.0, 4, 0.08)


# --- physics and simulation ---------------------------------------------------------------


def test_coil_maps_rss_is_one():
    s = birdcage_maps(8, (48, 40))
    assert s.shape == (8, 48, 40) and s.is_complex()
    assert float(((s.abs() ** 2).sum(0).sqrt() - 1).abs().max()) < 1e-5
    with pytest.raises(ValueError, match="n_coils"):
        birdcage_maps(0, 32)


@pytest.mark.parametrize("coils", [1, 4])
def test_physics_simulate_shapes_and_adjoint(coils):
    p = get_preset("embedded_noiseless", coils=coils)
    phys = p.physics(batch_size=2)
    assert phys.mask.shape == (2, 2, 64, 64)
    x = torch.rand(2, 2, 64, 64, generator=_gen(0))
    y = p.simulate(x, physics=phys)
    assert y.shape == ((2, 2, 64, 64) if coils == 1 else (2, 2, coils, 64, 64))
    v = torch.randn(y.shape, generator=_gen(1))
    lhs = (phys.A(x) * v).sum()
    rhs = (x * phys.A_adjoint(v)).sum()
    assert float(lhs) == pytest.approx(float(rhs), rel=1e-4)
    # magnitude input == complex input with zero imaginary part; default physics is the same
    mag = x[:, :1]
    y1 = p.simulate(mag)
    assert torch.allclose(y1, p.simulate(torch.cat([mag, 0 * mag], 1), physics=phys), atol=1e-6)
    # unmeasured columns stay zero
    m = phys.mask if coils == 1 else phys.mask[:, :, None]
    assert float((y * (1 - m)).abs().max()) == 0.0


def test_fully_sampled_norm_preserved():
    p = get_preset("embedded_noiseless", acceleration=1, center_fraction=0.1)
    x = torch.rand(1, 1, 64, 64, generator=_gen(2))
    assert float(p.simulate(x).norm()) == pytest.approx(float(x.norm()), rel=1e-5)


@pytest.mark.parametrize("coils", [1, 3])
def test_noise_snr_and_determinism(coils):
    p = get_preset("embedded", coils=coils, snr_db=20.0)
    clean = get_preset("embedded_noiseless", coils=coils)
    x = torch.rand(4, 1, 64, 64, generator=_gen(0))
    y0 = clean.simulate(x)
    y = p.simulate(x, generator=_gen(5))
    n = y - y0
    snr = 10 * torch.log10(y0.flatten(1).norm(dim=1) ** 2 / n.flatten(1).norm(dim=1) ** 2)
    assert snr.tolist() == pytest.approx([20.0] * 4, abs=0.4)
    assert torch.equal(y, p.simulate(x, generator=_gen(5)))
    assert not torch.equal(y, p.simulate(x, generator=_gen(6)))
    phys = p.physics()
    m = phys.mask if coils == 1 else phys.mask[:, :, None]
    assert float((n * (1 - m)).abs().max()) == 0.0  # noise only where measured


def test_noise_sigma_absolute():
    p = get_preset("embedded", noise_sigma=0.01, snr_db=None)
    x = torch.zeros(8, 1, 64, 64)
    n = p.simulate(x, generator=_gen(0))
    m = p.physics().mask.expand_as(n)
    assert float(n[m > 0].std()) == pytest.approx(0.01, rel=0.05)


def test_the_named_presets_carry_the_documented_noise_floor():
    """``simulate`` differs from the noiseless ``physics.A(x)`` by the documented SNR, seeded."""
    p = get_preset("embedded")
    x = torch.rand(6, 1, 64, 64, generator=_gen(3))
    phys = p.physics()
    y = p.simulate(x, physics=phys, generator=_gen(4))
    clean = phys.A(torch.cat([x, 0 * x], 1))
    snr = 10 * torch.log10(clean.flatten(1).norm(dim=1) ** 2 / (y - clean).flatten(1).norm(dim=1) ** 2)
    assert snr.tolist() == pytest.approx([DEFAULT_SNR_DB] * 6, abs=0.3)
    assert torch.equal(y, p.simulate(x, physics=phys, generator=_gen(4)))
    assert torch.equal(get_preset("embedded_noiseless").simulate(x, physics=phys), clean)


def test_simulate_errors_name_the_argument():
    p = get_preset("embedded")
    with pytest.raises(ValueError, match="x: .*64x64"):
        p.simulate(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match="x: expected an image batch"):
        p.simulate(torch.rand(1, 3, 64, 64))
    with pytest.raises(TypeError, match="x:"):
        p.simulate(torch.rand(1, 64, 64, dtype=torch.complex64))
    with pytest.raises(ValueError, match="batch_size"):
        p.physics(batch_size=0)


# --- synthesizer ----------------------------------------------------------------------------


@pytest.mark.parametrize("contrast", CONTRASTS)
def test_synthesize_range_and_determinism(contrast):
    maps = _maps()
    a = synthesize(maps, contrast, _gen(0))
    assert a.shape == (2, 32, 32) and a.dtype == torch.float32
    assert float(a[0].min()) >= 0 and float(a[0].max()) == pytest.approx(1.0)
    assert float(a[1].abs().max()) == 0.0
    assert float(a[0][maps[4] == 0].abs().max()) == 0.0  # background stays 0
    assert torch.equal(a, synthesize(maps, contrast, _gen(0)))
    assert not torch.equal(a, synthesize(maps, contrast, _gen(1)))


def test_contrasts_order_tissues():
    maps = _maps()
    gm, wm, csf = (maps[i] > 0.5 for i in (1, 2, 3))
    kw = {"jitter": 0.0, "bias": 0.0, "texture": 0.0}
    mean = lambda img, r: float(img[0][r].mean())
    t1 = synthesize(maps, "t1w", _gen(0), **kw)
    t2 = synthesize(maps, "t2w", _gen(0), **kw)
    assert mean(t1, wm) > mean(t1, gm) > mean(t1, csf)
    assert mean(t2, csf) > mean(t2, gm) > mean(t2, wm)


def test_synthesize_phase():
    a = synthesize(_maps(), "pd", _gen(0), phase=0.5)
    mag = a.norm(dim=0)
    assert float(a[1].abs().max()) > 0 and float(mag.max()) == pytest.approx(1.0, abs=1e-6)
    ang = torch.atan2(a[1], a[0])[mag > 0.1]
    assert float(ang.abs().max()) <= math.pi * 0.5 + 1e-5


def test_augment_deterministic_and_bounded():
    maps = _maps()
    a, b = augment(maps, _gen(4)), augment(maps, _gen(4))
    assert torch.equal(a, b) and a.shape == maps.shape
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    assert not torch.equal(a, augment(maps, _gen(5)))


def test_synth_errors_name_the_argument():
    with pytest.raises(ValueError, match="maps"):
        synthesize(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="contrast"):
        synthesize(_maps(), "dwi")
    with pytest.raises(ValueError, match="bias"):
        synthesize(_maps(), "t1w", bias=-1.0)
    with pytest.raises(ValueError, match="maps"):
        augment(torch.rand(8, 8))
