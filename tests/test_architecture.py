"""The layers of docs/ARCHITECTURE.md, enforced by parsing every import of the package with ``ast``.

Layers, bottom-up: core (threat models, attacks, losses, metrics, results, I/O, figures) <-
data <- study / testing / interop <- cli; adapters (reconstructors) beside the study, importing
core and data. Imports point down only, and there are no cycles between modules.
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "kspace_attacks"
ADAPTERS = ROOT / "adapters"

# layer -> layers it may import (itself included)
ALLOWED = {
    "core": {"core"},
    "data": {"core", "data"},
    "study": {"core", "data", "study"},
    "testing": {"core", "data", "testing"},
    "interop": {"core", "interop"},
    "defense": {"core", "defense"},
    "adapters": {"core", "data", "defense", "adapters"},
    "cli": {"core", "data", "study", "testing", "interop", "defense", "adapters", "cli"},
}
# The one sanctioned upward reach: the sweep configuration resolves model names.
EXCEPTIONS = {("kspace_attacks.study.specs", "kspace_attacks.adapters")}


def _module_name(path: Path) -> str:
    if path.is_relative_to(ADAPTERS):
        parts = ["kspace_attacks", "adapters", *path.relative_to(ADAPTERS).with_suffix("").parts]
    else:
        parts = ["kspace_attacks", *path.relative_to(PACKAGE).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _files() -> list[Path]:
    return sorted(p for d in (PACKAGE, ADAPTERS) for p in d.rglob("*.py") if "__pycache__" not in p.parts)


def layer_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "core"  # the package face: lazy re-exports only
    head = parts[1]
    if head in ("data", "study", "testing", "interop", "defense", "adapters"):
        return head
    if head in ("cli", "__main__"):
        return "cli"
    return "core"


def imports_of(path: Path) -> set[str]:
    """Absolute names of the package modules that ``path`` imports (relative imports resolved;
    function-level imports included, since they run too)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("kspace_attacks")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("kspace_attacks"):
                target = node.module
            else:
                continue
            found.add(target)
            # "from . import x" imports the submodule x
            found |= {f"{target}.{a.name}" for a in node.names if _is_module(f"{target}.{a.name}")}
    return {m for m in found if m != module}


def _is_module(name: str) -> bool:
    return name in MODULES


MODULES = {_module_name(p) for p in _files()}


def _graph() -> dict[str, set[str]]:
    graph = {}
    for p in _files():
        deps = set()
        for target in imports_of(p):
            # "from kspace_attacks.study import records": the deepest known module
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target:
                deps.add(target)
        graph[_module_name(p)] = deps - {_module_name(p)}
    return graph


def test_the_package_is_parsed():
    assert {"kspace_attacks.threat", "kspace_attacks.study.transfer", "kspace_attacks.testing.plugin",
            "kspace_attacks.interop.deepinv", "kspace_attacks.adapters.registry"} <= MODULES


def test_imports_point_down_the_layers():
    bad = []
    for module, deps in _graph().items():
        for dep in deps:
            if dep == "kspace_attacks":
                continue  # the package face (version, lazy names): no layer of its own
            if layer_of(dep) not in ALLOWED[layer_of(module)] and (module, dep.rpartition(".")[0]) not in EXCEPTIONS \
                    and (module, dep) not in EXCEPTIONS:
                bad.append(f"{module} ({layer_of(module)}) imports {dep} ({layer_of(dep)})")
    assert not bad, "imports that run up the layers:\n" + "\n".join(sorted(bad))


def test_the_core_imports_no_file_layer_or_adapter():
    core = {m: d for m, d in _graph().items() if layer_of(m) == "core" and m != "kspace_attacks"}
    assert "kspace_attacks.threat" in core and "kspace_attacks.attacks.pgd" in core
    for module, deps in core.items():
        assert all(layer_of(d) == "core" for d in deps if d != "kspace_attacks"), (module, deps)


def test_no_import_cycles():
    graph = _graph()
    # package faces (__init__ re-exports) are not edges of a cycle: skip them as sources
    faces = {m for m in graph if (PACKAGE / Path(*m.split(".")[1:]) / "__init__.py").is_file()
             or m == "kspace_attacks"}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if d in faces:
                continue
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state and m not in faces:
            visit(m)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_checker_sees_a_violation(tmp_path):
    """The rule is not vacuous: a core module importing the study is reported."""
    fake = PACKAGE / "threat.py"
    tree_imports = imports_of(fake)
    assert "kspace_attacks._checks" in tree_imports
    assert layer_of("kspace_attacks.study.report") not in ALLOWED[layer_of("kspace_attacks.threat")]


def test_no_deprecated_alias_is_left():
    """0.3 removed the old import paths and names (CHANGELOG.md): they fail, not warn."""
    import kspace_attacks as ka

    for old in ("kspace_attacks.evaluation", "kspace_attacks.report", "kspace_attacks.pytest_plugin"):
        sys.modules.pop(old, None)
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module(old)
    with pytest.raises(AttributeError):
        ka.DEFAULT_EPS
    from kspace_attacks.testing import assert_robust  # the testing package keeps its public face

    assert callable(assert_robust)


def test_module_and_function_sizes():
    """No module over 500 lines and no function over 80 lines in the package."""
    long_modules, long_functions = [], []
    for p in _files():
        text = p.read_text(encoding="utf-8")
        n = text.count("\n")
        if n > 500:
            long_modules.append(f"{p.relative_to(ROOT)}: {n}")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > 80:
                    long_functions.append(f"{p.relative_to(ROOT)}:{node.name}: {length}")
    assert not long_modules, long_modules
    assert not long_functions, long_functions


def test_every_subpackage_is_in_the_wheel():
    """pyproject lists packages explicitly: a subpackage missing there installs from a checkout
    (editable) but not from a wheel."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {_module_name(p) for p in _files() if p.name == "__init__.py"}
    assert found - listed == set()


def test_every_public_module_star_imports():
    """``from module import *`` works for every module: ``__all__`` names strings that exist."""
    import importlib
    import pkgutil

    import kspace_attacks

    skip = ("kspace_attacks.interop.torchattacks",)  # needs the optional extra
    names = [m.name for m in pkgutil.walk_packages(kspace_attacks.__path__, "kspace_attacks.")
             if not m.name.split(".")[-1].startswith("_") and m.name not in skip]
    assert len(names) > 50
    for name in names:
        module = importlib.import_module(name)
        public = getattr(module, "__all__", None)
        if public is None:
            continue
        assert all(isinstance(n, str) for n in public), f"{name}.__all__ holds a non-string"
        namespace: dict = {}
        exec(f"from {name} import *", namespace)
        missing = [n for n in public if n not in namespace]
        assert not missing, f"{name}.__all__ names missing attributes {missing}"
