"""`wb annotations ...`: chest boxes to and from files, and several annotators' boxes (no server needed).

(Not named annotations.py: `from __future__ import annotations` in workbench/cli/__init__.py shadows it.)
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from workbench.cli import app
from workbench.cli.common import JsonOption, SplitOption, print_json, workspace

annotations_app = typer.Typer(
    help="Chest boxes: export and import files (wb JSON, COCO, VOC, YOLO, Label Studio JSON), "
         "the policy for several annotators, and where they disagree.\n\n"
         "Example: wb annotations import annotations/sample_boxes.json",
    no_args_is_help=True,
)
app.add_typer(annotations_app, name="annotations")


@annotations_app.command("export")
def export(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="File (wb, coco) or new folder (voc, yolo) to write.")],
    format: Annotated[str, typer.Option(
        "--format",
        help="wb (wb's JSON) | coco (one JSON file) | voc (XML per image) | yolo (labels/*.txt + data.yaml).")] = "wb",
    split: SplitOption = None,
    json_: JsonOption = False,
) -> None:
    """Write the valid chest boxes (one per image; human before machine) for wb or another tool.

    coco: pixel [x, y, w, h] boxes, categories 'normal chest' (1) and 'pneumonia chest' (2), image
    paths under the dataset root with their sha256 (pycocotools, Detectron2, FiftyOne). voc:
    Annotations/*.xml (1-based inclusive corners) and JPEGImages/ links. yolo: images/PART/ links,
    labels/PART/*.txt (class cx cy w h as fractions), data.yaml and classes.txt for Ultralytics;
    PART is the image's part in --split (default: the newest), or 'all'. Images are linked, not copied.

    Example: wb annotations export --format coco boxes.json
    """
    from workbench.boxfiles import export_annotations

    out = export_annotations(workspace(ctx), file, format=format, split=split)
    if json_:
        print_json(out)
        return
    by_origin = out["by_origin"]
    typer.echo(f"Wrote {out['boxes']} boxes to {out['file']} ({out['format']}; human {by_origin['human']}, "
               f"machine {by_origin['machine']})")
    if out.get("by_part"):
        typer.echo("  " + ", ".join(f"{k} {v}" for k, v in out["by_part"].items())
                   + (f" (split {out['split']})" if out["split"] else " (no split yet)"))


@annotations_app.command("import")
def import_(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(
        help="A wb box file, a COCO file or a Label Studio JSON export (the format is detected).")],
    format: Annotated[str | None, typer.Option(
        "--format", help="wb | coco | label-studio (default: detected from the file).")] = None,
    origin: Annotated[str | None, typer.Option(
        help="human | machine for COCO / Label Studio boxes (default: the file's, else human).")] = None,
    json_: JsonOption = False,
) -> None:
    """Load chest boxes from a file; images are matched by sha256, then path. Importing again changes nothing.

    COCO categories 'normal chest' / 'pneumonia chest' are kept ('chest' takes the image label's
    class). A Label Studio export's annotations are checked as `wb ls pull` checks them, and
    several on one task are resolved by `wb annotations policy`.

    Example: wb annotations import annotations/sample_boxes.json
    """
    from workbench.boxfiles import import_annotations

    out = import_annotations(workspace(ctx), file, format=format, origin=origin)
    if json_:
        print_json(out)
        return
    typer.echo(f"{out['boxes']} boxes in {out['file']} ({out['format']}): new {out['created']}, updated {out['updated']}, "
               f"unchanged {out['unchanged']}, rejected {out['rejected']}, no matching image {out['unmatched']}")
    for path in out["unmatched_images"]:
        typer.echo(f"  not in the workspace: {path}")


@annotations_app.command("policy")
def policy(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(
        help="newest | first | consensus (leave out to show the policy in force).")] = None,
    iou: Annotated[float | None, typer.Option(
        min=0.0, max=1.0, help="Two boxes of one task disagree below this IoU (default 0.7).")] = None,
    json_: JsonOption = False,
) -> None:
    """Which box an image gets when several annotators box the same task; setting it re-applies it.

    newest (the default): the box submitted or updated last. first: the box submitted first.
    consensus: a box only when more than half of the task's annotators agree with it (IoU at least
    --iou, same label and flags), else none. The boxes not kept stay, as superseded or disputed.

    Example: wb annotations policy consensus --iou 0.75
    """
    from workbench.reviewing import policy as set_policy

    out = set_policy(workspace(ctx), name=name, iou=iou)
    if json_:
        print_json(out)
        return
    typer.echo(f"Policy: {out['policy']}; boxes of one task disagree below IoU {out['iou']}")
    if out["changed"]:
        typer.echo(f"  applied to {out['tasks']} task(s) with several annotations: "
                   f"{out['annotations_changed']} annotation(s) changed status")


@annotations_app.command("conflicts")
def conflicts(
    ctx: typer.Context,
    limit: Annotated[int | None, typer.Option(min=1, help="Show at most this many pairs.")] = None,
    json_: JsonOption = False,
) -> None:
    """Pairs of annotations of one task that disagree (IoU below the threshold, other labels or
    flags, or a box against "no usable chest"), with a link to the task and the box kept.

    Example: wb annotations conflicts --limit 20
    """
    from workbench.reviewing import list_conflicts

    out = list_conflicts(workspace(ctx), limit=limit)
    if json_:
        print_json(out)
        return
    if not out["pairs"]:
        typer.echo(f"No conflicts (policy {out['policy']}, IoU threshold {out['iou']}).")
        return
    typer.echo(f"{out['pairs']} disagreeing pair(s) on {out['tasks']} task(s) (policy {out['policy']}, "
               f"IoU threshold {out['iou']}):")
    for r in out["conflicts"]:
        kept = f"kept annotation {r['kept']}" if r["kept"] is not None else "no box kept"
        typer.echo(f"task {r['ls_task_id']} ({r['image'] or 'no wb image'}): annotation {r['a']['ls_annotation_id']} "
                   f"by {r['a']['annotator'] or '?'} vs {r['b']['ls_annotation_id']} by {r['b']['annotator'] or '?'}: "
                   f"{r['reason']}; {kept}")
        if r["link"]:
            typer.echo(f"  {r['link']}")
