"""TransferReport: summaries against hand computation, durable save/load, fastMRI perturbation
files, atomic writes and the text table."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch

import kspace_attacks as ka
from kspace_attacks.data import read_perturbed_kspace
from kspace_attacks.study.report import (
    GROUP_KEYS,
    TransferReport,
    atomic_write_text,
    records_from_csv,
    records_to_csv,
    summarize,
)

from ._physics import single_coil, zero_filled

GRID = [0.0, 0.04]


@pytest.fixture(scope="module")
def data():
    return single_coil(16, batch=3, seed=1)


@pytest.fixture(scope="module")
def report(data):
    """3 samples in two batches (2 + 1), PGD + noise baseline, zero-filled target."""
    x, y, physics = data
    return ka.transfer({"zf": zero_filled}, {"zf": zero_filled},
                       [(x[:2], y[:2], physics), (x[2:], y[2:], physics)], eps=GRID,
                       attack=ka.PGD(ka.KSpaceL2(), steps=2), sample_ids=[10, 11, 12], progress=False)


def _rec(eps, value, **kw):
    base = {"surrogate": "s", "target": "t", "attack": "pgd", "setting": "transfer", "eps": eps}
    return {**base, "ssim_vs_clean": value, **kw}


def _same(a, b) -> bool:
    """Equal, with NaN equal to NaN (floats compared exactly)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


# ------------------------------------------------------------------------------ summaries
def test_summary_matches_hand_computation():
    records = [
        _rec(0.01, 1.0), _rec(0.01, 2.0), _rec(0.01, 4.0),  # n = 3
        _rec(0.02, 0.5),  # n = 1: no spread, undefined interval
        _rec(0.03, 3.0), _rec(0.03, float("nan")), _rec(0.03, 5.0), _rec(0.03, None),  # NaN/None skipped
        _rec(0.01, 9.0, target="u"),  # another group
    ]
    rows = {(r["target"], r["eps"]): r for r in summarize(records)}
    assert set(rows) == {("t", 0.01), ("t", 0.02), ("t", 0.03), ("u", 0.01)}

    # values 1, 2, 4: mean 7/3, sample variance ((4/3)^2 + (1/3)^2 + (5/3)^2) / 2 = 7/3,
    # 95 % half-width t_{0.975, df=2} * s / sqrt(3) with t = 4.303
    r = rows[("t", 0.01)]
    assert r["n"] == 3
    assert r["ssim_vs_clean_mean"] == pytest.approx(7 / 3, rel=1e-12)
    assert r["ssim_vs_clean_std"] == pytest.approx(math.sqrt(7 / 3), rel=1e-12)
    assert r["ssim_vs_clean_ci95"] == pytest.approx(4.303 * math.sqrt(7 / 3) / math.sqrt(3), rel=1e-12)
    assert {k: r[k] for k in GROUP_KEYS} == {"surrogate": "s", "target": "t", "attack": "pgd",
                                             "setting": "transfer", "eps": 0.01}

    r = rows[("t", 0.02)]
    assert (r["n"], r["ssim_vs_clean_mean"], r["ssim_vs_clean_std"]) == (1, 0.5, 0.0)
    assert math.isnan(r["ssim_vs_clean_ci95"])

    # NaN and None values are left out of the statistics (n counts the group's records)
    r = rows[("t", 0.03)]
    assert r["n"] == 4
    assert r["ssim_vs_clean_mean"] == pytest.approx(4.0)
    assert r["ssim_vs_clean_std"] == pytest.approx(math.sqrt(2.0))
    assert r["ssim_vs_clean_ci95"] == pytest.approx(12.706 * math.sqrt(2.0) / math.sqrt(2))

    # metrics absent from every record produce no columns
    assert "psnr_vs_clean_mean" not in rows[("u", 0.01)]


