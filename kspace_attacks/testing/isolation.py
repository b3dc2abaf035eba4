"""``@pytest.mark.isolated``: run a test in a fresh Python process of its own.

A native crash (a heap corruption inside a compiled kernel, ``os.abort()``, a segmentation
fault) kills the process it happens in. Run in the pytest process, it takes the whole session
with it: no later test runs and no summary is printed. A test marked ``isolated`` runs in a
child ``python -m pytest <its node id>`` instead; the child reports each phase (setup, call,
teardown) back through a file, and a child that dies is reported as one failed test with the
way it ended (signal or exit code) and the tail of its output. The rest of the session goes on.

Use it for tests that train or run compiled kernels in loops. It costs one interpreter start
(and the imports) per marked test. The child runs with the same ini file and conftest files but
without ``addopts`` (the node id already selects the test), so fixtures are built in the child.

Registered by the package's pytest plugin; without it, load it with
``-p kspace_attacks.testing.isolation``.

    @pytest.mark.isolated
    def test_training_finishes():
        train_tiny_model()   # a crash here fails this test only
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from _pytest.reports import TestReport

ISOLATED_MARKER = "isolated"
#: Set in the child: the node id it runs and the file it reports to (JSON).
CHILD_ENV = "KSPACE_ATTACKS_ISOLATED_CHILD"
#: Seconds a child may run before it is stopped and reported as failed.
TIMEOUT = 1800
_TAIL = 6000  # characters of the child's output shown for a crash


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{ISOLATED_MARKER}: run the test in a fresh Python process, so that a native crash fails "
                   "this test instead of ending the session")


def _child_target() -> dict[str, str] | None:
    text = os.environ.get(CHILD_ENV)
    return json.loads(text) if text else None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    if item.get_closest_marker(ISOLATED_MARKER) is None:
        return None
    child = _child_target()
    if child is not None and child.get("nodeid") == item.nodeid:
        return None  # this process is the child: run the test here
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    for report in _run_in_child(item):
        item.ihook.pytest_runtest_logreport(report=report)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    # what the runner does after every item: tear down what the next item does not share
    # (module- or class-scoped fixtures of the items before this one)
    item.session._setupstate.teardown_exact(nextitem)
    return True


def pytest_runtest_logreport(report: TestReport) -> None:
    """In the child: append each phase's outcome to the parent's file, as soon as it is known
    (a crash in a later phase keeps the earlier ones)."""
    child = _child_target()
    if child is None or report.nodeid != child.get("nodeid"):
        return
    longrepr: Any = report.longrepr
    if isinstance(longrepr, tuple):  # a skip: (path, line, reason)
        longrepr = [str(longrepr[0]), longrepr[1], str(longrepr[2])]
    elif longrepr is not None:
        longrepr = str(getattr(report, "longreprtext", "") or longrepr)
    entry = {"when": report.when, "outcome": report.outcome, "longrepr": longrepr,
             "sections": [list(s) for s in report.sections], "duration": report.duration,
             "wasxfail": getattr(report, "wasxfail", None)}
    with open(child["result"], "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _how_it_ended(code: int | None) -> str:
    if code is None:
        return f"was stopped after {TIMEOUT} s"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with code {code}"


def _report(item: pytest.Item, when: str, outcome: str, longrepr: Any, sections: list, duration: float,
            wasxfail: str | None = None) -> TestReport:
    rep = TestReport(item.nodeid, item.location, {k: 1 for k in item.keywords}, outcome, longrepr, when,
                     sections=[tuple(s) for s in sections], duration=duration, user_properties=[])
    if wasxfail is not None:
        rep.wasxfail = wasxfail
    return rep


def _run_in_child(item: pytest.Item) -> list[TestReport]:
    rootdir = Path(str(item.config.rootpath))
    with tempfile.TemporaryDirectory(prefix="ka-isolated-") as tmp:
        result = Path(tmp) / "result.jsonl"
        result.touch()
        env = dict(os.environ, **{CHILD_ENV: json.dumps({"nodeid": item.nodeid, "result": str(result)})})
        # tee-sys: what the test prints also reaches the real stdout, so a crash cannot swallow it
        args = [sys.executable, "-m", "pytest", item.nodeid, "-q", "-p", "no:cacheprovider", "-o", "addopts=",
                "--capture=tee-sys",
                "--basetemp", str(Path(tmp) / "basetemp")]
        start = time.perf_counter()
        try:
            proc = subprocess.run(args, cwd=rootdir, env=env, capture_output=True, text=True, timeout=TIMEOUT)
            code, output = proc.returncode, proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as err:
            code = None
            output = "".join(x.decode(errors="replace") if isinstance(x, bytes) else (x or "")
                             for x in (err.stdout, err.stderr))
        elapsed = time.perf_counter() - start
        entries = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
    reports = []
    for e in entries:
        longrepr = tuple(e["longrepr"]) if isinstance(e["longrepr"], list) else e["longrepr"]
        reports.append(_report(item, e["when"], e["outcome"], longrepr, e["sections"], e["duration"],
                               e.get("wasxfail")))
    seen = {r.when for r in reports}
    failed_before_call = any(r.when == "setup" and r.outcome != "passed" for r in reports)
    missing = [w for w in ("setup", "call", "teardown") if w not in seen
               and not (w == "call" and failed_before_call)]
    if missing or not entries:
        text = (f"the isolated test process {_how_it_ended(code)} before reporting its {missing[0]}; "
                f"its last output:\n{output[-_TAIL:]}")
        reports.append(_report(item, missing[0] if missing else "call", "failed", text, [], elapsed))
        for w in missing[1:]:
            if w == "teardown":
                reports.append(_report(item, "teardown", "passed", None, [], 0.0))
    return reports
