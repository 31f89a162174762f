"""`wb annotations ...`: chest boxes to and from a plain JSON file (no server needed).

(Not named annotations.py: `from __future__ import annotations` in workbench/cli/__init__.py shadows it.)
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from workbench.cli import app
from workbench.cli.common import JsonOption, print_json, workspace

annotations_app = typer.Typer(
    help="Chest boxes as a JSON file: export, import.\n\nExample: wb annotations import annotations/sample_boxes.json",
    no_args_is_help=True,
)
app.add_typer(annotations_app, name="annotations")


@annotations_app.command("export")
def export(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="JSON file to write (pixel boxes, label, origin, image path + sha256).")],
    json_: JsonOption = False,
) -> None:
    """Write the valid chest boxes (one per image; human before machine) to a JSON file.

    Example: wb annotations export annotations/round1.json
    """
    from workbench.boxfiles import export_annotations

    out = export_annotations(workspace(ctx), file)
    if json_:
        print_json(out)
        return
    by_origin = out["by_origin"]
    typer.echo(f"Wrote {out['boxes']} boxes to {out['file']} (human {by_origin['human']}, machine {by_origin['machine']})")


@annotations_app.command("import")
def import_(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A box file written by `wb annotations export`.")],
    json_: JsonOption = False,
) -> None:
    """Load chest boxes from a JSON file; images are matched by sha256. Importing again changes nothing.

    Example: wb annotations import annotations/sample_boxes.json
    """
    from workbench.boxfiles import import_annotations

    out = import_annotations(workspace(ctx), file)
    if json_:
        print_json(out)
        return
    typer.echo(f"{out['boxes']} boxes in {out['file']}: new {out['created']}, updated {out['updated']}, "
               f"unchanged {out['unchanged']}, rejected {out['rejected']}, no matching image {out['unmatched']}")
    for path in out["unmatched_images"]:
        typer.echo(f"  not in the workspace: {path}")
