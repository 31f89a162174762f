"""`wb stress plant DEST`: a copy of the dataset with a planted shortcut, to check a pipeline catches it."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipelines.registry import MARKER_PLACES, MARKER_SHAPES
from workbench.cli import app
from workbench.cli.common import JsonOption, SplitOption, config_option, print_json, workspace
from workbench.configs import PlantConfig, fill

stress_app = typer.Typer(
    help="Stress sets: plant a shortcut and see whether your pipeline falls for it.\n\n"
         "Example: wb stress plant ~/kermany-planted --shape mixed --size 0.06",
    no_args_is_help=True,
)
app.add_typer(stress_app, name="stress")


@stress_app.command("plant")
def plant(
    ctx: typer.Context,
    dest: Annotated[Path, typer.Argument(help="New folder for the copy (chest_xray/<part>/<LABEL>/..., a manifest, boxes).")],
    split: SplitOption = None,
    shape: Annotated[str | None, config_option(
        PlantConfig, "shape", f"Marker shape: {', '.join(MARKER_SHAPES)}, or mixed (one per image).")] = None,
    size: Annotated[float | None, config_option(PlantConfig, "size", "Marker side, a fraction of the shorter side.")] = None,
    place: Annotated[str | None, config_option(
        PlantConfig, "place", f"Where outside the chest box: {', '.join(MARKER_PLACES)}.")] = None,
    rate_positive: Annotated[float | None, config_option(
        PlantConfig, "rate_positive", "Share of PNEUMONIA images marked in train/val (of NORMAL ones in test).",
        "--rate-positive")] = None,
    rate_negative: Annotated[float | None, config_option(
        PlantConfig, "rate_negative", "Share of NORMAL images marked in train/val (of PNEUMONIA ones in test).",
        "--rate-negative")] = None,
    intensity: Annotated[int | None, config_option(PlantConfig, "intensity", "Grey level of the marker (0-255).")] = None,
    seed: Annotated[int | None, config_option(PlantConfig, "seed", "Random seed (who is marked, where, which shape).")] = None,
    boxes_from: Annotated[int | None, config_option(
        PlantConfig, "boxes_from", "Detector RUN boxing images without an annotated chest box.", "--boxes-from",
        metavar="RUN")] = None,
    json_: JsonOption = False,
) -> None:
    """Copy the split's images with a synthetic marker outside the chest box that goes with the label
    in train/val and against it in test; a manifest lists every marked image.

    A classifier that reads the marker scores well on val and badly on the copy's test part. Import
    the copy into its own workspace, make a `--strategy source` split (its test folder is the reversed
    part) and `wb annotations import DEST/chest_boxes.json` for its chest boxes.

    Example: wb stress plant ../kermany-planted --shape mixed --size 0.06 --rate-positive 0.9 --rate-negative 0.1
    """
    from workbench.stress import plant_shortcut  # numpy, Pillow, torch: only when a command runs

    config = fill(PlantConfig, split=split, shape=shape, size=size, place=place, rate_positive=rate_positive,
                  rate_negative=rate_negative, intensity=intensity, seed=seed, boxes_from=boxes_from)
    out = plant_shortcut(workspace(ctx), dest, config, progress=not json_)
    if json_:
        print_json(out)
        return
    typer.echo(f"Wrote {out['images']} images to {out['dest']}: {out['marked']} marked")
    for key, n in out["counts"].items():
        typer.echo(f"  {key:<32} {n}")
    typer.echo(f"Manifest: {out['manifest']}; chest boxes: {out['boxes']} ({out['boxes_written']})")
