"""The `wb` command line. Thin: each command parses options, calls one use case, prints.

Command groups live in sibling modules and are joined here; errors from the core become one
line on stderr and exit code 1 (`--debug` shows the traceback instead).
"""
from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Annotated, Any

import click
import typer
from typer.core import TyperGroup

from workbench.errors import from_exception
from workbench.workspace import Workspace

if TYPE_CHECKING:
    from typer._click import Context  # the context TyperGroup.invoke takes (typer vendors click)

_show_python_warning = warnings.showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """wb's own warnings (e.g. pipelines.models.WeightsFallback) as one line on stderr."""
    if category.__module__.startswith(("pipelines", "workbench", "annotations", "db")):
        typer.secho(f"Warning: {message}", fg="yellow", err=True)
    else:
        _show_python_warning(message, category, filename, lineno, file, line)


class _WbGroup(TyperGroup):
    """Root group: the one place that maps known exceptions to a message and an exit code."""

    def invoke(self, ctx: Context) -> Any:
        warnings.showwarning = _show_warning
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except Exception as exc:
            # WorkbenchErrors, and the foreign exceptions that are expected failures
            # (database races, permissions, full disks, damaged images): one line each.
            known = from_exception(exc)
            if known is None or _debug:
                raise
            typer.secho(f"Error: {known.message}", fg="red", err=True)
            if known.hint:
                typer.echo(f"Hint: {known.hint}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            typer.echo("Interrupted; what was committed is kept. Run the command again to finish.", err=True)
            raise typer.Exit(130) from None


app = typer.Typer(
    cls=_WbGroup,
    name="wb",
    help="Chest X-ray annotation-to-evaluation and active-learning workbench.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

_debug = False


@app.callback()
def root(
    ctx: typer.Context,
    db: Annotated[
        str | None,
        typer.Option("--db", envvar="WB_DB", help="Database: a file path or an SQLAlchemy URL."),
    ] = None,
    workspace: Annotated[
        str | None,
        typer.Option(
            "--workspace", envvar="WB_WORKSPACE", help="Folder for runs, reports and servers."
        ),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    """wb: import Kermany chest X-rays, split, annotate in Label Studio, train, evaluate, suggest.

    Example: wb --db my.db import ~/Downloads/chest_xray && wb split && wb status
    """
    global _debug
    _debug = debug
    ctx.obj = Workspace.from_options(db=db, workspace=workspace, create_db=False)


def _register() -> None:
    # Each module adds its commands to `app` (or a sub-Typer) on import.
    from workbench.cli import (  # noqa: F401  # noqa: F401
        analysis,  # noqa: F401
        boxfiles,
        dataset,  # noqa: F401
        evaluate,
        ls,
        simulate,  # noqa: F401
        stress,  # noqa: F401
        suggest,  # noqa: F401
        train,
    )


_register()


def main() -> None:
    app()
