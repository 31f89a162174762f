"""Dataset commands: import, split, status."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from workbench.cli import app
from workbench.cli.common import JsonOption, config_option, print_json, workspace
from workbench.configs import STRATEGIES, SplitConfig, fill


@app.command("import")
def import_(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="The unpacked archive, or any folder above chest_xray/.")],
    workers: Annotated[int | None, typer.Option(
        min=1, help="Processes that hash and decode (default: cores, at most 4).")] = None,
    json_: JsonOption = False,
) -> None:
    """Import Kermany chest X-rays (Kaggle, Mendeley v2 or v3 layout) into the workspace.

    Every file is hashed and decoded; unreadable files are recorded with the reason and checked
    again by the next import. Importing the same folder again adds nothing. This is the one
    command that creates a new database (other commands refuse a --db that does not exist).

    Example: wb import ~/Downloads/chest_xray
    """
    from workbench.importing import import_into

    summary = import_into(workspace(ctx, create_db=True), path, workers=workers)
    if json_:
        print_json(summary.as_dict())
        return
    if summary.new_database:
        typer.echo(f"New workspace database: {summary.new_database}")
    if summary.added == 0:
        typer.echo(f"Nothing new: all {summary.already_present + summary.rechecked} image files are already in the workspace.")
    else:
        typer.echo(f"Imported {summary.added} files from {', '.join(summary.roots)}")
        for label in sorted(set(summary.imported) | set(summary.unreadable)):
            typer.echo(
                f"  {label:<10} readable {summary.imported[label]:>5}  unreadable {summary.unreadable[label]:>3}"
                f"  exact duplicates {summary.duplicates[label]:>3}"
            )
        if summary.already_present:
            typer.echo(f"  skipped {summary.already_present} files already imported")
    if summary.rechecked:
        fixed = sum(summary.now_readable.values())
        typer.echo(f"  checked again {summary.rechecked} file(s) recorded unreadable: {fixed} readable now")
    for reason, n in sorted(summary.ignored.items()):
        typer.echo(f"  not imported: {n} file(s): {reason}")
    if summary.unrecognised_names:
        typer.echo(f"  {summary.unrecognised_names} file name(s) not in a Kermany pattern: each is its own patient group")
    if sum(summary.unreadable.values()):
        typer.echo("  unreadable files are listed by `wb status`")


def _ratios(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise typer.BadParameter("give three numbers, e.g. 0.8,0.1,0.1") from None
    if len(values) != 3:
        raise typer.BadParameter("give three numbers, e.g. 0.8,0.1,0.1")
    return values[0], values[1], values[2]


@app.command()
def split(
    ctx: typer.Context,
    strategy: Annotated[str | None, config_option(
        SplitConfig, "strategy", f"One of {', '.join(STRATEGIES)}: patient-grouped, the seed study's image-level random "
        "split, or the dataset's own test folder.")] = None,
    name: Annotated[str | None, typer.Option(help="Name to store the split under (default: the strategy).")] = None,
    ratios: Annotated[str | None, config_option(SplitConfig, "ratios", "train,val,test fractions.")] = None,
    seed: Annotated[int | None, config_option(SplitConfig, "seed", "Random seed.")] = None,
    batch_per_class: Annotated[int | None, config_option(
        SplitConfig, "batch_per_class", "First annotation batch: images per class from train.")] = None,
    replace: Annotated[bool, typer.Option(help="Replace an existing split of that name.")] = False,
    json_: JsonOption = False,
) -> None:
    """Split readable images into train/val/test and pick the first annotation batch.

    Example: wb split --strategy source --name benchmark
    """
    config = fill(SplitConfig, strategy=strategy, ratios=_ratios(ratios) if ratios is not None else None, seed=seed,
                  batch_per_class=batch_per_class)
    from workbench.splitting import create_split

    summary = create_split(workspace(ctx).db, name, config, replace=replace)
    if json_:
        print_json(summary.as_dict())
        return
    typer.echo(f"Split {summary.name!r} ({summary.strategy}, seed {config.seed}):")
    for part, counts in summary.counts.items():
        typer.echo(f"  {part:<5} {sum(counts.values()):>5}  " + "  ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if summary.shared_patients:
        typer.echo(f"  warning: {summary.shared_patients} patient key(s) appear in more than one part")
    if summary.batch_name:
        typer.echo(f"Annotation batch {summary.batch_name!r}: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.batch.items())))


@app.command()
def status(ctx: typer.Context, json_: JsonOption = False) -> None:
    """Summarise the workspace: images, splits, annotations, runs.

    Example: wb status --json
    """
    from workbench.status import collect_status

    info = collect_status(workspace(ctx).db)
    if json_:
        print_json(info)
        return
    im = info["images"]
    typer.echo(f"Database: {info['database']}")
    typer.echo(
        f"Images: {im['total']} (NORMAL {im['by_label']['NORMAL']}, PNEUMONIA {im['by_label']['PNEUMONIA']}); "
        f"unreadable {im['unreadable']}; exact duplicates {im['duplicates']}"
    )
    for row in im["unreadable_files"]:
        typer.echo(f"  unreadable: {row['path']}: {row['reason']}")
    if im["changed"]:
        typer.echo(f"Changed since import (found by wb doctor): {im['changed']}")
    for row in im["changed_files"]:
        typer.echo(f"  {row['status']}: {row['path']}: {row['reason']}")
    for name, parts in info["splits"].items():
        typer.echo(f"Split {name} ({parts['strategy']}): train {parts['train']}, val {parts['val']}, test {parts['test']}")
    for name, n in info["annotation_batches"].items():
        typer.echo(f"Annotation batch {name}: {n} images")
    a = info["annotations"]
    typer.echo(
        f"Annotations: {a['total']} (valid {a['valid']}, rejected {a['rejected']}, skipped {a['skipped']}, "
        f"deleted {a['deleted']}, superseded {a['superseded']}, disputed {a['disputed']})"
    )
    c = a["conflicts"]
    if c["pairs"]:
        typer.echo(f"  annotators disagree on {c['tasks']} task(s) ({c['pairs']} pair(s); policy {c['policy']}, "
                   f"IoU < {c['iou']}): `wb annotations conflicts`")
    for row in a["rejected_list"]:
        where = f" (task {row['ls_task_id']})" if row["ls_task_id"] is not None else ""
        typer.echo(f"  rejected #{row['id']}{where}: {row['reason']}" + (f"  {row['link']}" if row["link"] else ""))
    for run in info["runs"]:
        typer.echo(f"Run {run['id']}: {run['kind']} {run['status']}")


@app.command()
def doctor(
    ctx: typer.Context,
    workers: Annotated[int | None, typer.Option(min=1, help="Threads that read and hash (default: cores, at most 8).")] = None,
    restart: Annotated[bool, typer.Option(help="Start a new pass instead of continuing an unfinished one.")] = False,
    json_: JsonOption = False,
) -> None:
    """Check every imported file against the database: present, same size, same sha256.

    Images whose file changed or went missing are marked (and left out of train, eval, suggest
    and push) until a later check finds the file as imported again. An interrupted check
    continues where it stopped.

    Example: wb doctor
    """
    from workbench.doctor import check_files

    summary = check_files(workspace(ctx), workers=workers, restart=restart, progress=not json_)
    if json_:
        print_json(summary.as_dict())
        return
    resumed = f" (continued a pass that had checked {summary.resumed})" if summary.resumed else ""
    typer.echo(f"Checked {summary.checked} files{resumed} in {summary.seconds:.1f}s: {summary.ok} as imported, "
               f"{len(summary.changed)} changed, {len(summary.missing)} missing, {len(summary.restored)} restored")
    for kind in ("changed", "missing", "restored"):
        for row in getattr(summary, kind):
            typer.echo(f"  {kind}: {row['path']}: {row['reason']}")
    if summary.changed or summary.missing:
        typer.echo("Changed and missing images are left out of train, eval, suggest and push until their file is "
                   "restored and `wb doctor` runs again (`wb status` lists them).")
