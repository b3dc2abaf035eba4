"""A sweep's records depend on its configuration and seed only: the thread count is a
configuration key, fixed for the duration of the sweep and restored afterwards."""

from __future__ import annotations

import pytest
import torch

from kspace_attacks.study import units
from kspace_attacks.study.sweep import DEMO_CONFIG, ConfigError, run_sweep, validate_config

TINY = {"n_slices": 2, "batch_size": 1, "eps": [0.0, 0.05], "surrogates": ["zero_filled"],
        "targets": ["zero_filled"], "attacks": {"pgd": {"type": "pgd", "steps": 2}}}


def test_threads_default_and_validation():
    assert DEMO_CONFIG["threads"] == 1 and validate_config({}).threads == 1
    assert validate_config({"threads": 2}).threads == 2
    with pytest.raises(ConfigError, match=r"config\.threads: expected a value >= 1, got 0"):
        validate_config({"threads": 0})
    with pytest.raises(ConfigError, match=r"config\.threads: expected an integer, got str '2'"):
        validate_config({"threads": "2"})
    with pytest.raises(ConfigError, match=r"config\.threads: expected an integer, got bool True"):
        validate_config({"threads": True})


def test_sweep_fixes_threads_and_determinism_then_restores(tmp_path, monkeypatch):
    seen = []
    real = units.craft_surrogate

    def spy(*args, **kwargs):
        seen.append((torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
                     torch.is_deterministic_algorithms_warn_only_enabled()))
        return real(*args, **kwargs)

    monkeypatch.setattr(units, "craft_surrogate", spy)
    torch.set_num_threads(1)  # conftest restores the session's value after the test
    before = torch.are_deterministic_algorithms_enabled()
    run_sweep(validate_config(dict(TINY, threads=2)), tmp_path / "two", progress=False).report
    assert seen == [(2, True, True)] * 2
    assert torch.get_num_threads() == 1 and torch.are_deterministic_algorithms_enabled() == before
    torch.set_num_threads(2)
    run_sweep(validate_config(TINY), tmp_path / "one", progress=False).report
    assert seen[2:] == [(1, True, True)] * 2 and torch.get_num_threads() == 2


def test_folder_written_before_the_threads_key_resumes(tmp_path):
    out = tmp_path / "out"
    first = run_sweep(validate_config(TINY), out, progress=False).report
    config = out / "config.toml"
    text = config.read_text()
    assert "threads = 1\n" in text
    config.write_text(text.replace("threads = 1\n", ""))  # as written by an earlier version
    journal = out / "records.rank0.jsonl"
    lines = journal.read_text().splitlines(keepends=True)
    journal.write_text("".join(lines[: len(lines) // 2]))  # stopped half-way
    again = run_sweep(validate_config(TINY), out, progress=False).report
    strip = lambda recs: [{k: v for k, v in r.items() if "seconds" not in k} for r in recs]
    assert strip(again.records) == strip(first.records)
    with pytest.raises(ConfigError, match="holds results of a different configuration"):
        run_sweep(validate_config(dict(TINY, threads=2)), out, progress=False).report


# ------------------------------------------------------------------ the same threads however launched
def test_every_rank_runs_the_configured_threads_or_the_launch_is_refused():
    from kspace_attacks.study.sweep import rank_threads

    for threads in range(1, 5):
        for local in range(1, 5):
            cores = threads * local
            assert rank_threads(threads, local_world=local, cores=cores) == threads  # fits: kept
            if local > 1:  # one core short: refused, unless oversubscription is asked for
                with pytest.raises(ConfigError, match=rf"threads = {threads} per unit x {local} ranks needs "
                                                      rf"{cores} cores, this node gives {cores - 1}"):
                    rank_threads(threads, local_world=local, cores=cores - 1)
                with pytest.warns(RuntimeWarning, match="compete for cores"):
                    assert rank_threads(threads, local_world=local, cores=cores - 1, oversubscribe=True) == threads
    with pytest.warns(RuntimeWarning, match=r"threads = 4 x 1 rank\(s\) exceeds the 2 core\(s\)"):
        assert rank_threads(4, local_world=1, cores=2) == 4  # a process alone only warns
    with pytest.raises(ValueError, match="local_world: expected an int >= 1, got 0"):
        rank_threads(2, local_world=0)


def test_the_demo_config_under_two_ranks_on_two_cores_is_refused_before_any_work(tmp_path, monkeypatch):
    """The demo's printed configuration (threads = 2) cannot run as 2 ranks on 2 cores without
    changing its numbers: the launch stops, writes nothing, and names the launch that keeps them."""
    from kspace_attacks.study.config import DEMO_OVERRIDES

    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # as torchrun sets it (WORLD_SIZE stays 1: no group)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    cfg = validate_config({**DEMO_CONFIG, **DEMO_OVERRIDES})
    assert cfg.threads == 2
    with pytest.raises(ConfigError, match=r"start at most 1 rank\(s\) per node \(torchrun --nproc_per_node 1"):
        run_sweep(cfg, tmp_path / "out", progress=False, models={}).report
    assert not (tmp_path / "out").exists()


def test_ranks_run_the_configured_threads(tmp_path, monkeypatch):
    seen = []
    real = units.craft_surrogate

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(units, "craft_surrogate", spy)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    report = run_sweep(validate_config(dict(TINY, threads=2)), tmp_path, progress=False).report
    assert seen == [2, 2] and report.provenance["threads"] == 2 and report.provenance["threads_per_rank"] == 2


def test_a_folder_of_units_at_another_thread_count_is_not_resumed(tmp_path):
    """Units journaled at another thread count (an earlier version shared a budget between
    ranks) would mix numbers: a resume refuses them before adding any unit."""
    import json

    out = tmp_path / "out"
    run_sweep(validate_config(TINY), out, progress=False).report
    journal = out / "records.rank0.jsonl"
    lines = journal.read_text().splitlines()
    marker = next(i for i, ln in enumerate(lines) if '"_unit_done"' in ln)  # the first unit's marker
    item = json.loads(lines[marker])
    assert item["threads"] == 1
    item["threads"] = 2  # as if this unit ran at 2 threads
    lines[marker] = json.dumps(item)
    journal.write_text("\n".join(lines[: marker + 1]) + "\n")  # and the run stopped right after it
    before = journal.read_text()
    with pytest.raises(ConfigError, match=r"holds 1 unit\(s\) computed at 2 thread\(s\) per unit, this run "
                                          r"computes at threads = 1"):
        run_sweep(validate_config(TINY), out, progress=False).report
    assert journal.read_text() == before
