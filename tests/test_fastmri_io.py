"""fastMRI .h5 reading/writing: round trips, interoperability with fastMRI and deepinv readers,
perturbed-k-space files and clear errors for bad files.

Every test builds its own tiny seeded files in ``tmp_path`` (as fastMRI's
tests/create_temp_data.py does), so the whole file runs in a few seconds.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import pkgutil
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from deepinv.physics import MRI, MultiCoilMRI
from hypothesis import given, settings
from hypothesis import strategies as st

from kspace_attacks import io as kio
from kspace_attacks.data import fastmri as fio
from kspace_attacks.data.fastmri import interop as fastmri_interop
from kspace_attacks.data.fastmri import (
    CorruptFastMRIFileError,
    FastMRIFileError,
    FastMRISlices,
    read_fastmri_slice,
    read_perturbed_kspace,
    write_fastmri_file,
    write_perturbed_kspace,
)
from kspace_attacks.data.fastmri.layout import _center_crop

H, W, COILS = 16, 12, 3


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _column_mask(w: int = W, every: int = 3, center: int = 4) -> torch.Tensor:
    m = torch.zeros(w)
    m[::every] = 1
    m[w // 2 - center // 2 : w // 2 - center // 2 + center] = 1
    return m


def _smooth_maps(coils: int = COILS, seed: int = 0) -> torch.Tensor:
    """Smooth complex maps with sum_n |S_n|^2 = 1, shape (coils, H, W)."""
    lo = torch.randn(coils, 2, 3, 3, generator=_gen(seed))
    up = torch.nn.functional.interpolate(lo, size=(H, W), mode="bilinear", align_corners=True)
    maps = torch.complex(up[:, 0] + 2.0, up[:, 1])
    return maps / maps.abs().pow(2).sum(0, keepdim=True).sqrt()


def _complex_image(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 2, H, W, generator=_gen(seed))


@pytest.fixture
def single_file(tmp_path):
    """Fully sampled single-coil volume of 3 slices written by write_fastmri_file."""
    y = MRI(img_size=(H, W)).A(_complex_image(3, seed=1))
    return write_fastmri_file(tmp_path / "single.h5", y), y


@pytest.fixture
def multi_file(tmp_path):
    """Fully sampled 3-coil volume of 2 slices with known maps: y = A(x) exactly."""
    maps, x = _smooth_maps(), _complex_image(2, seed=2)
    y = MultiCoilMRI(coil_maps=maps[None], img_size=(H, W)).A(x)
    return write_fastmri_file(tmp_path / "multi.h5", y, acquisition="AXT2"), y, maps, x


def _raw_file(path: Path, attrs: dict | None = None, **datasets) -> Path:
    """A file written with plain h5py, independent of the code under test."""
    with h5py.File(path, "w") as hf:
        for key, data in datasets.items():
            hf.create_dataset(key, data=data)
        hf.attrs.update(attrs or {})
    return path


def _raw_kspace(shape=(2, H, W), seed=0) -> np.ndarray:
    rg = np.random.default_rng(seed)
    return (rg.normal(size=shape) + 1j * rg.normal(size=shape)).astype(np.complex64)


# --------------------------------------------------------------------------- layout and round trips


@settings(max_examples=20, deadline=None)
@given(
    shape=st.sampled_from([(1, 4, 3), (2, 5, 4), (2, 3, 4, 2)]),
    seed=st.integers(0, 2**16),
)
def test_layout_conversion_round_trip(shape, seed):
    k = _raw_kspace(shape, seed)
    y = fio.fastmri_to_deepinv(k)
    assert y.shape == (shape[0], 2, *shape[1:]) and y.dtype == torch.float32
    assert np.array_equal(fio.deepinv_to_fastmri(y), k)


def test_single_coil_round_trip_identical(single_file):
    path, y = single_file
    with h5py.File(path) as hf:
        assert hf["kspace"].dtype == np.complex64 and hf["kspace"].shape == (3, H, W)
        assert np.array_equal(hf["kspace"][()], MRI.to_torch_complex(y).numpy())
        assert hf["reconstruction_esc"].shape == (3, H, W)
        assert "mask" not in hf and "reconstruction_rss" not in hf
        attrs = dict(hf.attrs)
    assert attrs["acquisition"] == "CORPD_FBK" and attrs["patient_id"] == "simulated-single"
    assert attrs["max"] > 0 and attrs["norm"] > attrs["max"]
    for i in range(3):
        _, yi, physics = read_fastmri_slice(path, i)
        assert torch.equal(yi, y[i : i + 1])
        assert isinstance(physics, MRI) and bool((physics.mask == 1).all())


def test_multi_coil_round_trip_identical(multi_file):
    path, y, _, _ = multi_file
    with h5py.File(path) as hf:
        assert hf["kspace"].dtype == np.complex64 and hf["kspace"].shape == (2, COILS, H, W)
        assert np.array_equal(hf["kspace"][()], MRI.to_torch_complex(y).numpy())
        assert hf["reconstruction_rss"].shape == (2, H, W)
        assert hf.attrs["acquisition"] == "AXT2"
    _, y1, physics = read_fastmri_slice(path, -1)
    assert torch.equal(y1, y[1:2])
    assert isinstance(physics, MultiCoilMRI) and physics.coil_maps.shape == (1, COILS, H, W)


def test_fully_sampled_y_equals_physics_of_x(single_file):
    path, _ = single_file
    x, y, physics = read_fastmri_slice(path, 1)
    assert x.shape == (1, 2, H, W)
    torch.testing.assert_close(physics.A(x), y, atol=1e-5, rtol=0)
    xm, _, _ = read_fastmri_slice(path, 1, target="magnitude")
    torch.testing.assert_close(xm, x.pow(2).sum(1, keepdim=True).sqrt())


def test_crop_keeps_x_y_physics_consistent(single_file):
    path, _ = single_file
    x, y, physics = read_fastmri_slice(path, 0, crop=(8, 6))
    assert x.shape == (1, 2, 8, 6) and y.shape == (1, 2, 8, 6) and physics.mask.shape[-2:] == (8, 6)
    torch.testing.assert_close(physics.A(x), y, atol=1e-5, rtol=0)
    x_full, _, _ = read_fastmri_slice(path, 0)
    torch.testing.assert_close(x, _center_crop(x_full, (8, 6)), atol=1e-5, rtol=0)


def test_multicoil_given_maps_recover_x_and_y(multi_file):
    path, _, maps, x_true = multi_file
    x, y0, physics = read_fastmri_slice(path, 0, coil_maps=maps)
    torch.testing.assert_close(x, x_true[:1], atol=1e-4, rtol=0)
    torch.testing.assert_close(physics.A(x), y0, atol=1e-4, rtol=0)


def test_multicoil_estimated_maps_are_unit_norm_and_close_for_smooth_data(tmp_path):
    maps = _smooth_maps(seed=3)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, H), torch.linspace(-1, 1, W), indexing="ij")
    blob = (1.0 + torch.exp(-(xx**2 + yy**2) / 0.5))[None, None]  # smooth, real, positive
    y = MultiCoilMRI(coil_maps=maps[None], img_size=(H, W)).A(torch.cat([blob, 0 * blob], 1))
    path = write_fastmri_file(tmp_path / "smooth.h5", y)
    x, y0, physics, info = read_fastmri_slice(path, 0, acs=8, return_info=True)
    assert info["coil_maps"] == "estimated" and info["acs"] == 8
    est = physics.coil_maps[0]
    torch.testing.assert_close(est.abs().pow(2).sum(0), torch.ones(H, W), atol=1e-4, rtol=0)
    # Low-pass estimates wrap around at the borders of this tiny image: judge the interior.
    assert (est - maps)[:, 4:-4, 3:-3].abs().max() < 0.05
    assert (physics.A(x) - y0).norm() / y0.norm() < 0.12


def test_file_mask_is_used_and_stored_in_fastmri_layout(tmp_path):
    mask = _column_mask()
    y = MRI(mask=mask[None].expand(H, W)).A(_complex_image(2, seed=4))
    path = write_fastmri_file(tmp_path / "test.h5", y, mask=mask)
    with h5py.File(path) as hf:
        assert hf["mask"].shape == (W,) and hf["mask"].dtype == bool
        assert not any(k.startswith("reconstruction") for k in hf)  # no ground truth
        assert hf.attrs["num_low_frequency"] == 5 and hf.attrs["acceleration"] == 2  # 7 of 12
    x, y0, physics = read_fastmri_slice(path, 1, mask="file")
    assert torch.equal(physics.mask[0, 0], mask[None].expand(H, W))
    assert torch.equal(y0, y[1:2])
    torch.testing.assert_close(physics.A(x), y0, atol=1e-5, rtol=0)  # zero-filled x


def test_user_mask_undersamples_retrospectively(single_file):
    path, y = single_file
    mask = _column_mask()
    x_full, _, _ = read_fastmri_slice(path, 2)
    x, y0, physics = read_fastmri_slice(path, 2, mask=mask)
    assert torch.equal(x, x_full)  # x is the fully sampled reference
    assert torch.equal(y0, y[2:3] * mask)
    torch.testing.assert_close(physics.A(x), y0, atol=1e-5, rtol=0)


def test_non_cartesian_mask_round_trips_as_2d(tmp_path):
    mask = (torch.rand(2, 1, H, W, generator=_gen(5)) > 0.5).float()  # per-slice 2D masks
    y = MRI(mask=mask).A(_complex_image(2, seed=6))
    path = write_fastmri_file(tmp_path / "m2d.h5", y, mask=mask)
    with h5py.File(path) as hf:
        assert hf["mask"].shape == (2, H, W)
    for i in range(2):
        _, _, physics = read_fastmri_slice(path, i)
        assert torch.equal(physics.mask[0, 0], mask[i, 0])


def test_normalization_options(single_file):
    path, _ = single_file
    x, y, _ = read_fastmri_slice(path, 0)
    with h5py.File(path) as hf:
        vmax = float(hf.attrs["max"])
    xm, ym, _, info = read_fastmri_slice(path, 0, normalize="max", return_info=True)
    assert info["scale"] == pytest.approx(1 / vmax)
    torch.testing.assert_close(xm, x / vmax)
    torch.testing.assert_close(ym, y / vmax)
    xp, _, _ = read_fastmri_slice(path, 0, normalize="percentile")
    assert torch.quantile(xp.pow(2).sum(1).sqrt().flatten(), 0.99) == pytest.approx(1.0, rel=1e-4)
    torch.testing.assert_close(read_fastmri_slice(path, 0, normalize=2.0)[1], y / 2)


def test_target_file_reads_stored_reconstruction(single_file):
    path, _ = single_file
    with h5py.File(path) as hf:
        recon = torch.from_numpy(hf["reconstruction_esc"][1])
    x, _, _ = read_fastmri_slice(path, 1, target="file")
    assert torch.equal(x[0, 0], recon)
    xc, yc, _ = read_fastmri_slice(path, 1, target="file", crop=8)
    assert xc.shape == (1, 1, 8, 8) and yc.shape == (1, 2, 8, 8)
    torch.testing.assert_close(xc, _center_crop(x, (8, 8)))


def test_dataset_over_directory(tmp_path, single_file, multi_file):
    ds = FastMRISlices(tmp_path)
    assert len(ds) == 5 and [p.name for p in ds.files] == ["multi.h5", "single.h5"]
    x, y, params = ds[0]  # multi-coil, slice 0
    assert x.shape == (2, H, W) and y.shape == (2, COILS, H, W)
    assert params["mask"].shape == (1, H, W) and params["coil_maps"].shape == (COILS, H, W)
    single = FastMRISlices(single_file[0], mask=_column_mask(), target="magnitude")
    loader = torch.utils.data.DataLoader(single, batch_size=3)
    xb, yb, pb = next(iter(loader))
    assert (
        xb.shape == (3, 1, H, W) and yb.shape == (3, 2, H, W) and pb["mask"].shape == (3, 1, H, W)
    )
    physics = MRI(img_size=(H, W))
    physics.update(**pb)
    assert torch.equal(physics.mask[:, 0], pb["mask"][:, 0])
    xg, yg, phys_g = single.get(1)
    assert torch.equal(xg[0], xb[1]) and torch.equal(yg[0], yb[1])
    assert torch.equal(phys_g.mask[0, 0], pb["mask"][1, 0])
    assert len(FastMRISlices(tmp_path, slices="middle")) == 2
    assert "files=2" in repr(ds)
    with pytest.raises(IndexError, match="out of range"):
        ds[5]


# --------------------------------------------------------------------------- other readers


def test_fastmri_slicedataset_reads_written_files(tmp_path, single_file, multi_file):
    pytest.importorskip("fastmri")
    for path, y, challenge in (
        (single_file[0], single_file[1], "singlecoil"),
        (multi_file[0], multi_file[1], "multicoil"),
    ):
        root = tmp_path / challenge
        root.mkdir()
        path.rename(root / path.name)
        ds = fio.fastmri_slice_dataset(
            root, transform=lambda k, m, t, attrs, f, s: (k, m, t, attrs)
        )
        assert len(ds) == y.shape[0]
        for i in range(len(ds)):
            k, mask, target, attrs = ds[i]
            assert mask is None and target.shape == (H, W)
            assert np.array_equal(k, MRI.to_torch_complex(y[i : i + 1])[0].numpy())
        assert attrs["encoding_size"] == (H, W, 1) and attrs["recon_size"] == (H, W, 1)
        assert (attrs["padding_left"], attrs["padding_right"]) == (0, W)


def test_deepinv_fastmri_slice_dataset_reads_written_files(tmp_path):
    from deepinv.datasets import FastMRISliceDataset

    mask = _column_mask()
    y = MRI(img_size=(H, W)).A(_complex_image(2, seed=7))
    root = tmp_path / "dinv"
    root.mkdir()
    write_fastmri_file(root / "a.h5", y)
    write_fastmri_file(root / "b.h5", y * mask, mask=mask)
    ds = FastMRISliceDataset(root=root, slice_index="all", use_dict_output=True)
    assert len(ds) == 4
    a0 = ds[0]  # a.h5: fully sampled, with target
    assert torch.equal(a0["y"], y[0]) and "params" not in a0
    x, _, _ = read_fastmri_slice(root / "a.h5", 0, target="file")
    assert torch.equal(a0["x"], x[0])
    b1 = ds[3]  # b.h5: undersampled, no target, mask returned in params
    assert torch.equal(b1["y"], (y * mask)[1]) and "x" not in b1
    assert torch.equal(b1["params"]["mask"][0, 0], mask)


# --------------------------------------------------------------------------- perturbed files


def test_perturbed_round_trip_single_coil(tmp_path):
    mask = _column_mask()
    physics = MRI(mask=mask[None].expand(H, W))
    x = _complex_image(2, seed=8)
    y = physics.A(x)
    delta = physics.A(0.01 * torch.randn(2, 2, H, W, generator=_gen(9)))
    settings_ = {"attack": "PGD", "steps": 10, "loss": "ReconDeviation", "lr": 0.1}
    path = write_perturbed_kspace(
        tmp_path / "adv.h5",
        y,
        y + delta,
        physics,
        eps=0.05,
        attack_settings=settings_,
        provenance={"seed": 123, "model": "unet"},
        x_clean=x,
    )
    r = read_perturbed_kspace(path)
    assert torch.equal(r.y_adv, y + delta) and torch.equal(r.y_clean, y)
    torch.testing.assert_close(r.delta, delta)
    assert r.eps == 0.05 and r.attack_settings == settings_ and r.coil_maps is None
    assert r.provenance["seed"] == 123 and r.provenance["model"] == "unet"
    assert {"version", "time", "torch", "deepinv"} <= set(r.provenance)
    assert r.attrs["perturbation_l2"] == pytest.approx(
        delta.flatten(1).norm(dim=1).tolist(), rel=1e-5
    )
    assert torch.equal(r.x_clean, x) and torch.equal(
        r.mask[:, 0], physics.mask[:, 0].expand(2, H, W)
    )
    torch.testing.assert_close(r.physics().A(x), y)
    # standard readers see the attacked k-space
    _, y_read, _ = read_fastmri_slice(path, 1)
    assert torch.equal(y_read, (y + delta)[1:2])
    with h5py.File(path) as hf:
        assert hf["mask"].shape == (W,)
        assert json.loads(hf.attrs["attack_settings"]) == settings_


def test_perturbed_round_trip_multi_coil_with_per_sample_eps(tmp_path):
    maps = _smooth_maps(seed=10)[None].expand(2, -1, -1, -1)
    physics = MultiCoilMRI(mask=_column_mask()[None].expand(H, W), coil_maps=maps, img_size=(H, W))
    y = physics.A(_complex_image(2, seed=11))
    y_adv = y + physics.A(0.01 * torch.randn(2, 2, H, W, generator=_gen(12)))
    eps = torch.tensor([0.01, 0.05])
    path = write_perturbed_kspace(
        tmp_path / "adv_mc.h5", y, y_adv, physics, eps=eps, attack_settings={}, seed=7
    )
    r = read_perturbed_kspace(path)
    assert torch.equal(r.y_adv, y_adv) and torch.equal(r.y_clean, y)
    assert torch.equal(r.eps, eps) and r.provenance["seed"] == 7
    assert torch.equal(r.coil_maps, maps)
    _, y_file, phys_file = read_fastmri_slice(path, 0)  # coil_maps="auto" uses the stored maps
    assert torch.equal(phys_file.coil_maps, maps[:1]) and torch.equal(y_file, y_adv[:1])


def test_fastmri_reads_perturbed_kspace_as_adversarial(tmp_path):
    pytest.importorskip("fastmri")
    mask = _column_mask()
    y = MRI(img_size=(H, W)).A(_complex_image(1, seed=13)) * mask
    y_adv = y + 0.1 * mask
    root = tmp_path / "adv"
    root.mkdir()
    write_perturbed_kspace(root / "adv.h5", y, y_adv, mask, eps=0.1, attack_settings={"a": 1})
    k, m, _, attrs, _, _ = fio.fastmri_slice_dataset(root)[0]
    assert np.array_equal(k, MRI.to_torch_complex(y_adv)[0].numpy()) and np.array_equal(
        m, mask.bool().numpy()
    )
    assert json.loads(attrs["attack_settings"]) == {"a": 1}


# --------------------------------------------------------------------------- errors and atomicity


def _bad_cases(tmp_path: Path) -> dict[str, tuple[Path, type, str]]:
    good = write_fastmri_file(tmp_path / "good.h5", fio.fastmri_to_deepinv(_raw_kspace()))
    data = good.read_bytes()
    (tmp_path / "truncated.h5").write_bytes(data[: len(data) // 2])
    (tmp_path / "random.h5").write_bytes(np.random.default_rng(0).bytes(4096))
    return {
        "missing kspace": (
            _raw_file(tmp_path / "nokspace.h5", reconstruction_esc=np.zeros((2, 4, 4), np.float32)),
            FastMRIFileError,
            "missing dataset 'kspace'",
        ),
        "real kspace": (
            _raw_file(tmp_path / "real.h5", kspace=np.zeros((2, H, W, 2), np.float32)),
            FastMRIFileError,
            "must be complex",
        ),
        "wrong ndim": (
            _raw_file(tmp_path / "ndim.h5", kspace=np.zeros((H, W), np.complex64)),
            FastMRIFileError,
            r"\(slices, H, W\)",
        ),
        "mask mismatch": (
            _raw_file(tmp_path / "mask.h5", kspace=_raw_kspace(), mask=np.ones(W + 1, bool)),
            FastMRIFileError,
            "does not match kspace shape",
        ),
        "mask not binary": (
            _raw_file(tmp_path / "mask2.h5", kspace=_raw_kspace(), mask=np.full(W, 0.5)),
            FastMRIFileError,
            "0/1",
        ),
        "truncated": (tmp_path / "truncated.h5", CorruptFastMRIFileError, "truncated"),
        "random bytes": (
            tmp_path / "random.h5",
            CorruptFastMRIFileError,
            "cannot be opened as HDF5",
        ),
        "nonexistent": (tmp_path / "nope.h5", FileNotFoundError, "no such file"),
        "directory": (tmp_path, FastMRIFileError, "is a directory"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing kspace",
        "real kspace",
        "wrong ndim",
        "mask mismatch",
        "mask not binary",
        "truncated",
        "random bytes",
        "nonexistent",
        "directory",
    ],
)
def test_bad_files_raise_clear_errors(tmp_path, case):
    path, exc, msg = _bad_cases(tmp_path)[case]
    with pytest.raises(exc, match=msg) as info:
        read_fastmri_slice(path, 0)
    assert str(path) in str(info.value)
    if exc is not FileNotFoundError and case != "directory":
        with pytest.raises(exc, match=msg):
            FastMRISlices(path)


def test_corrupt_file_error_is_also_oserror_and_skippable(tmp_path):
    cases = _bad_cases(tmp_path)
    assert isinstance(CorruptFastMRIFileError("x"), OSError)
    with pytest.warns(UserWarning, match="skipping"):
        ds = FastMRISlices(tmp_path, on_error="skip")
    assert [p.name for p in ds.files if p.name == "good.h5"] and len(ds) == 2
    assert cases  # all bad ones skipped, the good one kept


def test_slice_index_and_content_errors_name_the_file(single_file, tmp_path):
    path, _ = single_file
    with pytest.raises(IndexError, match=rf"{path}.*slice_idx 3 out of range.*3 slices"):
        read_fastmri_slice(path, 3)
    with pytest.raises(FastMRIFileError, match=rf"{path}.*no 'mask'"):
        read_fastmri_slice(path, 0, mask="file")
    raw = _raw_file(tmp_path / "raw.h5", kspace=_raw_kspace(), mask=np.ones(W, bool))
    with pytest.raises(FastMRIFileError, match=rf"{raw}.*attrs\['max'\]"):
        read_fastmri_slice(raw, 0, normalize="max")
    with pytest.raises(FastMRIFileError, match=rf"{raw}.*reconstruction"):
        read_fastmri_slice(raw, 0, target="file")
    with pytest.raises(ValueError, match=r"crop: cannot crop.*undersampled"):
        read_fastmri_slice(raw, 0, crop=8)
    with pytest.raises(FastMRIFileError, match=r"kspace_clean"):
        read_perturbed_kspace(path)


def test_argument_errors(single_file, tmp_path):
    path, y = single_file
    with pytest.raises(ValueError, match=r"crop: \(32, 32\) is larger"):
        read_fastmri_slice(path, 0, crop=32)
    with pytest.raises(ValueError, match="normalize: expected one of"):
        read_fastmri_slice(path, 0, normalize="minmax")
    with pytest.raises(ValueError, match=r"mask: expected shape \(W,\)=\(12,\)"):
        read_fastmri_slice(path, 0, mask=torch.ones(5))
    with pytest.raises(ValueError, match="kspace_y: expected k-space in deepinv layout"):
        write_fastmri_file(tmp_path / "bad.h5", torch.zeros(2, 3, H, W))
    with pytest.raises(ValueError, match="y_adv: expected the shape of y_clean"):
        write_perturbed_kspace(
            tmp_path / "bad.h5", y, y[:1], torch.ones(W), eps=0.1, attack_settings={}
        )
    with pytest.raises(TypeError, match="attack_settings.*JSON"):
        write_perturbed_kspace(
            tmp_path / "bad.h5", y, y, torch.ones(W), eps=0.1, attack_settings={"f": object()}
        )
    assert not (tmp_path / "bad.h5").exists()


def test_write_is_atomic(single_file, monkeypatch):
    path, y = single_file
    before = path.read_bytes()

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(kio.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_fastmri_file(path, 2 * y)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["single.h5"]  # no temp left behind
    monkeypatch.undo()
    with pytest.raises(FileExistsError, match="overwrite=False"):
        write_fastmri_file(path, y, overwrite=False)


def test_module_imports_without_fastmri(monkeypatch):
    monkeypatch.setitem(sys.modules, "fastmri", None)  # makes `import fastmri` fail
    spec = importlib.util.spec_from_file_location("_fastmri_io_copy", fastmri_interop.__file__)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    with pytest.raises(ImportError, match=r'pip install "kspace-attacks\[fastmri\]"'):
        module.require_fastmri()
    with pytest.raises(ImportError, match="kspace-attacks"):
        module.fastmri_slice_dataset(os.getcwd())


def test_docstring_examples(tmp_path, monkeypatch):
    import doctest
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # examples' mkdtemp() land here
    submodules = [m.name for m in pkgutil.iter_modules(fio.__path__)]
    modules = [fio] + [importlib.import_module(f"{fio.__name__}.{m}") for m in submodules]
    results = [doctest.testmod(m, optionflags=doctest.ELLIPSIS, verbose=False) for m in modules]
    failures, tried = sum(r.failed for r in results), sum(r.attempted for r in results)
    assert tried > 20 and failures == 0