@pytest.mark.parametrize(
    "n, t_true",
    # two-sided 97.5 % Student-t quantiles, df = n - 1 (standard tables)
    [(2, 12.706), (3, 4.303), (6, 2.571), (11, 2.228), (12, 2.201), (26, 2.060), (46, 2.014),
     (62, 2.000), (101, 1.984), (1001, 1.962)],
)
def test_ci95_uses_student_t(n, t_true):
    # Values 0, 1, 0, 1, ...: sample std known in closed form.
    vals = [float(i % 2) for i in range(n)]
    mean = sum(vals) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1))
    (row,) = summarize([_rec(0.01, v) for v in vals])
    assert row["ssim_vs_clean_std"] == pytest.approx(std, rel=1e-12)
    # The library tabulates t at a few df and steps between them (and uses 1.96 beyond
    # df = 60): within 2.5 % of the exact quantile everywhere.
    assert row["ssim_vs_clean_ci95"] == pytest.approx(t_true * std / math.sqrt(n), rel=0.025)


def test_report_summary_groups(report):
    rows = report.summary()
    assert {(r["surrogate"], r["eps"]) for r in rows} == {(s, e) for s in ("zf", "random") for e in GRID}
    for r in rows:
        assert r["n"] == 3
        assert r["ratio_mean"] == pytest.approx(r["eps"], abs=1e-4)
        vals = [q["ratio"] for q in report.filter(surrogate=r["surrogate"], eps=r["eps"])]
        assert r["ratio_mean"] == pytest.approx(sum(vals) / 3, rel=1e-12)


# ------------------------------------------------------------------------------ save / load
def test_save_load_round_trip(report, tmp_path):
    out = report.save(tmp_path / "run")
    assert out == tmp_path / "run"
    for name in ("records.csv", "summary.json", "summary.csv"):
        assert (out / name).is_file(), name
    loaded = TransferReport.load(out)
    assert loaded.normalization == report.normalization
    assert len(loaded.records) == len(report.records) == 3 * 2 * 2
    for a, b in zip(report.records, loaded.records, strict=True):
        assert list(a) == list(b)
        for k in a:
            assert _same(a[k], b[k]), (k, a[k], b[k])  # floats exact, ints stay ints, strs stay strs
    # no temporary files left behind by the atomic writes
    assert not [p for p in out.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]


def test_summary_files(report, tmp_path):
    out = report.save(tmp_path / "run", perturbations=False)
    assert not (out / "perturbations").exists()
    meta = json.loads((out / "summary.json").read_text())
    assert meta["n_records"] == len(report.records)
    assert meta["normalization"] == "reference"  # transfer()'s default: the reference's scale
    expected = report.summary()
    assert len(meta["summary"]) == len(expected)
    for got, want in zip(meta["summary"], expected, strict=True):
        assert set(got) == set(want)
        assert all(_same(float(got[k]), float(want[k])) if isinstance(want[k], float) else got[k] == want[k]
                   for k in want)
    from_csv = records_from_csv(out / "summary.csv")
    assert [(r["surrogate"], r["eps"], r["n"]) for r in from_csv] == [
        (r["surrogate"], r["eps"], r["n"]) for r in expected]


def test_crafted_records_round_trip(tmp_path):
    records = [
        {"sample_id": "file1-3", "surrogate": 'odd, "quoted"\nname', "eps": 0.01, "n": 7,
         "x": 0.1 + 0.2, "big": 1e300, "tiny": 5e-324, "neg": -3, "nan": float("nan")},
        {"sample_id": "file1-4", "surrogate": "plain", "eps": 0.0, "n": 0,
         "x": 1 / 3, "big": -1.5e-7, "tiny": 0.0, "neg": 2, "nan": 1.0},
    ]
    TransferReport(records, config={"seed": 3}).save(tmp_path)
    loaded = TransferReport.load(tmp_path)
    assert loaded.config == {"seed": 3}
    for a, b in zip(records, loaded.records, strict=True):
        for k in a:
            assert _same(a[k], b[k]), (k, a[k], b[k])


