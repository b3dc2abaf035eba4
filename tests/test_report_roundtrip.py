"""TransferReport save -> load gives back everything: records (as the CSV parser restores them),
summaries, tables and the kept perturbed k-space (single- and multi-coil, flat and per-batch
folders), and saving the loaded report again writes the same bytes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import kspace_attacks as ka
from kspace_attacks.data import read_perturbed_kspace
from kspace_attacks.data.fastmri import CorruptFastMRIFileError
from kspace_attacks.study.perturbations import MissingPerturbationError, PerturbationStore
from kspace_attacks.study.report import TransferReport

from ._physics import multi_coil, single_coil, zero_filled

ROOT = Path(__file__).resolve().parents[1]
GRID = [0.0, 0.04]


@pytest.fixture(scope="module")
def single():
    """3 single-coil samples with string ids in two batches (2 + 1): FGM + the noise baseline."""
    x, y, physics = single_coil(16, batch=3, seed=1)
    return ka.transfer({"zf": zero_filled}, {"zf": zero_filled}, [(x[:2], y[:2], physics), (x[2:], y[2:], physics)],
                       eps=GRID, attack=ka.FGM(ka.KSpaceL2()), sample_ids=["a", "b", "c"], progress=False)


@pytest.fixture(scope="module")
def multi():
    """2 two-coil samples (integer ids): the files carry the coil maps."""
    x, y, physics = multi_coil(16, batch=2, coils=2, seed=2)
    return ka.transfer({"zf": zero_filled}, {"zf": zero_filled}, (x, y, physics), eps=GRID,
                       attack=ka.FGM(ka.KSpaceL2()), progress=False)


def _csv_restored(value):
    """What the records CSV gives back for ``value``: None, int, float or (else) str."""
    if value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    text = str(value)
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _same(a, b) -> bool:
    """Equal and of the same type, NaN equal to NaN (floats compared exactly)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def _rows_same(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert list(g) == list(w)
        for k in w:
            assert _same(g[k], w[k]), (k, g[k], w[k])


def _files(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def _assert_same_perturbations(loaded: TransferReport, report: TransferReport, extra: tuple = ()) -> None:
    """Every kept perturbation of ``report`` read back exactly (``loaded`` also keeps ``extra``)."""
    keys = report.perturbations.keys()
    assert keys and set(loaded.perturbations.keys()) == set(keys) | set(extra)
    for key in keys:
        got, want = loaded.perturbed_kspace(*key), report.perturbed_kspace(*key)
        assert got.dtype == want.dtype and torch.equal(got, want), key


# ------------------------------------------------------------------------------ records
@pytest.mark.parametrize("name", ["single", "multi"])
def test_records_summary_and_table_round_trip(name, request, tmp_path):
    report = request.getfixturevalue(name)
    loaded = TransferReport.load(report.save(tmp_path / "run"))
    _rows_same(loaded.records, [{k: _csv_restored(v) for k, v in r.items()} for r in report.records])
    assert (loaded.normalization, loaded.config, loaded.provenance) == (
        report.normalization, report.config, report.provenance)
    _rows_same(loaded.summary(), report.summary())
    _rows_same(loaded.summary(keys=("target", "eps"), metrics=("ratio",)),
               report.summary(keys=("target", "eps"), metrics=("ratio",)))
    assert loaded.table() == report.table()
    assert loaded.table("ratio", attack="fgm") == report.table("ratio", attack="fgm")
    assert repr(loaded) == repr(report) and len(loaded) == len(report)


# ------------------------------------------------------------------------------ perturbations
@pytest.mark.parametrize("name", ["single", "multi"])
def test_perturbed_kspace_round_trip(name, request, tmp_path):
    report = request.getfixturevalue(name)
    assert len(report.perturbations) == 2 * len(GRID) * len({r["sample_id"] for r in report.records})
    loaded = TransferReport.load(report.save(tmp_path / "run"))
    _assert_same_perturbations(loaded, report)
    if name == "multi":  # (1, 2, coils, H, W): the coil dimension survives the fastMRI layout
        assert loaded.perturbed_kspace("zf", "fgm", 0.04, 1).shape == (1, 2, 2, 16, 16)


@pytest.mark.parametrize("name", ["single", "multi"])
def test_saving_the_loaded_report_again_writes_the_same_bytes(name, request, tmp_path):
    report = request.getfixturevalue(name)
    first = report.save(tmp_path / "first")
    loaded = TransferReport.load(first)
    again = loaded.save(tmp_path / "again")
    before = _files(first)
    assert any(f.startswith("perturbations/") for f in before) and _files(again) == before
    loaded.save(first)  # onto the folder it was loaded from: nothing changes
    assert _files(first) == before
    _assert_same_perturbations(TransferReport.load(again), report)


def test_a_sweep_folder_with_one_perturbation_folder_per_batch(single, tmp_path):
    """A sweep writes ``perturbations/batch0000/...``: found, and kept where it was."""
    run = single.save(tmp_path / "sweep", perturbations=False)
    single.save_perturbations(run / "perturbations" / "batch0000")
    loaded = TransferReport.load(run)
    _assert_same_perturbations(loaded, single)
    again = loaded.save(tmp_path / "again")
    assert _files(again) == _files(run)
    assert all(f.startswith("perturbations/batch0000/") for f in _files(again) if f.endswith(".h5"))


def test_rows_added_to_a_loaded_report_join_its_files(single, tmp_path):
    loaded = TransferReport.load(single.save(tmp_path / "run"))
    _, y, physics = single_coil(16, batch=1, seed=5)
    loaded.add_perturbation("zf", "fgm", ["d"], [0.04], y, y * 1.5, physics, "FGM()")
    merged = TransferReport.load(loaded.save(tmp_path / "merged"))
    _assert_same_perturbations(merged, single, extra=[("zf", "fgm", 0.04, "d")])
    assert torch.equal(merged.perturbed_kspace("zf", "fgm", 0.04, "d"), y * 1.5)
    f = read_perturbed_kspace(tmp_path / "merged" / "perturbations" / "zf-fgm-eps0.04.h5")
    assert f.attack_settings["sample_ids"] == ["a", "b", "c", "d"]  # the file's rows first


def test_loading_reads_no_perturbation_file_until_asked(single, tmp_path):
    run = single.save(tmp_path / "run")
    (run / "perturbations" / "a-broken-eps1.h5").write_bytes(b"not an HDF5 file")
    loaded = TransferReport.load(run)  # records load: the perturbation files are not opened
    _rows_same(loaded.records, TransferReport.load(single.save(tmp_path / "clean", perturbations=False)).records)
    with pytest.raises(CorruptFastMRIFileError, match="a-broken-eps1.h5"):
        loaded.perturbed_kspace("zf", "fgm", 0.04, "a")


@pytest.mark.parametrize("folder", sorted(p.parent for p in (ROOT / "docs").glob("*/*/perturbations")),
                         ids=lambda p: p.relative_to(ROOT).as_posix())
def test_committed_folders_give_their_perturbations(folder):
    loaded = TransferReport.load(folder)
    assert loaded.records and loaded.perturbations
    path = sorted((folder / "perturbations").rglob("*.h5"))[0]
    f = read_perturbed_kspace(path)
    s, a = f.attack_settings["surrogate"], f.attack_settings["name"]
    for j, sid in enumerate(f.attack_settings["sample_ids"]):
        assert torch.equal(loaded.perturbed_kspace(s, a, float(f.eps), sid), f.y_adv[j : j + 1])


# ------------------------------------------------------------------------------ errors
def test_a_missing_perturbation_names_what_was_asked_for(single, tmp_path):
    loaded = TransferReport.load(single.save(tmp_path / "run"))
    for args, asked in [
        (("zf", "fgm", 0.04, "zz"), "surrogate='zf', attack='fgm', eps=0.04, sample_id='zz'"),
        (("zf", "fgm", 0.03, "a"), "surrogate='zf', attack='fgm', eps=0.03, sample_id='a'"),
        (("other", "fgm", 0.04, "a"), "surrogate='other', attack='fgm', eps=0.04, sample_id='a'"),
        (("zf", "pgd", 0.0, "a"), "surrogate='zf', attack='pgd', eps=0.0, sample_id='a'"),
    ]:
        for report in (single, loaded):
            with pytest.raises(KeyError) as err:
                report.perturbed_kspace(*args)
            assert isinstance(err.value, MissingPerturbationError)
            text = str(err.value)
            assert text.startswith(f"no kept perturbation for {asked}; kept: ")
            assert "'zf'/'fgm' at eps [0.0, 0.04] for 3 sample_id(s) ['a', 'b', 'c']" in text
    bare = TransferReport.load(single.save(tmp_path / "bare", perturbations=False))
    with pytest.raises(KeyError, match=r"sample_id='a'; none is kept \(transfer\(\.\.\., keep_perturbations=True\)"):
        bare.perturbed_kspace("zf", "fgm", 0.04, "a")


def test_inputs_are_validated(single, tmp_path):
    with pytest.raises(TypeError, match="surrogate: expected a str, got int 1"):
        single.perturbed_kspace(1, "fgm", 0.04, "a")
    with pytest.raises(TypeError, match="eps: expected a real number, got str '0.04'"):
        single.perturbed_kspace("zf", "fgm", "0.04", "a")
    y = torch.zeros(2, 2, 4, 4)
    with pytest.raises(ValueError, match=r"y_adv: expected the shape of y_clean \(2, 2, 4, 4\) with len\(grid\) "
                                         r"\* len\(ids\) = 4 rows, got \(2, 2, 4, 4\)"):
        TransferReport().add_perturbation("zf", "fgm", [0, 1], [0.0, 0.1], y, y, None, "FGM()")
    with pytest.raises(ValueError, match=r"y_clean: expected k-space \(rows, 2, \[N,\] H, W\)"):
        TransferReport().add_perturbation("zf", "fgm", [0], [0.0], torch.zeros(1, 4, 4), y[:1], None, "FGM()")
    with pytest.raises(TypeError, match="provenance: expected a dict or None, got str"):
        single.save_perturbations(tmp_path, provenance="x")
    with pytest.raises(FileNotFoundError, match="folder: expected a folder of perturbation files"):
        PerturbationStore.load(tmp_path / "nowhere")
