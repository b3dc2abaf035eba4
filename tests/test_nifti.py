"""NIfTI slices: round trip through a small volume written by nibabel in a tmp dir."""

from __future__ import annotations

import numpy as np
import pytest
import torch

nib = pytest.importorskip("nibabel")

from kspace_attacks.data import NiftiSlices, get_preset, load_nifti_slices


@pytest.fixture()
def volume_path(tmp_path):
    rng = np.random.default_rng(0)
    vol = np.zeros((32, 32, 10), np.float32)  # (x, y, z) RAS, 1 mm
    vol[4:28, 4:28, 2:8] = 100 + 50 * rng.random((24, 24, 6), dtype=np.float32)
    vol[4:8, 24:28, 2:8] = 400.0  # bright marker: subject's left (low x), anterior (high y)
    path = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(vol, np.eye(4)), str(path))
    return path, vol


def test_round_trip_native_size(volume_path):
    path, vol = volume_path
    x = load_nifti_slices(path, axis=2, size=32)
    assert x.shape == (6, 1, 32, 32)  # only the 6 slices with content
    ref = vol[:, :, 2:8].transpose(2, 1, 0)[:, ::-1, :]  # rows anterior->posterior, cols L->R
    ref = (ref - ref.min((1, 2), keepdims=True)) / np.ptp(ref, (1, 2), keepdims=True)
    assert np.allclose(x[:, 0].numpy(), ref, atol=1e-5)
    assert float(x[0, 0, 4:8, 4:8].mean()) == pytest.approx(1.0)  # marker at top-left


def test_resize_range_and_explicit_slices(volume_path):
    path, _ = volume_path
    x = load_nifti_slices(path, size=16, slices=[3, 4], normalize="volume")
    assert x.shape == (2, 1, 16, 16)
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    assert float(x[:, 0, 2:4, 2:4].mean()) > 2 * float(
        x[:, 0, 8:14, 8:14].mean()
    )  # marker survives
    x1 = load_nifti_slices(path, axis=0, size=16, min_content=0.0)
    assert x1.shape == (32, 1, 16, 16)


def test_anisotropic_voxels_keep_aspect(tmp_path):
    vol = np.ones((20, 10, 3), np.float32)  # 20 x 10 voxels of 1 x 2 mm: a 20 x 20 mm square
    vol[:, :, 2] = 0.0
    path = tmp_path / "aniso.nii"
    nib.save(nib.Nifti1Image(vol, np.diag([1.0, 2.0, 1.0, 1.0])), str(path))
    x = load_nifti_slices(path, size=20, slices=[0, 1], normalize="volume")
    assert float(x.min()) == pytest.approx(1.0)  # fills the square field of view


def test_with_preset_and_dataset(volume_path):
    path, _ = volume_path
    p = get_preset("embedded", img_size=32, center_fraction=0.125)
    x, y = load_nifti_slices(path, size=32, preset=p, generator=torch.Generator().manual_seed(0))
    assert y.shape == (6, 2, 32, 32)
    assert torch.equal(y, p.simulate(x, generator=torch.Generator().manual_seed(0)))
    ds = NiftiSlices(path, preset=p)
    xi, yi = ds[1]
    assert len(ds) == 6 and xi.shape == (2, 32, 32) and torch.equal(yi, y[1])


def test_errors_name_the_argument(volume_path, tmp_path):
    path, _ = volume_path
    with pytest.raises(FileNotFoundError, match="path"):
        load_nifti_slices(tmp_path / "missing.nii.gz")
    with pytest.raises(ValueError, match="axis"):
        load_nifti_slices(path, axis=3)
    with pytest.raises(ValueError, match="normalize"):
        load_nifti_slices(path, normalize="zscore")
    with pytest.raises(ValueError, match="slices"):
        load_nifti_slices(path, slices=[99])
    with pytest.raises(ValueError, match="preset: expected img_size"):
        load_nifti_slices(path, size=32, preset="embedded")


def test_the_unseen_brain_ships_with_its_notice_and_reads_as_a_data_set():
    from importlib import resources

    from kspace_attacks.data import unseen_brain

    data = unseen_brain()
    assert len(data) == 10
    x, y = data[3]
    assert x.shape == (2, 64, 64) and y.shape == (2, 64, 64)
    assert float(x[0].min()) >= 0 and abs(float(x[0].max()) - 1) < 1e-6 and float(x[1].abs().max()) == 0
    notice = (resources.files("kspace_attacks.data") / "NOTICE-DIPY-S0.txt").read_text()
    assert "S0_10slices.nii.gz" in notice and "Redistribution and use in source and binary forms" in notice
    aniso = (resources.files("kspace_attacks.data") / "NOTICE-DIPY-ANISO.txt").read_text()
    assert "aniso_vox.nii.gz" in aniso and "Redistribution and use in source and binary forms" in aniso
    # a different brain from the training template: no embedded test image matches it
    from kspace_attacks.data import demo_batch

    xe, _, _ = demo_batch(14)
    assert min(float((xe[:, 0] - x[0]).abs().mean(dim=(1, 2)).min()), 1.0) > 0.02