def test_load_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"records\.csv"):
        TransferReport.load(tmp_path / "nowhere")
    (tmp_path / "only-summary").mkdir()
    (tmp_path / "only-summary" / "summary.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"only-summary.records\.csv"):
        TransferReport.load(tmp_path / "only-summary")


# ------------------------------------------------------------------------------ perturbations
def test_perturbation_files(report, data, tmp_path):
    _, y, _ = data
    out = report.save(tmp_path)
    files = {p.name for p in (out / "perturbations").iterdir()}
    assert files == {"random-noise-eps0.h5", "random-noise-eps0.04.h5",
                     "zf-pgd-eps0.h5", "zf-pgd-eps0.04.h5"}
    for surrogate, attack in (("zf", "pgd"), ("random", "noise")):
        for eps in GRID:
            f = read_perturbed_kspace(out / "perturbations" / f"{surrogate}-{attack}-eps{eps:g}.h5")
            # both batches merged into one file, in sample order
            assert f.attack_settings["sample_ids"] == [10, 11, 12]
            assert f.attack_settings["surrogate"] == surrogate and f.attack_settings["name"] == attack
            assert float(f.eps) == pytest.approx(eps)
            assert f.y_adv.shape == y.shape
            assert torch.equal(f.y_clean, y)
            for j, sid in enumerate([10, 11, 12]):
                assert torch.equal(f.y_adv[j : j + 1], report.perturbed_kspace(surrogate, attack, eps, sid))
            ratio = f.delta.flatten(1).norm(dim=1) / y.flatten(1).norm(dim=1)
            assert torch.allclose(ratio, torch.full((3,), eps), atol=1e-4)
    with pytest.raises(KeyError, match="sample_id=99"):
        report.perturbed_kspace("zf", "pgd", 0.04, 99)


def test_close_budgets_get_their_own_files(data, tmp_path):
    x, y, physics = data
    rep = ka.transfer({"zf": zero_filled}, {"zf": zero_filled}, (x[:1], y[:1], physics),
                      eps=[0.0011, 0.0014], attack=ka.FGM(ka.KSpaceL2()), baseline=False, progress=False)
    rep.save(tmp_path)
    assert len(list((tmp_path / "perturbations").iterdir())) == 2


# ------------------------------------------------------------------------------ atomic writes
def test_atomic_write_text_replaces_and_cleans_up(tmp_path):
    target = tmp_path / "sub" / "file.txt"
    assert atomic_write_text(target, "first\n") == target  # creates the parent folder
    atomic_write_text(target, "second, ünïcode\n")
    assert target.read_text(encoding="utf-8") == "second, ünïcode\n"
    assert os.listdir(target.parent) == ["file.txt"]
    # a failed write keeps the old content and removes its temporary file
    with pytest.raises(TypeError):
        atomic_write_text(target, 123)  # type: ignore[arg-type]
    assert target.read_text(encoding="utf-8") == "second, ünïcode\n"
    assert os.listdir(target.parent) == ["file.txt"]


def test_records_csv_union_of_columns():
    text = records_to_csv([{"a": 1}, {"b": "x", "a": 2.5}])
    assert text.splitlines() == ["a,b", "1,", "2.5,x"]


# ------------------------------------------------------------------------------ table
def test_table(report):
    text = report.table()
    lines = text.splitlines()
    assert lines[0] == "ssim_vs_clean (mean per eps)"
    assert "0.00" in lines[1] and "0.04" in lines[1]
    body = {line.split()[0] + " -> " + line.split()[2]: line for line in lines[3:]}
    assert set(body) == {"random -> zf", "zf -> zf"}
    for name, line in body.items():
        surrogate = name.split(" -> ")[0]
        cells = [float(c) for c in line.split()[4:]]
        means = [sum(r["ssim_vs_clean"] for r in report.filter(surrogate=surrogate, eps=e)) / 3 for e in GRID]
        assert cells == pytest.approx(means, abs=1e-4)
        assert cells[0] == pytest.approx(1.0)
    only_pgd = report.table("squared_deviation", attack="pgd").splitlines()
    assert only_pgd[0] == "squared_deviation (mean per eps)" and len(only_pgd) == 4
    assert "zf -> zf" in only_pgd[3] and "pgd" in only_pgd[3]
