"""CI installs and tests the way the README tells a user to: the README's install lines and its
test command appear verbatim in ``.ci/run``, which runs them in a fresh virtual environment
with no extra environment variables."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
CI = (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def _commands(block: str) -> list[str]:
    """Shell lines of a fenced block, without trailing comments or blank lines."""
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip() and not line.startswith("#")]


def _section_block(title: str) -> str:
    section = README[README.index(title) :]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


def _ci_lines() -> list[str]:
    return [line.strip() for line in CI.splitlines()]


def test_readme_install_lines_are_what_ci_runs():
    install = _commands(_section_block("## Install"))
    assert install == ['pip install -e ".[test]"', 'pip install --no-deps "torchattacks>=3.4,<4" nilearn']
    lines = _ci_lines()
    assert all(cmd in lines for cmd in install), (install, lines)
    # in the README's order, and nothing else installed by pip
    assert [line for line in lines if line.startswith(("pip ", "python -m pip"))] == install


def test_readme_test_command_is_what_ci_runs():
    commands = _commands(_section_block("## The two commands"))
    test = [c for c in commands if "pytest" in c]
    assert test == ["python -m pytest -q"]
    assert _ci_lines()[-1] == "python -m pytest -q"  # the last line: its exit code is CI's


def test_ci_uses_a_fresh_virtual_environment_and_no_extra_environment():
    lines = _ci_lines()
    assert 'rm -rf "$VENV"' in lines and 'python -m venv "$VENV"' in lines
    assert 'source "$VENV/bin/activate"' in lines
    assert "VENV=.venv-ci  # inside the clone, ignored by git" in lines
    assert "/.venv-ci/" in (ROOT / ".gitignore").read_text().splitlines()
    assert not [line for line in lines if line.startswith("export ") or "OMP_NUM_THREADS" in line]
    assert lines.index('source "$VENV/bin/activate"') < lines.index('pip install -e ".[test]"')


def test_test_extra_brings_what_the_suite_imports():
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {re.split(r"[<>=~!\[ ]", req)[0].lower() for req in extras["test"]}
    assert {"pytest", "hypothesis", "scikit-image", "scipy", "nibabel", "pyyaml", "fastmri"} <= names
    assert "torchattacks" not in names  # installed with --no-deps by the README's second line
