"""A sweep's work in units (one per batch for the clean reconstructions, nulls and noise baseline,
one per batch and surrogate), shared by ranks; journals of the per-batch era still resume; the
progress it shows; and ``sweep --dry-run``."""

from __future__ import annotations

import json
import threading
import time
import types

import pytest

from kspace_attacks.cli import main
from kspace_attacks.study import sweep, units
from kspace_attacks.study.journal import Journal, read_journal
from kspace_attacks.study.plan import plan_sweep
from kspace_attacks.study.progress import Progress
from kspace_attacks.study.sweep import dump_toml, run_sweep, validate_config
from kspace_attacks.study.units import RANDOM, Unit, merge_records, units_of

TINY = {"n_slices": 2, "batch_size": 1, "eps": [0.0, 0.05], "surrogates": ["zero_filled"],
        "targets": ["zero_filled", "resunetpp"], "attacks": {"pgd": {"type": "pgd", "steps": 2}}, "null_draws": 2}


def _strip(records):
    return [{k: v for k, v in r.items() if "seconds" not in k} for r in records]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    return out, _strip(run_sweep(validate_config(TINY), out, progress=False).report.records)


def test_units_claim_order_and_record_order():
    crafts = [("a", "pgd"), ("a", "adam"), ("b", "pgd"), ("b", "adam")]
    cost = {("a", "pgd"): 20, ("a", "adam"): 100, ("b", "pgd"): 20, ("b", "adam"): 100}
    assert units_of(2, crafts) == [Unit(b, s, a) for b in (0, 1) for s, a in [(RANDOM, None), *crafts]]
    # claimed most gradient evaluations first (after the batch's references), ties in order
    assert units_of(1, crafts, cost) == [Unit(0, RANDOM), Unit(0, "a", "adam"), Unit(0, "b", "adam"),
                                         Unit(0, "a", "pgd"), Unit(0, "b", "pgd")]
    assert Unit(0, "a", "pgd").key == (0, "a", "pgd") and Unit(3, RANDOM).key == (3, "random")
    rec = lambda b, s, a: {"batch": b, "surrogate": s, "attack": a}
    journals = [{(0, RANDOM): [rec(0, "random", "noise")], (1, "a", "pgd"): [rec(1, "a", "pgd")]},
                {(0, "b", "pgd"): [rec(0, "b", "pgd")], (0, "a", "pgd"): [rec(0, "a", "pgd")],
                 (1, RANDOM): [rec(1, "random", "noise")],
                 (1, "b", "pgd"): [{"batch": 1, "unit": "b/pgd", "status": "failed", "sample_ids": "s1",
                                    "error": "E: x"}]}]
    ok, failed = merge_records(journals, [("a", "pgd"), ("b", "pgd")])
    # a single process's order: each surrogate's attacks, then the noise baseline
    assert ok == [rec(0, "a", "pgd"), rec(0, "b", "pgd"), rec(0, "random", "noise")]
    assert failed == [{"batch": 1, "status": "failed", "units": "b/pgd", "sample_ids": "s1", "error": "E: x"}]


def test_journal_keys_and_their_validation(tmp_path):
    j = Journal(tmp_path / "j.jsonl")
    j.append((0, "irim", "pgd"), [{"batch": 0, "v": 1}], {"threads": 1})
    j.append(1, [{"batch": 1, "v": 2}])  # a whole batch, as journals of earlier versions hold
    assert read_journal(tmp_path / "j.jsonl") == {(0, "irim", "pgd"): [{"batch": 0, "v": 1}],
                                                  1: [{"batch": 1, "v": 2}]}
    assert Journal(tmp_path / "j.jsonl").done == read_journal(tmp_path / "j.jsonl")  # reopened as written
    with pytest.raises(TypeError, match=r"key: expected a batch index >= 0 or a \(batch, name, ...\) tuple, got"):
        j.append("0", [])
    with pytest.raises(ValueError, match=r"records: expected every record to carry batch = 2, got 0"):
        j.append((2, "irim", "pgd"), [{"batch": 0}])


