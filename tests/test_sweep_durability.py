"""Sweeps survive being killed, resume to identical records, and shard their units across torchrun
ranks."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from kspace_attacks.study.journal import Journal, read_journal

CONFIG = """
n_slices = 10
batch_size = 1
eps = [0.0, 0.03, 0.06]
surrogates = ["zero_filled"]
targets = ["zero_filled"]
[attacks.pgd]
type = "PGD"
steps = {steps}
"""


def _records(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if "seconds" not in k} for r in csv.DictReader(f)]


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "kspace_attacks", *args]


def _env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted single-process run."""
    d = tmp_path_factory.mktemp("ref")
    cfg = d / "cfg.toml"
    cfg.write_text(CONFIG.format(steps=80))
    subprocess.run(_cmd("sweep", "--config", str(cfg), "--out", str(d / "out"), "--quiet"),
                   check=True, env=_env(), capture_output=True)
    return cfg, _records(d / "out" / "records.csv")


def _wait_for_batches(journal: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    start = time.time()
    while time.time() - start < timeout:
        if journal.exists() and len(read_journal(journal)) >= n:
            return
        if proc.poll() is not None:
            pytest.fail(f"sweep ended before {n} batches were written: {proc.stderr.read().decode()}")
        time.sleep(0.05)
    pytest.fail("sweep too slow to reach the kill point")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_sweep_resumes_to_identical_records(reference, tmp_path, sig):
    cfg, expected = reference
    out = tmp_path / "out"
    # Started with SIGINT ignored, as a background job of a non-interactive shell is: the
    # command must still stop on SIGINT (exit 130), not run to the end.
    proc = subprocess.Popen(_cmd("sweep", "--config", str(cfg), "--out", str(out), "--quiet"),
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    _wait_for_batches(out / "records.rank0.jsonl", 1, proc)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    assert proc.returncode == (130 if sig == signal.SIGINT else -signal.SIGKILL)
    assert not (out / "records.csv").exists()  # the run did not finish
    partial = read_journal(out / "records.rank0.jsonl")
    assert 1 <= len(partial) < 20  # 10 batches x (noise/null unit + zero_filled unit)
    # no temporary files left behind by atomic writes
    assert not [p for p in out.rglob("*.tmp")]
    done = subprocess.run(_cmd("sweep", "--config", str(cfg), "--out", str(out), "--quiet"),
                          env=_env(), capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
    assert _records(out / "records.csv") == expected
    assert len(list((out / "perturbations").glob("batch*/*.h5"))) == 10 * 2 * 3  # (pgd, noise) x eps


def test_resume_into_folder_of_other_config_is_refused(reference, tmp_path):
    cfg, _ = reference
    out = tmp_path / "out"
    first = subprocess.run(_cmd("sweep", "--config", str(cfg), "--out", str(out), "--quiet"), env=_env(),
                           capture_output=True)
    assert first.returncode == 0
    other = tmp_path / "other.toml"
    other.write_text(CONFIG.format(steps=7))
    second = subprocess.run(_cmd("sweep", "--config", str(other), "--out", str(out), "--quiet"), env=_env(),
                            capture_output=True, text=True)
    assert second.returncode == 2
    assert "holds results of a different configuration" in second.stderr


def test_torchrun_two_ranks_match_single_process(reference, tmp_path):
    cfg, expected = reference
    torchrun = Path(sysconfig.get_path("scripts")) / "torchrun"
    if not torchrun.exists():
        pytest.skip("torchrun not installed")
    out = tmp_path / "out"
    shared = tmp_path / "cfg.toml"  # the same configuration: each rank runs its 1 thread per unit
    shared.write_text(cfg.read_text())
    proc = subprocess.run([str(torchrun), "--nproc_per_node", "2", "--master_port", "29517", "-m",
                           "kspace_attacks", "sweep", "--config", str(shared), "--out", str(out), "--quiet"],
                          env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {p.name for p in out.glob("records.rank*.jsonl")} == {"records.rank0.jsonl", "records.rank1.jsonl"}
    units = [set(read_journal(out / f"records.rank{r}.jsonl")) for r in (0, 1)]
    assert units[0] and units[1] and not units[0] & units[1]  # both ranks worked, no unit twice
    assert units[0] | units[1] == {(b, *unit) for b in range(10) for unit in (("random",), ("zero_filled", "pgd"))}
    assert _records(out / "records.csv") == expected


def test_journal_drops_torn_tail(tmp_path):
    j = Journal(tmp_path / "j.jsonl")
    j.append(0, [{"batch": 0, "v": 1}, {"batch": 0, "v": 2}])
    j.append(1, [{"batch": 1, "v": 3}])
    with open(tmp_path / "j.jsonl", "a") as f:  # a write cut short by a crash
        f.write(json.dumps({"batch": 2, "v": 4}) + "\n" + '{"batch": 2, "v"')
    assert set(read_journal(tmp_path / "j.jsonl")) == {0, 1}
    again = Journal(tmp_path / "j.jsonl")  # reopening rewrites the journal without the tail
    again.append(2, [{"batch": 2, "v": 5}])
    assert read_journal(tmp_path / "j.jsonl") == {
        0: [{"batch": 0, "v": 1}, {"batch": 0, "v": 2}], 1: [{"batch": 1, "v": 3}], 2: [{"batch": 2, "v": 5}]}


def test_failing_batch_is_recorded_and_sweep_continues(tmp_path, monkeypatch):
    from kspace_attacks.study import sweep, units

    calls = {"n": 0}
    real = units.craft_surrogate

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated failure on this slice")
        return real(*args, **kwargs)

    monkeypatch.setattr(units, "craft_surrogate", flaky)
    cfg = sweep.validate_config({"n_slices": 3, "batch_size": 1, "eps": [0.0, 0.05], "surrogates": ["zero_filled"],
                                 "targets": ["zero_filled"], "attacks": {"pgd": {"type": "PGD", "steps": 2}}})
    report = sweep.run_sweep(cfg, tmp_path, progress=False).report
    assert {r["batch"] for r in report.records} == {0, 2}
    failed = (tmp_path / "failed.csv").read_text()
    assert "simulated failure on this slice" in failed and "test-" in failed
    assert len(failed.strip().splitlines()) == 2  # header + batch 1 (its noise unit succeeded)
    with pytest.raises(RuntimeError, match="simulated"):
        calls["n"] = 1
        sweep.run_sweep(cfg.replace(fail_fast=True), tmp_path / "strict", progress=False).report
