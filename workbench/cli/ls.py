"""`wb ls ...`: run Label Studio, push tasks, pull annotations."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from workbench.cli import app
from workbench.cli.common import JsonOption, SplitOption, print_json, workspace

ls_app = typer.Typer(
    help="Label Studio: serve, push tasks, pull annotations.\n\nExample: wb ls serve --detach && wb ls push && wb ls pull",
    no_args_is_help=True,
)
app.add_typer(ls_app, name="ls")


@ls_app.command()
def serve(
    ctx: typer.Context,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port on 127.0.0.1 (default: a free one).")] = None,
    detach: Annotated[bool, typer.Option("--detach", help="Return once the server answers; stop it with `wb ls stop`.")] = False,
    ls_db: Annotated[str | None, typer.Option(
        "--ls-db", envvar="WB_LS_DB", show_envvar=False,
        help="Keep Label Studio's own data in PostgreSQL (postgresql://USER:PASSWORD@HOST:PORT/DB; env WB_LS_DB) "
             "instead of SQLite; given once, remembered for later starts.")] = None,
    json_: JsonOption = False,
) -> None:
    """Start a local Label Studio for this workspace (127.0.0.1, images served from disk).

    Its data folder, log and credentials live in <workspace>/ls/. The first start takes about a minute.
    With --ls-db, Label Studio's accounts, projects, tasks and annotations live in that PostgreSQL
    database (a team's server); the URL, which may hold a password, is kept in <workspace>/ls/ (mode 0600).

    Example: wb ls serve --detach --ls-db postgresql://ls:secret@127.0.0.1:5432/labelstudio
    """
    from workbench import labelling  # Label Studio code: only for ls commands

    ws = workspace(ctx)
    if not json_:
        typer.echo("Starting Label Studio (the first start takes about a minute)...", err=True)
    result = labelling.serve(ws, port=port, ls_db=ls_db)
    if json_:
        print_json(result.as_dict())
    else:
        state = "already running" if result.already_running else "running"
        typer.echo(f"Label Studio {state} at {result.url} (pid {result.pid})")
        typer.echo(f"  log in as {result.email} with password {result.password} (kept in {result.credentials}, mode 0600)")
        typer.echo("  annotator accounts: `wb ls users add EMAIL`; API token: `wb ls token`")
        typer.echo("  images are served from " + result.document_root)
        where = f"SQLite in {labelling.ls_folder(ws) / 'data'}" if result.database == "sqlite" else result.database
        typer.echo(f"  Label Studio's data: {where}")
    if detach or result.already_running:
        return
    typer.echo("Press Ctrl-C to stop it.", err=True)
    labelling.wait_until_stopped(ws, result)


@ls_app.command()
def stop(ctx: typer.Context) -> None:
    """Stop the Label Studio server `wb ls serve` started.

    Example: wb ls stop
    """
    from workbench import labelling  # Label Studio code: only for ls commands

    stopped = labelling.stop(workspace(ctx))
    typer.echo("Stopped Label Studio." if stopped else "No Label Studio server started by wb is running.")


@ls_app.command()
def status(ctx: typer.Context, json_: JsonOption = False) -> None:
    """Where the server is, whether it answers, and the project wb uses on it with its counts.

    The project and counts come from the workspace's DB, so they show while the server is down.

    Example: wb ls status --json
    """
    from workbench import labelling  # Label Studio code: only for ls commands

    info = labelling.ls_status(workspace(ctx))
    if json_:
        print_json(info)
        return
    if not info["url"] and info["project_id"] is None:
        typer.echo("No Label Studio server known: run `wb ls serve --detach` or set WB_LS_URL and WB_LS_TOKEN.")
        return
    if info["running"]:
        typer.echo(f"Label Studio {info['url']}: running")
    else:
        start = "`wb ls serve --detach` starts it" if info["managed"] else "start it, or check WB_LS_URL"
        typer.echo(f"Label Studio {info['url'] or '(never started)'}: server is down ({start}); from the DB:")
    if info.get("ls_database") and info["ls_database"] != "sqlite":
        typer.echo(f"  Label Studio's data: {info['ls_database']}")
    counts = ", ".join(f"{k} {v}" for k, v in info["annotations"].items())
    typer.echo(f"  project: {info['project_id'] if info['project_id'] is not None else 'none yet (wb ls push creates it)'}"
               f", tasks pushed: {info['tasks_pushed']}, last pull: {info['last_pull_at'] or 'never'}")
    if info["project_id"] is not None:
        typer.echo(f"  annotations: {counts}" + ("; see `wb ls rejected`" if info["annotations"]["rejected"] else ""))


@ls_app.command()
def rejected(
    ctx: typer.Context,
    limit: Annotated[int | None, typer.Option(help="Show at most this many.")] = None,
    json_: JsonOption = False,
) -> None:
    """Rejected Label Studio annotations: the reason and a link to each task.

    The annotator sees the same reason in the task itself (its wb_feedback field).

    Example: wb ls rejected --limit 20
    """
    from workbench import labelling  # Label Studio code: only for ls commands

    rows = labelling.rejected(workspace(ctx), limit=limit)
    if json_:
        print_json(rows)
        return
    if not rows:
        typer.echo("No rejected annotations.")
        return
    for r in rows:
        gone = " (project gone)" if r["project_gone"] else ""
        where = r["link"] or f"project {r['project_id']} task {r['ls_task_id']}{gone}"
        typer.echo(f"task {r['ls_task_id']} ({r['image'] or 'no wb image'}, by {r['annotator'] or '?'}): {r['reason']}")
        typer.echo(f"  {where}")


@ls_app.command()
def token(ctx: typer.Context) -> None:
    """Print the API token in use (WB_LS_TOKEN, or the one of the server wb started).

    Example: export WB_LS_TOKEN=$(wb ls token)
    """
    from workbench import labelling  # Label Studio code: only for ls commands

    typer.echo(labelling.token(workspace(ctx)))


@ls_app.command()
def push(
    ctx: typer.Context,
    images: Annotated[str | None, typer.Option(help="Comma-separated image ids or paths (instead of a batch).")] = None,
    batch: Annotated[str | None, typer.Option(help="Annotation batch name (default: the split's initial batch).")] = None,
    split: SplitOption = None,
    predictions: Annotated[int | None, typer.Option(
        help="Run id whose boxes become pre-annotations; a detector run first predicts the images it has not seen.")] = None,
    label_config: Annotated[Path | None, typer.Option(
        help="Label config for a new project (default: annotations/label_config.xml).")] = None,
    new_project: Annotated[bool, typer.Option(
        "--new-project", help="Create a new project (e.g. the old one was deleted on the server).")] = False,
    include_annotated: Annotated[bool, typer.Option(
        "--include-annotated/--skip-annotated",
        help="Also send images that already have a valid chest box (default: skip them).")] = False,
    json_: JsonOption = False,
) -> None:
    """Send images as Label Studio tasks; pushing again adds no duplicates.

    Example: wb ls push --predictions 3
    """
    from workbench import labelling  # Label Studio code: only for ls commands

    refs = [r.strip() for r in images.split(",") if r.strip()] if images else None
    out = labelling.push(workspace(ctx), images=refs, batch=batch, split=split, predictions_run=predictions,
                         label_config=label_config, new_project=new_project, include_annotated=include_annotated,
                         progress=not json_)
    if json_:
        print_json(out)
        return
    typer.echo(f"Project {out['project_id']} at {out['url']}: {out['selection']}, {out['images']} images")
    typer.echo(f"  new tasks {out['created']}, already pushed {out['already']}"
               + (f", skipped {out['skipped_annotated']} with a valid box (--include-annotated sends them)"
                  if out["skipped_annotated"] else "")
               + (f", recovered {out['adopted']}" if out["adopted"] else "")
               + (f", pre-annotations {out['predictions']} (model version {out['model_version']}"
                  + (f"; run {out['model_version']} predicted {out['predicted']} image(s) first" if out["predicted"] else "")
                  + ")" if out["model_version"] else ""))
    if out["note"]:
        typer.secho(f"Note: {out['note']}", fg="yellow", err=True)


@ls_app.command()
def pull(ctx: typer.Context, json_: JsonOption = False) -> None:
    """Bring annotations made since the last pull into the workspace, validated.

    Rejected annotations get their reason written into the task, where the annotator sees it.

    Example: wb ls pull && wb ls rejected
    """
    from workbench import labelling  # Label Studio code: only for ls commands

    out = labelling.pull(workspace(ctx), progress=not json_)
    if json_:
        print_json(out)
        return
    by = ", ".join(f"{k} {v}" for k, v in sorted(out["by_status"].items())) or "none"
    typer.echo(f"Pulled {out['tasks_seen']} changed task(s) from project {out['project_id']}: new {out['created']}, "
               f"updated {out['updated']}, deleted {out['deleted']}, unchanged {out['unchanged']} (new/updated: {by})")
    if out["feedback_written"]:
        typer.echo(f"  wrote wb's verdict into {out['feedback_written']} task(s) for the annotators (field wb_feedback)")
    if out["rejected_total"]:
        typer.echo(f"  {out['rejected_total']} rejected annotation(s) in this project, with reasons and links: `wb ls rejected`")
    if out["conflict_tasks"]:
        typer.echo(f"  {out['conflict_tasks']} task(s) where annotators disagree: `wb annotations conflicts`")


users_app = typer.Typer(
    help="Annotator accounts on the Label Studio server.\n\nExample: wb ls users add ann@lab.org",
    no_args_is_help=True,
)
ls_app.add_typer(users_app, name="users")


@users_app.command("add")
def users_add(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The annotator's e-mail (their login).")],
    json_: JsonOption = False,
) -> None:
    """Create an annotator account with a generated password, printed once.

    Example: wb ls users add ann@lab.org
    """
    from workbench import labelling  # Label Studio code: only for ls commands

    made = labelling.add_user(workspace(ctx), email)
    if json_:
        print_json(made)
        return
    typer.echo(f"Created {made['email']} on {made['url']} with password {made['password']}")
    typer.echo("  give both to the annotator; wb keeps the password nowhere")


@users_app.command("list")
def users_list(ctx: typer.Context, json_: JsonOption = False) -> None:
    """The accounts on the Label Studio server.

    Example: wb ls users list
    """
    from workbench import labelling  # Label Studio code: only for ls commands

    users = labelling.list_users(workspace(ctx))
    if json_:
        print_json(users)
        return
    for u in users:
        typer.echo(f"{u['id']:>4}  {u['email']}")