def test_journal_of_the_per_batch_era_resumes(reference, tmp_path):
    ref_out, expected = reference
    (tmp_path / "config.toml").write_bytes((ref_out / "config.toml").read_bytes())
    batch0 = [r for r in read_journal(ref_out / "records.rank0.jsonl").items() if r[0][0] == 0]
    ok, _ = merge_records([dict(batch0)], [("zero_filled", "pgd")])
    old = "".join(json.dumps(r) + "\n" for r in ok) + json.dumps({"_batch_done": 0, "n": len(ok)}) + "\n"
    (tmp_path / "records.rank0.jsonl").write_text(old)  # batch 0 done, batch 1 not started
    report = run_sweep(validate_config(TINY), tmp_path, progress=False).report
    assert _strip(report.records) == expected
    assert set(read_journal(tmp_path / "records.rank0.jsonl")) == {0, (1, RANDOM), (1, "zero_filled", "pgd")}


def test_ranks_share_one_batch_and_a_unit_waits_for_its_shared_file(reference, tmp_path, monkeypatch, capsys):
    """Two ranks (threads here, torchrun in test_reproducibility): while one computes the
    batch's clean reconstructions and null (slowed down), the other crafts, holds its
    reconstructions, waits for the shared file, and the records equal one process's."""
    _, expected = reference
    cfg = validate_config(dict(TINY, n_slices=1))
    local, barrier = threading.local(), threading.Barrier(2, timeout=120)
    real_shared = units.batch_shared

    def slow_shared(*args, **kwargs):
        time.sleep(1.5)
        return real_shared(*args, **kwargs)

    monkeypatch.setattr(sweep, "_distributed", lambda cfg: (local.rank, 2))
    monkeypatch.setattr(sweep, "_barrier", lambda world: barrier.wait())
    monkeypatch.setattr(units, "batch_shared", slow_shared)
    errors = []

    def rank(r):
        local.rank = r
        try:
            run_sweep(cfg, tmp_path, progress=True).report
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=rank, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    log = capsys.readouterr().err
    assert "waiting for the clean reconstructions / noise null of batch(es) [0]" in log
    done = [set(read_journal(tmp_path / f"records.rank{r}.jsonl")) for r in (0, 1)]
    assert sorted(map(len, done)) == [1, 1]  # one unit each
    with open(tmp_path / "records.csv") as f:
        assert f.read().count("\n") == 1 + len([r for r in expected if r["batch"] == 0])
    got = _strip(sweep.TransferReport.load(tmp_path).records)
    assert [{k: r[k] for k in ("sample_id", "surrogate", "target", "eps", "squared_deviation")} for r in got] == \
        [{k: r[k] for k in ("sample_id", "surrogate", "target", "eps", "squared_deviation")} for r in expected
         if r["batch"] == 0]


def test_progress_logs_lines_without_a_terminal_and_nothing_when_quiet(tmp_path, capsys):
    run_sweep(validate_config(dict(TINY, n_slices=1)), tmp_path / "log", progress=True).report
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert all(line.startswith("[sweep ") for line in lines), err  # plain lines, no bars
    assert any("craft on zero_filled: pgd: 2 gradient evaluation(s) of 2 rows" in line for line in lines)
    assert any("clean + null: zero_filled, resunetpp: 3 reconstruction(s) of 2 rows each" in line for line in lines)
    assert any("sweep: batch 0, zero_filled / pgd: 4 records in" in line and "(2/2 units" in line for line in lines)
    run_sweep(validate_config(dict(TINY, n_slices=1)), tmp_path / "quiet", progress=False).report
    assert capsys.readouterr().err == ""


