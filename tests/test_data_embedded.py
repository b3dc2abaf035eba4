"""The shipped embedded brain data, its splits, the EmbeddedBrain dataset and demo_batch."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from kspace_attacks.data import CONTRASTS, EmbeddedBrain, demo_batch, get_preset, load_embedded
from kspace_attacks.data import embedded as emb
from kspace_attacks.data.build import NOTICE, SPLITS, assign_splits, template_dir


def test_shipped_file_contents():
    assert emb.DATA_FILE.is_file() and emb.DATA_FILE.stat().st_size < 3e6
    a = load_embedded()
    n = len(a["z"])
    for key in ("t1", "gm", "wm", "brain"):
        assert a[key].shape == (n, 64, 64) and a[key].dtype == np.uint8
    assert n >= 100 and len(np.unique(a["z"])) == n
    assert str(a["notice"]) == NOTICE and "Collins" in str(a["citations"])
    assert tuple(a["split_names"]) == SPLITS
    # tissue probabilities stay inside the brain mask (up to uint8 rounding)
    gmwm = a["gm"].astype(int) + a["wm"].astype(int)
    assert (gmwm <= a["brain"].astype(int) + 3).mean() > 0.99
    notice = emb.DATA_FILE.with_name("NOTICE-MNI-ICBM152.txt").read_text()
    assert "Copyright (C) 1993-2009 Louis Collins" in notice


def test_load_is_fast_and_cached():
    emb._load.cache_clear()
    t0 = time.perf_counter()
    a = load_embedded()
    assert time.perf_counter() - t0 < 1.0
    assert load_embedded() is a


def test_splits_disjoint_covering_contiguous():
    a = load_embedded()
    z, split = a["z"].astype(int), a["split"]
    sets = [set(EmbeddedBrain(s).z.tolist()) for s in SPLITS]
    assert sum(map(len, sets)) == len(z) and set().union(*sets) == set(z.tolist())
    assert all(not (sets[i] & sets[j]) for i in range(3) for j in range(i + 1, 3))
    counts = np.bincount(split, minlength=3).tolist()
    assert len(sets[0]) == counts[0] and len(sets[1]) + len(sets[2]) == counts[1] + counts[2]
    assert [len(s) for s in sets] == [80, 22, 14]
    # training: contiguous blocks, the split changes at most every BLOCK slices
    order = np.argsort(z)
    changes = np.nonzero(np.diff((split[order] == 0).astype(int)))[0]
    assert (np.diff(changes) >= 8).all()
    assert np.array_equal(assign_splits(z), split)


def test_test_slices_are_spread_and_never_next_to_another_or_to_training():
    test, train = np.array(sorted(EmbeddedBrain("test").z)), np.array(sorted(EmbeddedBrain("train").z))
    assert (np.diff(test) >= 2).all()  # no two adjacent test slices
    assert (np.abs(test[:, None] - train[None, :]).min(axis=1) >= 2).all()  # nor next to training
    ds = EmbeddedBrain("test")
    blocks = {ds.info(i)["block"] for i in range(len(ds))}
    assert len(blocks) == 5 and {ds.info(i)["subject"] for i in range(len(ds))} == {"icbm152"}
    assert test.min() < 50 and test.max() > 130  # spread over the whole brain


def test_dataset_items_shapes_range_determinism():
    ds = EmbeddedBrain("train")
    n_train = len(ds.slices)
    assert len(ds) == n_train * len(CONTRASTS) * 8
    x, y = ds[7]
    assert x.shape == (2, 64, 64) and y.shape == (2, 64, 64)
    assert float(x[0].min()) >= 0 and float(x[0].max()) == pytest.approx(1.0)
    assert float(x[1].abs().max()) == 0.0  # embedded preset: phase disabled
    x2, y2 = EmbeddedBrain("train")[7]
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(x, EmbeddedBrain("train", seed=1)[7][0])
    assert not torch.equal(ds[6][0], x)  # different augmentation of the same slice
    # the image depends on (seed, z, contrast, sample), not on the other contrasts held
    ds2 = EmbeddedBrain("train", contrasts=(ds.info(7)["contrast"],))
    assert torch.equal(ds2[ds.info(7)["sample"]][0], x)
    # y is the preset's measurement of x, plus its noise floor (30 dB)
    clean = get_preset("embedded_noiseless").simulate(x[None])[0]
    assert abs(float(10 * torch.log10(clean.norm() ** 2 / (y - clean).norm() ** 2)) - 30.0) < 0.3


def test_eval_splits_defaults():
    for split in ("val", "test"):
        ds = EmbeddedBrain(split)
        assert not ds.augment and ds.samples_per_slice == 1
        assert len(ds) == len(ds.slices) * len(CONTRASTS)
        info = ds.info(len(ds) - 1)
        assert info["contrast"] == CONTRASTS[-1] and info["z"] == int(ds.z[-1])
    assert "split='test'" in repr(EmbeddedBrain("test"))


def test_multicoil_and_noisy_dataset():
    p = get_preset("embedded", coils=4, snr_db=25.0)
    _, y = EmbeddedBrain("val", p, contrasts="t2w")[2]
    assert y.shape == (2, 4, 64, 64)
    assert torch.equal(y, EmbeddedBrain("val", p, contrasts="t2w")[2][1])


def test_demo_batch():
    x, y, physics = demo_batch(4)
    assert x.shape == (4, 2, 64, 64) and y.shape == (4, 2, 64, 64)
    assert physics.mask.shape == (4, 2, 64, 64)
    noise = (y - physics.A(x)).flatten(1).norm(dim=1) / physics.A(x).flatten(1).norm(dim=1)
    assert torch.allclose(noise, torch.full((4,), 10 ** -1.5), rtol=0.05)  # the 30 dB noise floor
    assert torch.allclose(physics.A(x), demo_batch(4, preset="embedded_noiseless")[1], atol=1e-6)
    zf = physics.A_adjoint(y)
    assert zf.shape == x.shape and float((zf - x).norm() / x.norm()) < 0.5
    x2, y2, _ = demo_batch(4)
    assert torch.equal(x, x2) and torch.equal(y, y2)


def test_dataset_errors_name_the_argument():
    with pytest.raises(ValueError, match="split"):
        EmbeddedBrain("training")
    with pytest.raises(ValueError, match="name"):
        EmbeddedBrain("train", preset="knee")
    with pytest.raises(ValueError, match="contrasts"):
        EmbeddedBrain("train", contrasts=("t1w", "dwi"))
    with pytest.raises(ValueError, match="samples_per_slice"):
        EmbeddedBrain("train", samples_per_slice=0)
    ds = EmbeddedBrain("test")
    with pytest.raises(IndexError, match="index"):
        ds[len(ds)]
    with pytest.raises(TypeError, match="index"):
        ds["0"]
    with pytest.raises(ValueError, match="n: expected at most"):
        demo_batch(10_000)


@pytest.mark.skipif(template_dir() is None, reason="nilearn ICBM152 files not installed")
def test_rebuild_matches_shipped_file():
    from kspace_attacks.data.build import build_embedded

    new, old = build_embedded(64), load_embedded()
    for key in ("t1", "gm", "wm", "brain", "z", "split"):
        assert np.array_equal(new[key], old[key]), key


def test_other_sizes_fallback_upsamples(monkeypatch, tmp_path):
    from kspace_attacks.data import build

    monkeypatch.setenv("KSPACE_ATTACKS_CACHE", str(tmp_path))
    monkeypatch.setattr(build, "template_dir", lambda: None)
    emb._load.cache_clear()
    try:
        with pytest.warns(UserWarning, match="upsampling"):
            a = load_embedded(96)
        assert a["t1"].shape == (len(a["z"]), 96, 96) and a["t1"].dtype == np.uint8
        ds = EmbeddedBrain("test", get_preset("embedded", img_size=96))
        assert ds[0][0].shape == (2, 96, 96)
    finally:
        emb._load.cache_clear()


def test_dataset_pickles_for_worker_processes():
    import pickle

    ds = EmbeddedBrain("val")
    _ = ds[0]  # builds the physics
    clone = pickle.loads(pickle.dumps(ds))
    assert torch.equal(clone[3][1], ds[3][1])
