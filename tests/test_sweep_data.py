"""Every data source of a sweep end to end, on files the tests write: embedded, NIfTI with slice
selection, fastMRI single- and multi-coil (hand-made with numpy's FFT, not this package's
writer), folders of files, and files that are broken."""

from __future__ import annotations

import csv
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from kspace_attacks.cli import main
from kspace_attacks.data import get_preset, load_nifti_slices
from kspace_attacks.data.fastmri import FastMRIFileError
from kspace_attacks.data.selection import evenly_spaced, select_slices
from kspace_attacks.study.sweep import ConfigError, build_data, run_sweep, validate_config

nib = pytest.importorskip("nibabel")

QUICK = {"surrogates": ["zero_filled"], "targets": ["zero_filled"], "eps": [0.0, 0.05],
         "attacks": {"pgd": {"type": "pgd", "steps": 2}}, "n_slices": 10, "batch_size": 2}


# ---------------------------------------------------------------------------------- files
def fft2c(img: np.ndarray) -> np.ndarray:
    """Centred orthonormal 2D FFT over the last two axes (fastMRI's convention)."""
    ax = (-2, -1)
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(img, axes=ax), norm="ortho", axes=ax), axes=ax)


def phantom(n_slices: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """(S, h, w) float images in [0, 1]: an ellipse with a few brighter blobs, per slice."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    cy, cx = (h - 1) / 2, (w - 1) / 2
    out = np.zeros((n_slices, h, w), np.float32)
    for s in range(n_slices):
        img = 0.5 * (((yy - cy) / (0.4 * h)) ** 2 + ((xx - cx) / (0.35 * w)) ** 2 <= 1)
        for _ in range(3):
            by, bx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
            img = img + rng.uniform(0.2, 0.5) * np.exp(-((yy - by) ** 2 + (xx - bx) ** 2) / (0.01 * h * w))
        out[s] = img / img.max()
    return out


def smooth_maps(n_coils: int, h: int, w: int) -> np.ndarray:
    """(N, h, w) complex coil maps with root-sum-of-squares 1 everywhere."""
    yy, xx = np.mgrid[:h, :w] / np.array([h, w])[:, None, None]
    maps = []
    for c in range(n_coils):
        a = 2 * np.pi * c / n_coils
        mag = np.exp(-((yy - 0.5 - 0.4 * np.cos(a)) ** 2 + (xx - 0.5 - 0.4 * np.sin(a)) ** 2) / 0.3)
        maps.append(mag * np.exp(1j * (a + 2 * xx)))
    maps = np.stack(maps)
    return (maps / np.sqrt((np.abs(maps) ** 2).sum(0))).astype(np.complex64)


def write_h5(path: Path, kspace: np.ndarray, **datasets: np.ndarray) -> Path:
    """A fastMRI-like file written with h5py directly: ``kspace`` plus any other datasets."""
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=kspace.astype(np.complex64))
        for name, data in datasets.items():
            f.create_dataset(name, data=data)
    return path


def single_coil_file(path: Path, n: int = 3, h: int = 64, w: int = 64, seed: int = 0, **extra) -> np.ndarray:
    img = phantom(n, h, w, seed)
    write_h5(path, fft2c(img), reconstruction_esc=np.abs(img).astype(np.float32), **extra)
    return img


def _batch_x(batches: list) -> torch.Tensor:
    return torch.cat([b[0] for b in batches])


def _records(out: Path) -> list[dict]:
    with open(out / "records.csv", newline="") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------------------------- fastMRI
def test_hand_made_single_coil_file_with_full_mask_is_reconstructed(tmp_path):
    img = single_coil_file(tmp_path / "hand.h5", mask=np.ones(64, bool))
    cfg = validate_config({**QUICK, "data": {"fastmri": str(tmp_path / "hand.h5"), "mask": "file",
                                             "normalize": "none"}})
    batches, ids = build_data(cfg)
    assert ids == ["hand-0", "hand-1", "hand-2"]
    assert [b[0].shape[0] for b in batches] == [2, 1]  # batch_size 2
    x = _batch_x(batches)
    assert torch.allclose(x[:, 0], torch.from_numpy(img), atol=1e-5)  # the image written ...
    assert torch.allclose(x[:, 1], torch.zeros_like(x[:, 1]), atol=1e-5)  # ... real
    for xb, yb, physics in batches:
        assert torch.allclose(physics.A(xb), yb, atol=1e-5)
        assert torch.allclose(physics.A_adjoint(yb), xb, atol=1e-5)  # zero-filled = the image
    report = run_sweep(cfg, tmp_path / "out", progress=False).report
    assert {r["sample_id"] for r in report.records} == set(ids)
    clean = [r for r in _records(tmp_path / "out") if float(r["eps"]) == 0.0]
    assert len(clean) == 3 * 2  # 3 slices x (pgd, noise)
    assert all(float(r["clean_ssim"]) > 0.999 and float(r["clean_psnr"]) > 60 for r in clean)


def test_stored_reconstruction_as_ground_truth(tmp_path):
    img = single_coil_file(tmp_path / "hand.h5", mask=np.ones(64, bool))
    cfg = validate_config({**QUICK, "data": {"fastmri": str(tmp_path / "hand.h5"), "mask": "file",
                                             "target": "file", "normalize": "none"}})
    batches, _ = build_data(cfg)
    x = _batch_x(batches)
    assert x.shape == (3, 1, 64, 64) and torch.allclose(x[:, 0], torch.from_numpy(img))
    report = run_sweep(cfg, tmp_path / "out", progress=False).report
    clean = report.filter(eps=0.0)
    assert len(clean) == 6 and all(r["clean_ssim"] > 0.999 for r in clean)


def test_file_mask_of_columns_undersamples(tmp_path):
    mask = np.zeros(64, bool)
    mask[::4] = mask[28:36] = True
    img = phantom(2, 64, 64)
    write_h5(tmp_path / "under.h5", fft2c(img) * mask, mask=mask)
    cfg = validate_config({**QUICK, "data": {"fastmri": str(tmp_path / "under.h5"), "mask": "file"}})
    (_, y, physics), = build_data(cfg)[0]
    assert torch.equal(physics.mask[0, 0], torch.from_numpy(mask).float().expand(64, 64))
    assert torch.equal(y * (1 - physics.mask), torch.zeros_like(y))  # only sampled columns
    # no fully sampled k-space, no stored reconstruction: no ground truth (not the zero-filled
    # image posing as one), so the records carry no metric against it
    assert build_data(cfg)[0][0][0] is None
    report = run_sweep(validate_config({"n_slices": 1, "batch_size": 1}, cfg), tmp_path / "out", progress=False).report
    assert report.records and all("clean_psnr" not in r and "delta_ssim" not in r for r in report.records)
    assert all(0 < r["ssim_vs_clean"] <= 1 for r in report.records)
    # the preset's mask would crop undersampled k-space: refused, naming the file
    with pytest.raises(ConfigError, match=r"data\.mask: .*under\.h5, which is undersampled.*mask = 'file'"):
        build_data(validate_config({**QUICK, "data": {"fastmri": str(tmp_path / "under.h5")}}))


def test_multi_coil_with_file_coil_maps_cropped_to_the_preset(tmp_path):
    img = phantom(2, 96, 80, seed=1)
    maps = smooth_maps(4, 96, 80)
    coil_images = img[:, None] * maps[None]
    write_h5(tmp_path / "mc.h5", fft2c(coil_images), coil_maps=np.broadcast_to(maps, coil_images.shape).copy(),
             reconstruction_rss=img)
    cfg = validate_config({**QUICK, "data": {"fastmri": str(tmp_path / "mc.h5"), "normalize": "none"}})
    (x, y, physics), = build_data(cfg)[0]
    top, left = (96 - 64) // 2, (80 - 64) // 2  # fastMRI's centre-crop offsets
    crop = torch.from_numpy(img[:, top : top + 64, left : left + 64])
    assert x.shape == (2, 2, 64, 64) and y.shape == (2, 2, 4, 64, 64)
    assert torch.allclose(x[:, 0], crop, atol=1e-4) and x[:, 1].abs().max() < 1e-4
    assert torch.equal(physics.mask[0, 0], get_preset("embedded").mask())
    assert torch.allclose(physics.A(x), y, atol=1e-4)
    report = run_sweep(cfg, tmp_path / "out", progress=False).report
    assert {r["sample_id"] for r in report.records} == {"mc-0", "mc-1"}
    assert all(abs(r["ratio"] - r["eps"]) < 1e-4 for r in report.records)


def test_multi_coil_without_maps_estimates_them_and_normalizes(tmp_path):
    img = phantom(3, 72, 72, seed=2)
    write_h5(tmp_path / "est.h5", fft2c(img[:, None] * smooth_maps(3, 72, 72)[None]))
    cfg = validate_config({**QUICK, "batch_size": 3, "data": {"fastmri": str(tmp_path / "est.h5"),
                                                             "target": "magnitude"}})
    (x, y, physics), = build_data(cfg)[0]
    assert x.shape == (3, 1, 64, 64) and physics.coil_maps.shape == (3, 3, 64, 64)
    # RSS of the cropped coil images is the cropped image; "percentile" puts its 99th at 1
    crop = torch.from_numpy(img[:, 4:68, 4:68])
    assert torch.allclose(x[:, 0] / x.flatten(1).max(1).values[:, None, None],
                          crop / crop.flatten(1).max(1).values[:, None, None], atol=1e-4)
    assert torch.allclose(torch.quantile(x.flatten(1), 0.99, dim=1), torch.ones(3), atol=1e-4)
    assert torch.allclose(physics.coil_maps.abs().pow(2).sum(1), torch.ones(3, 64, 64), atol=1e-4)
    report = run_sweep(cfg, tmp_path / "out", progress=False).report
    assert len(report) == 3 * 2 * 2  # slices x eps x (pgd, noise), one batch of 3


def test_folder_of_files_in_name_order(tmp_path, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    single_coil_file(folder / "b.h5", n=3, seed=1)
    single_coil_file(folder / "a.h5", n=2, seed=2)
    (folder / "notes.txt").write_text("not data")
    base = {**QUICK, "data": {"fastmri": str(folder)}}
    assert build_data(validate_config(dict(base, n_slices=3)))[1] == ["a-0", "a-1", "b-0"]
    picked = validate_config({**base, "data": {"fastmri": str(folder), "slices": [-1]}})
    assert build_data(picked)[1] == ["a-1", "b-2"]  # slices are taken in every file
    ranged = validate_config({**base, "data": {"fastmri": str(folder), "slices": "0:2"}})
    assert build_data(ranged)[1] == ["a-0", "a-1", "b-0", "b-1"]
    config = tmp_path / "c.toml"
    config.write_text(f'surrogates = ["zero_filled"]\ntargets = ["zero_filled"]\neps = [0.0, 0.05]\n'
                      f'n_slices = 10\ndata = {{fastmri = "{folder}", slices = "0:2"}}\n'
                      f'[attacks.pgd]\ntype = "pgd"\nsteps = 2\n')
    code = main(["sweep", "--config", str(config), "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert sorted({r["sample_id"] for r in _records(tmp_path / "out")}) == ["a-0", "a-1", "b-0", "b-1"]


def _garbage(path: Path) -> Path:
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    return path


def _truncated(path: Path) -> Path:
    single_coil_file(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return path


@pytest.mark.parametrize(
    "make, match",
    [
        (_garbage, r"bad\.h5: cannot be opened as HDF5"),
        (_truncated, r"bad\.h5: (cannot be opened as HDF5|reading failed)"),
        (lambda p: write_h5(p, fft2c(phantom(1, 64, 64))[0]), r"bad\.h5: dataset 'kspace' must have shape \(slices, H, W\)"),
        (lambda p: write_h5(p, np.zeros((1, 1, 1, 64, 64))), r"bad\.h5: dataset 'kspace' must have shape"),
        (lambda p: h5py.File(p, "w").create_dataset("kspace", data=np.zeros((2, 64, 64), np.float32)).file.close(),
         r"bad\.h5: dataset 'kspace' must be complex"),
        (lambda p: write_h5(p, fft2c(phantom(1, 64, 64)), mask=np.ones(50)), r"bad\.h5: dataset 'mask' has shape \(50,\)"),
    ],
)
def test_broken_files_fail_naming_the_file_and_the_problem(tmp_path, capsys, make, match):
    folder = tmp_path / "data"
    folder.mkdir()
    single_coil_file(folder / "a.h5")
    make(folder / "bad.h5")
    cfg = validate_config({**QUICK, "data": {"fastmri": str(folder), "mask": "file"}})
    with pytest.raises(FastMRIFileError, match=match):
        build_data(cfg)
    config = tmp_path / "c.toml"
    config.write_text(f'data = {{fastmri = "{folder}"}}\nsurrogates = ["zero_filled"]\ntargets = ["zero_filled"]\n')
    code = main(["sweep", "--config", str(config), "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("kspace-attacks sweep: error: ") and "bad.h5" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "records.rank0.jsonl").exists()  # failed before any batch


def test_fastmri_config_errors(tmp_path):
    single_coil_file(tmp_path / "small.h5", h=48, w=48)
    with pytest.raises(ConfigError, match=r"preset: expected k-space of at least 64x64 .*small\.h5 with 48x48"):
        build_data(validate_config({**QUICK, "data": {"fastmri": str(tmp_path / "small.h5")}}))
    with pytest.raises(FileNotFoundError, match=r"data\.fastmri: .*nope does not exist"):
        build_data(validate_config({**QUICK, "data": {"fastmri": str(tmp_path / "nope")}}))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"data\.fastmri: expected a \.h5 file or a folder of them"):
        build_data(validate_config({**QUICK, "data": {"fastmri": str(tmp_path / "empty")}}))
    with pytest.raises(FastMRIFileError, match=r"small\.h5: mask='file' but the file has no 'mask'"):
        build_data(validate_config({**QUICK, "data": {"fastmri": str(tmp_path / "small.h5"), "mask": "file"}}))


@pytest.mark.parametrize(
    "data, match",
    [
        ({"fastmri": "d", "mask": "random"}, r"data\.mask must be one of \['preset', 'file'\], got 'random'"),
        ({"fastmri": "d", "coil_maps": "espirit"}, r"data\.coil_maps must be one of"),
        ({"fastmri": "d", "normalize": -1}, r"data\.normalize must be 'percentile', 'max', 'none' or a number > 0, got -1"),
        ({"fastmri": "d", "target": "rss"}, r"data\.target must be one of"),
        ({"fastmri": "d", "crop": 64}, r"data: unknown key 'crop' for fastmri data; known keys"),
        ({"fastmri": 3}, r"data\.fastmri must be a path \(a non-empty string\), got int 3"),
        ({"nifti": "f", "slices": "10-40"}, r"data\.slices: expected a list of slice indices or a range 'start:stop\[:step\]'.*got '10-40'"),
        ({"nifti": "f", "slices": "40:10"}, r"data\.slices: the range selects no slice"),
        ({"nifti": "f", "slices": [1, 1]}, r"data\.slices: expected distinct slice indices, got \[1, 1\]"),
        ({"nifti": "f", "slices": [1.5]}, r"data\.slices: expected integer slice indices, got \[1\.5\]"),
        ({"nifti": "f", "slices": 3}, r"data\.slices must be a list of slice indices or a range"),
        ({"nifti": "f", "n_slices": 0}, r"data\.n_slices must be an int >= 1, got int 0"),
        ({"nifti": "f", "n_slices": 2, "slices": [1]}, r"data\.n_slices: expected either data\.slices or data\.n_slices, got both"),
        ({"nifti": "f", "min_content": 2}, r"data\.min_content must be a number in \[0, 1\], got int 2"),
        ({"nifti": "f", "mask": "file"}, r"data: unknown key 'mask' for nifti data"),
    ],
)
def test_data_table_errors_name_the_key(data, match):
    with pytest.raises(ConfigError, match=match):
        validate_config({"data": data})


# ---------------------------------------------------------------------------------- NIfTI
@pytest.fixture
def volume(tmp_path) -> tuple[Path, np.ndarray]:
    """A 40 x 40 x 30 volume (RAS, 1 mm) with content in axial slices 5..24."""
    vol = np.zeros((40, 40, 30), np.float32)
    yy, xx = np.mgrid[:40, :40]
    for z in range(5, 25):
        vol[..., z] = ((yy - 20) ** 2 + (xx - 20) ** 2 <= (8 + z % 7) ** 2) * (1 + 0.05 * z)
    path = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(vol, np.eye(4)), str(path))
    return path, vol


@pytest.mark.parametrize(
    "table, expected",
    [
        ({"slices": [10, 20]}, [10, 20]),
        ({"slices": [-1, 0]}, [29, 0]),
        ({"slices": "10:40:5"}, [10, 15, 20, 25]),
        ({"slices": ":3"}, [0, 1, 2]),
        ({"n_slices": 3}, [5, 15, 24]),  # evenly spaced over the content slices 5..24
        ({"n_slices": 3, "min_content": 0.9}, None),  # no slice that full: an error
    ],
)
def test_nifti_slice_selection(volume, table, expected):
    path, _ = volume
    cfg = validate_config({**QUICK, "data": {"nifti": str(path), **table}})
    if expected is None:
        with pytest.raises(ConfigError, match=r"min_content: expected at least one slice of .*vol\.nii\.gz"):
            build_data(cfg)
        return
    batches, ids = build_data(cfg)
    assert ids == [f"vol-{i}" for i in expected]
    x = _batch_x(batches)
    direct = load_nifti_slices(path, size=64, slices=expected)
    assert torch.equal(x[:, :1], direct) and torch.equal(x[:, 1:], torch.zeros_like(direct))
    for xb, yb, physics in batches:
        clean = physics.A(xb)
        content = clean.flatten(1).norm(dim=1) > 0
        snr = 10 * torch.log10(clean.flatten(1).norm(dim=1) ** 2 / (yb - clean).flatten(1).norm(dim=1) ** 2)
        assert torch.allclose(snr[content], torch.full_like(snr[content], 30.0), atol=0.5)  # the noise floor
        assert torch.equal(yb[~content], clean[~content])  # an empty slice: nothing to be relative to


def test_nifti_default_is_top_level_n_slices_evenly_spaced(volume, tmp_path):
    path, _ = volume
    cfg = validate_config({**QUICK, "n_slices": 2, "data": {"nifti": str(path)}})
    assert build_data(cfg)[1] == ["vol-5", "vol-24"]
    report = run_sweep(cfg, tmp_path / "out", progress=False).report
    assert {r["sample_id"] for r in report.records} == {"vol-5", "vol-24"}
    assert all(r["clean_ssim"] > 0.2 for r in report.records)


def test_nifti_errors(volume, tmp_path):
    path, _ = volume
    with pytest.raises(ConfigError, match=r"data: slices: expected indices in \[0, 30\) .*vol\.nii\.gz.* got \[30\]"):
        build_data(validate_config({"data": {"nifti": str(path), "slices": [3, 30]}}))
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(ConfigError, match=r"bad\.nii\.gz.*cannot be read"):
        build_data(validate_config({"data": {"nifti": str(bad)}}))
    with pytest.raises(FileNotFoundError, match=r"data\.nifti: file .*missing\.nii does not exist"):
        build_data(validate_config({"data": {"nifti": str(tmp_path / "missing.nii")}}))


def test_load_nifti_slices_selection_arguments(volume):
    path, _ = volume
    x, idx = load_nifti_slices(path, size=32, slices="10:20:4", return_indices=True)
    assert idx == [10, 14, 18] and x.shape == (3, 1, 32, 32)
    assert torch.equal(x, load_nifti_slices(path, size=32, slices=range(10, 20, 4)))
    assert torch.equal(x, load_nifti_slices(path, size=32, slices=slice(10, 20, 4)))
    x, y, idx = load_nifti_slices(path, size=64, n_slices=2, preset="embedded", return_indices=True)
    assert idx == [5, 24] and y.shape == (2, 2, 64, 64)
    assert load_nifti_slices(path, size=32, n_slices=50, return_indices=True)[1] == list(range(5, 25))
    with pytest.raises(ValueError, match=r"n_slices: expected None when slices is given"):
        load_nifti_slices(path, slices=[1], n_slices=2)
    with pytest.raises(ValueError, match=r"n_slices: expected an integer >= 1, got 0"):
        load_nifti_slices(path, n_slices=0)
    with pytest.raises(TypeError, match=r"slices: expected integer slice indices, got \[True\]"):
        load_nifti_slices(path, slices=[True])


def test_select_slices():
    assert select_slices([3, -1], 10) == [3, 9]
    assert select_slices("::-3", 7) == [6, 3, 0]
    assert select_slices(np.array([1, 2]), 3) == [1, 2]
    assert evenly_spaced(range(10), 1) == [0] and evenly_spaced([4, 9], 5) == [4, 9]
    with pytest.raises(ValueError, match=r"idx: expected a non-zero step in '1:5:0', got step 0"):
        select_slices("1:5:0", 10, name="idx")
    with pytest.raises(ValueError, match=r"slices: expected indices in \[0, 4\) \(or negative from the end\) of f.h5, got \[4\]"):
        select_slices([0, 4], 4, where="f.h5")
    with pytest.raises(TypeError, match=r"slices: expected a non-empty list of slice indices"):
        select_slices([], 4)


def test_embedded_source_is_unchanged():
    batches, ids = build_data(validate_config({"n_slices": 3, "batch_size": 2}))
    assert ids == ["test-0", "test-34", "test-69"]
    assert [b[0].shape[0] for b in batches] == [2, 1]


def test_records_name_each_items_slice_contrast_subject_and_block(tmp_path, volume):
    """Embedded ids index the split's items (slice-major over 5 contrasts); the records say which
    slice, contrast, subject and anatomical block each is, read from the data set itself."""
    from kspace_attacks.data import EmbeddedBrain
    from kspace_attacks.study.sources import build_items, item_coordinates

    cfg = validate_config({**QUICK, "n_slices": 3, "eps": [0.05]})
    ds = EmbeddedBrain("test")
    expected = {f"test-{i}": {k: ds.info(i)[k if k != "slice" else "z"] for k in ("slice", "contrast", "subject",
                                                                                  "block")} for i in (0, 34, 69)}
    assert item_coordinates(cfg, ["test-0", "test-34", "test-69"]) == expected
    assert len({c["contrast"] for c in expected.values()}) > 1  # the items are not one contrast
    assert len({c["block"] for c in expected.values()}) == 3 and {c["subject"] for c in expected.values()} == {"icbm152"}
    report = run_sweep(cfg, tmp_path / "out", progress=False).report
    for r in report.records:
        assert (r["slice"], r["contrast"], r["subject"], r["block"]) == tuple(expected[r["sample_id"]].values())
        assert list(r)[:5] == ["sample_id", "slice", "contrast", "subject", "block"]
    path, _ = volume  # 30 slices: quarters of the volume are its blocks
    nifti = validate_config({**QUICK, "data": {"nifti": str(path), "slices": [12, 29]}})
    expected = {"vol-12": {"slice": 12, "contrast": "", "subject": "vol", "block": 1},
                "vol-29": {"slice": 29, "contrast": "", "subject": "vol", "block": 3}}
    assert build_items(nifti).coordinates == expected  # built with the data, in the ids' order
    assert item_coordinates(nifti, ["vol-29", "vol-12", "vol-0"]) == {k: expected[k] for k in ("vol-29", "vol-12")}


def test_a_list_of_sources_gives_each_its_subject_and_per_item_noise(volume):
    """The study's data: template test slices and real volumes in one sweep; each item's noise is
    seeded by its id, so it does not depend on the other items or the batch."""
    from kspace_attacks.study.sources import build_items, item_coordinates

    path, _ = volume
    table = [{"embedded": "test", "n_slices": 4, "contrasts": ["t1"]}, {"nifti": str(path), "slices": [10, 20]},
             {"shipped": "dipy_aniso", "slices": [8]}]
    cfg = validate_config({**QUICK, "batch_size": 3, "data": table})
    batches, ids = build_data(cfg)
    assert ids[:4] == ["test-z42-t1", "test-z68-t1", "test-z114-t1", "test-z140-t1"]
    assert ids[4:] == ["vol-10", "vol-20", "unseen_brain_dipy_aniso-8"]
    coords = item_coordinates(cfg, ids)
    assert [coords[i]["subject"] for i in ids] == ["icbm152"] * 4 + ["vol", "vol", "unseen_brain_dipy_aniso"]
    y = torch.cat([b[1] for b in batches])
    alone, ids_alone = build_data(validate_config({**QUICK, "data": [table[1]]}))
    assert ids_alone == ["vol-10", "vol-20"] and torch.equal(torch.cat([b[1] for b in alone]), y[4:6])
    again = build_data(validate_config({**QUICK, "batch_size": 1, "data": table}))[0]
    assert torch.equal(torch.cat([b[1] for b in again]), y)
    other_seed = build_data(validate_config({**QUICK, "seed": 1, "data": table}))[0]
    assert not torch.equal(torch.cat([b[1] for b in other_seed]), y)
    with pytest.raises(ConfigError, match=r"data\[1\]: a list holds simulated sources"):
        validate_config({**QUICK, "data": [table[0], {"fastmri": "dir"}]})
    with pytest.raises(ConfigError, match=r"data\.shipped must be one of \['dipy_aniso', 'dipy_s0'\]"):
        validate_config({**QUICK, "data": {"shipped": "mni"}})
    with pytest.raises(ConfigError, match="the same item is listed twice"):
        build_data(validate_config({**QUICK, "data": [table[1], table[1]]}))


def test_multi_coil_file_without_maps_sweeps_to_a_report(tmp_path, capsys):
    """A multi-coil file as fastMRI ships them (``kspace`` and ``reconstruction_rss``, no coil
    maps): the sweep estimates the maps, stores them with the perturbed k-space, and ends with
    exit 0, records, verdicts and report.html; its perturbation files rebuild the physics."""
    from kspace_attacks.data import read_perturbed_kspace

    img = phantom(3, 72, 72, seed=3)
    write_h5(tmp_path / "mc.h5", fft2c(img[:, None] * smooth_maps(4, 72, 72)[None]),
             reconstruction_rss=img.astype(np.float32))
    config = tmp_path / "c.toml"
    config.write_text(f'surrogates = ["zero_filled"]\ntargets = ["zero_filled"]\neps = [0.0, 0.02]\n'
                      f'batch_size = 3\ndata = {{fastmri = "{tmp_path / "mc.h5"}"}}\n'
                      f'[attacks.pgd]\ntype = "pgd"\nsteps = 2\n')
    out = tmp_path / "out-mc"
    code = main(["sweep", "--config", str(config), "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert len(_records(out)) == 3 * 2 * 2 and (out / "verdict.md").is_file() and (out / "report.html").is_file()
    files = sorted((out / "perturbations").rglob("*.h5"))
    assert files, "the sweep kept no perturbation files"
    (_, y, physics), = build_data(validate_config(
        {**QUICK, "batch_size": 3, "data": {"fastmri": str(tmp_path / "mc.h5")}}))[0]
    for f in files:
        saved = read_perturbed_kspace(f)
        rebuilt = saved.physics()
        assert saved.coil_maps.shape == (3, 4, 64, 64)
        assert torch.allclose(rebuilt.coil_maps, physics.coil_maps, atol=1e-6)
        assert torch.allclose(saved.y_clean, y, atol=1e-6)


def test_a_step_after_the_records_that_fails_is_noted_not_raised(tmp_path, capsys, monkeypatch):
    """Panels and figures present the results: when one cannot be made the sweep still exits 0
    with its records, verdicts and report.html, which names the step and its error."""
    import kspace_attacks.study.html as html_module

    def broken(*args, **kwargs):
        raise RuntimeError("no panel today")

    monkeypatch.setattr(html_module, "build_panels", broken)
    single_coil_file(tmp_path / "a.h5", n=2)
    config = tmp_path / "c.toml"
    config.write_text(f'surrogates = ["zero_filled"]\ntargets = ["zero_filled"]\neps = [0.0, 0.05]\n'
                      f'data = {{fastmri = "{tmp_path / "a.h5"}"}}\n[attacks.pgd]\ntype = "pgd"\nsteps = 2\n')
    with pytest.warns(RuntimeWarning, match="image panels not made"):
        code = main(["sweep", "--config", str(config), "--out", str(tmp_path / "out"), "--quiet"])
    assert code == 0, capsys.readouterr().err
    page = (tmp_path / "out" / "report.html").read_text()
    assert "Not made: image panels (RuntimeError: no panel today)" in page
    assert (tmp_path / "out" / "verdict.md").is_file() and _records(tmp_path / "out")
    monkeypatch.undo()  # a later run that succeeds forgets the note
    assert main(["sweep", "--config", str(config), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert "Not made" not in (tmp_path / "out" / "report.html").read_text()


def test_a_nifti_volume_as_data_gets_noise_subjects_cluster_cis_and_the_split(tmp_path, volume, capsys):
    """As a new user would: ``data = {nifti = "vol.nii.gz"}`` and nothing else about realism."""
    import json

    path, _ = volume
    config = tmp_path / "c.toml"
    config.write_text(f'data = {{nifti = "{path}"}}\nn_slices = 8\nsurrogates = ["zero_filled"]\n'
                      f'targets = ["zero_filled"]\neps = [0.02, 0.05]\nbatch_size = 8\n'
                      f'[attacks.pgd]\ntype = "pgd"\nsteps = 2\n')
    out = tmp_path / "out"
    assert main(["sweep", "--config", str(config), "--out", str(out), "--quiet"]) == 0, capsys.readouterr().err
    records = _records(out)
    assert {r["subject"] for r in records} == {"vol"} and {r["block"] for r in records} == {"0", "1", "2", "3"}
    assert all(0 <= float(r["delta_null_fraction"]) <= 1 for r in records if r["eps"] != "0.0")
    (x, y, physics), = build_data(validate_config({**QUICK, "n_slices": 8, "batch_size": 8,
                                                   "data": {"nifti": str(path)}}))[0]
    clean = physics.A(x)
    assert ((y - clean).flatten(1).norm(dim=1) > 0.02 * clean.flatten(1).norm(dim=1)).all()  # the noise floor
    rows = json.loads((out / "verdict.json").read_text())["rows"]
    beats = [r for r in rows if r["claim_id"] == "beats_noise"]
    assert beats and all(r["unit"] == "block" and r["n_clusters"] == 4 and r["n_subjects"] == 1 for r in beats)
