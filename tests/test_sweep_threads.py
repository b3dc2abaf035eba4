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
    assert DEMO_CONFIG["threads"] == 1 and validate_config({})["threads"] == 1
    assert validate_config({"threads": 2})["threads"] == 2
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
    run_sweep(validate_config(dict(TINY, threads=2)), tmp_path / "two", progress=False)
    assert seen == [(2, True, True)] * 2
    assert torch.get_num_threads() == 1 and torch.are_deterministic_algorithms_enabled() == before
    torch.set_num_threads(2)
    run_sweep(validate_config(TINY), tmp_path / "one", progress=False)
    assert seen[2:] == [(1, True, True)] * 2 and torch.get_num_threads() == 2


def test_folder_written_before_the_threads_key_resumes(tmp_path):
    out = tmp_path / "out"
    first = run_sweep(validate_config(TINY), out, progress=False)
    config = out / "config.toml"
    text = config.read_text()
    assert "threads = 1\n" in text
    config.write_text(text.replace("threads = 1\n", ""))  # as written by an earlier version
    journal = out / "records.rank0.jsonl"
    lines = journal.read_text().splitlines(keepends=True)
    journal.write_text("".join(lines[: len(lines) // 2]))  # stopped half-way
    again = run_sweep(validate_config(TINY), out, progress=False)
    strip = lambda recs: [{k: v for k, v in r.items() if "seconds" not in k} for r in recs]
    assert strip(again.records) == strip(first.records)
    with pytest.raises(ConfigError, match="holds results of a different configuration"):
        run_sweep(validate_config(dict(TINY, threads=2)), out, progress=False)


# ------------------------------------------------------------------ the node's budget, shared by ranks
def test_a_ranks_threads_times_the_local_world_never_exceed_the_budget():
    from kspace_attacks.study.sweep import rank_threads

    for budget in range(1, 9):
        for local in range(1, budget + 1):
            per_rank = rank_threads(budget, local_world=local, cores=64)
            assert per_rank >= 1 and per_rank * local <= budget, (budget, local, per_rank)
            assert per_rank * local > budget - local  # and uses the budget (all but a remainder)
    with pytest.raises(ConfigError, match=r"threads = 1 is the node's thread budget, shared by its 2 ranks: "
                                          r"set threads >= 2"):
        rank_threads(1, local_world=2)
    with pytest.warns(RuntimeWarning, match=r"threads = 4 exceeds the 2 core\(s\)"):
        assert rank_threads(4, local_world=1, cores=2) == 4
    with pytest.raises(ValueError, match="local_world: expected an int >= 1, got 0"):
        rank_threads(2, local_world=0)


def test_a_sweep_under_two_local_ranks_uses_half_the_budget(tmp_path, monkeypatch):
    seen = []
    real = units.craft_surrogate

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(units, "craft_surrogate", spy)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # as torchrun sets it (WORLD_SIZE stays 1: no group)
    report = run_sweep(validate_config(dict(TINY, threads=2)), tmp_path, progress=False)
    assert seen == [1, 1] and report.provenance["threads"] == 2 and report.provenance["threads_per_rank"] == 1