def test_progress_modes_and_validation(capsys):
    import io

    log = io.StringIO()
    p = Progress(True, label="x", stream=log)
    assert p.mode == "log"
    with p.task("outer", total=4, unit="units") as t:
        t.advance(1, "first")
        t.advance(1, "skipped", log=False)
    assert log.getvalue().count("\n") == 1 and "outer: first (1/4 units, in " in log.getvalue()
    assert "eta" in log.getvalue()
    assert Progress(False, stream=log).mode == "off"
    with pytest.raises(ValueError, match=r"mode: expected one of \['bars', 'log', 'off'\] or None, got 'tty'"):
        Progress(True, mode="tty")
    with pytest.raises(TypeError, match="enabled: expected a bool, got"):
        Progress("yes")


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text(dump_toml(validate_config(dict(TINY, surrogates=["resunetpp"]))))
    out = tmp_path / "never"
    assert main(["sweep", "--config", str(config), "--out", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert not out.exists()
    assert "data: 2 slice(s) in 2 batch(es); 2 eps -> rows per batch (slices x eps): 2, 2" in text
    assert "units: 4 (per batch: clean + null + noise, and one per surrogate x attack)" in text
    assert "resunetpp / pgd: 4 x 2 = 8" in text  # rows x max_grad_evals
    assert "reconstructions per target (rows x (1 clean + 1 baseline + 2 null draws) + 4 crafted rows):" in text
    assert "zero_filled: 4 x 4 + 4 = 20" in text
    assert "estimated wall time:" in text and "An estimate" in text


def test_plan_counts_without_timing():
    plan = plan_sweep(validate_config(dict(TINY, attacks={"a": {"type": "pgd", "steps": 3},
                                                          "b": {"type": "apgd", "steps": 5}})), timing=False)
    assert plan.rows == 4 and plan.batch_rows == [2, 2]
    assert plan.grad_evals == {("zero_filled", "a"): 12, ("zero_filled", "b"): 20}
    assert plan.reconstructions == {"zero_filled": 4 * (1 + 2 + 1 + 2), "resunetpp": 4 * 6}
    assert "estimated wall time" not in plan.text()


def test_failed_references_fail_their_batch_without_attacking_it(tmp_path, monkeypatch):
    crafted, calls = [], []
    real_shared, real_craft = units.batch_shared, units.craft_surrogate

    def shared_fails_on_batch_1(plan, st, progress):
        calls.append(st.ids)
        if len(calls) == 2:
            raise RuntimeError("no clean reconstruction")
        return real_shared(plan, st, progress)

    def spy(plan, st, s_name, progress, **kwargs):
        crafted.append(st.ids)
        return real_craft(plan, st, s_name, progress, **kwargs)

    monkeypatch.setattr(units, "batch_shared", shared_fails_on_batch_1)
    monkeypatch.setattr(units, "craft_surrogate", spy)
    report = run_sweep(validate_config(TINY), tmp_path, progress=False).report
    assert {r["batch"] for r in report.records} == {0} and crafted == calls[:1]
    failed = (tmp_path / "failed.csv").read_text().splitlines()
    assert failed[0] == "batch,status,units,sample_ids,error"
    assert failed[1] == f"1,failed,random zero_filled/pgd,{calls[1][0]},RuntimeError: no clean reconstruction"
    assert (tmp_path / "shared" / "batch0001.failed").is_file()  # kept: a resume retries the batch

    # The cause was transient: resuming retries the failed batch (its references first, then its
    # attack), and the records are those of a run that never failed.
    monkeypatch.setattr(units, "batch_shared", real_shared)
    resumed = run_sweep(validate_config(TINY), tmp_path, progress=False).report
    assert crafted == calls[:1] + [calls[1]]  # only the failed batch was attacked again
    assert not (tmp_path / "failed.csv").exists()
    assert not (tmp_path / "shared").exists()  # every unit done: scratch removed
    clean = run_sweep(validate_config(TINY), tmp_path / "clean", progress=False).report
    strip = lambda recs: [{k: v for k, v in r.items() if "seconds" not in k} for r in recs]  # noqa: E731
    assert strip(resumed.records) == strip(clean.records)


def test_interrupt_inside_a_unit_stops_the_sweep_instead_of_failing_the_unit():
    """A KeyboardInterrupt that reaches the sweep wrapped in another exception (as the autograd
    engine re-raises errors of hooks) interrupts the sweep; it is not journaled as a failure."""
    def step():
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as e:
            raise RuntimeError("error in a backward hook") from e

    with pytest.raises(KeyboardInterrupt):
        units._complete(types.SimpleNamespace(fail_fast=False), None, units.Unit(0, units.RANDOM), 0.0, None, step)
    assert units._interrupted(RuntimeError("x")) is False


def test_progress_docstring_example():
    import doctest

    from kspace_attacks.study import progress

    assert doctest.testmod(progress, optionflags=doctest.ELLIPSIS).failed == 0
