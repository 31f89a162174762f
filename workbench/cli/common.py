"""Helpers every command module shares: the workspace from the root callback, JSON output."""
from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from workbench.workspace import Workspace

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")]
SplitOption = Annotated[
    str | None, typer.Option("--split", help="Split name (default: the newest split).")
]


def workspace(ctx: typer.Context) -> Workspace:
    """The Workspace the root callback built from --db / --workspace / the environment."""
    root = ctx.find_root()
    if not isinstance(root.obj, Workspace):
        root.obj = Workspace.from_options()
    return root.obj


def print_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))
