"""Every command has help with an example and a line in the README (sqlite-utils' habit)."""
from __future__ import annotations

import pytest
import typer

from tests.conftest import REPO
from workbench.cli import app


def _commands(group, prefix: str = ""):
    for name, cmd in sorted(group.commands.items()):
        path = f"{prefix} {name}".strip()
        if hasattr(cmd, "commands"):  # a group (typer may bundle its own click, so no isinstance)
            yield from _commands(cmd, path)
        else:
            yield path, cmd


COMMANDS = list(_commands(typer.main.get_command(app)))


def test_there_are_commands():
    assert {"import", "split", "status", "ls push", "train detector"} <= {p for p, _ in COMMANDS}


@pytest.mark.parametrize("path,cmd", COMMANDS, ids=[p for p, _ in COMMANDS])
def test_command_has_help_with_example(path, cmd):
    assert cmd.help and "Example:" in cmd.help, f"`wb {path}` needs help text with an Example: line"


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS])
def test_command_is_in_readme(path):
    assert f"wb {path}" in (REPO / "README.md").read_text(), f"README does not mention `wb {path}`"
