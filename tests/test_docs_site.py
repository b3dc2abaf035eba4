"""The documentation site builds with warnings as errors, and every example on it runs and
prints what the page says."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs" / "site").glob("*.md"))
NOT_RUN = "<!-- not run:"

pytestmark = pytest.mark.integration


def examples(page: Path) -> list[tuple[str, list[str] | None, int]]:
    """``(code, printed lines or None, line)`` of each python block of ``page`` that runs: the
    output is the first ```text block after it, before the next python block."""
    text = page.read_text()
    found = []
    for m in re.finditer(r"```python\n(.*?)```", text, re.S):
        before = text[: m.start()].rstrip("\n").splitlines()
        if before and before[-1].startswith(NOT_RUN):
            continue
        rest = text[m.end():]
        nxt = rest.find("```python")
        out = re.search(r"```text\n(.*?)```", rest[: nxt if nxt >= 0 else len(rest)], re.S)
        found.append((m.group(1), out.group(1).splitlines() if out else None, text[: m.start()].count("\n") + 1))
    return found


def test_every_skipped_example_says_why():
    for page in PAGES:
        for line in page.read_text().splitlines():
            if line.startswith(NOT_RUN):
                assert len(line) > len(NOT_RUN) + 10 and line.endswith("-->"), f"{page.name}: {line}"


def test_the_example_reader_pairs_code_with_its_output(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("```python\nprint(1)\n```\n\n```text\n1\n```\n\n<!-- not run: needs your data -->\n"
                    "```python\nraise SystemExit\n```\n\n```python\nx = 2\n```\n")
    assert [(c, o) for c, o, _ in examples(page)] == [("print(1)\n", ["1"]), ("x = 2\n", None)]


@pytest.mark.parametrize("page", [p for p in PAGES if examples(p)], ids=lambda p: p.stem)
def test_page_examples_run_and_print_what_the_page_says(page, capsys):
    namespace: dict = {}  # one page is one session: later blocks use earlier names
    for code, documented, line in examples(page):
        capsys.readouterr()
        exec(compile(code, f"{page.name}:{line}", "exec"), namespace)
        if documented is not None:
            assert capsys.readouterr().out.splitlines() == documented, f"{page.name}, example at line {line}"


def test_the_site_builds_without_warnings(tmp_path):
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "WorstCase" in api and "KSpaceL2" in api  # the reference is built from the docstrings
    assert (tmp_path / "site" / "demo" / "panel.png").is_file()  # committed figures are on the site
