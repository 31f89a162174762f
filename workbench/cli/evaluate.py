"""`wb eval RUN` and `wb cam RUN --images ...`."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipelines.registry import FILLS
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
    reliance: Annotated[bool, typer.Option(
        "--reliance/--no-reliance", help="Also score the part's boxed images chest-only and chest-removed.")] = True,
    fill_: Annotated[str | None, config_option(
        EvalConfig, "fill", f"What fills the removed region: {', '.join(FILLS)}.", "--fill")] = None,
    boxes_from: Annotated[int | None, config_option(
        EvalConfig, "boxes_from", "Detector RUN boxing images without an annotated box, for reliance (runs that use "
        "boxes take their own).", "--boxes-from", metavar="RUN")] = None,
    device: DeviceOption = None,
    json_: JsonOption = False,
) -> None:
    """Score a trained run on a split part, with bootstrap 95% intervals.

    Accuracy, F1, precision, recall, specificity, ROC-AUC and the confusion matrix (pneumonia
    positive) at the run's decision threshold (chosen on its val part) and at 0.5; detector runs
    add chest-box mAP@0.5, mAP@[.5:.95] and mean IoU. Shortcut reliance: the boxed images scored as
    they are, chest only and chest removed; off_chest_auc is ROC-AUC without the chest (0.5 = the
    model finds nothing outside it).

    Stores the predictions and metrics on the run and writes a report folder (HTML + Markdown).

    Example: wb eval 3 --part test --json
    """
    from workbench.evaluation import evaluate_run  # torch: only when a command runs

    settings = fill(EvalConfig, part=part, checkpoint=checkpoint, bootstrap=bootstrap, batch_size=batch_size, device=device,
                    reliance=reliance, fill=fill_, boxes_from=boxes_from)
    m = evaluate_run(workspace(ctx), run, settings, progress=not json_)
    if json_:
        print_json(m)
        return
    ci = m["ci"]
    rule = m["threshold_rule"]
    typer.echo(f"Run {run} ({m['kind']}) on {m['part']}: {m['n']} images; threshold {m['threshold']:.3f} "
               f"({rule['rule']} on the {rule['part']} part; at 0.5: accuracy {m['at_0.5']['accuracy']:.3f})")
    for key in ("accuracy", "f1", "precision", "recall", "specificity", "roc_auc"):
        value = m[key]
        bounds = f"  (95% CI {ci[key][0]:.3f}-{ci[key][1]:.3f})" if ci.get(key) else ""
        typer.echo(f"  {key:<12} {'n/a' if value is None else f'{value:.3f}'}{bounds}")
    typer.echo(f"  confusion    [[tn, fp], [fn, tp]] = {m['confusion_matrix']}")
    r = m.get("reliance")
    if r and r.get("views"):
        fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        typer.echo(f"  shortcut reliance on {r['images']} boxed images (fill {r['fill']}): off_chest_auc "
                   f"{fmt(r['off_chest_auc'])}; accuracy / ROC-AUC as they are {fmt(r['views']['full']['accuracy'])} / "
                   f"{fmt(r['views']['full']['roc_auc'])}, chest only {fmt(r['views']['chest_only']['accuracy'])} / "
                   f"{fmt(r['views']['chest_only']['roc_auc'])}, chest removed {fmt(r['views']['chest_removed']['accuracy'])}"
                   f" / {fmt(r['off_chest_auc'])}; {r['flip_share']:.1%} of predictions flip without the outside")
    elif r:
        typer.echo(f"  shortcut reliance: skipped, {r['skipped']}")
    if "map50" in m:  # a detector run: its chest boxes were scored
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
