"""One name per thing: no public name is defined twice, and no deprecated alias is left."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [*sorted((ROOT / "kspace_attacks").rglob("*.py")), *sorted((ROOT / "adapters").rglob("*.py"))]
# names every module of a kind defines by protocol, looked up through the module: pytest hooks,
# the CLI's command modules (``add_parser`` / ``run``), entry points (``main``), the model
# adapters (``registry`` calls ``<adapter>.load`` / ``build`` / ...) and the trainers
# (``kspace-attacks train <model>`` calls ``<trainer>.main``, ``train``, ``parser``)
PROTOCOL = re.compile(r"^(pytest_\w+|add_parser|run|main|load|build|load_adv|load_noiseless|DEFAULT_CONFIG|"
                      r"train|parser)$")


def _public_definitions(path: Path) -> list[str]:
    names = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return [n for n in names if not n.startswith("_") and not PROTOCOL.match(n)]


def test_no_public_name_is_defined_twice():
    where = defaultdict(list)
    for path in SOURCES:
        for name in _public_definitions(path):
            where[name].append(str(path.relative_to(ROOT)))
    twice = {name: paths for name, paths in where.items() if len(paths) > 1}
    assert not twice, f"public names defined in more than one module (rename one, see CHANGELOG.md): {twice}"


def test_the_scan_sees_a_duplicate(tmp_path):
    # the rule can fail: two modules that both define `select_slices` are caught
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("def select_slices():\n    pass\n")
    b.write_text("select_slices = 1\n_private = 2\ndef pytest_configure(config):\n    pass\n")
    assert _public_definitions(a) == _public_definitions(b) == ["select_slices"]


def test_no_deprecated_alias_is_left():
    offenders = []
    for path in SOURCES:
        for i, line in enumerate(path.read_text().splitlines(), 1):
            # silencing a third-party library's warning is not an alias of ours
            if "DeprecationWarning" in line and "simplefilter" not in line and not line.lstrip().startswith("#"):
                offenders.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
            if re.search(r"\bdeprecated\b", line, re.IGNORECASE) and not line.lstrip().startswith("#"):
                offenders.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not offenders, "deprecated aliases left (0.3 removed them, CHANGELOG.md):\n" + "\n".join(offenders)
