"""Same configuration, same numbers: a sweep's records are a function of its configuration and
seed (and of the package versions, the CPU and the configured thread count, which
``provenance.json`` records), whatever the caller's thread settings, the number of torchrun
ranks, or interruptions and resumes."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sysconfig
from pathlib import Path

import h5py
import pytest
import torch

from kspace_attacks.data import read_perturbed_kspace
from kspace_attacks.study import sweep
from kspace_attacks.study.journal import Journal, read_journal, read_markers
from kspace_attacks.study.sweep import dump_toml, run_sweep, validate_config

# a nonlinear model (ResUnet++) as surrogate and target, next to zero-filled; one batch of two
# slices, so two ranks can only share it through its units
CONFIG = {"n_slices": 2, "batch_size": 2, "eps": [0.0, 0.03, 0.06], "surrogates": ["resunetpp", "zero_filled"],
          "targets": ["resunetpp", "zero_filled"], "attacks": {"pgd": {"type": "pgd", "steps": 3}},
          "null_draws": 2, "threads": 1}
RUNTIME_KEYS = {"kspace_attacks", "torch", "deepinv", "numpy", "python", "platform", "threads", "deterministic",
                "device", "world_size"}


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if "seconds" not in k} for r in csv.DictReader(f)]


def assert_same_records(got: list[dict], expected: list[dict], rel: float = 1e-6) -> None:
    """Same records in the same order; numbers equal to ``rel`` (NaN equals NaN)."""
    assert len(got) == len(expected)
    for i, (a, b) in enumerate(zip(got, expected, strict=True)):
        assert a.keys() == b.keys(), i
        for k in a:
            try:
                x, y = float(a[k]), float(b[k])
            except ValueError:
                assert a[k] == b[k], (i, k)
                continue
            assert (math.isnan(x) and math.isnan(y)) or math.isclose(x, y, rel_tol=rel, abs_tol=1e-12), (i, k, x, y)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """One uninterrupted single-process run, called with one torch thread."""
    out = tmp_path_factory.mktemp("fresh")
    torch.set_num_threads(1)
    run_sweep(validate_config(CONFIG), out, progress=False).report
    return out, _rows(out / "records.csv")


def test_caller_thread_count_does_not_change_records(fresh, tmp_path):
    _, expected = fresh
    torch.set_num_threads(2)  # the caller's setting; the sweep's own threads = 1 rules (conftest restores)
    run_sweep(validate_config(CONFIG), tmp_path, progress=False).report
    assert torch.get_num_threads() == 2
    assert_same_records(_rows(tmp_path / "records.csv"), expected)
    markers = read_markers(tmp_path / "records.rank0.jsonl")
    assert {(m["threads"], m["deterministic"]) for m in markers.values()} == {(1, True)}


def test_interrupted_then_resumed_matches_a_fresh_run(fresh, tmp_path, monkeypatch):
    _, expected = fresh
    real = Journal.append
    calls = {"n": 0}

    def interrupted(self, *args, **kwargs):
        if calls["n"] == 2:
            raise KeyboardInterrupt  # Ctrl-C after two of the three units
        calls["n"] += 1
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Journal, "append", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(validate_config(CONFIG), tmp_path, progress=False).report
    monkeypatch.setattr(Journal, "append", real)
    assert len(read_journal(tmp_path / "records.rank0.jsonl")) == 2 and not (tmp_path / "records.csv").exists()
    with open(tmp_path / "records.rank0.jsonl", "a") as f:
        f.write('{"batch": 0, "sample_id": "torn')  # and a write cut short
    run_sweep(validate_config(CONFIG), tmp_path, progress=False).report
    assert_same_records(_rows(tmp_path / "records.csv"), expected)
    assert not (tmp_path / "shared").exists() and not (tmp_path / "claims").exists()  # scratch removed


def test_two_ranks_match_one_process(fresh, tmp_path):
    _, expected = fresh
    torchrun = Path(sysconfig.get_path("scripts")) / "torchrun"
    if not torchrun.exists():
        pytest.skip("torchrun not installed")
    config = tmp_path / "cfg.toml"
    # every unit at the configured 1 thread, in one process or in each of 2 ranks
    config.write_text(dump_toml(validate_config(CONFIG)))
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONUNBUFFERED="1")  # the callers run 2 threads
    proc = subprocess.run([str(torchrun), "--nproc_per_node", "2", "--master_port", "29531", "-m", "kspace_attacks",
                           "sweep", "--config", str(config), "--out", str(out), "--quiet"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_records(_rows(out / "records.csv"), expected)
    markers = [read_markers(out / f"records.rank{r}.jsonl") for r in (0, 1)]
    assert markers[0] and markers[1]  # the one batch's three units were shared by both ranks
    assert {k for m in markers for k in m} == {(0, "random"), (0, "resunetpp", "pgd"), (0, "zero_filled", "pgd")}
    assert {(m["threads"], m["deterministic"]) for ms in markers for m in ms.values()} == {(1, True)}
    assert {m["rank"] for ms in markers for m in ms.values()} == {0, 1}
    assert json.loads((out / "provenance.json").read_text())["world_size"] == 2


def test_provenance_in_folder_summary_and_every_perturbation_file(fresh):
    out, _ = fresh
    prov = json.loads((out / "provenance.json").read_text())
    assert RUNTIME_KEYS <= set(prov)
    assert prov["threads"] == 1 and prov["deterministic"] is True and prov["world_size"] == 1
    assert prov["device"] == "cpu" and prov["torch"] == torch.__version__ and prov["seed"] == 0
    assert json.loads((out / "summary.json").read_text())["provenance"] == prov
    files = sorted((out / "perturbations").rglob("*.h5"))
    assert len(files) == 3 * 3  # (resunetpp, zero_filled, noise) x 3 eps
    for path in files:
        stored = read_perturbed_kspace(path).provenance
        assert {k: stored[k] for k in RUNTIME_KEYS} == {k: prov[k] for k in RUNTIME_KEYS}, path.name
        assert stored["seed"] == 0 and "time" in stored


def test_perturbation_file_without_runtime_provenance_still_loads(fresh, tmp_path):
    out, _ = fresh
    path = tmp_path / "old.h5"
    path.write_bytes(next((out / "perturbations").rglob("*.h5")).read_bytes())
    old = {"package": "kspace-attacks", "version": "0.1.0", "torch": "2.3.0", "seed": None}
    with h5py.File(path, "r+") as f:  # as written before the runtime fields existed
        f.attrs["provenance"] = json.dumps(old)
    assert read_perturbed_kspace(path).provenance == old


def test_resume_in_another_environment_warns_and_keeps_both(fresh, tmp_path):
    out, _ = fresh
    folder = tmp_path / "copy"
    folder.mkdir()
    for name in ("config.toml", "provenance.json", "records.rank0.jsonl"):
        (folder / name).write_bytes((out / name).read_bytes())
    prov = json.loads((folder / "provenance.json").read_text())
    (folder / "provenance.json").write_text(json.dumps(dict(prov, torch="1.0.0")))
    with pytest.warns(RuntimeWarning, match=r"different torch \(torch='1.0.0'\)"):
        run_sweep(validate_config(CONFIG), folder, progress=False).report
    again = json.loads((folder / "provenance.json").read_text())
    assert again["torch"] == torch.__version__ and again["previous"][0]["torch"] == "1.0.0"


def test_thread_count_is_part_of_the_configuration(fresh):
    # threads = 2 may round differently from threads = 1: it is configuration, not environment,
    # so a folder computed with one is never resumed with the other
    out, _ = fresh
    with pytest.raises(sweep.ConfigError, match="holds results of a different configuration"):
        run_sweep(validate_config(dict(CONFIG, threads=2)), out, progress=False).report
