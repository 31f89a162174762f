"""`wb eval RUN` and `wb cam RUN --images ...`."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from workbench.cli import app
from workbench.cli.common import CheckpointOption, DeviceOption, JsonOption, config_option, print_json, workspace
from workbench.configs import PARTS, CamConfig, EvalConfig, fill


@app.command("eval")
def eval_(
    ctx: typer.Context,
    run: Annotated[int, typer.Argument(help="Id of a detector or classifier run (see `wb status`).")],
    part: Annotated[str | None, config_option(EvalConfig, "part", f"Split part to score: {', '.join(PARTS)}.")] = None,
    checkpoint: CheckpointOption = None,
    bootstrap: Annotated[int | None, config_option(EvalConfig, "bootstrap", "Bootstrap resamples for the 95% intervals.")] = None,
    batch_size: Annotated[int | None, config_option(EvalConfig, "batch_size", "Images per inference batch.")] = None,
    device: DeviceOption = None,
    json_: JsonOption = False,
) -> None:
    """Score a trained run on a split part, with bootstrap 95% intervals.

    Accuracy, F1, precision, recall, specificity, ROC-AUC and the confusion matrix (pneumonia
    positive); detector runs add chest-box mAP@0.5, mAP@[.5:.95] and mean IoU.

    Stores the predictions and metrics on the run and writes a report folder (HTML + Markdown).

    Example: wb eval 3 --part test --json
    """
    from workbench.evaluation import evaluate_run  # torch: only when a command runs

    settings = fill(EvalConfig, part=part, checkpoint=checkpoint, bootstrap=bootstrap, batch_size=batch_size, device=device)
    m = evaluate_run(workspace(ctx), run, settings, progress=not json_)
    if json_:
        print_json(m)
        return
    ci = m["ci"]
    typer.echo(f"Run {run} ({m['kind']}) on {m['part']}: {m['n']} images")
    for key in ("accuracy", "f1", "precision", "recall", "specificity", "roc_auc"):
        value = m[key]
        bounds = f"  (95% CI {ci[key][0]:.3f}-{ci[key][1]:.3f})" if ci.get(key) else ""
        typer.echo(f"  {key:<12} {'n/a' if value is None else f'{value:.3f}'}{bounds}")
    typer.echo(f"  confusion    [[tn, fp], [fn, tp]] = {m['confusion_matrix']}")
    if m["kind"] == "detector":
        fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        typer.echo(f"  chest box on {m['annotated_images']} annotated images: mAP@0.5 {fmt(m['map50'])}, "
                   f"mAP@[.5:.95] {fmt(m['map50_95'])}, mean IoU {fmt(m['mean_iou'])}")
    typer.echo(f"Report: {m['report']}")


@app.command("cam")
def cam(
    ctx: typer.Context,
    run: Annotated[int, typer.Argument(help="Id of a detector or classifier run.")],
    images: Annotated[list[str], typer.Option(
        "--images", help="Image ids or image file paths (repeat the option, or list after it).")],
    out: Annotated[Path | None, typer.Option(help="Folder for the PNGs (default: the run's cam/ folder).")] = None,
    checkpoint: CheckpointOption = None,
    device: DeviceOption = None,
    json_: JsonOption = False,
) -> None:
    """Class-activation overlays: Grad-CAM per ensemble member, EigenCAM for a detector.

    Example: wb cam 3 --images 12 --images sample/kermany/chest_xray/test/NORMAL/IM-0016-0001.jpeg
    """
    from workbench.evaluation import make_cam  # torch: only when a command runs

    result = make_cam(workspace(ctx), run, images, fill(CamConfig, checkpoint=checkpoint, device=device), out_dir=out)
    if json_:
        print_json(result)
        return
    for f in result["files"]:
        typer.echo(f)
