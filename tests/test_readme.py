"""The README's quickstart runs and prints what the README says (the documentation site's
examples: tests/test_docs_site.py)."""

from __future__ import annotations

import re
from pathlib import Path


README = Path(__file__).resolve().parents[1] / "README.md"


def _quickstart() -> str:
    text = README.read_text()
    section = text[text.index("## Quickstart") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_quickstart_runs_and_matches_readme(capsys):
    exec(compile(_quickstart(), "README.md", "exec"), {})
    out = capsys.readouterr().out
    pattern = r"eps=([\d.]+): worst-case deviation ([\d.e+-]+), equal-norm noise ([\d.e+-]+)"
    printed = re.findall(pattern, out)
    documented = re.findall(pattern, README.read_text())
    assert [p[0] for p in printed] == ["0.01", "0.05"]
    assert len(documented) == 2
    for (_, worst, noise), (_, doc_worst, doc_noise) in zip(printed, documented, strict=True):
        assert float(worst) > 2 * float(noise)  # the attack finds far worse than noise
        # the README quotes this run (3 significant digits; BLAS may differ in the last one)
        assert abs(float(worst) / float(doc_worst) - 1) < 0.02
        assert abs(float(noise) / float(doc_noise) - 1) < 0.02
