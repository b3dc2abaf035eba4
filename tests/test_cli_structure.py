"""The command line is one module per command (``kspace_attacks/cli/<command>.py`` with
``add_parser`` and ``run``), and the shared options and the verdict printing are declared once."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

from kspace_attacks.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "kspace_attacks"
CLI = PACKAGE / "cli"
DEVICE_COMMANDS = {"demo", "study", "sweep", "evaluate", "certify"}


@pytest.fixture(scope="module")
def commands() -> list[str]:
    help_text = build_parser().format_help()
    choice = re.search(r"\{([a-z,-]+)\}", help_text)
    assert choice, help_text
    names = choice.group(1).split(",")
    assert {"demo", "study", "sweep", "report", "evaluate", "models", "certify", "config-reference",
            "train"} <= set(names)
    return names


def _module_name(command: str) -> str:
    return "kspace_attacks.cli." + command.replace("-", "_")


def test_the_help_lists_the_commands(capsys, commands):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "{" + ",".join(commands) + "}" in capsys.readouterr().out


def test_every_command_has_its_own_module(commands):
    parser = build_parser()
    for command in commands:
        path = CLI / (command.replace("-", "_") + ".py")
        assert path.is_file(), f"{command}: no {path.relative_to(ROOT)}"
        module = importlib.import_module(_module_name(command))
        assert callable(getattr(module, "add_parser", None)), f"{module.__name__} has no add_parser"
        assert callable(getattr(module, "run", None)), f"{module.__name__} has no run"
        args, _ = parser.parse_known_args(_minimal_argv(command))
        assert args.command == command and args.func is module.run, command


def _minimal_argv(command: str) -> list[str]:
    """The shortest arguments that parse for ``command`` (its required ones, dummy values)."""
    return {"sweep": ["sweep", "--config", "c.toml", "--out", "o"], "report": ["report", "dir"],
            "evaluate": ["evaluate", "--model", "m", "--out", "o"], "certify": ["certify", "m", "--out", "o"],
            "train": ["train", "irim"]}.get(command, [command])


def _declarations(option: str) -> list[str]:
    """``file:line`` of every call in the package source (``kspace_attacks/``) whose first
    argument is the string ``option``: ``add_argument("--device", ...)`` and the like (the
    docstring examples that pass the option are text, not calls)."""
    return [f"{p.relative_to(ROOT)}:{node.lineno}" for p in sorted(PACKAGE.rglob("*.py"))
            for node in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
            if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
            and node.args[0].value == option]


@pytest.mark.parametrize("option", ["--device", "--out", "--quiet", "--seed", "--dry-run"])
def test_the_shared_options_are_declared_once(option):
    where = _declarations(option)
    assert len(where) == 1, f"{option} is declared in {len(where)} places: {where}"
    assert where[0].startswith("kspace_attacks/_cli_options.py:")


def test_the_verdicts_are_printed_in_one_place():
    heading = "Verdicts (verdict.md has every claim with its CI):"
    where = [str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py") if heading in p.read_text(encoding="utf-8")]
    assert where == ["kspace_attacks/cli/common.py"]


def test_every_command_help_exits_0(capsys, commands):
    for command in commands:
        # train declares only NAME and hands the rest to the trainer: ask the trainer for its help
        argv = ["train", "irim", "--help"] if command == "train" else [command, "--help"]
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 0, (command, capsys.readouterr().err)
        out = capsys.readouterr().out
        assert out.startswith("usage: kspace-attacks " + command), (command, out[:200])
        if command != "train":  # the shared --device reaches the commands that take it
            assert ("--device DEVICE" in out) == (command in DEVICE_COMMANDS), command
