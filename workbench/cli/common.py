"""Helpers every command module shares: the workspace from the root callback, JSON output."""
from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from workbench.configs import CHECKPOINTS, DEFAULT_CHECKPOINT, DEFAULT_DEVICE, DEVICES, shown_default
from workbench.workspace import Workspace


def with_default(text: str, cls: type, name: str) -> str:
    """Help text ending in the config dataclass's default for `name`.

    Options default to None so that the config (workbench.configs) fills in what was not given;
    this keeps the default visible in `--help` without writing it twice.
    """
    value = shown_default(cls, name)
    return text if value is None else f"{text} (default: {value})"


def config_option(cls: type, name: str, text: str, *flags: str, **kwargs: Any) -> Any:
    """A typer.Option for field `name` of config `cls`; its help ends with the field's default."""
    return typer.Option(*flags, help=with_default(text, cls, name), **kwargs)


JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of text.")]
SplitOption = Annotated[
    str | None, typer.Option("--split", help="Split name (default: the newest split).")
]
DeviceOption = Annotated[str | None, typer.Option(
    help=f"One of {', '.join(DEVICES)}; auto: CUDA, then MPS, then CPU (default: {DEFAULT_DEVICE}).")]
CheckpointOption = Annotated[str | None, typer.Option(
    help=f"{' or '.join(CHECKPOINTS)}: the lowest validation loss, or the newest epoch (default: {DEFAULT_CHECKPOINT}).")]


def workspace(ctx: typer.Context, *, create_db: bool = False) -> Workspace:
    """The Workspace the root callback built from --db / --workspace / the environment.

    Only `create_db=True` (wb import) may make a new database; elsewhere a missing one is an error.
    """
    root = ctx.find_root()
    if not isinstance(root.obj, Workspace):
        root.obj = Workspace.from_options(create_db=False)
    root.obj.create_db = root.obj.create_db or create_db
    return root.obj


def print_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))
