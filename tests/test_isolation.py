"""``@pytest.mark.isolated``: a native crash in one test fails that test, and the session goes on
to its summary."""

from __future__ import annotations


pytest_plugins = ["pytester"]

CHILD_TESTS = '''
import os, sys
import pytest

@pytest.mark.isolated
def test_aborts():
    print("about to abort in the child", flush=True)
    os.abort()

@pytest.mark.isolated
def test_passes_in_a_child(tmp_path):
    assert os.environ["KSPACE_ATTACKS_ISOLATED_CHILD"]  # it ran in the child
    (tmp_path / "f").write_text("ok")

@pytest.mark.isolated
def test_fails_in_a_child():
    assert 1 + 1 == 3, "plain failure message"

@pytest.mark.isolated
def test_skips_in_a_child():
    pytest.skip("nothing to do here")

def test_after_the_crash_still_runs():
    assert "KSPACE_ATTACKS_ISOLATED_CHILD" not in os.environ
'''


def test_a_child_that_aborts_is_one_ordinary_failure_with_its_message(pytester):
    pytester.makepyfile(test_children=CHILD_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA")
    result.assert_outcomes(passed=2, failed=2, skipped=1)
    out = result.stdout.str()
    assert "test_aborts" in out and "killed by SIGABRT" in out
    assert "about to abort in the child" in out  # the child's own output comes back
    assert "plain failure message" in out and "nothing to do here" in out
    assert "5 passed" not in out and "2 failed, 2 passed, 1 skipped" in out  # the summary line


def test_unmarked_tests_run_in_the_session(pytester):
    pytester.makepyfile(test_plain="import os\ndef test_here():\n    assert 'KSPACE_ATTACKS_ISOLATED_CHILD' not in os.environ\n")
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
